"""Train and measure one recipe of a baseline (LAFITE, clip2latent) or a finished CLIP-VQDiffusion model on
*validation* prompts, never the test prompts: the harness behind docs/baselines.md (issue 16, item 2).

It reads a finished default run (`--run results/default`: the world's splits, both CLIPs, the oracle, the
embedding cache and, for `--method clip-vqdiffusion`, the tokenizer and the CFG model) and computes, for one
recipe given as config-block overrides (`--params`, JSON):

* on validation prompts (the world's prompt generator with seed 1000 instead of the run's, every prompt whose
  text is also a test prompt dropped; 16 samples each): attribute accuracy in distribution and on the held-out
  combinations (the oracle), and within-prompt diversity = the mean over prompts of the mean pairwise L2
  distance between the judge CLIP's image features of that prompt's samples (the library's
  `clipvqd.evaluation.diversity.within_prompt_diversity`, the metrics job's `within_prompt_diversity` row);
* on a distribution set (one sample per reference image, prompted with a caption the world's caption
  function writes for that image's attributes, seed 1001): precision, recall, FID and KID against the
  reference images on the judge CLIP's features, like the metrics rule offline;
* the training CPU-seconds (process time, one thread).

`--snapshots 600 1200` also measures the EMA generator at those steps. `--image-conditions` (LAFITE) measures
the distribution set a second time conditioned on the reference images' own CLIP image embeddings, the
condition LAFITE trains on, to tell a weak generator from a text-image gap. Every result is appended to
`<out>/results.jsonl`; `<out>/grids/<name>.png` shows 8 samples of each of 10 validation prompts.

    python benchmarks/baselines_validation.py --run results/default --method lafite --name cb512-xi1 \\
        --params '{"model": {"channel_base": 512}, "train": {"xi": 1.0, "steps": 1800}}'
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VALIDATION_SEED = 1000
DISTRIBUTION_SEED = 1001
SAMPLES_PER_PROMPT = 16
SAMPLING_SEEDS = {"validation": 7, "distribution": 11}
TRAIN_SEED, PAIRS_SEED = 0, 4


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, flush=True)


class Run:
    """The finished run's inputs, loaded on first use."""

    def __init__(self, root: Path, config: dict):
        self.root, self.data = root, root / "data"
        self.world_cfg = config["data"]["world"]
        self._cache: dict = {}

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def clip(self, role: str):
        from clipvqd.clip.encoder import ClipEncoder

        return self._get(role, lambda: ClipEncoder.load(self.root / "clip" / role / "model.safetensors"))

    def oracle(self):
        from clipvqd.oracle import Oracle

        return self._get("oracle", lambda: Oracle(self.root / "oracle/model.safetensors"))

    def train_images(self) -> torch.Tensor:
        from clipvqd.manifest import ManifestImages

        return ManifestImages(self.data / "train.csv", resolution=self.world_cfg["resolution"]).all()

    def train_embeddings(self) -> torch.Tensor:
        from clipvqd.clip.embed import load_embeddings

        return load_embeddings(self.root / "embeddings/train_images.safetensors")

    def validation_prompts(self) -> pd.DataFrame:
        from clipvqd.worlds import get_world
        from clipvqd.worlds.generate import make_prompts

        def make():
            p = self.world_cfg["prompts"]
            rows = make_prompts(get_world(self.world_cfg["name"]), VALIDATION_SEED, p["count"],
                                p["attributes_per_prompt"], self.world_cfg["heldout"], p["ood_per_combination"])
            test = set(pd.read_csv(self.data / "prompts.csv", keep_default_na=False, dtype=str)["prompt"])
            return pd.DataFrame([r for r in rows if r["prompt"] not in test]).astype(str)
        return self._get("validation", make)

    def distribution_captions(self) -> pd.DataFrame:
        from clipvqd.worlds import get_world

        def make():
            world = get_world(self.world_cfg["name"])
            ref = pd.read_csv(self.data / "reference.csv", keep_default_na=False, dtype=str)
            rng = np.random.default_rng(DISTRIBUTION_SEED)
            ref["caption"] = [world.caption({a: row[a] for a in world.attribute_names}, rng) for _, row in ref.iterrows()]
            return ref
        return self._get("distribution", make)

    def reference_uint8(self) -> torch.Tensor:
        from clipvqd.manifest import ManifestImages

        return self._get("reference", lambda: ((ManifestImages(self.data / "reference.csv").all() + 1) * 127.5)
                         .round().to(torch.uint8))

    def reference_features(self) -> torch.Tensor:
        return self._get("reference_features", lambda: self.clip("judge").encode_images(self.reference_uint8()))


