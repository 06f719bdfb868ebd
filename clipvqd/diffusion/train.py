"""One trainer for every CLIP-VQDiffusion variant (DESIGN §4, §7).

Modes differ only in the condition each training sample gets:
  language_free  normalize(e/|e| + alpha eps/|eps|) from the CLIP *image* embedding e (the method);
  cfg_finetune   the same, replaced by the learnable null vector with probability p (0.1); starts
                 from pretrained weights and normally runs at a lower learning rate;
  paired         the normalised CLIP *text* embedding of the image's real caption (upper-bound control),
                 replaced by the null vector with probability p like cfg_finetune, so that the control
                 is sampled with the same guidance scale as the method it bounds;
  unconditional  always the null vector (lower-bound control).

Reproducibility: every random draw comes from a generator named by (seed, purpose, step, sample), see
`seeding.py`. The model, EMA, optimiser, LR schedule and timestep sampler are snapshotted in `work_dir`
(not a workflow output, so it survives a failed job), and a rerun continues exactly where the last
snapshot stopped. Under torchrun the global batch is split across processes; because noise is drawn
per sample, a 2-process run sees the same noise as a 1-process run of the same global batch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

from clipvqd.checkpoint import load_meta, load_weights, save_weights
from clipvqd.config_blocks import from_mapping
from clipvqd.hashing import sha256_file
from clipvqd.resume import CorruptResumeState, ResumeState, settings_fingerprint, tensor_sha256, write_curve_csv

from .condition import NullCondition, draw_null_mask, l2_normalize, noisy_image_condition, substitute_null
from .loss import LOSS_OVER_STEPS, TimestepSampler, diffusion_loss
from .mask_and_replace import MaskAndReplace
from .seeding import derive_seed, generator_for
from .transformer import Denoiser, DenoiserConfig

WEIGHTS_FORMAT = "clipvqd-denoiser/1"

# Names of the independent random streams (the first element after the seed).
_STREAM_INIT, _STREAM_DATA_ORDER, _STREAM_SAMPLE_NOISE = 1, 2, 3


class TrainingMode(str, Enum):
    LANGUAGE_FREE = "language_free"
    CFG_FINETUNE = "cfg_finetune"
    PAIRED = "paired"
    UNCONDITIONAL = "unconditional"

    @classmethod
    def parse(cls, value: "TrainingMode | str") -> "TrainingMode":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown training mode '{value}'; expected one of {[m.value for m in cls]}") from None


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """Optimisation settings. Defaults: language-free pretraining of the world's CPU-sized model."""

    steps: int = 1600
    """Optimiser steps in total (a resumed run stops at the same total). World default: about 9
    minutes on one CPU thread for the default model on 16x16 tokens (800 steps left the paired
    control at 0.56 attribute accuracy against 0.42 for the unconditional one)."""
    batch_size: int = 16
    """Global batch: token maps per step summed over all processes (must divide evenly among them)."""
    learning_rate: float = 1e-3
    """Peak learning rate reached after warm-up (paper pretraining: 4.5e-4; fine-tuning: 4e-6). The
    world default is higher because the small model trains for minutes, not days."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to learning_rate (paper pretraining: 2000; fine-tuning: 30000)."""
    final_lr_fraction: float = 0.1
    """After warm-up, cosine decay to learning_rate * this by the last step; 1.0 keeps it constant.
    (The paper reduces on a validation plateau, which a fixed-budget offline run cannot reproduce.)"""
    adam_betas: tuple[float, float] = (0.9, 0.96)
    """AdamW betas (paper)."""
    weight_decay: float = 4.5e-2
    """AdamW decoupled weight decay (paper), applied to every trained parameter as in the release."""
    grad_clip_norm: float = 0.5
    """Global gradient-norm clip, used only during the first grad_clip_steps steps (paper: 0.5)."""
    grad_clip_steps: int = 5000
    """Steps from the start during which gradients are clipped (paper: 5000)."""
    ema_decay: float = 0.99
    """Decay of the exponential moving average of the weights; the EMA weights are what is saved."""
    ema_update_interval: int = 1
    """Steps between EMA updates (paper: 25 with decay 0.99, an averaging horizon of ~2500 steps). The
    world default updates every step (horizon ~100 steps): with every 5th step, the saved weights of a
    1200-step run lagged so far behind that the rarer attributes were not followed at all."""
    aux_loss_weight: float = 5e-4
    """lambda of the auxiliary -log p(x0 | x_t) term, scaled by (2 - t/T) (paper: 5e-4)."""
    importance_min_samples: int = 10
    """Timesteps are uniform until every step index has this many loss samples (paper: 10)."""
    importance_history_decay: float = 0.9
    """Decay of each step's moving average of L_t^2 that sets the importance distribution."""
    loss_over_steps: str = "mean"
    """"mean": the objective estimates the average of the per-step bound terms over the T steps (weight
    1/(p(t) T)); "sum": their sum, T times as large (weight 1/p(t)), as the official code optimises, so
    that grad_clip_norm acts on the official scale (clipvqd.diffusion.loss, docs/deviations.md)."""
    condition_noise_alpha: float = 0.5
    """alpha of the language-free condition noise (FFHQ 0.5, COCO 0.25; ablation 0.25-0.9). Used by
    language_free and cfg_finetune."""
    null_condition_probability: float = 0.1
    """cfg_finetune and paired: probability that a sample's condition is replaced by the null vector
    (paper 0.1)."""
    snapshot_interval: int = 200
    """Steps between resume snapshots in work_dir."""
    log_interval: int = 10
    """Steps averaged into one row of the loss-curve CSV."""

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "final_lr_fraction": 0.0 <= self.final_lr_fraction <= 1.0,
            "adam_betas": len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
            "weight_decay": self.weight_decay >= 0,
            "grad_clip_norm": self.grad_clip_norm > 0,
            "grad_clip_steps": self.grad_clip_steps >= 0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "ema_update_interval": self.ema_update_interval >= 1,
            "aux_loss_weight": self.aux_loss_weight >= 0,
            "importance_min_samples": self.importance_min_samples >= 1,
            "importance_history_decay": 0.0 <= self.importance_history_decay < 1.0,
            "loss_over_steps": self.loss_over_steps in LOSS_OVER_STEPS,
            "condition_noise_alpha": self.condition_noise_alpha >= 0,
            "null_condition_probability": 0.0 <= self.null_condition_probability <= 1.0,
            "snapshot_interval": self.snapshot_interval >= 1,
            "log_interval": self.log_interval >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DiffusionTrainConfig: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    @classmethod
    def world_finetune(cls) -> "DiffusionTrainConfig":
        """CFG fine-tuning of the world model: short, at a tenth of the pretraining learning rate."""
        return cls(steps=300, learning_rate=1e-4, warmup_steps=20, final_lr_fraction=1.0, grad_clip_steps=0)

    @classmethod
    def paper_pretrain(cls) -> "DiffusionTrainConfig":
        """The released FFHQ pretraining solver (batch 16 per GPU; steps are a budget choice)."""
        return cls(steps=300_000, batch_size=16, learning_rate=4.5e-4, warmup_steps=2000, final_lr_fraction=1.0,
                   ema_update_interval=25, snapshot_interval=2000, log_interval=100)

    @classmethod
    def paper_finetune(cls) -> "DiffusionTrainConfig":
        """The released FFHQ CFG fine-tuning solver (warm-up to 4e-6 over 30k steps)."""
        return cls(steps=100_000, batch_size=8, learning_rate=4e-6, warmup_steps=30_000, final_lr_fraction=1.0,
                   ema_update_interval=25, snapshot_interval=2000, log_interval=100)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["adam_betas"] = list(self.adam_betas)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "DiffusionTrainConfig":
        return from_mapping(cls, values, source)


