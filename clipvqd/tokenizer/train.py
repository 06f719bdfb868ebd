"""Training the Gumbel VQGAN tokenizer, resumably.

Everything a killed run needs to continue bit-for-bit lives in `work_dir` (not a Snakemake output),
kept by `clipvqd.training.TrainingRun`: both networks, both AdamW states, the global RNG, the step, the
loss curve and the partial loss-curve window. The random draws need no saved state: the initial weights,
epoch e's data order and step s's Gumbel noise come from streams named by (seed, purpose, e or s), see
`clipvqd.training.seeding`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from clipvqd.checkpoint import save_weights
from clipvqd.hashing import sha256_file
from clipvqd.tokenizer.compaction import usage_statistics
from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from clipvqd.tokenizer.losses import LossTerms, VQGANLoss
from clipvqd.tokenizer.model import GumbelVQGAN
from clipvqd.tokenizer.quantizer import cosine_temperature
from clipvqd.training import (TrainingRun, generator_for, seeded_global_rng, settings_fingerprint, warmup_cosine,
                              without_bookkeeping)

if TYPE_CHECKING:  # LPIPS imports torchvision's model zoo: only when the perceptual loss is on
    from clipvqd.tokenizer.perceptual import LPIPS

_STREAM_INIT, _STREAM_DATA_ORDER, _STREAM_GUMBEL = 61, 62, 63
LOSS_FIELDS = [f.name for f in fields(LossTerms)]
CURVE_COLUMNS = ["step", "epoch", "temperature", *LOSS_FIELDS, "codes_used_fraction", "code_perplexity"]


class CurveWindow:
    """Running means of the loss terms and a code histogram over one logging interval."""

    def __init__(self, codebook_size: int):
        self.codebook_size = codebook_size
        self.reset()

    def reset(self) -> None:
        self.sums = {name: 0.0 for name in LOSS_FIELDS}
        self.steps = 0
        self.code_counts = torch.zeros(self.codebook_size, dtype=torch.long)

    def add(self, terms: LossTerms, codes: torch.Tensor) -> None:
        for name, value in asdict(terms).items():
            self.sums[name] += value
        self.steps += 1
        self.code_counts += torch.bincount(codes.flatten().cpu(), minlength=self.codebook_size)

    def row(self, step: int, steps_per_epoch: int, temperature: float) -> dict[str, float]:
        usage = usage_statistics(self.code_counts)
        row = {"step": step, "epoch": round(step / steps_per_epoch, 4), "temperature": temperature}
        row.update({name: total / max(self.steps, 1) for name, total in self.sums.items()})
        row.update(codes_used_fraction=usage["fraction_used"], code_perplexity=usage["perplexity"])
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps, "code_counts": self.code_counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.steps, self.code_counts = dict(state["sums"]), state["steps"], state["code_counts"].clone()


def epoch_order(dataset_size: int, seed: int, epoch: int) -> torch.Tensor:
    """The visiting order of epoch `epoch`: a function of (seed, epoch) only, so resuming needs no state."""
    return torch.randperm(dataset_size, generator=generator_for(seed, _STREAM_DATA_ORDER, epoch))


def _dataset_identity(dataset: Dataset) -> str | None:
    """The sha256 of a manifest's per-image hashes (the images a ManifestImages reads), else None."""
    frame = getattr(dataset, "frame", None)
    if frame is None or "sha256" not in getattr(frame, "columns", ()):
        return None
    return settings_fingerprint({"sha256": list(frame["sha256"])})


def _item_name(dataset: Dataset, index: int) -> str:
    paths = getattr(dataset, "paths", None)
    return str(paths[index]) if paths is not None else f"item {index}"


def preload_images(dataset: Dataset, config: TokenizerConfig) -> torch.Tensor:
    """Stack the whole split into one tensor, refusing (by file name) any image of the wrong shape."""
    expected = (config.in_channels, config.resolution, config.resolution)
    images = []
    for index in range(len(dataset)):
        image = dataset[index]
        if tuple(image.shape) != expected:
            raise ValueError(f"training image {_item_name(dataset, index)} has shape {tuple(image.shape)}, "
                             f"the tokenizer expects {expected} (set the data's resolution/resize options)")
        images.append(image)
    return torch.stack(images)


