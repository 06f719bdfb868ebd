"""The report stage's command (`python -m clipvqd evaluate report`, what the `report` rule runs): two
branch tables and protocols merged into reports/<run>/metrics.csv and protocol.json, and index.html
rendered with sample grids, training curves, the benchmark files found in a folder and the tools'
quality numbers; plus the report rule's inputs as the workflow plans them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clipvqd.cli import main
from clipvqd.evaluation.protocol import ProtocolRecord, make_entry
from clipvqd.evaluation.table import MetricsTableError, metric_row, read_metrics_table, write_metrics_table
from conftest import REPO


def _branch(root: Path, method: str, variant: str, fid: float, clipscore: float) -> tuple[Path, Path]:
    """One metrics job's outputs: its table and its protocol record."""
    record = ProtocolRecord()
    image_entry = record.add(make_entry("image_set_metrics", metrics=["fid"], approximation=(
        "measured on judge CLIP embeddings, not InceptionV3 features"), branch=f"{method}/{variant}"))
    clip_entry = record.add(make_entry("clipscore", role="judge", definition="raw cosine"))
    oracle_entry = record.add(make_entry("attribute_accuracy", oracle={"weights_sha256": "34" * 32}))
    rows = [metric_row(method, variant, "fid", fid, 12, image_entry),
            metric_row(method, variant, "clipscore_judge_mean", clipscore, 12, clip_entry),
            metric_row(method, variant, "attr_acc", 0.75, 8, oracle_entry),
            metric_row(method, variant, "attr_acc/hat", 0.5, 4, oracle_entry)]
    folder = root / "results" / "metrics" / method
    table, protocol = folder / f"{variant}.csv", folder / f"{variant}.protocol.json"
    record.write(protocol)
    write_metrics_table(rows, table, protocol_ids=record.ids())
    return table, protocol


SAMPLE_SEED = 5


