"""One trainer for every CLIP-VQDiffusion variant (docs/design.md §4, §7).

Modes differ only in the condition each training sample gets:
  language_free        normalize(e/|e| + alpha eps/|eps|) from the CLIP *image* embedding e (the method);
  cfg_finetune         the same, replaced by the learnable null vector with probability p (0.1); starts
                       from pretrained weights and normally runs at a lower learning rate;
  paired               the normalised CLIP *text* embedding of the image's real caption (upper-bound
                       control), the counterpart of language_free;
  paired_cfg_finetune  the same, replaced by the null vector with probability p: the counterpart of
                       cfg_finetune, so that the control runs the method's whole chain (same stages, steps
                       and guidance) and differs from it only in its condition;
  unconditional        always the null vector (lower-bound control); run as the same two stages with
                       init_weights for the second, it gets the same total steps.

Reproducibility: every random draw comes from a generator named by (seed, purpose, step, sample), see
`clipvqd.training.seeding`. The model, EMA, optimiser, LR schedule and timestep sampler are snapshotted
in `work_dir` (not a workflow output, so it survives a failed job) by `clipvqd.training.TrainingRun`, and
a rerun continues exactly where the last snapshot stopped. Under torchrun the global batch is split
across processes; because noise is drawn per sample, a 2-process run sees the same noise as a 1-process
run of the same global batch. The settings are in `train_config.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from clipvqd.checkpoint import WEIGHTS_HASH_KEY, build_with_weights, load_meta, save_weights
from clipvqd.training import (Distributed, ExponentialMovingAverage, TrainingRun, generator_for, seeded_global_rng,
                              tensor_sha256, warmup_cosine, without_bookkeeping)

from .condition import NullCondition, condition_from_noise, l2_normalize, substitute_null
from .loss import TimestepSampler, diffusion_loss
from .mask_and_replace import MaskAndReplace
from .train_config import DiffusionTrainConfig, TrainingMode
from .transformer import Denoiser, DenoiserConfig

__all__ = ["DenoiserAndNullCondition", "DiffusionTrainConfig", "TrainingMode", "WEIGHTS_FORMAT", "load_denoiser",
           "train_diffusion"]

WEIGHTS_FORMAT = "clipvqd-denoiser/1"

# Names of the independent random streams (the first element after the seed).
_STREAM_INIT, _STREAM_DATA_ORDER, _STREAM_SAMPLE_NOISE = 1, 2, 3


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


# Loss-curve columns, each averaged over the log_every steps ending at `step`: loss (the optimised
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
    with seeded_global_rng(seed, _STREAM_INIT):
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
    """Per-sample noise on CPU, each sample from its own (seed, step, position-in-global-batch) stream.

    Each sample's generator makes the same draws in the same order as a one-sample batch would (its step
    index, the uniforms and replacement codes of `MaskAndReplace.q_sample`, the condition noise of
    `noisy_image_condition`, the null-condition coin of `draw_null_mask`); only the raw draws are made per
    sample, the arithmetic on them runs once on the whole batch. The result is bit-identical to drawing
    and transforming each sample on its own (benchmarks/train_steps_cpu.py keeps that form and checks it)."""
    batch, tokens = x0.shape
    noisy = mode in (TrainingMode.LANGUAGE_FREE, TrainingMode.CFG_FINETUNE)
    dropout = mode.drops_condition
    probabilities = timestep_sampler.probabilities()
    timesteps = torch.empty(batch, dtype=torch.int64)
    uniform = torch.empty(batch, tokens, dtype=torch.float64)
    random_codes = torch.empty(batch, tokens, dtype=torch.int64)
    noise = torch.empty(batch, condition_dim) if noisy else None
    coins = torch.empty(batch) if dropout else None
    for row, position in enumerate(global_positions):
        generator = generator_for(seed, _STREAM_SAMPLE_NOISE, step, position)
        torch.multinomial(probabilities, 1, replacement=True, generator=generator, out=timesteps[row : row + 1])
        torch.rand((1, tokens), generator=generator, dtype=torch.float64, out=uniform[row : row + 1])
        torch.randint(schedule.num_codes, (1, tokens), generator=generator, out=random_codes[row : row + 1])
        if noisy:
            torch.randn((1, condition_dim), generator=generator, out=noise[row : row + 1])
        if dropout:
            torch.rand(1, generator=generator, out=coins[row : row + 1])
    weights = timestep_sampler.importance_weights(probabilities, timesteps)
    noised = schedule.q_sample_from_draws(x0, timesteps, uniform, random_codes)
    if noisy:
        conditions = condition_from_noise(embeddings, train_cfg.condition_noise_alpha, noise)
    elif mode.uses_text_condition:
        conditions = l2_normalize(embeddings).float()
    else:
        conditions = torch.zeros(batch, condition_dim)
    if dropout:
        use_null = coins < train_cfg.null_condition_probability
    else:
        use_null = torch.full((batch,), mode is TrainingMode.UNCONDITIONAL)
    return noised, timesteps, weights, conditions, use_null


def build_optimizer(trained: list[Tensor], train_cfg: DiffusionTrainConfig, device: torch.device) -> torch.optim.AdamW:
    """The trainer's AdamW. Fused on CUDA: one kernel for all parameters (benchmarks/diffusion_gpu.py's bf16
    configurations). On CPU the multi-tensor (foreach) form: per tensor the same arithmetic as PyTorch's CPU
    default, so the weights are bit-identical (benchmarks/train_steps_cpu.py checks it), in a few calls instead
    of about ten per tensor."""
    return torch.optim.AdamW(trained, lr=train_cfg.learning_rate, betas=tuple(train_cfg.adam_betas),
                             weight_decay=train_cfg.weight_decay,
                             **({"fused": True} if device.type == "cuda" else {"foreach": True}))


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
    milestones: Mapping[int, str | Path] | None = None,
    final_snapshot: bool = True,
) -> dict[str, Any]:
    """Train (or resume training) a denoiser; write EMA weights to `out_weights` (+ JSON sidecar) and
    the loss curve to `curve_csv`. Returns the sidecar metadata. milestones: {step: path} also gets the EMA
    weights after those steps (TrainingRun milestones: the quality-versus-compute curve). final_snapshot: False
    skips the resume snapshot of the last step (TrainingRun), 7.7 GB for the paper's 24x512 denoiser, where the
    caller removes the work folder once the weights exist.

    tokens: `(N, H, W)` int64 code maps in [0, K). conditions: `(N, D)` CLIP embeddings (image
    embeddings for language_free / cfg_finetune, caption text embeddings for the paired modes; ignored
    and may be None for unconditional). init_weights: a checkpoint of this trainer to start from (required
    for the two CFG fine-tunes). Under torchrun, every process calls this with the same arguments; only rank 0 writes.
    """
    mode = TrainingMode.parse(mode)
    _validate_inputs(tokens, conditions, model_cfg, mode)
    if mode.needs_init and init_weights is None:
        raise ValueError(f"mode '{mode.value}' starts from pretrained weights: pass init_weights")
    num_maps = tokens.shape[0]
    if num_maps < train_cfg.batch_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} exceeds the {num_maps} training token maps")
    work_dir, out_weights, curve_csv = Path(work_dir), Path(out_weights), Path(curve_csv)

    context = Distributed.from_environment(device)
    try:
        return _train(tokens, conditions, model_cfg, train_cfg, mode, work_dir, out_weights, curve_csv,
                      context, seed, init_weights, progress, milestones, final_snapshot)
    finally:
        context.close()


class StepOutcome(NamedTuple):
    """What one optimiser step of the denoiser leaves for the loss curve."""

    terms: Any  # the loss terms (`loss.LossTerms`) of this process's rows
    gathered: Tensor  # (rows of every process, 5) on the CPU: t, vlb, x0 NLL, weighted loss, importance weight
    grad_norm: float  # the gradient norm before clipping
    learning_rate: float  # the learning rate the step used


def optimisation_step(network: nn.Module, parts: nn.Module, batch: Sequence[Tensor], step: int, *,
                      schedule: MaskAndReplace, optimizer: torch.optim.Optimizer,
                      lr_schedule: torch.optim.lr_scheduler.LRScheduler, trained: Sequence[Tensor],
                      timestep_sampler: TimestepSampler, ema: ExponentialMovingAverage,
                      train_cfg: DiffusionTrainConfig,
                      gather_rows: Callable[[Tensor], Tensor] = lambda rows: rows) -> StepOutcome:
    """One optimiser step on a drawn batch (x0, xt, t, weight, condition, use_null; `_draw_training_batch`):
    the loss (bf16 autocast on CUDA), clipped gradients (`grad_clip_norm` for the first `grad_clip_steps`
    steps), AdamW and the learning-rate schedule, the importance sampler's update from every process's rows
    (`gather_rows`: the identity in one process) and the EMA every `ema_update_every` steps. `network` is
    `parts` or its DDP wrapper. The trainer and the CPU benchmarks (benchmarks/train_steps_cpu.py,
    benchmarks/trainer_steps.py) share it, so what they time is the step that trains."""
    x0, xt, t, weight, condition, use_null = batch
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x0.device.type == "cuda"):
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
    gathered = gather_rows(torch.stack(
        [t.double(), terms.vlb.double(), terms.x0_nll.double(), terms.weighted.double(), weight.double()],
        dim=1)).cpu()
    timestep_sampler.update(gathered[:, 0].long(), gathered[:, 1])
    if (step + 1) % train_cfg.ema_update_every == 0:
        ema.update(parts)
    return StepOutcome(terms, gathered, grad_norm, learning_rate)


def _train(
    tokens: Tensor,
    conditions: Tensor | None,
    model_cfg: DenoiserConfig,
    train_cfg: DiffusionTrainConfig,
    mode: TrainingMode,
    work_dir: Path,
    out_weights: Path,
    curve_csv: Path,
    context: Distributed,
    seed: int,
    init_weights: str | Path | None,
    progress: bool,
    milestones: Mapping[int, str | Path] | None = None,
    final_snapshot: bool = True,
) -> dict[str, Any]:
    device, world_size = context.device, context.world_size
    if train_cfg.batch_size % world_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} is not divisible by the {world_size} processes")
    local_batch = train_cfg.batch_size // world_size
    token_rows = tokens.reshape(tokens.shape[0], -1).cpu()
    embeddings = None if mode is TrainingMode.UNCONDITIONAL else conditions.float().cpu()

    init_meta = None
    if init_weights is None:
        parts = _build_model(model_cfg, seed)
    else:
        init_meta = load_meta(init_weights)
        if init_meta.get("model_config") != model_cfg.to_dict():
            raise ValueError(
                f"init_weights {init_weights} were trained with model_config {init_meta.get('model_config')}, "
                f"which differs from this run's {model_cfg.to_dict()}"
            )
        # Every parameter comes from init_weights: the seeded random initialisation would be overwritten.
        parts, loaded = build_with_weights(init_weights, lambda: DenoiserAndNullCondition(model_cfg))
        init_sha256 = loaded[WEIGHTS_HASH_KEY]  # the hash of the bytes loaded: the file is not read twice
    # The null vector is trained only where it is used; frozen, it stays out of the optimiser and DDP.
    parts.null_condition.vector.requires_grad_(mode.drops_condition or mode is TrainingMode.UNCONDITIONAL)
    parts.to(device)
    trained = [p for p in parts.parameters() if p.requires_grad]

    schedule = MaskAndReplace(model_cfg.num_codes, model_cfg.num_steps).to(device)
    ema = ExponentialMovingAverage(parts, train_cfg.ema_decay)
    optimizer = build_optimizer(trained, train_cfg, device)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(
        step, train_cfg.steps, train_cfg.warmup_steps, train_cfg.final_lr_fraction))
    timestep_sampler = TimestepSampler(model_cfg.num_steps, train_cfg.importance_min_samples,
                                       train_cfg.importance_history_decay)

    run = TrainingRun(
        f"diffusion ({mode.value})", work_dir=work_dir, curve_csv=curve_csv, curve_fields=_CURVE_FIELDS,
        total_steps=train_cfg.steps, snapshot_every=train_cfg.snapshot_every, distributed=context, progress=progress,
        settings={
            "model": model_cfg.to_dict(),
            "train": without_bookkeeping(train_cfg.to_dict()),
            "mode": mode.value,
            "seed": seed,
            "tokens": tensor_sha256(tokens),
            "conditions": tensor_sha256(embeddings),
            "init_weights": None if init_weights is None else init_sha256,
        },
        state={"model": parts, "ema": ema, "optimizer": optimizer, "lr_schedule": lr_schedule,
               "timestep_sampler": timestep_sampler},
        milestones=milestones, final_snapshot=final_snapshot,
        milestone_save=lambda path, record: save_weights(path, ema.state_dict(), describe(record["step"]) | record))

    def describe(step: int) -> dict[str, Any]:
        """The sidecar of the weights after `step` steps."""
        return {
            "format": WEIGHTS_FORMAT,
            "weights": "ema",
            "mode": mode.value,
            "step": step,
            "seed": seed,
            "world_size": world_size,
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
            "num_training_maps": int(tokens.shape[0]),
            "init_weights": None if init_weights is None else str(init_weights),
            "init_weights_meta": None if init_meta is None else {k: init_meta.get(k) for k in ("mode", "step", "seed")},
            **run.provenance(),
            **run.cost(),
        }

    start_step = run.start()

    network: nn.Module = parts
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(parts, device_ids=[device.index] if device.type == "cuda" else None)
    parts.train()

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
        batch = [tensor.to(device) for tensor in (x0, xt, t, weight, condition, use_null)]
        uniform = timestep_sampler.is_uniform
        # Every process records the same gathered samples, so the importance sampler stays identical.
        outcome = optimisation_step(network, parts, batch, step, schedule=schedule, optimizer=optimizer,
                                    lr_schedule=lr_schedule, trained=trained, timestep_sampler=timestep_sampler,
                                    ema=ema, train_cfg=train_cfg, gather_rows=context.gather_rows)
        terms, gathered, grad_norm, learning_rate = outcome
        window.append(gathered)
        window_grad_norms.append(grad_norm)
        done = step + 1
        if done % train_cfg.log_every == 0 or done == train_cfg.steps:
            rows = torch.cat(window)
            # Importance weights make these unbiased estimates of the averages over uniform t.
            importance = rows[:, 4]
            per_token = 1.0 / model_cfg.num_tokens
            run.log({
                "step": done,
                "loss": round(float(rows[:, 3].mean()) * per_token, 6),
                "vlb_per_token": round(float((importance * rows[:, 1]).mean()) * per_token, 6),
                "x0_nll_per_token": round(float((importance * rows[:, 2]).mean()) * per_token, 6),
                "learning_rate": learning_rate,
                "grad_norm": round(sum(window_grad_norms) / len(window_grad_norms), 6),
                "uniform_timesteps": int(uniform),
            })
            window, window_grad_norms = [], []
        run.step_done(done, loss=terms.loss)

    meta = describe(max(start_step, train_cfg.steps))
    run.finish(lambda: save_weights(out_weights, ema.state_dict(), meta))
    return meta


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> tuple[Denoiser, NullCondition, dict[str, Any]]:
    """Load a trainer checkpoint: the (EMA) denoiser in eval mode, its null condition, and the metadata."""
    meta = load_meta(path)
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise ValueError(f"{path} is not a denoiser checkpoint written by clipvqd.diffusion.train "
                         f"(format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r})")
    model_cfg = DenoiserConfig.from_dict(meta["model_config"], source=f"{path} sidecar")
    parts, _ = build_with_weights(path, lambda: DenoiserAndNullCondition(model_cfg))
    parts.to(device).eval()
    return parts.denoiser, parts.null_condition, meta
