"""COCO 2014 and FFHQ preparation on tiny fake copies, and the data rules against a local HTTP server."""

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clipvqd.datasets.coco import CocoError, CocoSource, prepare_coco
from clipvqd.datasets.ffhq import FfhqError, prepare_ffhq, validate_ffhq
from clipvqd.manifest import read_manifest
from clipvqd.samples import read_prompts
from conftest import REPO
from local_http import LocalFiles


def _jpeg(width, height, seed):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def fake_coco(train=6, val=5, captions_per_image=3):
    """{archive name: bytes} shaped like the official zips (names, folders, caption json layout)."""
    archives, annotations = {}, {}
    for split, count, first_id in (("train2014", train, 100), ("val2014", val, 500)):
        images, anns = [], []
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for k in range(count):
                image_id = first_id + 7 * k
                name = f"COCO_{split}_{image_id:012d}.jpg"
                archive.writestr(f"{split}/{name}", _jpeg(40 + 3 * k, 30 + 2 * k, image_id))
                images.append({"id": image_id, "file_name": name, "width": 40 + 3 * k, "height": 30 + 2 * k})
                for c in range(captions_per_image):
                    anns.append({"id": image_id * 10 + c, "image_id": image_id,
                                 "caption": f"A {split} picture number {k}, caption {c}.\n"})
        archives[f"{split}.zip"] = buffer.getvalue()
        annotations[f"annotations/captions_{split}.json"] = json.dumps({"images": images, "annotations": anns})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in annotations.items():
            archive.writestr(name, text)
    archives["annotations_trainval2014.zip"] = buffer.getvalue()
    return archives


def _write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _check_common_contract(out):
    """The files and columns a world writes, as the rules downstream read them."""
    train = read_manifest(out / "train.csv")
    reference = read_manifest(out / "reference.csv")
    prompts = read_prompts(out / "prompts.csv")
    assert list(train.columns[:2]) == ["path", "sha256"] and list(reference.columns[:2]) == ["path", "sha256"]
    assert list(prompts.columns[:3]) == ["prompt_id", "prompt", "ood"] and set(prompts["ood"]) == {"0"}
    return train, reference, prompts


