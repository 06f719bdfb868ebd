"""The LAFITE trainer: language-free, resumable, one process (CPU or one GPU, float32).

Each step: one generator update (non-saturating loss + itc + itd on G(z, h')), then one discriminator
update (logistic loss + itd on real images + lazy R1), then the generator EMA. h' is the pseudo text
feature of each real image's cached CLIP embedding (`conditioning.pseudo_text_feature`); fakes are drawn
with the h' of the real batch, as in the official loop (training/loss.py: gen images use txt_fts_).

Reproducibility: every draw (data order, z, the noise of h', the synthesis noise) comes from a generator
named by (seed, purpose, step) (`clipvqd.training.seeding`), so a run killed and resumed from its
snapshot in `work_dir` (not a workflow output; `clipvqd.training.TrainingRun`) ends with the same weights
as an uninterrupted one.

Unconditional mode (`embeddings=None`, used by the clip2latent baseline, which needs a plain StyleGAN2):
the condition is a zero vector, so the styles see only w and the projection term of D vanishes, and the
contrastive losses (and with them the CLIP) are skipped; everything else is the same loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from clipvqd.checkpoint import load_meta, load_weights, save_weights
from clipvqd.clip.encoder import ClipEncoder
from clipvqd.training import (ExponentialMovingAverage, TrainingRun, generator_for, seeded_global_rng, tensor_sha256,
                              without_bookkeeping)

from .augment import diff_augment
from .clip_features import clip_image_features, freeze
from .conditioning import pseudo_text_feature
from .config import LafiteModelConfig, LafiteTrainConfig
from .discriminator import Discriminator
from .generator import Generator
from .losses import contrastive_loss, discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty

WEIGHTS_FORMAT = "clipvqd-lafite-generator/1"

_STREAM_INIT, _STREAM_DATA_ORDER, _STREAM_STEP = 11, 12, 13

# Loss-curve columns, each averaged over the log_every steps ending at `step`: loss_g and loss_d (the
# optimised objectives; loss_d without R1), g_adversarial (softplus(-D(G))), itc and itd_fake (the
# generator's contrastive terms, unweighted), itd_real (the discriminator's), iic and iid (the generator's
# image-image contrastive terms, unweighted; blank when their weight is 0), r1 (mean |grad|^2 on the
# steps where it was applied), real_logit / fake_logit (mean D outputs), elapsed_s (wall time, summed over
# resumed runs).
CURVE_FIELDS = ["step", "loss_g", "loss_d", "g_adversarial", "itc", "itd_fake", "itd_real", "iic", "iid", "r1",
                "real_logit", "fake_logit", "elapsed_s"]


def build_networks(model_cfg: LafiteModelConfig, seed: int) -> tuple[Generator, Discriminator]:
    """G and D initialised from the run's seed, leaving the caller's global RNG untouched."""
    with seeded_global_rng(seed, _STREAM_INIT):
        return Generator(model_cfg), Discriminator(model_cfg)


def prepare_for_training(generator: Generator, discriminator: Discriminator, clip: ClipEncoder | None,
                         train_cfg: LafiteTrainConfig, device: torch.device) -> torch.memory_format:
    """Move the networks to `device` in the computation forms the config asks for, and return the memory
    format the image batches should have. Forms only (the same functions, so the same weights up to float
    rounding), chosen for speed: benchmarks/trainer_steps.py measures them. The CLIP's weights change memory
    format in place (the caller's encoder; its outputs do not depend on it)."""
    generator.set_modulated_conv(train_cfg.modulated_conv)
    discriminator.set_downsample(train_cfg.discriminator_downsample)
    memory_format = torch.channels_last if train_cfg.channels_last else torch.contiguous_format
    generator.to(device, memory_format=memory_format)
    discriminator.to(device, memory_format=memory_format)
    if clip is not None:
        clip.model.to(memory_format=memory_format)
    return memory_format


def ema_decay(train_cfg: LafiteTrainConfig, images_seen: int) -> float:
    """StyleGAN2-ADA's EMA: half-life ema_half_life_images, capped by ema_rampup * images seen."""
    half_life = train_cfg.ema_half_life_images
    if train_cfg.ema_rampup > 0:
        half_life = min(half_life, images_seen * train_cfg.ema_rampup)
    if half_life <= 0:
        return 0.0
    return 0.5 ** (train_cfg.batch_size / half_life)


def _validate(images: Tensor, embeddings: Tensor | None, model_cfg: LafiteModelConfig,
              train_cfg: LafiteTrainConfig) -> None:
    r = model_cfg.resolution
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, r, r) or not images.dtype.is_floating_point:
        raise ValueError(f"images must be float (N, 3, {r}, {r}) in [-1, 1], got {images.dtype} {tuple(images.shape)}")
    if embeddings is not None and embeddings.shape != (images.shape[0], model_cfg.condition_dim):
        raise ValueError(f"embeddings must be ({images.shape[0]}, {model_cfg.condition_dim}) to match the images and "
                         f"model condition_dim, got {tuple(embeddings.shape)}")
    if images.shape[0] < train_cfg.batch_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} exceeds the {images.shape[0]} training images")


