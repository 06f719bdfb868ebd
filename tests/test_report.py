"""The HTML report: renders from a fixture table with every section, and loads cleanly in a real browser.

The browser test drives headless Chromium over the DevTools protocol (a few lines of stdlib websocket
below, so no extra dependency): every <img> must have loaded (naturalWidth > 0), the console must hold
no errors, nothing may be fetched except file: and data: URLs, and a full-page screenshot is saved to
test-artifacts/. It also deletes one image and checks the same probe reports it, so it can fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipvqd.evaluation.protocol import ProtocolRecord, make_entry
from clipvqd.evaluation.table import MetricsTableError, metric_row, variant_name, write_metrics_table
from clipvqd.hashing import sha256_file
from clipvqd.report import ReportError, render_report

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SECTIONS = ("comparison", "quality", "paper", "sweeps", "tradeoff", "samples", "training", "runtimes", "protocol")
APPROXIMATION = "measured on stand-in CLIP embeddings, not InceptionV3 features"
HEADLINE = {"alpha": 0.5, "s": 1.2, "r": 0.85, "steps": 100}


# ------------------------------------------------------------------------------------------------
# Fixture: a small but complete set of report inputs
# ------------------------------------------------------------------------------------------------


def _sample_manifest(folder: Path, method: str, hue: int) -> Path:
    """3 prompts x 4 samples of 32px images, same prompts and seeds for every method."""
    folder.mkdir(parents=True)
    rows = []
    for p in range(3):
        for i in range(4):
            image = np.full((32, 32, 3), (hue, 40 * p + 60, 30 * i + 50), np.uint8)
            image[8:24, 8:24] = 255 - image[8:24, 8:24]
            name = f"p{p}_{i}.png"
            Image.fromarray(image).save(folder / name)
            rows.append({"path": name, "sha256": sha256_file(folder / name), "prompt_id": f"p{p}",
                         "prompt": f"a face with {['red', 'black', 'blond'][p]} hair", "sample_index": i,
                         "seed": 100 + i, "method": method, "variant": "default"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def _image_entry(settings: dict | None, fid_sample: int) -> dict:
    sampling = {"n_samples": fid_sample, "settings": settings or {}}
    return make_entry("image_set_metrics", library={"name": "torch-fidelity", "version": "0.4.0"},
                      metrics=["fid", "kid", "precision", "recall"], approximation=APPROXIMATION,
                      feature_extractor={"name": "clipvqd-judge-clip-0123456789abcdef", "description": "judge CLIP",
                                         "feature_layer": "embedding", "weights_sha256": "ab" * 32},
                      generated={"n": fid_sample, "resolution": [32, 32], "content_sha256": "cd" * 32,
                                 "sampling": sampling},
                      reference={"name": "faces/reference", "n": 200, "content_sha256": "ef" * 32},
                      resolution=[32, 32], settings={"kid_subsets": 100, "kid_subset_size": 64},
                      cross_check={"library": "clean-fid", "version": "0.1.35", "fid": 20.01, "resize": "none",
                                   "relative_difference": 5e-4} if settings == HEADLINE else None)


def build_inputs(root: Path) -> dict:
    record = ProtocolRecord()
    oracle_entry = record.add(make_entry("attribute_accuracy", oracle_sha256="34" * 32))
    rows = []
    headline = HEADLINE
    sweep = [{"alpha": a} for a in (0.25, 0.75, 0.9)] + [{"s": s} for s in (1.0, 2.0, 3.0)] \
        + [{"r": r} for r in (0.8, 0.9)] + [{"steps": 50}]
    for method, quality, alignment in (("clip-vqdiffusion", 20.0, 0.30), ("lafite", 28.0, 0.27),
                                       ("clip2latent", 25.0, 0.26), ("unconditional", 30.0, 0.18)):
        variants = [("default", headline)]
        if method == "clip-vqdiffusion":
            variants += [(variant_name({**headline, **change}), {**headline, **change}) for change in sweep]
        for variant, settings in variants:
            # A smooth, made-up response to each setting, so every sweep line has a shape.
            shift = (0.4 * (settings["alpha"] - 0.5) + 0.1 * (settings["s"] - 1.2)
                     - 0.5 * (settings["r"] - 0.85) + (100 - settings["steps"]) / 1000)
            fid_entry = record.add(_image_entry(settings, 48))
            clip_entry = record.add(make_entry("clipscore", role="judge", definition="raw cosine",
                                               clip={"label": "judge", "weights_sha256": "12" * 32},
                                               sampling={"n_samples": 48, "settings": settings}))
            rows += [metric_row(method, variant, "fid", quality + 10 * shift, 48, fid_entry),
                     metric_row(method, variant, "kid", 0.01 + shift / 100, 48, fid_entry),
                     metric_row(method, variant, "precision", 0.6, 48, fid_entry),
                     metric_row(method, variant, "recall", 0.4, 48, fid_entry),
                     metric_row(method, variant, "clipscore_best16", alignment + 0.05 + shift / 10, 3, clip_entry),
                     metric_row(method, variant, "clipscore_mean", alignment + shift / 10, 48, clip_entry),
                     metric_row(method, variant, "clipscore_judge_mean", alignment - 0.02 + shift / 10, 48, clip_entry)]
        rows += [metric_row(method, "default", "attr_acc", 0.7, 48, oracle_entry),
                 metric_row(method, "default", "attr_acc_ood", 0.5, 48, oracle_entry),
                 metric_row(method, "default", "attr_acc/hair_colour", 0.8, 48, oracle_entry),
                 metric_row(method, "default", "attr_acc/glasses", 0.9, 48, oracle_entry)]
    protocol_json = record.write(root / "inputs" / "protocol.json")
    metrics_csv = root / "inputs" / "metrics.csv"
    write_metrics_table(rows, metrics_csv, protocol_ids=record.ids())

    curves = root / "inputs" / "tokenizer.csv"
    steps = np.arange(0, 500, 10)
    pd.DataFrame({"step": steps, "loss": 2.0 * np.exp(-steps / 150) + 0.1, "lr": 1e-4,
                  "codebook_usage": np.minimum(1, steps / 400)}).to_csv(curves, index=False)
    benchmarks = []
    steps_50 = variant_name({**headline, "steps": 50})
    for stage, seconds in (("tokenizer_train", 95.2), ("diffusion_pretrain/alpha=0.5", 310.0), ("metrics/lafite", 12.5),
                           ("sample_clip-vqdiffusion_default", 80.0), (f"sample_clip-vqdiffusion_{steps_50}", 32.0)):
        path = root / "inputs" / "benchmarks" / f"{stage}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                        f"{seconds}\t0:01:35\t812.5\t2048.0\t700.1\t720.3\t1.0\t2.0\t95.0\t90.1\n")
        benchmarks.append(path)
    return {
        "metrics_csv": metrics_csv,
        "protocol_json": protocol_json,
        "sample_grids": {"clip-vqdiffusion": _sample_manifest(root / "inputs" / "cvq", "clip-vqdiffusion", 200),
                         "lafite": _sample_manifest(root / "inputs" / "lafite", "lafite", 90)},
        "training_curves": {"tokenizer": curves, "lafite": root / "inputs" / "missing.csv"},
        "benchmark_files": benchmarks,
        "quality_numbers": {"stand-in CLIP": {"zero-shot retrieval top-1": 0.83, "weights sha256": "12" * 8},
                            "attribute oracle": {"held-out accuracy": 0.97},
                            "tokenizer": {"reconstruction PSNR (dB)": 24.1, "codebook usage": 0.61}},
        "paper_rows": [{"method": "clip-vqdiffusion", "metric": "clipscore_best16", "value": 0.7,
                        "dataset": "FFHQ", "source": "Han & Kim 2024, arXiv 2403.14944, Table 1 (placeholder)"}],
    }


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links, self.hrefs = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "link":
            self.links.append(attrs.get("href", ""))
        if tag == "a":
            self.hrefs.append(attrs.get("href", ""))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs = build_inputs(root)
    started = time.perf_counter()
    index = render_report(root / "out", **inputs)
    return {"index": index, "root": root, "inputs": inputs, "seconds": time.perf_counter() - started}


# ------------------------------------------------------------------------------------------------
# Static checks
# ------------------------------------------------------------------------------------------------


def test_report_has_every_section_and_only_local_assets(rendered):
    index = rendered["index"]
    html = index.read_text()
    page = _PageParser()
    page.feed(html)
    missing = [s for s in SECTIONS if s not in page.ids]
    assert not missing, f"sections missing from {index}: {missing}"
    # 4 sweep figures + fast sampling + trade-off + 1 training figure + run times, and 2 methods x 3 prompts
    # x 4 samples.
    assert sum(src.startswith("figures/") for src in page.images) == 8
    assert sum(src.startswith("assets/samples/") for src in page.images) == 24
    for reference in page.images + page.links + [h for h in page.hrefs if not h.startswith("#")]:
        if reference.startswith("data:"):
            continue
        assert "://" not in reference and not reference.startswith("/"), f"non-local reference {reference}"
        assert (index.parent / reference).is_file(), f"{reference} is linked but not in {index.parent}"
    # Every in-page link lands somewhere (protocol cards, approximation notes).
    for anchor in {h[1:] for h in page.hrefs if h.startswith("#")}:
        assert anchor in page.ids, f"link to #{anchor} has no target"


def test_comparison_numbers_carry_their_approximation_and_protocol(rendered):
    html = rendered["index"].read_text()
    assert APPROXIMATION in html
    # The FID cell of the headline row: the number, its approximation marker and its protocol link.
    headline = html.split("Headline settings")[1].split("</table>")[0]
    first_row = headline.split("<tbody>")[1].split("</tr>")[0]
    assert ">clip-vqdiffusion<" in first_row and 'href="#approx-1"' in first_row
    assert 'href="#protocol-image_set_metrics-' in first_row
    assert "Attribute-oracle accuracy per attribute" in html and ">hair_colour<" in html
    assert "clean-fid 0.1.35: FID = 20.01, relative difference to torch-fidelity 0.0005" in html


def test_paper_rows_are_kept_apart_and_need_a_source(rendered, tmp_path):
    html = rendered["index"].read_text()
    measured, paper = html.split('id="paper"')
    assert "Han &amp; Kim 2024" in paper and "Han &amp; Kim 2024" not in measured
    inputs = dict(rendered["inputs"], paper_rows=[{"method": "lafite", "metric": "fid", "value": 12.0}])
    with pytest.raises(ReportError, match=r"paper_rows\[0\] lacks source"):
        render_report(tmp_path / "bad", **inputs)


def test_absent_data_is_noted_not_fatal(rendered, tmp_path):
    html = rendered["index"].read_text()
    assert "missing.csv not found" in html  # the lafite training log was absent
    bare = render_report(tmp_path / "bare", rendered["inputs"]["metrics_csv"], rendered["inputs"]["protocol_json"])
    text = bare.read_text()
    for note in ("No sample grids were given", "No training logs were given", "no Snakemake benchmark files",
                 "No quality numbers were given"):
        assert note in text
    assert 'id="paper"' not in text  # no cited numbers given: no paper block at all


def test_report_refuses_rows_with_unknown_protocol(rendered, tmp_path):
    metrics = pd.read_csv(rendered["inputs"]["metrics_csv"])
    metrics.loc[0, "protocol"] = "clipscore-000000000000"
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    with pytest.raises(MetricsTableError, match="row 1: column 'protocol' has 'clipscore-000000000000'"):
        render_report(tmp_path / "out", tmp_path / "metrics.csv", rendered["inputs"]["protocol_json"])


def test_sweep_figures_include_the_default_point(rendered):
    from clipvqd.evaluation.table import read_metrics_table
    from clipvqd.report.figures import sweep_points

    record = ProtocolRecord.read(rendered["inputs"]["protocol_json"])
    points = sweep_points(read_metrics_table(rendered["inputs"]["metrics_csv"]), record.entries)
    alpha_line = points[(points["method"] == "clip-vqdiffusion") & (points["metric"] == "fid")
                        & (points["s"] == 1.2) & (points["r"] == 0.85) & (points["steps"] == 100)]
    assert sorted(alpha_line["alpha"]) == [0.25, 0.5, 0.75, 0.9]  # 0.5 comes from the default's protocol


def test_sampling_speed_figure_divides_by_the_most_steps_job(rendered, tmp_path):
    from clipvqd.evaluation.table import read_metrics_table
    from clipvqd.report import figures

    record = ProtocolRecord.read(rendered["inputs"]["protocol_json"])
    metrics = read_metrics_table(rendered["inputs"]["metrics_csv"])
    benchmarks, _ = figures.read_benchmarks(rendered["inputs"]["benchmark_files"])
    seconds = figures.sample_job_seconds(benchmarks)
    assert seconds[("clip-vqdiffusion", "default")] == 80.0  # the default variant samples 100 steps
    result = figures.sampling_speed_figure(metrics, benchmarks, tmp_path, record.entries)
    assert result.path and (tmp_path / result.path).is_file() and result.note is None
    # Without sample-job timings the cost panels stay and the note says the speed-up is missing.
    untimed = benchmarks[~benchmarks["stage"].str.startswith("sample_")]
    assert "no sample-job benchmark" in figures.sampling_speed_figure(metrics, untimed, tmp_path, record.entries).note
    # One step count only: no figure, and the note says how to get one.
    single = metrics[~metrics["variant"].str.contains("steps=50")]
    assert figures.sampling_speed_figure(single, benchmarks, tmp_path, record.entries).path is None


# ------------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol
# ------------------------------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class _WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: masked text frames out, (fragmented) frames in."""

    def __init__(self, url: str, timeout: float):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"DevTools refused the websocket: {head[:200]!r}")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert accept in head, "bad Sec-WebSocket-Accept"

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self.buffer)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevToolsPage:
    """One page target: call methods, collect events."""

    def __init__(self, websocket_url: str, timeout: float = 60.0):
        self.ws = _WebSocket(websocket_url, timeout)
        self.timeout = timeout
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method} failed: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(f"DevTools {method} did not answer in {self.timeout}s")

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for message in self.events:
                if message.get("method") == event:
                    self.events.remove(message)
                    return message
            self.events.append(json.loads(self.ws.receive()))
        raise TimeoutError(f"no {event} within {self.timeout}s")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                found.append(f"network: {params.get('errorText')}")
        return found

    def requested_urls(self) -> list[str]:
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def image_states(self) -> list[dict]:
        result = self.call("Runtime.evaluate", returnByValue=True, expression=(
            "Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete, "
            "width: i.naturalWidth}))"))
        return result["result"]["value"]

    def screenshot(self, path: Path) -> None:
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