def test_coco_prepare_from_zips_writes_valid_manifests(tmp_path):
    files = _write(tmp_path / "zips", fake_coco())
    source = CocoSource.from_zips(files / "train2014.zip", files / "val2014.zip", files / "annotations_trainval2014.zip")
    out = tmp_path / "data"
    summary = prepare_coco(source, out, resolution=16, seed=3, progress=False)
    train, reference, prompts = _check_common_contract(out)
    assert len(train) == 6 and set(train["source_split"]) == {"train2014"}
    assert len(reference) == 5 and set(reference["source_split"]) == {"val2014"}
    assert reference["caption"].str.len().min() > 0  # the distribution set's prompts
    assert len(prompts) == 5  # one caption per val2014 image
    assert all(p.startswith("A val2014 picture") and "\n" not in p for p in prompts["prompt"])
    captions = pd.read_csv(out / "train_captions.csv", dtype=str)
    assert list(captions.columns) == ["path", "caption"] and list(captions["path"]) == list(train["path"])
    with Image.open(out / train["path"][0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"
    assert summary["train_on"] == "train" and summary["reference_overlaps_training"] is False
    recorded = json.loads((out / "dataset.json").read_text())
    assert recorded["train_on"] == "train" and recorded["sizes"] == {"train": 6, "reference": 5, "prompts": 5}


def test_coco_choices_are_seeded_and_train_val_is_recorded(tmp_path):
    files = _write(tmp_path / "zips", fake_coco())
    source = CocoSource.from_zips(files / "train2014.zip", files / "val2014.zip", files / "annotations_trainval2014.zip")
    first = prepare_coco(source, tmp_path / "a", resolution=8, seed=1, progress=False)
    again = prepare_coco(source, tmp_path / "b", resolution=8, seed=1, progress=False)
    assert (tmp_path / "a" / "prompts.csv").read_text() == (tmp_path / "b" / "prompts.csv").read_text()
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()
    del first, again
    other = prepare_coco(source, tmp_path / "c", resolution=8, seed=2, progress=False,
                         train_on="train+val", reference_count=3, prompt_count=4)
    train = read_manifest(tmp_path / "c" / "train.csv")
    assert len(train) == 11 and set(train["source_split"]) == {"train2014", "val2014"}
    assert len(read_manifest(tmp_path / "c" / "reference.csv")) == 3
    assert len(read_prompts(tmp_path / "c" / "prompts.csv")) == 4
    assert other["train_on"] == "train+val" and other["reference_overlaps_training"] is True


def test_coco_from_an_extracted_folder_and_missing_images_are_named(tmp_path):
    root = tmp_path / "coco"
    for name, data in fake_coco().items():
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(root)
    prepare_coco(CocoSource.from_folder(root), tmp_path / "data", resolution=8, progress=False)
    _check_common_contract(tmp_path / "data")
    missing = sorted((root / "val2014").iterdir())[0]
    missing.unlink()
    with pytest.raises(CocoError, match=missing.name):
        prepare_coco(CocoSource.from_folder(root), tmp_path / "again", resolution=8, progress=False)
    with pytest.raises(CocoError, match="no annotations/ folder"):
        CocoSource.from_folder(tmp_path / "data")


def _ffhq_copy(folder, count=6, side=24):
    for k in range(count):
        sub = folder / f"{(k // 4) * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(sub / f"{k:05d}.png")
    return folder


def test_ffhq_copy_is_validated_hashed_and_prepared(tmp_path):
    root = _ffhq_copy(tmp_path / "ffhq")
    source = tmp_path / "data" / "ffhq_source.csv"
    summary = validate_ffhq(root, source, expected_count=6, min_side=16, image_size=24, progress=False)
    assert summary["count"] == 6
    listed = pd.read_csv(source, dtype=str)
    first = Path(listed["path"][0])
    assert first.is_absolute() and listed["sha256"][0] == hashlib.sha256(first.read_bytes()).hexdigest()
    prompts_file = REPO / "clipvqd" / "data" / "clip2latent-face-test.txt"
    prepare_ffhq(source, tmp_path / "data", resolution=16, prompts_file=prompts_file, reference_count=4,
                 progress=False)
    train, reference, prompts = _check_common_contract(tmp_path / "data")
    assert len(train) == 6 and len(reference) == 4
    assert train["path"][0] == "ffhq/00000/00000.png"
    lines = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    assert list(prompts["prompt"]) == lines


def test_ffhq_wrong_count_and_unreadable_file_are_named(tmp_path):
    root = _ffhq_copy(tmp_path / "ffhq")
    with pytest.raises(FfhqError, match="holds 6 PNG files, but data.ffhq.expected_count is 70000"):
        validate_ffhq(root, tmp_path / "m.csv", expected_count=70000, min_side=16, progress=False)
    broken = root / "00000" / "00002.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(FfhqError) as error:
        validate_ffhq(root, tmp_path / "m.csv", expected_count=6, min_side=16, progress=False)
    assert str(broken) in str(error.value) and "unreadable" in str(error.value)
    assert not (tmp_path / "m.csv").exists()
    broken.unlink()
    with pytest.raises(FfhqError, match="smaller than data.ffhq.resolution 32"):
        validate_ffhq(root, tmp_path / "m.csv", expected_count=None, min_side=32, progress=False)


def test_ffhq_file_changed_after_validation_is_named(tmp_path):
    root = _ffhq_copy(tmp_path / "ffhq", count=2)
    validate_ffhq(root, tmp_path / "src.csv", expected_count=2, min_side=8, progress=False)
    changed = root / "00000" / "00001.png"
    Image.new("RGB", (24, 24)).save(changed)
    with pytest.raises(FfhqError, match="changed after validation"):
        prepare_ffhq(tmp_path / "src.csv", tmp_path / "data", resolution=8,
                     prompts_file=REPO / "clipvqd" / "data" / "clip2latent-face-test.txt", progress=False)


# ---- the data rules themselves, in a scratch copy of the workflow, against a local server --------------

def _workflow_copy(tmp_path):
    import shutil

    work = tmp_path / "wf"
    work.mkdir()
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, work / item)
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "envs", work / "envs")
    return work


def _snakemake(work, config, *targets):
    (work / "test.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # Targets before --configfile, which would otherwise take them for more config files.
    return subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "1", "--configfile", "test.yaml"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)


_EXTERNAL_CLIPS = {"conditioner": {"source": "pretrained"}, "judge": {"source": "pretrained"}}
_DATA_FILES = ("train.csv", "reference.csv", "prompts.csv", "train_captions.csv")


def _coco_config(server, archives, run="coco-test", **coco):
    names = {"train2014": "train2014.zip", "val2014": "val2014.zip", "annotations": "annotations_trainval2014.zip"}
    specs = {key: {"url": server.url(f"/{name}"), "sha256": hashlib.sha256(archives[name]).hexdigest(),
                   "size": len(archives[name])} for key, name in names.items()}
    return {"run": run, "data": {"source": "coco", "downloads": "dl",
                                 "coco": {"resolution": 16, "archives": specs, **coco}},
            "clip": _EXTERNAL_CLIPS, "baselines": {"lafite": False, "clip2latent": False},
            "tokenizer": {"resize": True}}  # the data stages only: the tokenizer may read these at its own size