def train_lafite(
    images: Tensor,
    embeddings: Tensor | None,
    clip: ClipEncoder | None,
    model_cfg: LafiteModelConfig,
    train_cfg: LafiteTrainConfig,
    work_dir: str | Path,
    out_weights: str | Path,
    curve_csv: str | Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    milestones: Mapping[int, str | Path] | None = None,
    final_snapshot: bool = True,
) -> dict[str, Any]:
    """Train (or resume) LAFITE; write the EMA generator to `out_weights` (+ JSON sidecar) and the loss
    curve to `curve_csv`. Returns the sidecar metadata. milestones: {step: path} also gets the EMA generator
    after those steps (TrainingRun milestones: the quality-versus-compute curve). final_snapshot: False skips
    the resume snapshot of the last step (TrainingRun), where the caller removes the work folder once the
    weights exist.

    images: float (N, 3, R, R) in [-1, 1]; embeddings: (N, D) CLIP image embeddings of the same images, made
    by `clip` (the frozen conditioner CLIP, also used for the itc loss on generated images).
    embeddings=None trains an unconditional StyleGAN2 (see the module docstring); `clip` may then be None."""
    _validate(images, embeddings, model_cfg, train_cfg)
    conditional = embeddings is not None
    if conditional and clip is None:
        raise ValueError("a conditional LAFITE run needs the conditioner CLIP (itc loss); pass clip")
    device = torch.device(device)
    work_dir, out_weights, curve_csv = Path(work_dir), Path(out_weights), Path(curve_csv)
    images = images.float().cpu()
    if conditional:
        embeddings = embeddings.float().cpu()
        freeze(clip)

    generator, discriminator = build_networks(model_cfg, seed)
    memory_format = prepare_for_training(generator, discriminator, clip if conditional else None, train_cfg, device)
    ema = ExponentialMovingAverage(generator, 0.0)
    betas = tuple(train_cfg.adam_betas)
    g_opt = torch.optim.Adam(generator.parameters(), lr=train_cfg.learning_rate, betas=betas, eps=1e-8)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=train_cfg.learning_rate, betas=betas, eps=1e-8)

    run = TrainingRun(
        "lafite", work_dir=work_dir, curve_csv=curve_csv, curve_fields=CURVE_FIELDS, total_steps=train_cfg.steps,
        snapshot_every=train_cfg.snapshot_every, progress=progress,
        settings={
            "model": model_cfg.to_dict(),
            "train": without_bookkeeping(train_cfg.to_dict()),
            "seed": seed,
            "images": tensor_sha256(images),
            "embeddings": tensor_sha256(embeddings),
            "clip": clip.identity if conditional else None,
        },
        state={"generator": generator, "discriminator": discriminator, "ema": ema, "g_opt": g_opt, "d_opt": d_opt},
        milestones=milestones, final_snapshot=final_snapshot,
        milestone_save=lambda path, record: save_weights(path, ema.state_dict(), describe(record["step"]) | record))

    def describe(step: int) -> dict[str, Any]:
        """The sidecar of the generator after `step` steps."""
        return {
            "format": WEIGHTS_FORMAT,
            "weights": "ema",
            "step": step,
            "seed": seed,
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
            "clip_sha256": clip.identity if conditional else None,
            "conditional": conditional,
            "num_training_images": int(images.shape[0]),
            **run.provenance(),
            **run.cost(),
        }

    start_step = run.start()

    def contrastive(features: Tensor, targets: Tensor) -> Tensor:
        return contrastive_loss(features, targets, train_cfg.temperature, train_cfg.contrastive_lambda,
                                train_cfg.contrastive_form)

    generator.train()
    discriminator.train()
    batch = train_cfg.batch_size
    steps_per_epoch = images.shape[0] // batch
    order_epoch, order = -1, None
    window: list[dict[str, float]] = []
    for step in range(start_step, train_cfg.steps):
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(images.shape[0], generator=generator_for(seed, _STREAM_DATA_ORDER, epoch))
            order_epoch = epoch
        indices = order[offset * batch:(offset + 1) * batch]
        real = images[indices].to(device).contiguous(memory_format=memory_format)
        draws = generator_for(seed, _STREAM_STEP, step, 0)
        if conditional:
            condition = pseudo_text_feature(embeddings[indices], train_cfg.xi,
                                            noise=torch.randn(batch, model_cfg.condition_dim, generator=draws)).to(device)
        else:
            condition = torch.zeros(batch, model_cfg.condition_dim, device=device)
        z = torch.randn(batch, model_cfg.z_dim, generator=draws).to(device)
        no_loss = torch.zeros((), device=device)
        # DiffAugment: every discriminator input of this step, real or fake, passes through the same kind of
        # random transformation; the draws have their own stream, so the others do not move when it is on.
        augment_draws = generator_for(seed, _STREAM_STEP, step, 3)

        def augment(x: Tensor) -> Tensor:
            return diff_augment(x, train_cfg.augment, augment_draws) if train_cfg.augment else x

        # Generator update: D is frozen (its parameters get no gradient), CLIP always is.
        discriminator.requires_grad_(False)
        fake = generator(z, condition, "random", generator_for(seed, _STREAM_STEP, step, 1))
        fake_logits, fake_features = discriminator(augment(fake), condition)
        g_adversarial = generator_adversarial_loss(fake_logits)
        fake_clip = clip_image_features(clip, fake) if conditional else None
        itc = contrastive(fake_clip, condition) if conditional else no_loss
        itd_fake = contrastive(fake_features, condition) if conditional else no_loss
        # The official image-image terms (training/loss.py img_img_c / img_img_d): G's CLIP features against
        # the clean embeddings of the real images, G's D features against the real images' D features.
        iic = contrastive(fake_clip, embeddings[indices].to(device)) if conditional and train_cfg.iic_weight else None
        iid = None
        if conditional and train_cfg.iid_weight:
            with torch.no_grad():
                _, real_features_for_g = discriminator(augment(real), condition)
            iid = contrastive(real_features_for_g, fake_features)
        loss_g = g_adversarial + train_cfg.itc_weight * itc + train_cfg.itd_weight * itd_fake
        if iic is not None:
            loss_g = loss_g + train_cfg.iic_weight * iic
        if iid is not None:
            loss_g = loss_g + train_cfg.iid_weight * iid
        g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        g_opt.step()

        # Discriminator update on fresh fakes of the updated G (same z and h', new synthesis noise).
        discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = generator(z, condition, "random", generator_for(seed, _STREAM_STEP, step, 2))
        fake_logits, _ = discriminator(augment(fake), condition)
        real_logits, real_features = discriminator(augment(real), condition)
        itd_real = contrastive(real_features, condition) if conditional else no_loss
        loss_d = discriminator_adversarial_loss(real_logits, fake_logits) + train_cfg.itd_weight * itd_real
        total_d = loss_d
        r1 = None
        if train_cfg.r1_gamma > 0 and step % train_cfg.r1_interval == 0:
            real_input = real.detach().requires_grad_(True)
            r1_logits, _ = discriminator(augment(real_input), condition)
            r1 = r1_penalty(r1_logits, real_input).mean()
            total_d = total_d + r1 * (train_cfg.r1_gamma / 2) * train_cfg.r1_interval
        d_opt.zero_grad(set_to_none=True)
        total_d.backward()
        d_opt.step()

        done = step + 1
        ema.decay = ema_decay(train_cfg, done * batch)
        ema.update(generator)

        window.append({"loss_g": loss_g.item(), "loss_d": loss_d.item(), "g_adversarial": g_adversarial.item(),
                       "itc": itc.item(), "itd_fake": itd_fake.item(), "itd_real": itd_real.item(),
                       "iic": None if iic is None else iic.item(), "iid": None if iid is None else iid.item(),
                       "r1": None if r1 is None else r1.item(), "real_logit": real_logits.mean().item(),
                       "fake_logit": fake_logits.mean().item()})
        if done % train_cfg.log_every == 0 or done == train_cfg.steps:
            row: dict[str, Any] = {"step": done}
            for key in CURVE_FIELDS[1:-1]:
                values = [entry[key] for entry in window if entry[key] is not None]
                row[key] = round(sum(values) / len(values), 6) if values else ""
            run.log(row)
            window = []
        run.step_done(done, g=loss_g, d=loss_d)

    meta = describe(max(start_step, train_cfg.steps))
    run.finish(lambda: save_weights(out_weights, ema.state_dict(), meta))
    return meta


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """The EMA generator of a LAFITE checkpoint, in eval mode, and its metadata."""
    meta = load_meta(path)
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise ValueError(f"{path} is not a LAFITE generator written by clipvqd.lafite.train "
                         f"(format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r})")
    generator = Generator(LafiteModelConfig.from_dict(meta["model_config"], source=f"{path} sidecar"))
    load_weights(path, generator)
    return generator.to(device).eval(), meta
