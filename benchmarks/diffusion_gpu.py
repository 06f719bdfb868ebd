#!/usr/bin/env python
"""GPU benchmark of the paper-size CLIP-VQDiffusion denoiser (issue 4 "Benchmarks", issue 8 target 2).

One prepared script for one GPU, sized to finish in under 5 minutes on an H100/H200. The model is
`DenoiserConfig.paper()`: 24 layers x 512, 16 heads, 16x16 = 256 tokens, K = 4096, condition 512
(~515M parameters). Everything is measured in this one process, and every ratio is against the fp32
eager run of the same script.

training (one step = forward, `diffusion_loss`, backward, grad clip 0.5, AdamW; a pre-drawn batch on
the GPU, so the numbers are the model's, not the data pipeline's; no EMA)
  fp32_eager            float32, PyTorch's default kernels and TF32 settings (recorded), AdamW
                        (foreach)
  bf16_sdpa_fused       bf16 autocast, attention forced to the flash SDPA kernel, fused AdamW
  bf16_sdpa_fused_compile  the same + torch.compile (regional: each transformer block, by default);
                        a compile failure is caught and recorded, the script goes on
  per configuration: steps/s, tokens/s, model FLOPs utilisation (FLOPs of one step counted with
  torch.utils.flop_counter.FlopCounterMode, against the GPU's dense bf16 peak: a table of known GPUs
  by name, or --peak-tflops), peak memory (torch.cuda.max_memory_allocated), and the attention
  kernel that ran (from the FLOP counter's op names).
sampling (`clipvqd.diffusion.sample`, 100 steps, s = 1.2 with the null vector, r = 0.85, batch 64; the
library runs it under bf16 autocast on CUDA)
  images/s with guidance (conditional and null passes batched into one forward of 2 x 64 rows, checked
  with a forward hook), the same at s = 1 (no null pass: the cost of guidance), with the compiled
  blocks when compilation worked, and one batched forward timed alone (the sampler's own overhead).

Run on the GPU machine:
    python benchmarks/diffusion_gpu.py --out $OUT/diffusion_gpu.json
CPU smoke run with a tiny model (checks the script, measures nothing of interest):
    python benchmarks/diffusion_gpu.py --quick --out /tmp/diffusion_gpu_quick.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from contextlib import nullcontext
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
)
from clipvqd.diffusion.condition import draw_null_mask  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "diffusion_gpu.json"

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets. Matched in order
# against torch.cuda.get_device_name(): the more specific names first.
PEAK_BF16_TFLOPS = [
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H800", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
]

# fp32: "ieee" is plain float32 everywhere; "default" is PyTorch's default policy, under which cuDNN
# convolutions (93% of this model's FLOPs) already run in TF32 on tensor cores.
# cudnn_benchmark: let cuDNN time its algorithms for each new shape (the shapes here never change).
CONFIGS = {
    "fp32_eager": {"fp32": "ieee", "bf16": False, "flash": False, "fused": False, "cudnn_benchmark": False,
                   "compile": False},
    "fp32_eager_tf32_convs": {"fp32": "default", "bf16": False, "flash": False, "fused": False,
                              "cudnn_benchmark": False, "compile": False},
    "bf16_sdpa_fused": {"fp32": "default", "bf16": True, "flash": True, "fused": True, "cudnn_benchmark": False,
                        "compile": False},
    "bf16_sdpa_fused_cudnn_benchmark": {"fp32": "default", "bf16": True, "flash": True, "fused": True,
                                        "cudnn_benchmark": True, "compile": False},
    "bf16_sdpa_fused_compile": {"fp32": "default", "bf16": True, "flash": True, "fused": True,
                                "cudnn_benchmark": True, "compile": True},
}
BASELINE = "fp32_eager"
# PyTorch's default float32 policy, the second reference point: its convolutions are already TF32.
DEFAULT_POLICY_BASELINE = "fp32_eager_tf32_convs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: tiny model, 2 timed steps, 4-step sampling (overrides the sizes below "
                        "unless given explicitly)")
    p.add_argument("--device", default=None, help="torch device (default: cuda, or cpu with --quick)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"training configurations to run, comma-separated, from {list(CONFIGS)}")
    p.add_argument("--train-batch", default=None,
                   help="token maps per training step, comma-separated to measure several (default 32,64; every "
                        "configuration runs at each, and ratios compare runs of the same batch)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps per configuration (default 5; "
                   "the first of the compiled configuration includes compilation)")
    p.add_argument("--train-steps", type=int, default=None, help="timed steps per configuration (default 20)")
    p.add_argument("--sample-batch", type=int, default=None, help="images per sampling batch (default 64)")
    p.add_argument("--sample-steps", type=int, default=None, help="reverse steps (default 100)")
    p.add_argument("--guidance", type=float, default=1.2, help="guidance scale s")
    p.add_argument("--truncation", type=float, default=0.85, help="truncation r")
    p.add_argument("--no-sampling", action="store_true", help="skip the sampling measurements")
    p.add_argument("--no-compile", action="store_true", help="skip every torch.compile measurement")
    p.add_argument("--compile-scope", choices=("blocks", "model"), default="blocks",
                   help="blocks: compile each transformer block (identical blocks share one compiled graph, "
                        "short cold start); model: torch.compile the whole module")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    p.add_argument("--profile", default="bf16_sdpa_fused_cudnn_benchmark,bf16_sdpa_fused_compile",
                   help="configurations to profile after timing (torch.profiler, 3 steps): the top GPU kernels "
                        "by time go into the JSON; empty for none")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the GPU in TFLOP/s for MFU (default: looked up by GPU name)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; 1 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file (rewritten after each stage)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"device": "cpu" if quick else "cuda", "train_batch": "4" if quick else "32,64",
                "warmup_steps": 1 if quick else 5, "train_steps": 2 if quick else 20,
                "sample_batch": 4 if quick else 64, "sample_steps": 4 if quick else 100,
                "threads": 1 if quick else None}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.train_batches = [int(b) for b in str(args.train_batch).split(",") if b.strip()]
    except ValueError:
        p.error(f"--train-batch must be integers separated by commas, got {args.train_batch!r}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.profile = [c.strip() for c in args.profile.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")
    if args.no_compile:
        args.configs = [c for c in args.configs if not CONFIGS[c]["compile"]]
    if not args.train_batches or min(args.train_batches) < 1:
        p.error("--train-batch must be >= 1")
    for name in ("train_steps", "sample_batch", "sample_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def model_config(quick: bool) -> DenoiserConfig:
    if quick:
        return DenoiserConfig(num_codes=64, grid_height=8, grid_width=8, condition_dim=32, hidden_dim=64,
                              num_layers=2, num_heads=4, mlp_ratio=2, num_steps=100)
    return DenoiserConfig.paper()


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "not a GPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return value, f"table entry '{key}' for '{name}'"
    return None, f"'{name}' is not in the table: pass --peak-tflops"


class Device:
    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_memory(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if self.cuda else None

    def autocast(self, enabled: bool):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def fp32_flags() -> dict:
    flags = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    for name, obj in (("cuda_matmul_allow_tf32", torch.backends.cuda.matmul), ("cudnn_allow_tf32", torch.backends.cudnn)):
        try:
            flags[name] = bool(obj.allow_tf32)
        except Exception as error:  # noqa: BLE001 - an API change must not stop the benchmark
            flags[name] = f"unreadable: {error}"
    return flags


def set_fp32_policy(policy: str) -> dict | None:
    """Apply a configuration's float32 policy ("ieee": no TF32 anywhere, "default": PyTorch's own) and
    return the previous flags for `restore_fp32_policy`."""
    try:
        previous = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
        if policy == "ieee":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return previous
    except Exception as error:  # noqa: BLE001 - an API change must not stop the benchmark
        print(f"  could not apply the float32 policy {policy}: {error}", flush=True)
        return None


def restore_fp32_policy(previous: dict | None) -> None:
    if previous is None:
        return
    try:
        torch.backends.cuda.matmul.allow_tf32 = previous["matmul"]
        torch.backends.cudnn.allow_tf32 = previous["cudnn"]
    except Exception:  # noqa: BLE001
        pass


def sdpa_context(flash: bool):
    if not flash:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def compile_model(parts: DenoiserAndNullCondition, scope: str, mode: str | None) -> torch.nn.Module:
    if scope == "blocks":
        for block in parts.denoiser.blocks:
            block.compile(mode=mode)
        return parts
    return torch.compile(parts, mode=mode)


def dynamo_stats() -> dict:
    """Graphs compiled and graph breaks: 24 identical blocks should share one graph (no recompiles)."""
    try:
        from torch._dynamo.utils import counters

        return {"unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
                "graph_breaks": int(sum(counters["graph_break"].values())),
                "recompiles": int(sum(counters["recompiles"].values())) if "recompiles" in counters else None}
    except Exception as error:  # noqa: BLE001 - diagnostics only
        return {"unreadable": str(error)}


def build_parts(cfg: DenoiserConfig, dev: Device, seed: int) -> DenoiserAndNullCondition:
    torch.manual_seed(seed)
    with dev.device:  # initialise on the device: the 515M-parameter CPU init would take seconds
        return DenoiserAndNullCondition(cfg)


def training_batch(cfg: DenoiserConfig, batch: int, dev: Device, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps)
    x0 = torch.randint(0, cfg.num_codes, (batch, cfg.num_tokens), generator=generator)
    t, weight = TimestepSampler(cfg.num_steps).sample(batch, generator)
    xt = schedule.q_sample(x0, t, generator)
    condition = noisy_image_condition(torch.randn(batch, cfg.condition_dim, generator=generator), 0.5, generator)
    use_null = draw_null_mask(batch, 0.1, generator)  # as in the CFG fine-tune
    values = {"x0": x0, "xt": xt, "t": t, "weight": weight, "condition": condition, "use_null": use_null}
    return {k: v.to(dev.device) for k, v in values.items()}


def count_flops(step_fn) -> tuple[int, dict, list[str]]:
    """FLOPs of one forward + backward (FlopCounterMode), its per-op split, and the attention ops that ran."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class AttentionOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket)
            if "attention" in name or "bmm" in name:
                self.names.add(name)
            return func(*args, **(kwargs or {}))

    with FlopCounterMode(display=False) as counter, AttentionOps() as ops:
        step_fn(update=False)
    per_op = {str(op): int(flops) for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op, sorted(ops.names)


def attention_kernel(op_names: list[str]) -> str:
    names = " ".join(op_names)
    for key, label in (("flash", "flash"), ("efficient", "mem-efficient"), ("cudnn", "cudnn"),
                       ("overrideable", "sdpa (overrideable)")):
        if key in names:
            return label
    return "math (bmm)" if "bmm" in names else ("sdpa (unknown)" if names else "none seen")


def bench_training(name: str, spec: dict, cfg: DenoiserConfig, args, dev: Device, batch_size: int) -> dict:
    result: dict = {"config": name, **spec, "batch": batch_size}
    previous = set_fp32_policy(spec["fp32"])
    torch.backends.cudnn.benchmark = spec["cudnn_benchmark"]
    dev.reset_memory()
    parts = network = optimizer = batch = None
    try:
        result["float32_flags"] = fp32_flags()
        parts = build_parts(cfg, dev, args.seed)
        parts.train()
        schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps).to(dev.device)
        train_cfg = DiffusionTrainConfig()
        optimizer = torch.optim.AdamW(parts.parameters(), lr=train_cfg.learning_rate, betas=train_cfg.adam_betas,
                                      weight_decay=train_cfg.weight_decay, fused=spec["fused"] or None)
        batch = training_batch(cfg, batch_size, dev, args.seed)
        network = parts

        def step(update: bool = True) -> None:
            with dev.autocast(spec["bf16"]), sdpa_context(spec["flash"]):
                logits = network(batch["xt"], batch["t"], batch["condition"], batch["use_null"])
            terms = diffusion_loss(schedule, logits, batch["x0"], batch["xt"], batch["t"], batch["weight"],
                                   train_cfg.aux_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            if update:
                torch.nn.utils.clip_grad_norm_(parts.parameters(), train_cfg.grad_clip_norm)
                optimizer.step()

        # FLOPs of one step, counted eagerly (a compiled step does the same arithmetic).
        try:
            flops, per_op, attention_ops = count_flops(step)
            result.update({"flops_per_step": flops, "flops_by_op": per_op, "attention_ops": attention_ops,
                           "attention_kernel": attention_kernel(attention_ops),
                           "attention_flops_counted": any("attention" in op for op in per_op)})
        except Exception as error:  # noqa: BLE001 - MFU is then taken from another configuration's count
            result["flop_count_error"] = f"{type(error).__name__}: {error}"
        if spec["compile"]:
            network = compile_model(parts, args.compile_scope, args.compile_mode)
            result.update({"compile_scope": args.compile_scope, "compile_mode": args.compile_mode})

        first, _ = benchlib.timed(step, dev.sync)  # compilation happens here for the compiled configuration
        for _ in range(max(args.warmup_steps - 1, 0)):
            step()
        seconds, _ = benchlib.timed(lambda: [step() for _ in range(args.train_steps)], dev.sync)
        steps_per_s = args.train_steps / seconds
        result.update({
            "ok": True, "timed_steps": args.train_steps, "seconds": round(seconds, 4),
            "first_step_s": round(first, 3), "steps_per_s": round(steps_per_s, 4),
            "tokens_per_s": round(steps_per_s * batch_size * cfg.num_tokens, 1),
            "peak_memory_gib": dev.peak_gib(),
        })
        if spec["compile"]:
            result["compile_overhead_s"] = round(first - seconds / args.train_steps, 2)
            result["dynamo"] = dynamo_stats()
        if name in args.profile:
            result["top_kernels"] = profile_kernels(step, dev, seconds / args.train_steps)
    except Exception as error:  # noqa: BLE001 - record it, keep measuring the rest
        result.update({"ok": False, "error": f"{type(error).__name__}: {error}",
                       "traceback": traceback.format_exc(limit=8)})
        print(f"  {name}: FAILED ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
              flush=True)
    finally:
        restore_fp32_policy(previous)
        torch.backends.cudnn.benchmark = False
        parts = network = optimizer = batch = None  # free the GPU memory before the next configuration
        if spec["compile"]:
            torch._dynamo.reset()
        dev.reset_memory()
    return result


def profile_kernels(step_fn, dev: Device, step_s: float, steps: int = 3, top: int = 25) -> dict:
    """Where a step's GPU time goes: the kernels with the most time over `steps` steps (torch.profiler), and
    how busy the GPU is (kernel time over the timed step's wall time: well under 1 means launch-bound)."""
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.cuda else [])
        dev.sync()
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step_fn()
            dev.sync()
        # Kernels only: an aten op's device time repeats the time of the kernels it launched.
        events = [e for e in prof.key_averages()
                  if getattr(e, "device_type", None) == DeviceType.CUDA and e.self_device_time_total > 0]
        total = sum(e.self_device_time_total for e in events)
        events.sort(key=lambda e: e.self_device_time_total, reverse=True)
        busy_ms = total / 1000 / steps
        return {"kernel_ms_per_step": round(busy_ms, 3), "step_ms": round(step_s * 1000, 3),
                "gpu_busy_fraction": round(busy_ms / (step_s * 1000), 3) if step_s > 0 else None,
                "kernels": [{"name": e.key[:120], "ms_per_step": round(e.self_device_time_total / 1000 / steps, 3),
                             "share": round(e.self_device_time_total / total, 4), "calls_per_step": e.count / steps}
                            for e in events[:top]]}
    except Exception as error:  # noqa: BLE001 - diagnostics only
        return {"error": f"{type(error).__name__}: {error}"}