@pytest.fixture
def chromium_page(tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the browser check needs it")
    profile = tmp_path / "chromium-profile"
    log = open(tmp_path / "chromium.log", "wb")
    process = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )
    page = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(tmp_path / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        target = next(t for t in targets if t.get("type") == "page")
        page = DevToolsPage(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        yield page
    finally:
        if page is not None:
            page.ws.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the session chromium was started in, and only that
            process.wait(timeout=10)
        log.close()


def test_report_loads_in_headless_chromium(rendered, chromium_page, tmp_path):
    # A copy, so breaking an image below does not affect the other tests' report.
    report = tmp_path / "report"
    shutil.copytree(rendered["index"].parent, report)
    chromium_page.load((report / "index.html").as_uri())

    images = chromium_page.image_states()
    assert len(images) == 32
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert chromium_page.problems() == []
    remote = [u for u in chromium_page.requested_urls() if not u.startswith(("file:", "data:"))]
    assert not remote, f"the report fetched non-local URLs: {remote}"
    chromium_page.screenshot(ARTIFACTS / "report.png")
    with Image.open(ARTIFACTS / "report.png") as shot:
        assert shot.width >= 1000 and shot.height > 2000  # the whole page, not just the first screen
    shutil.copytree(report, ARTIFACTS / "report", dirs_exist_ok=True)

    # The probe itself must be able to fail: remove one sample image and look again.
    victim = next(i["src"] for i in images if i["src"].startswith("assets/samples/"))
    (report / victim).unlink()
    chromium_page.load((report / "index.html").as_uri())
    broken = [i["src"] for i in chromium_page.image_states() if not (i["complete"] and i["width"] > 0)]
    assert broken == [victim]
    assert any("ERR_FILE_NOT_FOUND" in problem for problem in chromium_page.problems())


def test_quality_numbers_flatten_with_their_chance_levels():
    from clipvqd.report import flatten_numbers

    nested = {"text_to_image": {"recall@1": 0.36, "recall@1_chance": 0.01, "count": 100},
              "zero_shot_attributes": {"hat": {"accuracy": 0.8, "chance": 0.5}}, "clip_sha256": "ab12",
              "flag": True}
    assert flatten_numbers(nested) == {
        "text_to_image.recall@1": "0.36 (chance 0.01)", "text_to_image.count": 100,
        "zero_shot_attributes.hat": "0.8 (chance 0.5)", "clip_sha256": "ab12", "flag": True}
    assert flatten_numbers(0.5) == {"value": 0.5}
