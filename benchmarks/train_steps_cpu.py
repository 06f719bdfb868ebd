#!/usr/bin/env python
"""Old and new form of the CPU training and sampling steps of CLIP-VQDiffusion, in one process, alternating
(issue #19: the default run's CPU cost).

Each section runs the step in its OLD form (a faithful copy of the code before the change, kept here and not in
the library) and in its NEW form (the library as it is), each with its own model, optimiser and state built
from the same seed, in rounds that alternate which form goes first (A B, B A, ...). Every round times a few
steps of each form as process CPU seconds (all torch threads) and wall seconds; the result is the ratio
new / old per round, summarised by min, median and max. Because both forms see the same batches and the same
step indices, they must end in the same state: each section also records whether the weights (and, for the
trainer, the EMA weights and the importance sampler) are bit-identical, with their sha256.

sections
  diffusion_train   one optimiser step of `clipvqd.diffusion.train` in the language-free and the paired CFG
                    fine-tune mode (which draws the null-condition coin): drawing the batch's noise (old: each
                    sample drawn and transformed on its own; new: raw draws per sample from the same streams,
                    arithmetic once per batch), forward, loss, backward, clip, AdamW (old: PyTorch's CPU
                    default single-tensor loop; new: the multi-tensor form), importance-sampler update, EMA
                    (old: one lerp_ per tensor; new: one multi-tensor lerp), with the ConvMLP weights stored
                    as PyTorch creates them (old) or channels-last like their input (new).
  diffusion_sample  `clipvqd.diffusion.sample` with guidance, truncation and strided steps (the default run's
                    sampling point): old truncation (one stable sort per token along the strided code axis) and
                    categorical draw (stacked per-image uniforms), new library code (the top codes first, the
                    full sort only where they do not settle the mask). With --denoiser, trained weights.
  imports           CPU seconds of a fresh interpreter importing what a diffusion job imports: old (the
                    tokenizer and CLIP packages imported every submodule, so open_clip, torchvision's model
                    zoo, scikit-image and SciPy came along) and new (imported on first use).

The model is the default run's denoiser (4 x 64, 8 x 8 tokens, K = 124 codes after compaction, 128-d
condition); with --tokens and --embeddings it trains on the default run's own token maps and embeddings
(read only), otherwise on random ones (the cost does not depend on them). --quick: a tiny model and a few
steps, to check the script (tests/test_benchmarks.py).

Writes JSON to --out (default benchmarks/results/train_steps_cpu.json).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from clipvqd.diffusion import (  # noqa: E402
    DenoiserAndNullCondition,
    DenoiserConfig,
    DiffusionTrainConfig,
    MaskAndReplace,
    TimestepSampler,
    TrainingMode,
    l2_normalize,
    noisy_image_condition,
    sample,
)
from clipvqd.diffusion import sampler as sampler_module  # noqa: E402
from clipvqd.diffusion.condition import draw_null_mask  # noqa: E402
from clipvqd.diffusion.train import (_STREAM_SAMPLE_NOISE, _draw_training_batch, build_optimizer,  # noqa: E402
                                     optimisation_step)
from clipvqd.diffusion.transformer import ConvMLP  # noqa: E402
from clipvqd.training import ExponentialMovingAverage, generator_for, warmup_cosine  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_steps_cpu.json"


# ---- the old forms (the code before issue #19's changes) ----------------------------------------------------

def old_draw_training_batch(x0, embeddings, global_positions, step, seed, mode, schedule, timestep_sampler,
                            train_cfg, condition_dim):
    """clipvqd.diffusion.train._draw_training_batch before the change: every sample drawn and transformed alone."""
    timesteps, weights, noised, condition_rows, null_flags = [], [], [], [], []
    for row, position in enumerate(global_positions):
        generator = generator_for(seed, _STREAM_SAMPLE_NOISE, step, position)
        t, weight = timestep_sampler.sample(1, generator)
        noised.append(schedule.q_sample(x0[row : row + 1], t, generator))
        if mode in (TrainingMode.LANGUAGE_FREE, TrainingMode.CFG_FINETUNE):
            condition = noisy_image_condition(embeddings[row : row + 1], train_cfg.condition_noise_alpha, generator)
        elif mode.uses_text_condition:
            condition = l2_normalize(embeddings[row : row + 1])
        else:
            condition = torch.zeros(1, condition_dim)
        if mode.drops_condition:
            use_null = draw_null_mask(1, train_cfg.null_condition_probability, generator)
        else:
            use_null = torch.full((1,), mode is TrainingMode.UNCONDITIONAL)
        timesteps.append(t)
        weights.append(weight)
        condition_rows.append(condition.float())
        null_flags.append(use_null)
    return (torch.cat(noised), torch.cat(timesteps), torch.cat(weights), torch.cat(condition_rows),
            torch.cat(null_flags))


class OldExponentialMovingAverage(ExponentialMovingAverage):
    """clipvqd.training.ExponentialMovingAverage.update before the change: one lerp_ per tensor."""

    @torch.no_grad()
    def update(self, module):
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)


def old_optimizer(trained, train_cfg, device):
    """The trainer's AdamW before the change: PyTorch's default on CPU (the single-tensor loop)."""
    return torch.optim.AdamW(trained, lr=train_cfg.learning_rate, betas=tuple(train_cfg.adam_betas),
                             weight_decay=train_cfg.weight_decay, fused=True if device.type == "cuda" else None)


def old_conv_weights(module: torch.nn.Module) -> None:
    """ConvMLP weights as PyTorch creates them (before the change they were not stored channels-last)."""
    for mlp in module.modules():
        if isinstance(mlp, ConvMLP):
            mlp.to(memory_format=torch.contiguous_format)


def old_truncation_keep_mask(log_probs, truncation_r):
    """clipvqd.diffusion.sampler.truncation_keep_mask before the change: sorted along the strided code axis."""
    if not 0.0 < truncation_r <= 1.0:
        raise ValueError(f"truncation_r must be in (0, 1], got {truncation_r}")
    sorted_log, order = torch.sort(log_probs, dim=1, descending=True, stable=True)
    mass_before = sorted_log.exp().cumsum(dim=1) - sorted_log.exp()
    keep_sorted = mass_before < truncation_r
    return torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)


def old_draw_categorical(log_probs, generators):
    """clipvqd.diffusion.sampler._draw_categorical before the change: per-image uniforms stacked."""
    uniform = torch.stack(
        [torch.rand(log_probs.shape[1:], generator=g, device=log_probs.device) for g in generators]
    )
    exponential = -torch.log(uniform.clamp(min=1e-20))
    gumbel = -torch.log(exponential.clamp(min=1e-20))
    return (log_probs + gumbel).argmax(dim=1)


# ---- helpers ------------------------------------------------------------------------------------------------

def alternate(rounds: int, forms: dict[str, Callable[[int], None]], steps_per_round: int) -> dict[str, Any]:
    """Run `steps_per_round` calls of each form per round, alternating which goes first; CPU and wall seconds
    per round and form, and the per-round ratios new / old."""
    cpu = {name: [] for name in forms}
    wall = {name: [] for name in forms}
    names = list(forms)
    step = 0
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            for offset in range(steps_per_round):
                forms[name](step + offset)
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
        step += steps_per_round
    return {"cpu_s": {k: [round(x, 6) for x in v] for k, v in cpu.items()},
            "wall_s": {k: [round(x, 6) for x in v] for k, v in wall.items()},
            "new_over_old_cpu": ratios(cpu["new"], cpu["old"]), "new_over_old_wall": ratios(wall["new"], wall["old"])}


def ratios(new: list[float], old: list[float]) -> dict[str, Any]:
    per_round = [n / o for n, o in zip(new, old) if o > 0]
    if not per_round:
        return {"median": None, "min": None, "max": None, "per_round": []}
    return {"median": round(statistics.median(per_round), 4), "min": round(min(per_round), 4),
            "max": round(max(per_round), 4), "per_round": [round(r, 4) for r in per_round],
            "of_totals": round(sum(new) / sum(old), 4)}


# ---- diffusion trainer ----------------------------------------------------------------------------------------

class TrainerForm:
    """One form of the trainer's step (old or new), holding its own model, optimiser, schedule, EMA and sampler,
    the body of clipvqd.diffusion.train._train's loop."""

    def __init__(self, form: str, mode: TrainingMode, model_cfg: DenoiserConfig, train_cfg: DiffusionTrainConfig,
                 tokens: torch.Tensor, conditions: torch.Tensor | None, seed: int):
        self.mode, self.model_cfg, self.train_cfg, self.seed = mode, model_cfg, train_cfg, seed
        self.tokens, self.conditions = tokens, conditions
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.parts = DenoiserAndNullCondition(model_cfg)
        self.parts.null_condition.vector.requires_grad_(mode.drops_condition or mode is TrainingMode.UNCONDITIONAL)
        device = torch.device("cpu")
        if form == "old":
            old_conv_weights(self.parts)
        self.trained = [p for p in self.parts.parameters() if p.requires_grad]
        self.schedule = MaskAndReplace(model_cfg.num_codes, model_cfg.num_steps)
        self.ema = (OldExponentialMovingAverage if form == "old" else ExponentialMovingAverage)(
            self.parts, train_cfg.ema_decay)
        self.optimizer = (old_optimizer if form == "old" else build_optimizer)(self.trained, train_cfg, device)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: warmup_cosine(
            step, train_cfg.steps, train_cfg.warmup_steps, train_cfg.final_lr_fraction))
        self.sampler = TimestepSampler(model_cfg.num_steps, train_cfg.importance_min_samples,
                                       train_cfg.importance_history_decay)
        self.draw = old_draw_training_batch if form == "old" else _draw_training_batch
        self.parts.train()

    def step(self, step: int) -> None:
        cfg = self.train_cfg
        rows = self.tokens.shape[0]
        order = torch.randperm(rows, generator=generator_for(self.seed, 2, step // (rows // cfg.batch_size)))
        offset = step % (rows // cfg.batch_size)
        indices = order[offset * cfg.batch_size:][:cfg.batch_size]
        x0 = self.tokens[indices]
        xt, t, weight, condition, use_null = self.draw(
            x0, None if self.conditions is None else self.conditions[indices], list(range(cfg.batch_size)), step,
            self.seed, self.mode, self.schedule, self.sampler, cfg, self.model_cfg.condition_dim)
        optimisation_step(self.parts, self.parts, (x0, xt, t, weight, condition, use_null), step,
                          schedule=self.schedule, optimizer=self.optimizer, lr_schedule=self.lr_schedule,
                          trained=self.trained, timestep_sampler=self.sampler, ema=self.ema, train_cfg=cfg)

    def digests(self) -> dict[str, str]:
        return {"weights": benchlib.state_sha256(self.parts.state_dict()),
                "ema": benchlib.state_sha256(self.ema.state_dict()),
                "timestep_sampler": benchlib.state_sha256(self.sampler.state_dict())}


def bench_diffusion_train(args, model_cfg: DenoiserConfig, tokens, conditions) -> dict[str, Any]:
    out = {}
    for mode in (TrainingMode.LANGUAGE_FREE, TrainingMode.PAIRED_CFG_FINETUNE):
        train_cfg = DiffusionTrainConfig(batch_size=args.train_batch, steps=1600)
        forms = {name: TrainerForm(name, mode, model_cfg, train_cfg, tokens, conditions, args.seed)
                 for name in ("old", "new")}
        for form in forms.values():  # warm-up, identical for both
            for step in range(args.warmup_steps):
                form.step(step)
        timing = alternate(args.rounds, {name: (lambda s, f=form: f.step(args.warmup_steps + s))
                                         for name, form in forms.items()}, args.train_steps)
        old, new = forms["old"].digests(), forms["new"].digests()
        out[mode.value] = {
            **timing,
            "steps_per_form": args.warmup_steps + args.rounds * args.train_steps,
            "bit_identical": old == new,
            "sha256": {"old": old, "new": new},
        }
    return out


# ---- diffusion sampler ----------------------------------------------------------------------------------------

def bench_diffusion_sample(args, model_cfg: DenoiserConfig) -> dict[str, Any]:
    if args.denoiser:
        # Trained weights: the truncation's cost depends on how peaked the predictions are (random weights
        # predict nearly flat distributions, which no trained model does).
        from clipvqd.checkpoint import load_meta, load_weights

        model_cfg = DenoiserConfig.from_dict(load_meta(args.denoiser)["model_config"], source=args.denoiser)
        parts = DenoiserAndNullCondition(model_cfg)
        load_weights(args.denoiser, parts)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            parts = DenoiserAndNullCondition(model_cfg)
    parts.eval()
    denoiser, null = parts.denoiser, parts.null_condition
    old_parts = DenoiserAndNullCondition(model_cfg)
    old_parts.load_state_dict(parts.state_dict())
    old_conv_weights(old_parts)
    old_parts.eval()
    schedule = MaskAndReplace(model_cfg.num_codes, model_cfg.num_steps)
    if args.prompt_embeddings:  # the prompts' text embeddings, cycled: the default run's conditions
        from clipvqd.clip.embed import load_embeddings

        prompts = l2_normalize(load_embeddings(args.prompt_embeddings).float())
        condition = prompts[torch.arange(args.sample_images) % len(prompts)]
    else:
        condition = l2_normalize(torch.randn(args.sample_images, model_cfg.condition_dim,
                                             generator=torch.Generator().manual_seed(args.seed)))
    settings = dict(guidance_scale=1.2, truncation_r=0.85, num_steps=args.sample_steps, seed=2,
                    batch_size=args.sample_batch)
    codes: dict[str, torch.Tensor] = {}

    def run_old(_: int) -> None:
        saved = sampler_module.truncation_keep_mask, sampler_module._draw_categorical
        sampler_module.truncation_keep_mask, sampler_module._draw_categorical = (old_truncation_keep_mask,
                                                                                 old_draw_categorical)
        try:
            codes["old"] = sample(old_parts.denoiser, schedule, condition, null_condition=old_parts.null_condition,
                                  **settings)
        finally:
            sampler_module.truncation_keep_mask, sampler_module._draw_categorical = saved

    def run_new(_: int) -> None:
        codes["new"] = sample(denoiser, schedule, condition, null_condition=null, **settings)

    run_old(0), run_new(0)  # warm-up
    timing = alternate(args.rounds, {"old": run_old, "new": run_new}, 1)
    return {**timing, "denoiser": args.denoiser or "random weights",
            "conditions": args.prompt_embeddings or "random unit vectors", "images": args.sample_images,
            "steps": args.sample_steps, "guidance_scale": 1.2,
            "truncation_r": 0.85, "bit_identical": torch.equal(codes["old"], codes["new"]),
            "sha256": {name: benchlib.tensors_sha256([c]) for name, c in codes.items()}}


# ---- imports ---------------------------------------------------------------------------------------------------

# What a diffusion sampling job imports (clipvqd.sampling.sample_diffusion) and, before the change, what the
# eager package initialisers pulled in with it.
NEW_IMPORTS = ("import clipvqd.cli, clipvqd.sampling, clipvqd.samples, clipvqd.diffusion, clipvqd.diffusion.generate, "
               "clipvqd.diffusion.data; from clipvqd.tokenizer import CodeMapping, load_tokenizer, load_code_maps; "
               "from clipvqd.clip.embed import load_embeddings")
OLD_EXTRA = ("import clipvqd.clip.encoder, clipvqd.tokenizer.compaction, clipvqd.tokenizer.evaluate, "
             "clipvqd.tokenizer.perceptual, clipvqd.tokenizer.train, clipvqd.tokenizer.tokenize")


def child_cpu(code: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=benchlib.REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_imports(args) -> dict[str, Any]:
    forms = {"old": f"{NEW_IMPORTS}; {OLD_EXTRA}", "new": NEW_IMPORTS}
    cpu = {name: [] for name in forms}
    for index in range(args.import_repeats):
        for name in (forms if index % 2 == 0 else dict(reversed(list(forms.items())))):
            cpu[name].append(child_cpu(forms[name]))
    return {"cpu_s": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
            "new_over_old_cpu": ratios(cpu["new"], cpu["old"]),
            "saved_cpu_s_per_job_median": round(statistics.median(cpu["old"]) - statistics.median(cpu["new"]), 3),
            "imports": forms}


# ---- main -----------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps: checks the script only")
    parser.add_argument("--tokens", default=None, help="a tokenize manifest (e.g. results/default/tokens/train.json)")
    parser.add_argument("--embeddings", default=None,
                        help="the training images' embeddings (e.g. results/default/embeddings/train_images.safetensors)")
    parser.add_argument("--denoiser", default=None,
                        help="trained denoiser for the sampling section (e.g. results/default/models/"
                             "clip-vqdiffusion/alpha=0.5/cfg.safetensors); default: random weights")
    parser.add_argument("--prompt-embeddings", default=None,
                        help="conditions of the sampling section (e.g. results/default/embeddings/prompts.safetensors)"
                             "; default: random unit vectors")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per section")
    parser.add_argument("--train-steps", type=int, default=20, help="trainer steps per form and round")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--sample-images", type=int, default=64)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=25)
    parser.add_argument("--import-repeats", type=int, default=4)
    parser.add_argument("--sections", default="diffusion_train,diffusion_sample,imports")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.train_steps, args.warmup_steps, args.train_batch = 2, 2, 1, 4
        args.sample_images, args.sample_batch, args.sample_steps = 4, 4, 3
        args.sections = ",".join(s for s in args.sections.split(",") if s != "imports")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = benchlib.check_out(args.out)
    threads = benchlib.set_threads(args.threads)
    env = benchlib.environment("cpu")
    if args.tokens:
        from clipvqd.diffusion.data import load_training_data

        data = load_training_data(args.tokens, "language_free", args.embeddings)
        tokens, conditions = data.tokens.reshape(data.tokens.shape[0], -1), data.conditions.float()
        model_cfg = DenoiserConfig(num_codes=data.vocab_size, grid_height=data.grid[0], grid_width=data.grid[1],
                                   condition_dim=data.condition_dim)
        source = {"tokens": args.tokens, "embeddings": args.embeddings}
    else:
        model_cfg = DenoiserConfig(num_codes=124, condition_dim=128)
        if args.quick:
            model_cfg = replace(model_cfg, num_codes=16, grid_height=4, grid_width=4, condition_dim=16, hidden_dim=16,
                                num_layers=1, num_heads=2, num_steps=10)
        generator = torch.Generator().manual_seed(args.seed)
        count = max(4 * args.train_batch, 64)
        tokens = torch.randint(model_cfg.num_codes, (count, model_cfg.num_tokens), generator=generator)
        conditions = torch.randn(count, model_cfg.condition_dim, generator=generator)
        source = "random"
    payload: dict[str, Any] = {"environment": env, "model": model_cfg.to_dict(), "data": source,
                               "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    sections = [s for s in args.sections.split(",") if s]
    if "diffusion_train" in sections:
        payload["diffusion_train"] = bench_diffusion_train(args, model_cfg, tokens, conditions)
    if "diffusion_sample" in sections:
        payload["diffusion_sample"] = bench_diffusion_sample(args, model_cfg)
    if "imports" in sections:
        payload["imports"] = bench_imports(args)
    payload["environment"] = benchlib.finish(env, threads)
    benchlib.write_json(out, payload)

    rows = []
    for name, result in [(f"diffusion_train/{m}", r) for m, r in payload.get("diffusion_train", {}).items()] + \
            [("diffusion_sample", payload.get("diffusion_sample")), ("imports", payload.get("imports"))]:
        if result:
            r = result["new_over_old_cpu"]
            rows.append({"section": name, "cpu new/old median": r["median"], "min": r["min"], "max": r["max"],
                         "bit_identical": result.get("bit_identical", "-")})
    benchlib.print_table(rows, ["section", "cpu new/old median", "min", "max", "bit_identical"])
    print(f"load average {env['loadavg_start']} -> {env['loadavg_end']}; contended: {env['contended']}; wrote {out}")


if __name__ == "__main__":
    main()