def add_mfu(results: list[dict], peak: float | None) -> None:
    for r in results:
        if not r.get("ok"):
            continue
        counted = next((o["flops_per_step"] for o in results if o.get("flops_per_step") and o["batch"] == r["batch"]),
                       None)
        flops = r.get("flops_per_step") or counted
        r["model_tflops_per_s"] = round(flops * r["steps_per_s"] / 1e12, 2) if flops else None
        r["mfu"] = round(flops * r["steps_per_s"] / (peak * 1e12), 4) if flops and peak else None


def bench_sampling(cfg: DenoiserConfig, args, dev: Device, compiled_ok: bool) -> dict:
    dev.reset_memory()
    parts = build_parts(cfg, dev, args.seed).eval()
    denoiser, null = parts.denoiser, parts.null_condition
    schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps).to(dev.device)
    generator = torch.Generator().manual_seed(args.seed + 1)
    conditions = l2_normalize(torch.randn(args.sample_batch, cfg.condition_dim, generator=generator)).to(dev.device)

    def run(guidance: float, steps: int):
        return sample(denoiser, schedule, conditions, guidance_scale=guidance, truncation_r=args.truncation,
                      num_steps=steps, seed=args.seed, batch_size=args.sample_batch, null_condition=null)

    rows_seen: list[int] = []
    hook = denoiser.register_forward_hook(lambda _m, inputs, _o: rows_seen.append(int(inputs[0].shape[0])))
    run(args.guidance, 1)
    hook.remove()
    out: dict = {"settings": {"images": args.sample_batch, "batch_size": args.sample_batch, "steps": args.sample_steps,
                              "guidance_scale": args.guidance, "truncation_r": args.truncation,
                              "autocast": "bf16 (the library's choice on CUDA)" if dev.cuda else "none (CPU)",
                              "weights": "random initialisation (throughput does not depend on them)"},
                 "cfg_batching": {"forward_rows_per_guided_step": rows_seen,
                                  "batched": rows_seen == [2 * args.sample_batch]},
                 "runs": []}

    def measure(label: str, guidance: float) -> None:
        dev.reset_memory()
        try:
            run(guidance, 2)  # warm-up (and compilation for the compiled blocks)
            seconds, _ = benchlib.timed(lambda: run(guidance, args.sample_steps), dev.sync)
            entry = {"setting": label, "ok": True, "guidance_scale": guidance, "seconds": round(seconds, 4),
                     "images_per_s": round(args.sample_batch / seconds, 3), "peak_memory_gib": dev.peak_gib()}
        except Exception as error:  # noqa: BLE001
            entry = {"setting": label, "ok": False, "error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc(limit=8)}
        out["runs"].append(entry)
        print(f"  sampling {label}: " + (f"{entry['images_per_s']:.3f} images/s" if entry["ok"] else entry["error"]),
              flush=True)

    measure(f"cfg s={args.guidance:g}, batched cond+null", args.guidance)
    measure("s=1 (no null pass)", 1.0)

    # One batched forward (2 x batch rows, bf16 autocast as in `sample`) on its own.
    rows = args.sample_batch
    xt = torch.randint(0, cfg.num_codes + 1, (2 * rows, cfg.num_tokens), generator=generator).to(dev.device)
    tt = torch.full((2 * rows,), cfg.num_steps // 2, dtype=torch.int64, device=dev.device)
    cc = torch.cat([conditions, null.normalized().detach().expand(rows, -1)])
    with torch.no_grad(), dev.autocast(dev.cuda):
        denoiser(xt, tt, cc)
        forward_s, _ = benchlib.timed(lambda: [denoiser(xt, tt, cc) for _ in range(5)], dev.sync)
    out["guided_forward_s"] = round(forward_s / 5, 5)

    torch.backends.cudnn.benchmark = True
    measure(f"cfg s={args.guidance:g}, batched, cudnn benchmark", args.guidance)
    if compiled_ok and not args.no_compile:
        try:
            compile_model(parts, "blocks", args.compile_mode)
            measure(f"cfg s={args.guidance:g}, batched, compiled blocks", args.guidance)
        except Exception as error:  # noqa: BLE001
            out["runs"].append({"setting": "compiled", "ok": False, "error": f"{type(error).__name__}: {error}"})
        torch._dynamo.reset()
    torch.backends.cudnn.benchmark = False

    by_label = {r["setting"]: r for r in out["runs"] if r.get("ok")}
    guided = by_label.get(f"cfg s={args.guidance:g}, batched cond+null")
    plain = by_label.get("s=1 (no null pass)")
    benchmarked = by_label.get(f"cfg s={args.guidance:g}, batched, cudnn benchmark")
    compiled = by_label.get(f"cfg s={args.guidance:g}, batched, compiled blocks")
    out["ratios"] = {
        "guidance_time_over_s1": benchlib.ratio(guided and guided["seconds"], plain and plain["seconds"]),
        "cudnn_benchmark_speedup": benchlib.ratio(guided and guided["seconds"], benchmarked and benchmarked["seconds"]),
        "compiled_speedup": benchlib.ratio(guided and guided["seconds"], compiled and compiled["seconds"]),
        "model_forward_share": benchlib.ratio(out["guided_forward_s"] * args.sample_steps, guided and guided["seconds"]),
    }
    parts = denoiser = None
    dev.reset_memory()
    return out


def compare_at_batch(results: list[dict], batch_size: int) -> dict:
    """Ratios against both float32 references at one batch size, and whether the 3x target is met there."""
    runs = [r for r in results if r.get("ok") and r["batch"] == batch_size]
    baseline = next((r for r in runs if r["config"] == BASELINE), None)
    reference = next((r for r in runs if r["config"] == DEFAULT_POLICY_BASELINE), None)
    for r in runs:
        if baseline:
            r["speedup_vs_fp32_eager"] = benchlib.ratio(r["steps_per_s"], baseline["steps_per_s"], 2)
            if r.get("peak_memory_gib") and baseline.get("peak_memory_gib"):
                r["memory_vs_fp32_eager"] = benchlib.ratio(r["peak_memory_gib"], baseline["peak_memory_gib"], 2)
        if reference:
            r["speedup_vs_fp32_tf32_convs"] = benchlib.ratio(r["steps_per_s"], reference["steps_per_s"], 2)
    best = max((r for r in runs if r["bf16"]), key=lambda r: r["steps_per_s"], default=None)
    return {"batch": batch_size, "best_config": best and best["config"],
            "best_mfu": best and best.get("mfu"),
            "speedup_vs_fp32_eager": best and best.get("speedup_vs_fp32_eager"),
            "speedup_vs_fp32_tf32_convs": best and best.get("speedup_vs_fp32_tf32_convs"),
            "target_3x_fp32_eager_met": (best["speedup_vs_fp32_eager"] >= 3.0) if best and baseline else None,
            "target_3x_over_tf32_convs_met": ((best["speedup_vs_fp32_tf32_convs"] >= 3.0)
                                              if best and reference else None)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    benchlib.check_out(args.out)
    threads = benchlib.set_threads(args.threads) if args.threads else torch.get_num_threads()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --quick for a CPU smoke run")
    dev = Device(device)
    cfg = model_config(args.quick)
    env = benchlib.environment(str(device))
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    with torch.device("meta"):  # sizes only, no memory or initialisation
        parameters = sum(p.numel() for p in DenoiserAndNullCondition(cfg).parameters())
    print(f"diffusion_gpu{' --quick' if args.quick else ''}: {cfg.num_layers}x{cfg.hidden_dim}, {cfg.num_heads} heads, "
          f"{cfg.num_tokens} tokens, K={cfg.num_codes}, {parameters / 1e6:.1f}M parameters on "
          f"{env.get('gpu', str(device))}; bf16 peak {peak} TFLOP/s ({peak_source})", flush=True)
    payload: dict = {"benchmark": "diffusion_gpu", "quick": args.quick, "complete": False, "environment": env,
                     "model": cfg.to_dict(), "parameters": parameters,
                     "peak_bf16_tflops": peak, "peak_source": peak_source,
                     "settings": {"train_batches": args.train_batches, "warmup_steps": args.warmup_steps,
                                  "train_steps": args.train_steps,
                                  "compile_scope": args.compile_scope, "compile_mode": args.compile_mode},
                     "training": [], "sampling": None}
    started = time.perf_counter()

    for batch_size in args.train_batches:
        for name in args.configs:
            print(f"training {name}, batch {batch_size} ...", flush=True)
            result = bench_training(name, CONFIGS[name], cfg, args, dev, batch_size)
            payload["training"].append(result)
            add_mfu(payload["training"], peak)
            if result.get("ok"):
                print(f"  {name}: {result['steps_per_s']:.3f} steps/s, {result['tokens_per_s']:,.0f} tokens/s, "
                      f"peak {result['peak_memory_gib']} GiB, first step {result['first_step_s']} s", flush=True)
            benchlib.write_json(args.out, payload)
    payload["by_batch"] = [compare_at_batch(payload["training"], b) for b in args.train_batches]

    if not args.no_sampling:
        print("sampling ...", flush=True)
        compiled_ok = any(r.get("ok") and r.get("compile") for r in payload["training"])
        payload["sampling"] = bench_sampling(cfg, args, dev, compiled_ok)

    payload["total_s"] = round(time.perf_counter() - started, 1)
    payload["complete"] = True
    benchlib.finish(env, threads)
    out = benchlib.write_json(args.out, payload)

    print()
    benchlib.print_table(payload["training"], ["config", "batch", "ok", "steps_per_s", "tokens_per_s", "model_tflops_per_s",
                                               "mfu", "speedup_vs_fp32_eager", "speedup_vs_fp32_tf32_convs", "peak_memory_gib",
                                               "attention_kernel"])
    if payload["sampling"]:
        print()
        benchlib.print_table(payload["sampling"]["runs"], ["setting", "ok", "seconds", "images_per_s", "peak_memory_gib"])
        print(f"sampling ratios: {payload['sampling']['ratios']}; CFG batched: {payload['sampling']['cfg_batching']}")
    print()
    benchlib.print_table(payload["by_batch"], ["batch", "best_config", "best_mfu", "speedup_vs_fp32_eager",
                                               "speedup_vs_fp32_tf32_convs", "target_3x_fp32_eager_met",
                                               "target_3x_over_tf32_convs_met"])
    print(f"total {payload['total_s']} s")
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