class DenoiserAndNullCondition(nn.Module):
    """What is trained and saved: the denoiser and the learnable null vector, in one state dict
    (`denoiser.*`, `null_condition.vector`). The forward substitutes the null vector where asked, so
    data-parallel training sees one module whose every trained parameter is in the graph."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.denoiser = Denoiser(config)
        self.null_condition = NullCondition(config.condition_dim)

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor, use_null: Tensor) -> Tensor:
        condition = substitute_null(condition, self.null_condition.normalized(), use_null)
        return self.denoiser(x_t, t, condition)


class ExponentialMovingAverage:
    """EMA of a module's floating-point state (integer buffers are copied)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {key: value.detach().clone() for key, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return {key: value.clone() for key, value in self.shadow.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the model's parameters")
        for key, value in state.items():
            self.shadow[key].copy_(value)


@dataclass
class _Distributed:
    rank: int
    world_size: int
    device: torch.device
    created_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str | torch.device) -> "_Distributed":
        device = torch.device(device)
        if dist.is_available() and dist.is_initialized():
            created = False
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://")
            created = True
        else:
            return cls(0, 1, device, False)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return cls(rank, world_size, device, created)

    def gather_rows(self, rows: Tensor) -> Tensor:
        """Concatenate each process's `(b, k)` rows in rank order (identical result on every rank)."""
        if self.world_size == 1:
            return rows
        parts = [torch.empty_like(rows) for _ in range(self.world_size)]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _learning_rate_factor(step: int, config: DiffusionTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decay_steps = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    floor = config.final_lr_fraction
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# Loss-curve columns, each averaged over the log_interval steps ending at `step`: loss (the optimised
# objective, nats per token); vlb_per_token and x0_nll_per_token (the bound term and -log p(x0 | x_t),
# estimated for t uniform, nats per token); learning_rate (of the last step); grad_norm (before
# clipping); uniform_timesteps (1 while t is still drawn uniformly); elapsed_s (training wall time,
# summed over resumed runs).
_CURVE_FIELDS = ["step", "loss", "vlb_per_token", "x0_nll_per_token", "learning_rate", "grad_norm",
                 "uniform_timesteps", "elapsed_s"]


def _validate_inputs(tokens: Tensor, conditions: Tensor | None, model_cfg: DenoiserConfig, mode: TrainingMode) -> None:
    if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (model_cfg.grid_height, model_cfg.grid_width):
        raise ValueError(
            f"tokens must be (N, {model_cfg.grid_height}, {model_cfg.grid_width}) token maps, got {tuple(tokens.shape)}"
        )
    if tokens.dtype != torch.int64:
        raise ValueError(f"tokens must be int64, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= model_cfg.num_codes):
        raise ValueError(
            f"token values must lie in [0, num_codes={model_cfg.num_codes}), found "
            f"[{int(tokens.min())}, {int(tokens.max())}]"
        )
    if mode is TrainingMode.UNCONDITIONAL:
        return
    if conditions is None:
        raise ValueError(f"mode '{mode.value}' needs condition embeddings (got None)")
    if conditions.shape != (tokens.shape[0], model_cfg.condition_dim):
        raise ValueError(
            f"conditions must be ({tokens.shape[0]}, {model_cfg.condition_dim}) to match the token maps and "
            f"model condition_dim, got {tuple(conditions.shape)}"
        )


def _build_model(model_cfg: DenoiserConfig, seed: int) -> DenoiserAndNullCondition:
    # Initialise from the run's seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, _STREAM_INIT))
        return DenoiserAndNullCondition(model_cfg)


def _draw_training_batch(
    x0: Tensor,
    embeddings: Tensor | None,
    global_positions: list[int],
    step: int,
    seed: int,
    mode: TrainingMode,
    schedule: MaskAndReplace,
    timestep_sampler: TimestepSampler,
    train_cfg: DiffusionTrainConfig,
    condition_dim: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-sample noise on CPU, each sample from its own (seed, step, position-in-global-batch) stream."""
    timesteps, weights, noised, condition_rows, null_flags = [], [], [], [], []
    for row, position in enumerate(global_positions):
        generator = generator_for(seed, _STREAM_SAMPLE_NOISE, step, position)
        t, weight = timestep_sampler.sample(1, generator)
        noised.append(schedule.q_sample(x0[row : row + 1], t, generator))
        if mode in (TrainingMode.LANGUAGE_FREE, TrainingMode.CFG_FINETUNE):
            condition = noisy_image_condition(embeddings[row : row + 1], train_cfg.condition_noise_alpha, generator)
        elif mode is TrainingMode.PAIRED:
            condition = l2_normalize(embeddings[row : row + 1])
        else:
            condition = torch.zeros(1, condition_dim)
        if mode in (TrainingMode.CFG_FINETUNE, TrainingMode.PAIRED):
            use_null = draw_null_mask(1, train_cfg.null_condition_probability, generator)
        else:
            use_null = torch.full((1,), mode is TrainingMode.UNCONDITIONAL)
        timesteps.append(t)
        weights.append(weight)
        condition_rows.append(condition.float())
        null_flags.append(use_null)
    return (torch.cat(noised), torch.cat(timesteps), torch.cat(weights), torch.cat(condition_rows),
            torch.cat(null_flags))


def train_diffusion(
    tokens: Tensor,
    conditions: Tensor | None,
    model_cfg: DenoiserConfig,
    train_cfg: DiffusionTrainConfig,
    mode: TrainingMode | str,
    work_dir: str | Path,
    out_weights: str | Path,
    curve_csv: str | Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    init_weights: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume training) a denoiser; write EMA weights to `out_weights` (+ JSON sidecar) and
    the loss curve to `curve_csv`. Returns the sidecar metadata.

    tokens: `(N, H, W)` int64 code maps in [0, K). conditions: `(N, D)` CLIP embeddings (image
    embeddings for language_free / cfg_finetune, caption text embeddings for paired; ignored and may
    be None for unconditional). init_weights: a checkpoint of this trainer to start from (required for
    cfg_finetune). Under torchrun, every process calls this with the same arguments; only rank 0 writes.
    """
    mode = TrainingMode.parse(mode)
    _validate_inputs(tokens, conditions, model_cfg, mode)
    if mode is TrainingMode.CFG_FINETUNE and init_weights is None:
        raise ValueError("mode 'cfg_finetune' starts from pretrained weights: pass init_weights")
    num_maps = tokens.shape[0]
    if num_maps < train_cfg.batch_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} exceeds the {num_maps} training token maps")
    work_dir, out_weights, curve_csv = Path(work_dir), Path(out_weights), Path(curve_csv)

    context = _Distributed.from_environment(device)
    try:
        return _train(tokens, conditions, model_cfg, train_cfg, mode, work_dir, out_weights, curve_csv,
                      context, seed, init_weights, progress)
    finally:
        if context.created_group:
            dist.destroy_process_group()


def _train(
    tokens: Tensor,
    conditions: Tensor | None,
    model_cfg: DenoiserConfig,
    train_cfg: DiffusionTrainConfig,
    mode: TrainingMode,
    work_dir: Path,
    out_weights: Path,
    curve_csv: Path,
    context: _Distributed,
    seed: int,
    init_weights: str | Path | None,
    progress: bool,
) -> dict[str, Any]:
    device, world_size = context.device, context.world_size
    if train_cfg.batch_size % world_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} is not divisible by the {world_size} processes")
    local_batch = train_cfg.batch_size // world_size
    token_rows = tokens.reshape(tokens.shape[0], -1).cpu()
    embeddings = None if mode is TrainingMode.UNCONDITIONAL else conditions.float().cpu()

    parts = _build_model(model_cfg, seed)
    init_meta = None
    if init_weights is not None:
        init_meta = load_meta(init_weights)
        if init_meta.get("model_config") != model_cfg.to_dict():
            raise ValueError(
                f"init_weights {init_weights} were trained with model_config {init_meta.get('model_config')}, "
                f"which differs from this run's {model_cfg.to_dict()}"
            )
        load_weights(init_weights, parts)
    # The null vector is trained only where it is used; frozen, it stays out of the optimiser and DDP.
    parts.null_condition.vector.requires_grad_(
        mode in (TrainingMode.CFG_FINETUNE, TrainingMode.PAIRED, TrainingMode.UNCONDITIONAL))
    parts.to(device)
    trained = [p for p in parts.parameters() if p.requires_grad]

    schedule = MaskAndReplace(model_cfg.num_codes, model_cfg.num_steps).to(device)
    ema = ExponentialMovingAverage(parts, train_cfg.ema_decay)
    # Fused AdamW on CUDA: one kernel for all parameters (benchmarks/diffusion_gpu.py's bf16 configurations).
    optimizer = torch.optim.AdamW(trained, lr=train_cfg.learning_rate, betas=tuple(train_cfg.adam_betas),
                                  weight_decay=train_cfg.weight_decay, fused=True if device.type == "cuda" else None)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _learning_rate_factor(s, train_cfg))
    timestep_sampler = TimestepSampler(model_cfg.num_steps, train_cfg.importance_min_samples,
                                       train_cfg.importance_history_decay)

    fingerprint = settings_fingerprint({
        "model": model_cfg.to_dict(),
        "train": {k: v for k, v in train_cfg.to_dict().items() if k not in ("snapshot_interval", "log_interval")},
        "mode": mode.value,
        "seed": seed,
        "tokens": tensor_sha256(tokens),
        "conditions": tensor_sha256(embeddings),
        "init_weights": None if init_weights is None else sha256_file(init_weights),
    })
    resume = ResumeState(work_dir)
    resumable = {"model": parts, "ema": ema, "optimizer": optimizer, "lr_schedule": lr_schedule,
                 "timestep_sampler": timestep_sampler}
    # Snakemake reruns a training job when its data or settings change; the snapshots of the earlier run
    # are then useless (and must never be mixed in), so that run starts over instead of failing.
    stale = resume.newest_fingerprint() not in (None, fingerprint)
    # Under torchrun every rank must read the snapshot before rank 0 may delete it; otherwise a late rank
    # finds no snapshot, skips the barrier below, and the ranks' collectives no longer line up (a hang).
    context.barrier()
    if stale:
        if context.is_main:
            print(f"diffusion ({mode.value}): the resume state in {work_dir} was written by a run with other data "
                  f"or settings; starting over", flush=True)
            resume.clear()
        context.barrier()
    try:
        start_step, extra = resume.restore(resumable)
    except (RuntimeError, KeyError, ValueError) as error:  # e.g. tensors shaped for another model
        if isinstance(error, CorruptResumeState):
            raise
        raise ValueError(f"resume state in {work_dir} does not fit this model ({error}); delete that folder "
                         f"to start over") from error
    if start_step and context.is_main:
        print(f"diffusion ({mode.value}): resuming from the snapshot at step {start_step} of {train_cfg.steps} "
              f"in {work_dir}", flush=True)
    curve: list[dict[str, Any]] = list(extra.get("curve", []))
    elapsed_before = float(extra.get("elapsed_s", 0.0))
    started = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def snapshot(step: int) -> None:
        if context.is_main:
            resume.save(step, resumable, {"fingerprint": fingerprint, "curve": curve, "elapsed_s": elapsed()})
            write_curve_csv(curve_csv, curve, _CURVE_FIELDS)
        context.barrier()

    network: nn.Module = parts
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(parts, device_ids=[device.index] if device.type == "cuda" else None)
    parts.train()

    bar = None
    if progress and context.is_main:
        from tqdm import tqdm

        bar = tqdm(total=train_cfg.steps, initial=start_step, desc=f"diffusion {mode.value}", unit="step")

    steps_per_epoch = token_rows.shape[0] // train_cfg.batch_size
    order_epoch, order = -1, None
    window: list[Tensor] = []
    window_grad_norms: list[float] = []
    for step in range(start_step, train_cfg.steps):
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(token_rows.shape[0], generator=generator_for(seed, _STREAM_DATA_ORDER, epoch))
            order_epoch = epoch
        positions = list(range(context.rank * local_batch, (context.rank + 1) * local_batch))
        indices = order[offset * train_cfg.batch_size :][positions]
        x0 = token_rows[indices]
        xt, t, weight, condition, use_null = _draw_training_batch(
            x0, None if embeddings is None else embeddings[indices], positions, step, seed, mode, schedule,
            timestep_sampler, train_cfg, model_cfg.condition_dim)
        x0, xt, t, weight = x0.to(device), xt.to(device), t.to(device), weight.to(device)
        condition, use_null = condition.to(device), use_null.to(device)

        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        with autocast:
            logits = network(xt, t, condition, use_null)
        terms = diffusion_loss(schedule, logits, x0, xt, t, weight, train_cfg.aux_loss_weight,
                               loss_over_steps=train_cfg.loss_over_steps)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        clip = train_cfg.grad_clip_norm if step < train_cfg.grad_clip_steps else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trained, clip))
        learning_rate = optimizer.param_groups[0]["lr"]
        optimizer.step()
        lr_schedule.step()

        # Every process records the same gathered samples, so the importance sampler stays identical.
        gathered = context.gather_rows(torch.stack(
            [t.double(), terms.vlb.double(), terms.x0_nll.double(), terms.weighted.double(), weight.double()],
            dim=1)).cpu()
        uniform = timestep_sampler.is_uniform
        timestep_sampler.update(gathered[:, 0].long(), gathered[:, 1])
        window.append(gathered)
        window_grad_norms.append(grad_norm)

        if (step + 1) % train_cfg.ema_update_interval == 0:
            ema.update(parts)
        done = step + 1
        if done % train_cfg.log_interval == 0 or done == train_cfg.steps:
            rows = torch.cat(window)
            # Importance weights make these unbiased estimates of the averages over uniform t.
            importance = rows[:, 4]
            per_token = 1.0 / model_cfg.num_tokens
            curve.append({
                "step": done,
                "loss": round(float(rows[:, 3].mean()) * per_token, 6),
                "vlb_per_token": round(float((importance * rows[:, 1]).mean()) * per_token, 6),
                "x0_nll_per_token": round(float((importance * rows[:, 2]).mean()) * per_token, 6),
                "learning_rate": learning_rate,
                "grad_norm": round(sum(window_grad_norms) / len(window_grad_norms), 6),
                "uniform_timesteps": int(uniform),
                "elapsed_s": round(elapsed(), 3),
            })
            window, window_grad_norms = [], []
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(terms.loss):.4f}")
        if done % train_cfg.snapshot_interval == 0 and done != train_cfg.steps:
            snapshot(done)
    if bar is not None:
        bar.close()

    final_step = max(start_step, train_cfg.steps)
    meta = {
        "format": WEIGHTS_FORMAT,
        "weights": "ema",
        "mode": mode.value,
        "step": final_step,
        "seed": seed,
        "world_size": world_size,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "num_training_maps": int(tokens.shape[0]),
        "init_weights": None if init_weights is None else str(init_weights),
        "init_weights_meta": None if init_meta is None else {k: init_meta.get(k) for k in ("mode", "step", "seed")},
        "fingerprint": fingerprint,
        "elapsed_s": round(elapsed(), 3),
    }
    if start_step < train_cfg.steps:
        snapshot(final_step)
    if context.is_main:
        save_weights(out_weights, ema.state_dict(), meta)
        write_curve_csv(curve_csv, curve, _CURVE_FIELDS)
    context.barrier()
    return meta


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> tuple[Denoiser, NullCondition, dict[str, Any]]:
    """Load a trainer checkpoint: the (EMA) denoiser in eval mode, its null condition, and the metadata."""
    meta = load_meta(path)
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise ValueError(f"{path} is not a denoiser checkpoint written by clipvqd.diffusion.train "
                         f"(format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r})")
    model_cfg = DenoiserConfig.from_dict(meta["model_config"], source=f"{path} sidecar")
    parts = DenoiserAndNullCondition(model_cfg)
    load_weights(path, parts)
    parts.to(device).eval()
    return parts.denoiser, parts.null_condition, meta