def _samples(root: Path, world: Path, method: str) -> Path:
    """A sample folder in the sample rule's layout, from a few reference renders."""
    reference = pd.read_csv(world / "reference.csv", dtype=str).head(6)
    folder = root / "results" / "samples" / method / "default"
    folder.mkdir(parents=True)
    rows = []
    for index, row in enumerate(reference.to_dict("records")):
        name = f"{index:04d}.png"
        shutil.copyfile(world / row["path"], folder / name)
        rows.append({"path": name, "sha256": row["sha256"], "prompt_id": f"p{index // 2:04d}",
                     "prompt": f"prompt {index // 2}", "sample_index": index % 2, "seed": SAMPLE_SEED,
                     "method": method, "variant": "default"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture()
def inputs(tmp_path, small_faces):
    branches = [_branch(tmp_path, "clip-vqdiffusion", "default", 12.0, 0.31),
                _branch(tmp_path, "lafite", "default", 18.0, 0.27)]
    grids = {m: str(_samples(tmp_path, small_faces, m)) for m in ("clip-vqdiffusion", "lafite")}
    prompts = tmp_path / "results" / "data" / "prompts.csv"
    prompts.parent.mkdir(parents=True)
    pd.DataFrame({"prompt_id": [f"p{k:04d}" for k in range(3)], "prompt": [f"prompt {k}" for k in range(3)],
                  "ood": "0"}).to_csv(prompts, index=False)
    curve = tmp_path / "results" / "tokenizer" / "curve.csv"
    curve.parent.mkdir(parents=True)
    pd.DataFrame({"step": range(1, 21), "loss": [1 / s for s in range(1, 21)]}).to_csv(curve, index=False)
    benchmarks = tmp_path / "results" / "benchmarks"
    benchmarks.mkdir()
    for stage, seconds in (("tokenizer_train", 95.2), ("metrics_lafite_default", 4.5)):
        (benchmarks / f"{stage}.tsv").write_text("s\th:m:s\tmax_rss\n" f"{seconds}\t0:01:35\t812.5\n")
    quality = tmp_path / "results" / "clip" / "judge" / "metrics.json"
    quality.parent.mkdir(parents=True)
    quality.write_text(json.dumps({"clip_sha256": "ab" * 32, "text_to_image": {"recall@1": 0.36, "recall@1_chance": 0.01},
                                   "zero_shot_attributes": {"hat": {"accuracy": 0.8, "chance": 0.5}}}))
    return {"branches": branches, "grids": grids, "curves": {"tokenizer": str(curve)}, "benchmarks": benchmarks,
            "quality": {"CLIP judge (stand-in)": str(quality)}, "report": tmp_path / "reports" / "run",
            "prompts": prompts}


def _report(inputs, tables=None, protocols=None):
    report = inputs["report"]
    main(["evaluate", "report",
          "--tables", *[str(t) for t in (tables or [b[0] for b in inputs["branches"]])],
          "--protocols", *[str(p) for p in (protocols or [b[1] for b in inputs["branches"]])],
          "--metrics-out", str(report / "metrics.csv"), "--protocol-out", str(report / "protocol.json"),
          "--out-dir", str(report), "--grids", json.dumps(inputs["grids"]), "--curves", json.dumps(inputs["curves"]),
          "--quality", json.dumps(inputs["quality"]), "--benchmarks-dir", str(inputs["benchmarks"]),
          "--title", "tiny comparison", "--run-name", "run", "--prompts", str(inputs["prompts"]),
          "--samples-per-prompt", "2", "--sample-seed", str(SAMPLE_SEED)])
    return report


def test_report_from_two_branches(inputs):
    report = _report(inputs)
    html = (report / "index.html").read_text()
    protocol = ProtocolRecord.read(report / "protocol.json")
    merged = read_metrics_table(report / "metrics.csv", protocol_ids=protocol.ids())
    assert set(zip(merged["method"], merged["variant"])) == {("clip-vqdiffusion", "default"), ("lafite", "default")}
    assert len(merged) == 8
    # The shared oracle entry merges into one; the two image-metric entries stay apart.
    assert sorted(e["kind"] for e in protocol.entries.values()) == [
        "attribute_accuracy", "clipscore", "image_set_metrics", "image_set_metrics"]

    assert "<title>tiny comparison — run</title>" in html
    for section in ("comparison", "quality", "samples", "training", "runtimes", "protocol"):
        assert f'id="{section}"' in html, section
    # Sample grids from both manifests (3 prompts x 2 samples each), copied next to the page.
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    samples = [src for src in images if src.startswith("assets/samples/")]
    assert len(samples) == 12 and all((report / src).is_file() for src in samples)
    # Training curve and run-time figures; the run times come from the benchmark folder as it is now.
    assert {"figures/training-tokenizer.png", "figures/runtimes.png"} <= set(images)
    assert all((report / src).is_file() for src in images)
    assert "tokenizer_train" in html and "metrics_lafite_default" in html
    # Quality JSON flattened into one line per number under its group, each number with its chance level.
    assert "CLIP judge (stand-in)" in html and "clip_sha256" in html
    assert re.search(r"text_to_image\.recall@1<.*?0\.36 \(chance 0\.01\)", html, re.S)
    assert re.search(r"zero_shot_attributes\.hat<.*?0\.8 \(chance 0\.5\)", html, re.S)
    assert "recall@1_chance" not in html
    assert (report / "figures").is_dir()


def test_report_refuses_inconsistent_branches(inputs, tmp_path):
    (table_a, protocol_a), (table_b, protocol_b) = inputs["branches"]
    with pytest.raises(SystemExit, match="2 metrics tables but 1 protocol"):
        _report(inputs, protocols=[protocol_a])
    # A row whose protocol id is in no protocol file is named, not rendered.
    with pytest.raises(MetricsTableError, match="protocol.json does not define"):
        _report(inputs, protocols=[protocol_a, protocol_a])
    assert not (inputs["report"] / "index.html").exists()


# ---- what the report copies is what the manifests name, checked ----------------------------------------


def _edit_grid(inputs, method, edit):
    manifest = Path(inputs["grids"][method])
    frame = pd.read_csv(manifest, dtype={"prompt_id": str}, keep_default_na=False)
    edit(frame, manifest.parent).to_csv(manifest, index=False)
    return manifest


def _refused_report(inputs):
    with pytest.raises(SystemExit) as error:
        _report(inputs)
    assert not (inputs["report"] / "index.html").exists()
    return str(error.value.code)


@pytest.mark.parametrize("way_out", ["etc-passwd", "dotdot", "absolute", "symlink", "symlinked-folder"])
def test_report_refuses_a_listed_path_outside_the_sample_folder(inputs, tmp_path, way_out):
    """A manifest row naming a file outside its folder (with that file's true sha256, so only the path rule
    can stop it) is refused, naming the manifest and the path; nothing of it reaches the report."""
    secret = Path("/etc/passwd") if way_out == "etc-passwd" else tmp_path / "secret.png"
    if not secret.exists():
        secret.write_bytes(b"not part of any sample set")

    def edit(frame, folder):
        if way_out in ("etc-passwd", "dotdot"):
            listed = os.path.relpath(secret, folder)
        elif way_out == "absolute":
            listed = str(secret)
        elif way_out == "symlink":
            (folder / "link.png").symlink_to(secret)
            listed = "link.png"
        else:
            (folder / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
            listed = f"elsewhere/{secret.name}"
        frame.loc[0, "path"] = listed
        frame.loc[0, "sha256"] = hashlib.sha256(secret.read_bytes()).hexdigest()
        return frame

    manifest = _edit_grid(inputs, "lafite", edit)
    message = _refused_report(inputs)
    assert str(manifest) in message
    copied = [p for p in inputs["report"].rglob("*") if p.is_file()]
    assert all(p.read_bytes() != secret.read_bytes() for p in copied)


def test_report_refuses_a_swapped_image_naming_both_hashes(inputs):
    manifest = Path(inputs["grids"]["clip-vqdiffusion"])
    frame = pd.read_csv(manifest)
    first, second = (manifest.parent / frame.loc[0, "path"]), (manifest.parent / frame.loc[1, "path"])
    first.write_bytes(second.read_bytes())
    message = _refused_report(inputs)
    assert str(first) in message and frame.loc[0, "sha256"] in message and frame.loc[1, "sha256"] in message


def test_report_refuses_sample_sets_that_do_not_hold_the_plan(inputs):
    manifest = _edit_grid(inputs, "lafite", lambda frame, folder: frame.drop(index=3))
    message = _refused_report(inputs)
    assert str(manifest) in message and "1 missing row" in message
    assert f"prompt_id p0001, sample_index 1, seed {SAMPLE_SEED}" in message


def test_report_refuses_methods_drawn_from_different_plans(inputs):
    """Without a stated plan the grids must still agree with each other: a method sampled with another seed
    is not shown beside the others."""
    manifest = _edit_grid(inputs, "lafite", lambda frame, folder: frame.assign(seed=SAMPLE_SEED + 1))
    report = inputs["report"]
    with pytest.raises(SystemExit) as error:
        main(["evaluate", "report", "--tables", *[str(b[0]) for b in inputs["branches"]],
              "--protocols", *[str(b[1]) for b in inputs["branches"]],
              "--metrics-out", str(report / "metrics.csv"), "--protocol-out", str(report / "protocol.json"),
              "--out-dir", str(report), "--grids", json.dumps(inputs["grids"])])
    message = str(error.value.code)
    assert str(manifest) in message and "(lafite)" in message and "(clip-vqdiffusion)" in message


def _dry_run_report_shell(tmp_path, overlay: dict) -> str:
    (tmp_path / "overlay.yaml").write_text(json.dumps(overlay))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "reports/tiny-report-plan/index.html",
         "--configfile", "tests/configs/tiny.yaml", str(tmp_path / "overlay.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "clipvqd evaluate report" in line]
    assert len(commands) == 1, result.stdout[-3000:]
    return commands[0], result.stdout


def test_report_rule_plots_every_training_curve_the_dag_writes(tmp_path):
    """CFG fine-tuning only for the headline α: one cfg curve, a pretraining curve per α; one metrics job per
    branch, each declaring its table and protocol."""
    overlay = {"run": "tiny-report-plan", "diffusion": {"alpha": [0.5, 0.25], "cfg_finetune": [False, True]},
               "baselines": {"lafite": False, "clip2latent": False}}
    command, plan = _dry_run_report_shell(tmp_path, overlay)
    arguments = shlex.split(command.split("python -m clipvqd", 1)[1].split(">")[0])
    curves = json.loads(arguments[arguments.index("--curves") + 1])
    run = "results/tiny-report-plan"
    assert set(curves.values()) == {
        f"{run}/clip/conditioner/curve.csv", f"{run}/clip/judge/curve.csv", f"{run}/oracle/curve.csv",
        f"{run}/tokenizer/curve.csv", f"{run}/models/clip-vqdiffusion/alpha=0.5/pretrain_curve.csv",
        f"{run}/models/clip-vqdiffusion/alpha=0.5/cfg_curve.csv",
        f"{run}/models/clip-vqdiffusion/alpha=0.25/pretrain_curve.csv",
        f"{run}/models/paired/curve.csv", f"{run}/models/unconditional/curve.csv"}
    grids = json.loads(arguments[arguments.index("--grids") + 1])
    assert list(grids) == ["clip-vqdiffusion", "paired", "unconditional"]
    quality = json.loads(arguments[arguments.index("--quality") + 1])
    assert f"{run}/tokenizer/metrics.json" in quality.values() and f"{run}/oracle/metrics.json" in quality.values()
    tables = arguments[arguments.index("--tables") + 1:arguments.index("--protocols")]
    # clip-vqdiffusion: default, alpha=0.25, cfg=true variant; paired and unconditional: default.
    assert len(tables) == 5 and all(t.endswith(".csv") for t in tables)
    assert plan.count("clipvqd evaluate metrics") == 5
    # The report and every metrics job check the sample sets against the plan the sample rule drew.
    assert arguments[arguments.index("--prompts") + 1] == f"{run}/data/prompts.csv"
    assert "--samples-per-prompt 2 --sample-seed 2 --prompt-prefix=''" in command
    assert plan.count("--samples-per-prompt 2 --sample-seed 2 --prompt-prefix=''") == 6
    assert plan.count("--samples-per-prompt 2 --seed 2 ") == 5  # the sample rule draws that plan