def batches_from(dataset: Dataset, images: torch.Tensor | None, order: torch.Tensor, batch_size: int,
                 num_workers: int) -> Iterator[torch.Tensor]:
    if images is not None:
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield images[order[start:start + batch_size]]
        return
    # An explicit generator keeps the loader from drawing worker seeds from the global RNG stream.
    loader = DataLoader(Subset(dataset, order.tolist()), batch_size=batch_size, shuffle=False, drop_last=True,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    yield from loader


def _build_perceptual(config: TokenizerTrainConfig) -> LPIPS | None:
    if not config.perceptual_enabled:
        return None
    from clipvqd.tokenizer.perceptual import LPIPS

    return LPIPS.from_files(config.lpips_vgg_weights, config.lpips_vgg_sha256,
                            config.lpips_linear_weights, config.lpips_linear_sha256)


def adversarial_status(config: TokenizerTrainConfig, total_steps: int) -> dict[str, Any]:
    """Whether the PatchGAN loss took part, for the checkpoint metadata and the metrics file."""
    if config.disc_weight <= 0:
        return {"enabled": False, "reason": "disc_weight is 0 (the world default: at 32 px the GAN term cost "
                                            "attribute fidelity, see TokenizerTrainConfig.disc_weight)"}
    if config.disc_start >= total_steps:
        return {"enabled": False, "reason": f"disc_start {config.disc_start} is not before the last step {total_steps}"}
    return {"enabled": True, "weight": config.disc_weight, "start_step": config.disc_start}


def perceptual_status(config: TokenizerTrainConfig) -> dict[str, Any]:
    """How the perceptual loss was configured, for the checkpoint metadata and the metrics file."""
    if not config.perceptual_enabled:
        return {"enabled": False, "reason": "no LPIPS weight files given (offline default)"}
    return {
        "enabled": True,
        "weight": config.perceptual_weight,
        "vgg_weights": str(config.lpips_vgg_weights),
        "vgg_sha256": sha256_file(config.lpips_vgg_weights),
        "linear_weights": str(config.lpips_linear_weights),
        "linear_sha256": sha256_file(config.lpips_linear_weights),
    }


def train_tokenizer(
    dataset: Dataset,
    model_cfg: TokenizerConfig,
    train_cfg: TokenizerTrainConfig,
    work_dir: str | Path,
    out_weights: str | Path,
    curve_csv: str | Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    stop_after_step: int | None = None,
    final_snapshot: bool = True,
) -> dict[str, Any]:
    """Train (or continue training) the tokenizer; write `out_weights` (+ JSON sidecar) and `curve_csv`.
    final_snapshot: False skips the resume snapshot of the last step (TrainingRun), where the caller removes
    the work folder once the weights exist.

    `dataset` yields float images (3, R, R) in [-1, 1] (e.g. `ManifestImages`). `stop_after_step` ends
    this call after that step with a snapshot saved and no final outputs (for tests, and for splitting
    a run across wall-time-limited jobs); the next call continues. Returns the checkpoint metadata,
    or {"finished": False, "step": ...} when stopped early.
    """
    device = torch.device(device)
    work_dir = Path(work_dir)
    dataset_size = len(dataset)
    steps_per_epoch = dataset_size // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training split has {dataset_size} images, fewer than one batch "
                         f"(batch_size={train_cfg.batch_size})")
    total_steps = train_cfg.total_steps(dataset_size)
    anneal_steps = train_cfg.temperature_anneal_steps or total_steps

    perceptual = _build_perceptual(train_cfg)
    # Initialise from the seed without disturbing (or depending on) the caller's global RNG stream.
    with seeded_global_rng(seed, _STREAM_INIT):
        model = GumbelVQGAN(model_cfg)
        loss = VQGANLoss(train_cfg, model_cfg.in_channels, perceptual)
    # channels_last runs the convolutions through faster kernels on CPU (oneDNN) and on tensor cores.
    model.to(device, memory_format=torch.channels_last).train()
    loss.to(device, memory_format=torch.channels_last).train()
    adamw = dict(betas=tuple(train_cfg.adam_betas), weight_decay=train_cfg.weight_decay)
    opt_g = torch.optim.AdamW(model.parameters(), lr=train_cfg.learning_rate, **adamw)
    opt_d = torch.optim.AdamW(loss.discriminator.parameters(), lr=train_cfg.disc_learning_rate, **adamw)
    window = CurveWindow(model_cfg.codebook_size)
    state = {"model": model, "discriminator": loss.discriminator, "opt_g": opt_g, "opt_d": opt_d, "window": window}
    lr_schedule = None
    if train_cfg.lr_warmup_steps or train_cfg.final_lr_fraction != 1.0:
        lr_schedule = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda step: warmup_cosine(
            step, total_steps, train_cfg.lr_warmup_steps, train_cfg.final_lr_fraction))
        state["lr_schedule"] = lr_schedule

    run = TrainingRun(
        "tokenizer", work_dir=work_dir, curve_csv=curve_csv, curve_fields=CURVE_COLUMNS, total_steps=total_steps,
        snapshot_every=train_cfg.snapshot_every, progress=progress, stop_after_step=stop_after_step,
        final_snapshot=final_snapshot,
        settings={"model": model_cfg.to_dict(), "train": without_bookkeeping(train_cfg.to_dict()), "seed": seed,
                  "dataset_size": dataset_size, "images": _dataset_identity(dataset)},
        state=state)
    step = run.start()

    images = preload_images(dataset, model_cfg) if train_cfg.preload else None
    while step < run.stop_at:
        epoch, offset = divmod(step, steps_per_epoch)
        order = epoch_order(dataset_size, seed, epoch)[offset * train_cfg.batch_size:
                                                       steps_per_epoch * train_cfg.batch_size]
        for batch in batches_from(dataset, images, order, train_cfg.batch_size, train_cfg.num_workers):
            batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            temperature = cosine_temperature(step, train_cfg.temperature_start, train_cfg.temperature_end,
                                             anneal_steps)
            gumbel_noise = generator_for(seed, _STREAM_GUMBEL, step, device=device)
            reconstructions, quantized = model(batch, temperature, gumbel_noise)
            generator_loss, terms = loss.generator_loss(batch, reconstructions, quantized.kl, step,
                                                        model.last_layer)
            if not math.isfinite(terms.generator_total):
                raise FloatingPointError(f"tokenizer loss became {terms.generator_total} at step {step}; "
                                         f"the last good state is in {work_dir}")
            opt_g.zero_grad(set_to_none=True)
            generator_loss.backward()
            if train_cfg.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip_norm)
            opt_g.step()
            if lr_schedule is not None:
                lr_schedule.step()
            if loss.gan_active(step):
                disc_loss = loss.discriminator_loss(batch, reconstructions, terms)
                opt_d.zero_grad(set_to_none=True)
                disc_loss.backward()
                opt_d.step()
            step += 1
            window.add(terms, quantized.codes)
            postfix = {}
            if step % train_cfg.log_every == 0 or step == total_steps:
                row = run.log(window.row(step, steps_per_epoch, temperature))
                window.reset()
                postfix = {"l1": row["l1"], "temp": temperature, "codes": row["codes_used_fraction"]}
            run.step_done(step, **postfix)
            if step >= run.stop_at:
                break

    if not run.finished:
        run.close()
        return {"finished": False, "step": step, "total_steps": total_steps}
    last_row = run.curve[-1] if run.curve else None

    meta = {
        "kind": "gumbel_vqgan_tokenizer",
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "step": step,
        "epochs": round(step / steps_per_epoch, 4),
        "seed": seed,
        "dataset_size": dataset_size,
        "token_grid": list(model_cfg.token_grid),
        "codebook_size": model_cfg.codebook_size,
        "perceptual_loss": perceptual_status(train_cfg),
        "adversarial_loss": adversarial_status(train_cfg, total_steps),
        # Usage of the Gumbel samples over the last logging interval; compaction counts the argmax codes
        # of the whole training split.
        "code_usage_last_interval": {
            "codes_used_fraction": last_row["codes_used_fraction"] if last_row else None,
            "code_perplexity": last_row["code_perplexity"] if last_row else None,
            "steps": train_cfg.log_every,
        },
        **run.cost(),
        **run.provenance(),
    }
    run.finish(lambda: save_weights(out_weights, model.state_dict(), meta))
    return json.loads(json.dumps(meta, default=str))
