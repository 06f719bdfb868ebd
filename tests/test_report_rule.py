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
    from clipvqd.machine_speed import calibrate

    calibration = tmp_path / "results" / "calibration.json"
    calibration.write_text(json.dumps(calibrate(repeats=1)))
    return {"branches": branches, "grids": grids, "curves": {"tokenizer": str(curve)}, "benchmarks": benchmarks,
            "calibration": calibration,
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
          "--samples-per-prompt", "2", "--sample-seed", str(SAMPLE_SEED), "--machine-speed", str(inputs["calibration"])])
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
    # The run's machine-speed calibration: in protocol.json's design and in the run-time section.
    speed = json.loads(inputs["calibration"].read_text())
    assert protocol.design["machine_speed"]["this_run"] == speed
    assert f"This machine: calibration {speed['cpu_seconds']:.2f} CPU-s" in html


def _units_and_features(root: Path, method: str, shift: float, spread: float, diversity: float = 0.5):
    """A branch's units (40 prompts whose attr_acc is shared prompt difficulty plus `shift`, and whose
    within-prompt diversity is `diversity` plus noise) and distribution features (60 images, generated =
    reference plus `spread` noise), written as a metrics job writes them."""
    import numpy as np
    import torch

    from clipvqd.evaluation.uncertainty import DistributionFeatures, write_units

    rng = np.random.default_rng(0)
    difficulty = np.random.default_rng(42).uniform(0.2, 0.7, size=40)
    rows = [{"seed": 0, "metric": "attr_acc", "unit": f"p{i:04d}",
             "numerator": 4 * 2 * min(1.0, d + shift + 0.01 * rng.normal()), "denominator": 8.0, "n": 4}
            for i, d in enumerate(difficulty)]
    rows += [{"seed": 0, "metric": "within_prompt_diversity", "unit": f"p{i:04d}",
              "numerator": diversity + 0.05 * rng.uniform(), "denominator": 1.0, "n": 4} for i in range(40)]
    folder = root / "results" / "metrics" / method
    units = write_units(pd.DataFrame(rows), folder / "default.units.csv")
    reference = torch.nn.functional.normalize(torch.randn(60, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    generated = reference + spread * torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
    features = DistributionFeatures([f"d{i:06d}" for i in range(60)],
                                    {space: {"reference": reference, "generated": {0: generated}}
                                     for space in ("fid", "clip")}).write(folder / "default.features.safetensors")
    values = {metric: float(sum(r["numerator"] for r in rows if r["metric"] == metric)
                            / sum(r["denominator"] for r in rows if r["metric"] == metric))
              for metric in ("attr_acc", "within_prompt_diversity")}
    return units, features, values


def test_report_marks_significant_differences_and_writes_its_headline_from_them(inputs, tmp_path):
    """LAFITE's attribute accuracy is 0.05 below CLIP-VQDiffusion's on every prompt: the paired bootstrap
    calls it significant, the table marks it, the headline sentence says so; FID is not significant."""
    from clipvqd.evaluation.bootstrap import BootstrapSettings
    from clipvqd.report import build_report

    branches, units, features = _significance_branches(tmp_path)
    report = tmp_path / "reports" / "run"
    build_report(report, [b[0] for b in branches], [b[1] for b in branches], report / "metrics.csv",
                 report / "protocol.json", units=units, features=features,
                 significance_out=report / "significance.csv", bootstrap=BootstrapSettings(400, 0.95, 0),
                 design={"prompts": "test", "seeds": {"values": [0]}, "judge_split": None})
    significance = pd.read_csv(report / "significance.csv").set_index("metric")
    assert significance.at["attr_acc", "method"] == "lafite"
    assert significance.at["attr_acc", "difference"] < 0 and significance.at["attr_acc", "ci_high"] < 0
    assert bool(significance.at["attr_acc", "significant"]) and significance.at["attr_acc", "favours"] == "clip-vqdiffusion"
    assert not bool(significance.at["fid", "significant"])  # identical features: no difference to find
    html = (report / "index.html").read_text()
    assert re.search(r"On attribute accuracy \(in-distribution prompts\), CLIP-VQDiffusion \([^)]*\) is "
                     r"significantly better than LAFITE", html)
    assert re.search(r"On FID on the distribution set, CLIP-VQDiffusion \([^)]*\) is not significantly different "
                     r"from LAFITE", html)
    assert 'class="mark" title="significantly worse than CLIP-VQDiffusion' in html
    assert ProtocolRecord.read(report / "protocol.json").design["judge_split"] is None
    # LAFITE's samples of a prompt lie closer together: significant, but no better direction, so only which is
    # higher; the table marks it as a difference, the headline leaves it out, the figure has both methods.
    assert bool(significance.at["within_prompt_diversity", "significant"])
    assert significance.at["within_prompt_diversity", "favours"] == "higher: clip-vqdiffusion"
    assert 'class="mark" title="significantly different from CLIP-VQDiffusion' in html
    assert "diversity" not in " ".join(re.findall(r'<div class="headline">(.*?)</div>', html, re.S))
    assert 'src="figures/within_prompt_diversity.png"' in html
    assert (report / "figures" / "within_prompt_diversity.png").is_file()


def test_report_heading_names_the_world_and_its_held_out_combinations(tmp_path):
    """protocol.json's design.data (the workflow's data_description) names the run's data; the page's title,
    heading and subtitle say which world it is and which combinations its OOD prompts ask for."""
    from clipvqd.evaluation.bootstrap import BootstrapSettings
    from clipvqd.report import build_report

    branches, units, features = _significance_branches(tmp_path)
    report = tmp_path / "reports" / "run"
    data = {"source": "world", "label": "scenes world (COCO analogue, 32 px)", "world": "scenes",
            "analogue_of": "COCO", "resolution": 32, "attributes": {"first_color": ["red", "blue"], "layout": ["a", "b"]},
            "heldout": [{"first_color": "red", "first_shape": "triangle"}], "record": "data/world.json"}
    build_report(report, [b[0] for b in branches], [b[1] for b in branches], report / "metrics.csv",
                 report / "protocol.json", units=units, features=features,
                 significance_out=report / "significance.csv", bootstrap=BootstrapSettings(20, 0.95, 0),
                 design={"prompts": "test", "seeds": {"values": [0]}, "judge_split": None, "data": data})
    html = (report / "index.html").read_text()
    assert "<h1>clipvqd comparison report — scenes world (COCO analogue, 32 px)</h1>" in html
    assert "<title>clipvqd comparison report — scenes world (COCO analogue, 32 px) — run</title>" in html
    assert "the offline analogue of COCO" in html and "<code>first_color=red, first_shape=triangle</code>" in html
    assert ProtocolRecord.read(report / "protocol.json").design["data"]["world"] == "scenes"



@pytest.mark.parametrize("damage", ["swapped units", "edited features", "unlisted"])
def test_report_refuses_comparison_inputs_its_branch_did_not_write(tmp_path, damage):
    """The paired comparisons read each branch's units table and feature file: one swapped for another
    branch's, edited, or not listed (with its sha256) in the branch's protocol record is refused, named."""
    from clipvqd.report import ReportError, build_report

    branches, units, features = _significance_branches(tmp_path)
    if damage == "swapped units":
        units = [units[1], units[0]]
        expected = f"{units[0]} is not the units file of {branches[0][1]}"
    elif damage == "edited features":
        features[1].write_bytes(features[1].read_bytes()[:-4] + b"\0\0\0\0")
        expected = f"file {features[1]} has sha256"
    else:
        record = ProtocolRecord.read(branches[0][1])
        record.files = None
        record.write(branches[0][1])
        expected = f"{branches[0][1]} lists no units file with its sha256"
    report = tmp_path / "reports" / "run"
    with pytest.raises(ReportError) as error:
        build_report(report, [b[0] for b in branches], [b[1] for b in branches], report / "metrics.csv",
                     report / "protocol.json", units=units, features=features,
                     significance_out=report / "significance.csv")
    assert expected in str(error.value)
    assert not (report / "significance.csv").exists()


def _significance_branches(tmp_path):
    """Two branches (CLIP-VQDiffusion 0.05 ahead on attr_acc) as their metrics jobs write them: table,
    protocol record listing the units table and feature file with their sha256, units, features."""
    from clipvqd.evaluation.branch import listed_file

    branches, units, features = [], [], []
    for method, shift, diversity in (("clip-vqdiffusion", 0.05, 0.5), ("lafite", 0.0, 0.1)):
        unit_file, feature_file, values = _units_and_features(tmp_path, method, shift, 0.05, diversity)
        value = values["attr_acc"]
        record = ProtocolRecord()
        pid = record.add(make_entry("attribute_accuracy", oracle={"weights_sha256": "34" * 32}))
        fid_id = record.add(make_entry("image_set_metrics", metrics=["fid"], branch=method))
        diversity_id = record.add(make_entry("within_prompt_diversity", metrics=["within_prompt_diversity"]))
        folder = tmp_path / "results" / "metrics" / method
        record.files = {"units": listed_file(folder / "default.protocol.json", unit_file),
                        "features": listed_file(folder / "default.protocol.json", feature_file)}
        record.write(folder / "default.protocol.json")
        write_metrics_table([metric_row(method, "default", "attr_acc", value, 160, pid, value - 0.02, value + 0.02),
                             metric_row(method, "default", "fid", 0.1, 60, fid_id),
                             metric_row(method, "default", "within_prompt_diversity", values["within_prompt_diversity"],
                                        160, diversity_id)],
                            folder / "default.csv", protocol_ids=record.ids())
        branches.append((folder / "default.csv", folder / "default.protocol.json"))
        units.append(unit_file)
        features.append(feature_file)
    return branches, units, features


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
        f"{run}/tokenizer/curve.csv", f"{run}/models/seed=0/clip-vqdiffusion/alpha=0.5/pretrain_curve.csv",
        f"{run}/models/seed=0/clip-vqdiffusion/alpha=0.5/cfg_curve.csv",
        f"{run}/models/seed=0/clip-vqdiffusion/alpha=0.25/pretrain_curve.csv",
        # the headline is cfg=false, so the controls, matched to it, stop after their first stage
        f"{run}/models/seed=0/paired/pretrain_curve.csv", f"{run}/models/seed=0/unconditional/pretrain_curve.csv"}
    grids = json.loads(arguments[arguments.index("--grids") + 1])
    assert list(grids) == ["clip-vqdiffusion", "paired", "unconditional"]
    quality = json.loads(arguments[arguments.index("--quality") + 1])
    assert f"{run}/tokenizer/metrics.json" in quality.values() and f"{run}/oracle/metrics.json" in quality.values()
    tables = arguments[arguments.index("--tables") + 1:arguments.index("--protocols")]
    # clip-vqdiffusion: default, alpha=0.25, cfg=true variant; paired and unconditional: default.
    assert len(tables) == 5 and all(t.endswith(".csv") for t in tables)
    assert plan.count("clipvqd evaluate metrics") == 5
    # Every branch's units and features reach the report (paired comparisons), and the design its protocol.
    units = arguments[arguments.index("--units") + 1:arguments.index("--features")]
    assert [u.replace(".units.csv", ".csv") for u in units] == tables
    design = json.loads(arguments[arguments.index("--design") + 1])
    assert design["seeds"]["values"] == [0] and design["judge_split"]["disjoint"] is True
    assert design["data"]["world"] == "faces" and design["data"]["label"] == "faces world (FFHQ analogue, 32 px)"
    assert design["data"]["heldout"] == [{"hair_color": "red", "beard": "yes"}, {"glasses": "yes", "hat": "yes"}]
    assert design["judge_split"]["judge"].startswith("judge_pairs: ")
    assert design["sets"]["distribution"]["metrics"] == "fid, kid, precision, recall, cmmd"
    assert arguments[arguments.index("--oracle-calibration") + 1] == f"{run}/oracle/calibration.json"
    # The report and every metrics job check the sample sets against the plans the sample rule drew: seed 0's
    # alignment sets (2 samples per prompt, 16 of the first) from seed 2, its distribution sets from seed 5.
    assert arguments[arguments.index("--prompts") + 1] == f"{run}/data/prompts.csv"
    assert "--samples-per-prompt 2 --best-of-prompts 1 --sample-seed 2 --prompt-prefix=''" in command
    metrics = [line for line in plan.splitlines() if "clipvqd evaluate metrics" in line]
    assert all("--prompt-prefix= --samples-per-prompt 2 --best-of-prompts 1 --sample-seeds 2"
               " --distribution-sample-seeds 5 " in line for line in metrics), metrics
    assert plan.count("--samples-per-prompt 2 --best-of-prompts 1 --seed 2 ") == 5  # the alignment sets drawn
    assert plan.count("--samples-per-prompt 1 --best-of-prompts 0 --seed 5 ") == 5  # the distribution sets