def test_coco_rules_download_resume_and_prepare(tmp_path):
    archives = fake_coco()
    work = _workflow_copy(tmp_path)
    with LocalFiles({f"/{name}": data for name, data in archives.items()}) as server:
        # A half-finished earlier download of the training archive.
        half = len(archives["train2014.zip"]) // 2
        (work / "dl" / "coco2014").mkdir(parents=True)
        (work / "dl" / "coco2014" / "train2014.zip.part").write_bytes(archives["train2014.zip"][:half])
        config = _coco_config(server, archives, train_on="train+val")
        targets = [f"results/coco-test/data/{name}" for name in _DATA_FILES]
        result = _snakemake(work, config, *targets)
        assert result.returncode == 0, result.stderr[-4000:]
        train_requests = [r for r in server.requests if r["path"] == "/train2014.zip"]
        assert train_requests == [{"path": "/train2014.zip", "range": f"bytes={half}-",
                                   "sent": len(archives["train2014.zip"]) - half}]
    for name, data in archives.items():
        assert (work / "dl" / "coco2014" / name).read_bytes() == data
    data_dir = work / "results" / "coco-test" / "data"
    train, reference, prompts = _check_common_contract(data_dir)
    assert len(train) == 11 and len(reference) == 5 and len(prompts) == 5
    summary = json.loads((data_dir / "dataset.json").read_text())
    assert summary["train_on"] == "train+val" and summary["reference_overlaps_training"] is True
    assert summary["inputs_sha256"]["val2014.zip"] == hashlib.sha256(archives["val2014.zip"]).hexdigest()


def test_coco_rule_refuses_a_wrong_hash_and_leaves_nothing(tmp_path):
    archives = fake_coco(train=2, val=2)
    work = _workflow_copy(tmp_path)
    with LocalFiles({f"/{name}": data for name, data in archives.items()}) as server:
        config = _coco_config(server, archives, run="bad")
        wrong = "ab" * 32
        config["data"]["coco"]["archives"]["annotations"]["sha256"] = wrong
        result = _snakemake(work, config, "dl/coco2014/annotations_trainval2014.zip")
    assert result.returncode != 0
    log = (work / "results" / "bad" / "logs" / "dataset_download_annotations_trainval2014.zip.log").read_text()
    assert wrong in log and hashlib.sha256(archives["annotations_trainval2014.zip"]).hexdigest() in log
    assert "annotations_trainval2014.zip" in log and "removed" in log
    assert not (work / "dl" / "coco2014" / "annotations_trainval2014.zip").exists()
    assert not (work / "dl" / "coco2014" / "annotations_trainval2014.zip.part").exists()


def test_ffhq_rules_validate_a_local_copy_and_stop_early_on_a_bad_path(tmp_path):
    work = _workflow_copy(tmp_path)
    root = _ffhq_copy(tmp_path / "ffhq", count=5)
    prompts_file = str(REPO / "clipvqd" / "data" / "clip2latent-face-test.txt")
    config = {"run": "ffhq-test", "data": {"source": "ffhq", "ffhq": {
        "path": str(root), "resolution": 16, "expected_count": 5, "image_size": 24, "prompts_file": prompts_file}},
        "clip": _EXTERNAL_CLIPS, "baselines": {"lafite": False, "clip2latent": False, "paired": False},
        "tokenizer": {"resize": True}}
    result = _snakemake(work, config, *[f"results/ffhq-test/data/{name}" for name in _DATA_FILES[:3]])
    assert result.returncode == 0, result.stderr[-4000:]
    data_dir = work / "results" / "ffhq-test" / "data"
    train, reference, prompts = _check_common_contract(data_dir)
    assert len(train) == 5 and len(prompts) == 64
    assert len(pd.read_csv(data_dir / "ffhq_source.csv")) == 5

    config["data"]["ffhq"]["path"] = str(tmp_path / "nowhere")
    result = _snakemake(work, config, "results/ffhq-test/data/train.csv", "-n")
    assert result.returncode != 0
    assert f"data.ffhq.path: folder {tmp_path / 'nowhere'} does not exist" in result.stderr + result.stdout


def test_checked_pickle_becomes_safetensors(tmp_path):
    import torch
    from safetensors.torch import load_file

    from clipvqd.datasets.weights import to_safetensors
    from clipvqd.hashing import ChecksumMismatch, sha256_file

    source = tmp_path / "lin.pth"
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, source)
    out = tmp_path / "lin.safetensors"
    with pytest.raises(ChecksumMismatch, match="lin.pth"):
        to_safetensors(source, "0" * 64, out)
    assert not out.exists()
    to_safetensors(source, sha256_file(source), out)
    assert torch.equal(load_file(str(out))["lin0.model.1.weight"], torch.ones(1, 64, 1, 1))


