#!/usr/bin/env python
"""Do the GAN trainers learn the same with their cheaper computation forms? Loss curves of a few hundred
steps, old forms against new, on a finished run's own data (issue 19, target 1).

LAFITE and clip2latent's StyleGAN2 train with `modulated_conv`, `discriminator_downsample` and
`channels_last` (lafite.train, clip2latent.generator_train): forms of the same functions, so the same
weights up to float rounding. A GAN amplifies rounding within a few steps (benchmarks/trainer_steps.py:
`first_step_loss_difference` is rounding-sized, later steps drift apart), so "the same learning" is judged
statistically: the curves of the old and the new forms from the same seed should differ no more than the
curves of two seeds with the same form.

For each trainer, form (old: grouped, pool, contiguous; new: the config's) and seed, the script runs the
project's own CLI (`python -m clipvqd lafite train`, `clip2latent train-generator`) for `--steps` steps on
the run's training images (and, for LAFITE, its cached embeddings and conditioner CLIP), with the config's
settings otherwise, writing `<trainer>-<form>-s<seed>.csv` (the loss curve) and `.json` (the sidecar:
CPU-seconds, settings) to `--out-dir`. Then (or with `--compare-only`, on curves already there) it reports,
per loss column, the mean absolute difference between the curves' rows for each pair (same seed, old vs new
form; same form, seed 0 vs seed 1), the mean of each curve's last five rows, and each run's CPU-seconds.

    python benchmarks/gan_forms_curves.py --run results/default --steps 300 --out-dir benchmarks/results/gan_forms
    python benchmarks/gan_forms_curves.py --compare-only --out-dir benchmarks/measured/gan-forms-curves-2026-11-29

Writes `comparison.json` to --out-dir.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipvqd.paper_cost import resolve_config  # noqa: E402

OLD_FORMS = {"modulated_conv": "grouped", "discriminator_downsample": "pool", "channels_last": False}
COLUMNS = {"lafite": ["loss_g", "loss_d", "g_adversarial", "itc", "itd_fake", "itd_real", "real_logit", "fake_logit"],
           "stylegan2": ["loss_g", "loss_d", "g_adversarial", "real_logit", "fake_logit"]}


def new_forms(config: dict, trainer: str) -> dict:
    block = config["lafite"]["train"] if trainer == "lafite" else config["clip2latent"]["generator_train"]
    return {key: block[key] for key in OLD_FORMS}


def train(trainer: str, form: str, seed: int, args, config: dict, out_dir: Path) -> None:
    forms = OLD_FORMS if form == "old" else new_forms(config, trainer)
    overrides = {"steps": args.steps, "snapshot_every": 100_000, "log_every": args.log_every, **forms}
    run = Path(args.run)
    name = f"{trainer}-{form}-s{seed}"
    with tempfile.TemporaryDirectory(prefix="gan_forms_") as work:
        weights = Path(work) / "generator.safetensors"
        common = ["--work", str(Path(work) / "work"), "--out", str(weights), "--curve", str(out_dir / f"{name}.csv"),
                  "--seed", str(seed), "--device", "cpu", "--threads", "1"]
        if trainer == "lafite":
            params = {"model": config["lafite"]["model"], "train": {**config["lafite"]["train"], **overrides}}
            command = ["lafite", "train", "--params", json.dumps(params), "--train", str(run / "data" / "train.csv"),
                       "--embeddings", str(run / "embeddings" / "train_images.safetensors"),
                       "--clip", str(run / "clip" / "conditioner" / "model.safetensors"), *common]
        else:
            c = config["clip2latent"]
            params = {"generator_model": c["generator_model"], "generator_train": {**c["generator_train"], **overrides}}
            command = ["clip2latent", "train-generator", "--params", json.dumps(params),
                       "--train", str(run / "data" / "train.csv"), *common]
        print(f"{name}: training {args.steps} steps", flush=True)
        subprocess.run([sys.executable, "-m", "clipvqd", *command], check=True, cwd=REPO,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
        (out_dir / f"{name}.json").write_text(weights.with_suffix(".json").read_text())


def compare(out_dir: Path, trainers: list[str], seeds: list[int]) -> dict:
    result: dict = {}
    for trainer in trainers:
        curves, cpu = {}, {}
        for form, seed in itertools.product(("old", "new"), seeds):
            name = f"{form}-s{seed}"
            path = out_dir / f"{trainer}-{name}.csv"
            if path.is_file():
                curves[name] = pd.read_csv(path)
                sidecar = path.with_suffix(".json")
                if sidecar.is_file():
                    meta = json.loads(sidecar.read_text())
                    cpu[name] = {"cpu_s": meta.get("cpu_s"), "forms": {k: meta["train_config"].get(k) for k in OLD_FORMS}}
        if not curves:
            continue
        columns = COLUMNS[trainer]

        def mean_abs(a: str, b: str) -> dict:
            return {k: round(float((curves[a][k] - curves[b][k]).abs().mean()), 4) for k in columns}

        pairs = {}
        for seed in seeds:
            if {f"old-s{seed}", f"new-s{seed}"} <= set(curves):
                pairs[f"old-s{seed} vs new-s{seed} (same seed, old vs new forms)"] = mean_abs(f"old-s{seed}", f"new-s{seed}")
        for form in ("old", "new"):
            for s0, s1 in itertools.combinations(seeds, 2):
                if {f"{form}-s{s0}", f"{form}-s{s1}"} <= set(curves):
                    pairs[f"{form}-s{s0} vs {form}-s{s1} (same forms, two seeds)"] = mean_abs(f"{form}-s{s0}",
                                                                                            f"{form}-s{s1}")
        result[trainer] = {
            "rows_per_curve": {name: len(curve) for name, curve in curves.items()},
            "mean_abs_difference": pairs,
            "last_five_rows_mean": {name: {k: round(float(curve[k].iloc[-5:].mean()), 4) for k in columns}
                                    for name, curve in curves.items()},
            "runs": cpu,
        }
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results/default", help="a finished run's results folder (read only)")
    p.add_argument("--config", nargs="+", default=["config.yaml"], help="from the repository root")
    p.add_argument("--trainers", default="lafite,stylegan2")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / "gan_forms_curves")
    p.add_argument("--compare-only", action="store_true", help="compare the curves already in --out-dir")
    args = p.parse_args(argv)
    trainers = [t for t in args.trainers.split(",") if t]
    unknown = sorted(set(trainers) - set(COLUMNS))
    if unknown:
        p.error(f"unknown --trainers {unknown}; choose from {sorted(COLUMNS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.compare_only:
        config = resolve_config(args.config)
        for trainer, seed, form in itertools.product(trainers, seeds, ("old", "new")):
            train(trainer, form, seed, args, config, args.out_dir)
    result = compare(args.out_dir, trainers, seeds)
    (args.out_dir / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    for trainer, entry in result.items():
        print(f"{trainer}: mean |difference| between curves, per column")
        for pair, values in entry["mean_abs_difference"].items():
            print(f"  {pair}: " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
        for name, run in entry["runs"].items():
            print(f"  {name}: {run['cpu_s']} CPU-s, {run['forms']}")
    return result


if __name__ == "__main__":
    main()