def distribution_metrics(run: Run, images: torch.Tensor) -> dict:
    from clipvqd.evaluation.fid import metric_settings, metrics_from_features

    features, reference = run.clip("judge").encode_images(images), run.reference_features()
    m = metrics_from_features(features, reference, metric_settings(len(features), len(reference)))
    return {"precision": round(m["precision"], 4), "recall": round(m["recall"], 4), "fid": round(m["fid"], 4),
            "kid": round(m["kid"], 5)}


def evaluate(run: Run, generate, name: str, out: Path, extra: dict) -> dict:
    """generate(conditions (N, D), seed) -> uint8 images (N, 3, R, R)."""
    from clipvqd.evaluation.diversity import within_prompt_diversity
    from clipvqd.oracle import score_requests

    start = time.process_time()
    prompts = run.validation_prompts()
    plan = np.repeat(np.arange(len(prompts)), SAMPLES_PER_PROMPT)
    embeddings = run.clip("conditioner").encode_texts(list(prompts["prompt"]))
    images = generate(embeddings[torch.from_numpy(plan)], SAMPLING_SEEDS["validation"])
    oracle = run.oracle()
    names = list(oracle.attributes)
    checks = score_requests(oracle.predict(images),
                            [{n: prompts.iloc[i][n] for n in names if prompts.iloc[i][n]} for i in plan])
    ood = np.array([prompts.iloc[i]["ood"] == "1" for i in plan])

    def share(selected) -> float:
        flat = [ok for c in selected for ok in c.values()]
        return round(sum(flat) / len(flat), 4)

    captions = run.distribution_captions()
    dist_images = generate(run.clip("conditioner").encode_texts(list(captions["caption"])),
                           SAMPLING_SEEDS["distribution"])
    row = {"name": name,
           "attr_acc": share([c for c, o in zip(checks, ood) if not o]),
           "attr_acc_ood": share([c for c, o in zip(checks, ood) if o]),
           **distribution_metrics(run, dist_images),
           "diversity": round(within_prompt_diversity(run.clip("judge").encode_images(images), plan.astype(str)), 4),
           "eval_cpu_s": round(time.process_time() - start, 1), **extra}
    with open(out / "results.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    save_grid(images, plan, out / "grids" / f"{name}.png")
    log("RESULT", json.dumps(row))
    return row


def save_grid(images: torch.Tensor, plan: np.ndarray, path: Path, prompts_shown: int = 10, per_prompt: int = 8) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [torch.cat([images[i] for i in np.nonzero(plan == p)[0][:per_prompt]], dim=2)
            for p in list(dict.fromkeys(plan.tolist()))[:prompts_shown]]
    grid = Image.fromarray(torch.cat(rows, dim=1).permute(1, 2, 0).numpy())
    grid.resize((grid.width * 3, grid.height * 3), Image.NEAREST).save(path)


def snapshot_hook(steps: list[int], save):
    """Call save(step, ema) when the trainer snapshots at one of `steps` (patches ResumeState.save)."""
    from clipvqd.training import resume_state

    original = resume_state.ResumeState.save

    def patched(self, step, objects, extra=None):
        if step in steps and "ema" in objects:
            save(step, objects["ema"])
        return original(self, step, objects, extra)
    resume_state.ResumeState.save = patched


def run_lafite(run: Run, name: str, params: dict, out: Path, snapshots: list[int], image_conditions: bool) -> None:
    from clipvqd.checkpoint import save_weights
    from clipvqd.lafite import LafiteModelConfig, LafiteTrainConfig, generate_images, load_generator, train_lafite
    from clipvqd.lafite.train import WEIGHTS_FORMAT

    work = out / "work" / name
    embeddings = run.train_embeddings()
    model_cfg = LafiteModelConfig.from_dict({**params.get("model", {}), "condition_dim": int(embeddings.shape[1])})
    train_cfg = LafiteTrainConfig.from_dict(params.get("train", {}))
    snapshot_hook(snapshots, lambda step, ema: save_weights(
        work / f"snapshot-{step}.safetensors", ema.state_dict(),
        {"format": WEIGHTS_FORMAT, "model_config": model_cfg.to_dict(), "conditional": True}))
    start = time.process_time()
    train_lafite(run.train_images(), embeddings, run.clip("conditioner"), model_cfg, train_cfg, work / "resume",
                 work / "generator.safetensors", work / "curve.csv", seed=TRAIN_SEED, progress=False)
    cpu = round(time.process_time() - start, 1)
    shutil.rmtree(work / "resume", ignore_errors=True)
    for step, path in [(s, work / f"snapshot-{s}.safetensors") for s in snapshots if s < train_cfg.steps] + \
                      [(train_cfg.steps, work / "generator.safetensors")]:
        generator, _ = load_generator(path)
        final = step == train_cfg.steps
        label = name if final else f"{name}@{step}"
        extra = {"method": "lafite", "steps": step, "train_cpu_s": cpu if final else None, "params": params}
        if final and image_conditions:
            conditions = run.clip("conditioner").encode_images(run.reference_uint8())
            images = generate_images(generator, conditions, seed=SAMPLING_SEEDS["distribution"], progress=False)
            extra["image_conditioned"] = distribution_metrics(run, images)
        evaluate(run, lambda e, seed: generate_images(generator, e, seed=seed, progress=False), label, out, extra)


def run_clip2latent(run: Run, name: str, params: dict, out: Path, snapshots: list[int]) -> None:
    from clipvqd.checkpoint import save_weights
    from clipvqd.clip2latent.config import (GeneratorModelConfig, GeneratorTrainConfig, PairsConfig,
                                            PriorModelConfig, PriorSamplingConfig, PriorTrainConfig)
    from clipvqd.clip2latent.generator import load_generator, mapping, synthesis, train_generator
    from clipvqd.clip2latent.pairs import make_pairs, pair_stats
    from clipvqd.clip2latent.sample import generate_images
    from clipvqd.clip2latent.train import load_prior, train_prior
    from clipvqd.lafite.train import WEIGHTS_FORMAT
    from clipvqd.manifest import to_uint8

    work = out / "work" / name
    gm = GeneratorModelConfig.from_dict(params.get("generator_model", {}))
    gt = GeneratorTrainConfig.from_dict(params.get("generator_train", {}))
    costs: dict = {}
    snapshot_hook(snapshots, lambda step, ema: save_weights(
        work / f"generator-snapshot-{step}.safetensors", ema.state_dict(),
        {"format": WEIGHTS_FORMAT, "model_config": gm.to_lafite().to_dict(), "conditional": False}))
    start = time.process_time()
    train_generator(run.train_images(), gm, gt, work / "generator-resume", work / "generator.safetensors",
                    work / "generator-curve.csv", seed=TRAIN_SEED, progress=False)
    costs["generator_cpu_s"] = round(time.process_time() - start, 1)
    shutil.rmtree(work / "generator-resume", ignore_errors=True)

    def generator_alone(generator, step: int) -> dict:
        """1000 images from random z against the reference: the generator's own precision and recall."""
        with torch.no_grad():
            z = torch.randn(1000, generator.config.z_dim, generator=torch.Generator().manual_seed(123))
            images = torch.cat([to_uint8(synthesis(generator, mapping(generator, z[i:i + 250])))
                                for i in range(0, 1000, 250)])
        m = distribution_metrics(run, images)
        row = {"name": f"{name}@{step}", "generator_precision": m["precision"], "generator_recall": m["recall"],
               "generator_fid": m["fid"]}
        with open(out / "generator_results.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        log(row)
        return row

    for step in [s for s in snapshots if s < gt.steps]:
        generator_alone(load_generator(work / f"generator-snapshot-{step}.safetensors")[0], step)
    generator, _ = load_generator(work / "generator.safetensors")
    alone = generator_alone(generator, gt.steps)
    costs.update({k: v for k, v in alone.items() if k != "name"})
    pc = PairsConfig.from_dict(params.get("pairs", {}))
    start = time.process_time()
    pairs = make_pairs(generator, run.clip("conditioner"), pc, seed=PAIRS_SEED, progress=False)
    stats = pair_stats(pairs, pc.stats_count)
    pm = PriorModelConfig.from_dict({**params.get("prior_model", {}), "latent_dim": int(pairs["w"].shape[1]),
                                     "embed_dim": int(pairs["embeddings"].shape[1])})
    pt = PriorTrainConfig.from_dict(params.get("prior_train", {}))
    train_prior({**pairs, **stats}, pm, pt, work / "prior-resume", work / "prior.safetensors",
                work / "prior-curve.csv", seed=TRAIN_SEED, progress=False)
    costs["pairs_and_prior_cpu_s"] = round(time.process_time() - start, 1)
    shutil.rmtree(work / "prior-resume", ignore_errors=True)
    prior, _ = load_prior(work / "prior.safetensors")
    settings = [PriorSamplingConfig.from_dict(s) for s in params.get("sampling_sweep", [params.get("sampling", {})])]
    for number, setting in enumerate(settings):
        label = name if number == 0 else f"{name}/{json.dumps(params['sampling_sweep'][number], sort_keys=True)}"
        evaluate(run, lambda e, seed: generate_images(prior, generator, e, setting, seed, progress=False), label, out,
                 {"method": "clip2latent", "steps": gt.steps, **costs, "params": params})


def run_clip_vqdiffusion(run: Run, name: str, params: dict, out: Path) -> None:
    from clipvqd.diffusion import load_denoiser
    from clipvqd.diffusion.generate import SamplingSettings, generate_images
    from clipvqd.tokenizer import CodeMapping, load_tokenizer

    model = params.get("model", "models/clip-vqdiffusion/alpha=0.5/cfg.safetensors")
    denoiser, null, _ = load_denoiser(run.root / model)
    tokenizer, _ = load_tokenizer(run.root / "tokenizer/model.safetensors")
    codes = CodeMapping.load(run.root / "tokenizer/codebook.json")
    settings = SamplingSettings(**{"guidance_scale": 1.2, "truncation_r": 0.85, "steps": 25,
                                   **params.get("sampling", {})})
    evaluate(run, lambda e, seed: generate_images(denoiser, null, tokenizer, codes, e, settings, seed=seed,
                                                  progress=False),
             name, out, {"method": "clip-vqdiffusion", "params": params})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run's results folder (results/default)")
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml",
                        help="the config that run was made with (its data.world block)")
    parser.add_argument("--method", choices=["lafite", "clip2latent", "clip-vqdiffusion"], required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--params", type=json.loads, default={},
                        help="config-block overrides as JSON: lafite {model, train}; clip2latent {generator_model, "
                             "generator_train, pairs, prior_model, prior_train, sampling, sampling_sweep}; "
                             "clip-vqdiffusion {model, sampling}")
    parser.add_argument("--snapshots", type=int, nargs="*", default=[],
                        help="also measure the EMA generator at these steps (multiples of snapshot_every)")
    parser.add_argument("--image-conditions", action="store_true",
                        help="LAFITE: also condition the distribution set on the reference images' CLIP embeddings")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/baselines")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.configfile.read_text())
    if not (args.run / "oracle/model.safetensors").exists():
        raise SystemExit(f"--run {args.run}: no oracle/model.safetensors; run the default workflow first")
    run = Run(args.run, config)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.method == "lafite":
        run_lafite(run, args.name, args.params, args.out, args.snapshots, args.image_conditions)
    elif args.method == "clip2latent":
        run_clip2latent(run, args.name, args.params, args.out, args.snapshots)
    else:
        run_clip_vqdiffusion(run, args.name, args.params, args.out)


if __name__ == "__main__":
    main()
