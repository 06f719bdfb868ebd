#!/usr/bin/env python
"""CPU throughput of the world-default CLIP-VQDiffusion denoiser: training and sampling (issue 4, issue 8
target 3).

Measures, in one process and one run (so the ratios compare like with like):

training
  trainer     `clipvqd.diffusion.train_diffusion` itself (language-free mode, per-sample noise drawn
              on CPU, EMA, importance sampler, loss curve) for warm-up + N steps; steps/s and tokens/s
              over the N timed steps, read from the loss curve's `elapsed_s` column (log_every=1),
              so model construction and the final checkpoint write are excluded.
  core step   the same step rebuilt from the library's public pieces on one pre-drawn batch:
              `DenoiserAndNullCondition` forward, `diffusion_loss`, backward, grad clip, AdamW. The
              ratio trainer/core is the trainer's bookkeeping overhead (noise drawing, EMA, sampler).
sampling (`clipvqd.diffusion.sample`, random-init weights: the cost does not depend on them)
  images/s with guidance s (default 1.2, the null vector given, so the conditional and null passes
  run as one batched forward) and truncation r (0.85) at each step count of --sample-steps
  (default 100, 50, 25; the first is the reference of the speed-up ratios), plus s = 1 (no null
  pass) at the reference step count: the cost of guidance. A forward hook checks that a guided step
  is one forward of 2 x batch rows, and one batched forward is timed alone so the sampler's own
  overhead (truncation sort, posterior, categorical draws) shows.

Writes JSON to --out (default benchmarks/results/diffusion_cpu.json).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from clipvqd.diffusion import (  # noqa: E402
    DenoiserAndNullCondition,
    DenoiserConfig,
    DiffusionTrainConfig,
    MaskAndReplace,
    TimestepSampler,
    diffusion_loss,
    l2_normalize,
    noisy_image_condition,
    sample,
    train_diffusion,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "diffusion_cpu.json"


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    base = DenoiserConfig()
    train_base = DiffusionTrainConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m = p.add_argument_group("model (defaults: DenoiserConfig() with the default world run's grid, vocabulary "
                             "and CLIP width)")
    m.add_argument("--num-codes", type=int, default=64, help="K (the default run's compacted vocabulary is ~60)")
    m.add_argument("--grid", type=int, default=16, help="token grid side (32 px images, f=2 -> 16x16)")
    m.add_argument("--condition-dim", type=int, default=128, help="CLIP embedding width (stand-in: 128)")
    m.add_argument("--hidden-dim", type=int, default=base.hidden_dim)
    m.add_argument("--num-layers", type=int, default=base.num_layers)
    m.add_argument("--num-heads", type=int, default=base.num_heads)
    m.add_argument("--mlp-ratio", type=int, default=base.mlp_ratio)
    m.add_argument("--diffusion-steps", type=int, default=base.num_steps, help="T of the schedule")
    t = p.add_argument_group("training")
    t.add_argument("--train-batch", type=int, default=train_base.batch_size, help="token maps per step")
    t.add_argument("--train-warmup", type=int, default=5, help="untimed steps before the timed ones")
    t.add_argument("--train-steps", type=int, default=30, help="timed training steps (0 skips training)")
    s = p.add_argument_group("sampling")
    s.add_argument("--sample-images", type=int, default=16, help="images per sampling call (0 skips sampling)")
    s.add_argument("--sample-batch", type=int, default=16, help="images per forward (the null rows double it)")
    s.add_argument("--sample-steps", type=int_list, default=[100, 50, 25],
                   help="reverse step counts, comma-separated; the first is the reference of the ratios")
    s.add_argument("--guidance", type=float, default=1.2, help="guidance scale s (compared against s=1)")
    s.add_argument("--truncation", type=float, default=0.85, help="truncation r")
    s.add_argument("--forward-repeats", type=int, default=5, help="timed single forwards (sampler overhead)")
    p.add_argument("--repeats", type=int, default=1, help="timed repetitions of each sampling setting "
                   "(interleaved; the median is reported)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="torch device (the script is sized for a CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.forward_repeats < 1:
        p.error("--repeats and --forward-repeats must be >= 1")
    if args.train_steps < 0 or args.train_warmup < 0 or args.sample_images < 0:
        p.error("--train-steps, --train-warmup and --sample-images must be >= 0")
    if any(steps > args.diffusion_steps for steps in args.sample_steps):
        p.error(f"--sample-steps must not exceed --diffusion-steps ({args.diffusion_steps})")
    return args


def model_config(args: argparse.Namespace) -> DenoiserConfig:
    try:
        return DenoiserConfig(num_codes=args.num_codes, grid_height=args.grid, grid_width=args.grid,
                              condition_dim=args.condition_dim, hidden_dim=args.hidden_dim,
                              num_layers=args.num_layers, num_heads=args.num_heads, mlp_ratio=args.mlp_ratio,
                              num_steps=args.diffusion_steps)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def sync_for(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else None


# ---- training ---------------------------------------------------------------------------------------

def bench_trainer(cfg: DenoiserConfig, args: argparse.Namespace, work: Path) -> dict:
    """The real `train_diffusion`; timing from its loss curve (one row per step)."""
    total = args.train_warmup + args.train_steps
    maps = max(4 * args.train_batch, 64)
    generator = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, cfg.num_codes, (maps, cfg.grid_height, cfg.grid_width), generator=generator)
    conditions = torch.randn(maps, cfg.condition_dim, generator=generator)
    train_cfg = DiffusionTrainConfig(steps=total, batch_size=args.train_batch, warmup_steps=min(100, total),
                                     log_every=1, snapshot_every=total + 1)
    curve = work / "curve.csv"
    wall, _ = benchlib.timed(lambda: train_diffusion(
        tokens, conditions, cfg, train_cfg, "language_free", work / "work", work / "model.safetensors", curve,
        device=args.device, seed=args.seed, progress=False))
    with open(curve, newline="") as handle:
        rows = list(csv.DictReader(handle))
    result = {"mode": "language_free", "batch": args.train_batch, "warmup_steps": args.train_warmup,
              "timed_steps": args.train_steps, "call_wall_s": round(wall, 4)}
    if rows and "elapsed_s" in rows[0]:
        elapsed = {int(r["step"]): float(r["elapsed_s"]) for r in rows}
        start = elapsed.get(args.train_warmup, 0.0)
        seconds = elapsed[total] - start
        result["timing"] = "loss-curve elapsed_s between the end of warm-up and the last step"
        result["setup_and_save_s"] = round(wall - elapsed[total], 4)
    else:  # the curve format changed: fall back to the whole call, setup included
        seconds = wall * args.train_steps / total
        result["timing"] = "whole train_diffusion call (no elapsed_s in the curve): includes setup and save"
    result.update(throughput(seconds, args.train_steps, args.train_batch, cfg.num_tokens))
    return result


def bench_core_step(cfg: DenoiserConfig, args: argparse.Namespace) -> dict:
    """One training step from the public pieces, on a pre-drawn batch, without the trainer's bookkeeping."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    parts = DenoiserAndNullCondition(cfg).to(device).train()
    schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps).to(device)
    train_cfg = DiffusionTrainConfig()
    optimizer = torch.optim.AdamW([p for p in parts.parameters() if p.requires_grad], lr=train_cfg.learning_rate,
                                  betas=train_cfg.adam_betas, weight_decay=train_cfg.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    batch = args.train_batch
    x0 = torch.randint(0, cfg.num_codes, (batch, cfg.num_tokens), generator=generator)
    t, weight = TimestepSampler(cfg.num_steps).sample(batch, generator)
    xt = schedule.q_sample(x0.to(device), t.to(device), None)
    condition = noisy_image_condition(torch.randn(batch, cfg.condition_dim, generator=generator), 0.5, generator)
    use_null = torch.zeros(batch, dtype=torch.bool)
    x0, t, weight, condition, use_null = (v.to(device) for v in (x0, t, weight, condition, use_null))

    def step() -> None:
        logits = parts(xt, t, condition, use_null)
        terms = diffusion_loss(schedule, logits, x0, xt, t, weight, train_cfg.aux_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_(parts.parameters(), train_cfg.grad_clip_norm)
        optimizer.step()

    for _ in range(args.train_warmup):
        step()
    sync = sync_for(device)
    seconds, _ = benchlib.timed(lambda: [step() for _ in range(args.train_steps)], sync)
    return {"batch": batch, "warmup_steps": args.train_warmup, "timed_steps": args.train_steps,
            **throughput(seconds, args.train_steps, batch, cfg.num_tokens)}


def throughput(seconds: float, steps: int, batch: int, tokens_per_map: int) -> dict:
    steps_per_s = steps / seconds if seconds > 0 else None
    return {"seconds": round(seconds, 4), "steps_per_s": round(steps_per_s, 4) if steps_per_s else None,
            "token_maps_per_s": round(steps_per_s * batch, 3) if steps_per_s else None,
            "tokens_per_s": round(steps_per_s * batch * tokens_per_map, 1) if steps_per_s else None}


# ---- sampling ---------------------------------------------------------------------------------------

class ForwardCounter:
    """Forward hook on the denoiser: how many forwards ran and with how many rows."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(lambda _m, inputs, _out: self.batches.append(int(inputs[0].shape[0])))

    def close(self) -> None:
        self.handle.remove()


def bench_sampling(cfg: DenoiserConfig, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    parts = DenoiserAndNullCondition(cfg).to(device).eval()
    denoiser, null = parts.denoiser, parts.null_condition
    schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps).to(device)
    generator = torch.Generator().manual_seed(args.seed + 1)
    conditions = l2_normalize(torch.randn(args.sample_images, cfg.condition_dim, generator=generator)).to(device)
    sync = sync_for(device)

    def run(guidance: float, steps: int, images: int | None = None):
        return sample(denoiser, schedule, conditions[:images] if images else conditions, guidance_scale=guidance,
                      truncation_r=args.truncation, num_steps=steps, seed=args.seed, batch_size=args.sample_batch,
                      null_condition=null)

    # How a guided step reaches the model: expect one forward of 2 x batch rows per reverse step.
    counter = ForwardCounter(denoiser)
    run(args.guidance, 1, images=min(args.sample_images, args.sample_batch))
    counter.close()
    guided_forwards = counter.batches

    run(args.guidance, 2)  # warm-up (allocator, oneDNN primitives)
    settings = [("guided", args.guidance, steps) for steps in args.sample_steps]
    reference_steps = args.sample_steps[0]
    settings.append(("unguided", 1.0, reference_steps))
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(args.repeats):  # interleaved, so slow drift in machine load hits every setting alike
        for setting in settings:
            seconds, _ = benchlib.timed(lambda: run(setting[1], setting[2]), sync)
            times[setting].append(seconds)

    # One batched forward (conditional + null rows) on its own, at a mid-schedule step.
    rows = min(args.sample_images, args.sample_batch)
    xt = torch.randint(0, cfg.num_codes + 1, (2 * rows, cfg.num_tokens), generator=generator).to(device)
    tt = torch.full((2 * rows,), cfg.num_steps // 2, dtype=torch.int64, device=device)
    cc = torch.cat([conditions[:rows], null.normalized().detach().expand(rows, -1)])
    forward_times = []
    with torch.no_grad():
        denoiser(xt, tt, cc)
        for _ in range(args.forward_repeats):
            forward_times.append(benchlib.timed(lambda: denoiser(xt, tt, cc), sync)[0])

    results = []
    for setting in settings:
        kind, guidance, steps = setting
        median = benchlib.summary(times[setting])["median_s"]
        results.append({"setting": f"{kind} s={guidance:g} steps={steps}", "guidance_scale": guidance,
                        "num_steps": steps, "images": args.sample_images, **benchlib.summary(times[setting]),
                        "images_per_s": round(args.sample_images / median, 4)})
    by_setting = {(r["guidance_scale"], r["num_steps"]): r["median_s"] for r in results}
    reference = by_setting[(args.guidance, reference_steps)]
    forward_s = benchlib.summary(forward_times)["median_s"]
    batches = -(-args.sample_images // args.sample_batch)
    model_share = forward_s * batches * reference_steps / reference
    ratios = {
        "step_speedup_vs_reference": {str(steps): benchlib.ratio(reference, by_setting[(args.guidance, steps)])
                                      for steps in args.sample_steps},
        "guidance_time_over_s1": benchlib.ratio(reference, by_setting[(1.0, reference_steps)]),
        "model_forward_share": round(model_share, 3),
        "definitions": {
            "step_speedup_vs_reference": "time at the reference step count / time at this step count (guided)",
            "guidance_time_over_s1": "guided time / s=1 time at the reference step count (2 = the null pass "
                                     "costs as much as the conditional one)",
            "model_forward_share": "reference steps x batches x one batched forward / guided sampling time; "
                                   "the rest is the sampler (truncation sort, posterior, draws)",
        },
    }
    return {
        "settings": {"guidance_scale": args.guidance, "truncation_r": args.truncation,
                     "reference_steps": reference_steps, "images": args.sample_images,
                     "batch_size": args.sample_batch, "repeats": args.repeats,
                     "weights": "random initialisation (throughput does not depend on them)"},
        "cfg_batching": {"forward_rows_per_guided_step": guided_forwards,
                         "batched": guided_forwards == [2 * min(args.sample_images, args.sample_batch)]},
        "runs": results,
        "guided_forward": {"rows": 2 * rows, **benchlib.summary(forward_times)},
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    benchlib.check_out(args.out)
    threads = benchlib.set_threads(args.threads)
    cfg = model_config(args)
    env = benchlib.environment(args.device)
    parameters = sum(p.numel() for p in DenoiserAndNullCondition(cfg).parameters())
    print(f"diffusion_cpu: {cfg.num_layers}x{cfg.hidden_dim}, {cfg.grid_height}x{cfg.grid_width} tokens, "
          f"K={cfg.num_codes}, {parameters / 1e6:.2f}M parameters, device {args.device}, {threads} thread(s), "
          f"load average {env['loadavg_start']}", flush=True)
    payload: dict = {"benchmark": "diffusion_cpu", "environment": env, "model": cfg.to_dict(),
                     "parameters": parameters}
    started = time.perf_counter()
    if args.train_steps:
        with tempfile.TemporaryDirectory(prefix="bench-diffusion-") as tmp:
            trainer = bench_trainer(cfg, args, Path(tmp))
        print(f"  trainer   {trainer['steps_per_s']:.3f} steps/s  {trainer['tokens_per_s']:,.0f} tokens/s "
              f"(batch {args.train_batch})", flush=True)
        core = bench_core_step(cfg, args)
        print(f"  core step {core['steps_per_s']:.3f} steps/s  {core['tokens_per_s']:,.0f} tokens/s", flush=True)
        payload["training"] = {"trainer": trainer, "core_step": core,
                               "ratios": {"trainer_over_core": benchlib.ratio(trainer["steps_per_s"],
                                                                              core["steps_per_s"])}}
    if args.sample_images:
        sampling = bench_sampling(cfg, args)
        payload["sampling"] = sampling
        benchlib.print_table(sampling["runs"], ["setting", "median_s", "images_per_s"])
        ratios = {k: v for k, v in sampling["ratios"].items() if k != "definitions"}
        print(f"  ratios: {ratios}; CFG batched: {sampling['cfg_batching']}", flush=True)
    payload["total_s"] = round(time.perf_counter() - started, 2)
    benchlib.finish(env, threads)
    if env["contended"]:
        print(f"  NOTE: load average {env['loadavg_start']} -> {env['loadavg_end']}: other work shared the CPU; "
              "quote the ratios, not the absolute numbers", flush=True)
    out = benchlib.write_json(args.out, payload)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