def test_fetched_weights_reach_the_jobs_as_paths(tmp_path):
    """With weights.*.fetch, the DAG downloads and checks the files and hands their paths to the jobs."""
    work = _workflow_copy(tmp_path)
    config = {"run": "w", "data": {"source": "coco", "downloads": "dl"}, "clip": _EXTERNAL_CLIPS,
              "baselines": {"lafite": False, "clip2latent": False}, "sampling": {"samples_per_prompt": 1},
              "tokenizer": {"resize": True}, "weights": {"inception": {"fetch": True}, "lpips": {"fetch": True}}}
    result = _snakemake(work, config, "-n", "-p", "--forceall")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("inception", "lpips_vgg", "lpips_linear"):
        assert f"--out dl/weights/{name}.pth" in out
    assert "--inception-weights dl/weights/inception.pth --inception-sha256 6726825d" in out
    assert '"lpips_vgg_weights": "dl/weights/lpips_vgg.safetensors"' in out
    assert "generators trained on train" in out


@pytest.mark.parametrize("block, named", [
    ({"coco": {"archives": {"val2014": {"sha256": "not-a-hash"}}}}, "not-a-hash"),
    ({"coco": {"train_on": "val"}}, "val"),
    ({"coco": {"prompts_count": 5}}, "prompts_count"),
    ({"ffhq": {"expected_count": -3}}, "-3"),
    ({"ffhq": {"pth": "/data/ffhq"}}, "pth"),
])
def test_schema_names_bad_data_keys(block, named):
    from snakemake.utils import validate

    config = {"data": {"source": "coco", **block}}
    with pytest.raises(Exception) as error:
        validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert named in str(error.value)


def test_data_and_weights_schema_blocks_are_closed_and_described():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())

    def walk(node, where):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, child in node["properties"].items():
                assert child.get("description"), f"{where}.{key} has no description"
                assert "default" in child, f"{where}.{key} has no default"
                walk(child, f"{where}.{key}")

    walk(schema["properties"]["data"], "data")
    walk(schema["properties"]["weights"], "weights")


def test_config_values_reach_the_shell_quoted(tmp_path):
    """data.downloads with a space and a command substitution: the weights rules download and convert into
    exactly that folder, and nothing in the value is run by the shell (each value reaches the command
    line through Snakemake's :q or shlex.quote)."""
    import io

    import torch

    files = {}
    for name in ("vgg", "linear"):
        buffer = io.BytesIO()
        torch.save({f"{name}.weight": torch.arange(6.0).reshape(2, 3)}, buffer)
        files[f"/{name}.pth"] = buffer.getvalue()
    work = _workflow_copy(tmp_path)
    downloads = "dl x$(touch marker)`touch marker2`;touch marker3"
    with LocalFiles(files) as server:
        lpips = {name: {"url": server.url(f"/{name}.pth"), "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data)} for name, data in (("vgg", files["/vgg.pth"]), ("linear", files["/linear.pth"]))}
        config = {"run": "quoted", "data": {"downloads": downloads}, "weights": {"lpips": {"fetch": True, **lpips}}}
        targets = [f"{downloads}/weights/lpips_vgg.safetensors", f"{downloads}/weights/lpips_linear.safetensors"]
        result = _snakemake(work, config, *targets)
    assert result.returncode == 0, result.stderr[-4000:]
    for target in targets:
        assert (work / target).is_file()
    assert not list(work.rglob("marker*")) and not list(Path.cwd().glob("marker*")), "the shell ran part of a value"


# Params that hold ready-made command-line fragments, each built with shlex.quote in common.smk or the rule.
COMMAND_FRAGMENTS = {"params.resize", "params.source", "params.models", "params.oracle", "params.inception",
                     "params.plan", "params.captions", "params.calibration",
                     "params.milestones"}  # the trainers' --milestone options, each path shlex-quoted (common.smk)


def test_every_value_in_a_shell_command_is_quoted():
    """Each {input.*}, {output.*}, {params.*}, {wildcards.*}, {resources.*} and {log} of every rule's shell command carries
    :q, except the fragments above, which must not (quoted whole, a fragment's option and value would reach the
    program as one argument); a new unquoted value fails here before it can reach a shell."""
    import re

    unquoted = []
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for name in re.findall(r"\{((?:params)\.\w+):q\}", line):
                if name in COMMAND_FRAGMENTS:
                    unquoted.append(f"{path.name}:{number}: {{{name}:q}} is a ready-made fragment")
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith(("work=", "oracle=")):  # Python f-strings, not shell text
                continue
            for name in re.findall(r"\{((?:input|output|params|wildcards|resources)\.\w+|log)\}", line):
                if name not in COMMAND_FRAGMENTS:
                    unquoted.append(f"{path.name}:{number}: {{{name}}}")
    assert not unquoted, "unquoted in a shell command:\n" + "\n".join(unquoted)
