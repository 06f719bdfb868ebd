"""The prior trainer: resumable, one process (CPU, or one GPU with bf16 autocast).

Each step draws a batch of pairs (an epoch-wise permutation), noises their CLIP embeddings
(`conditioning.add_embedding_noise`), hides 20% of them (`keep_mask`), draws timesteps and forward
noise, and takes one AdamW step on the MSE (DALLE2-pytorch's DiffusionPriorTrainer: AdamW with its
get_optimizer betas (0.9, 0.99), lr and weight decay from the config). An EMA of the weights, updated
every `ema_update_every` steps, is what is saved and sampled (official: trainer.ema_diffusion_prior).

Every draw comes from a stream named by (seed, purpose, step), so a run killed and resumed from its
snapshot in `work_dir` ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clipvqd.checkpoint import load_meta, load_weights, save_weights
from clipvqd.training import (ExponentialMovingAverage, TrainingRun, generator_for, seeded_global_rng, tensor_sha256,
                              without_bookkeeping)

from .conditioning import add_embedding_noise, keep_mask
from .config import PriorModelConfig, PriorTrainConfig
from .prior import DiffusionPrior

WEIGHTS_FORMAT = "clipvqd-clip2latent-prior/1"
ADAM_BETAS = (0.9, 0.99)
_STREAM_INIT, _STREAM_ORDER, _STREAM_STEP = 41, 42, 43

# Loss-curve columns: step, loss (MSE averaged over the log_every steps ending at `step`), elapsed_s.
CURVE_FIELDS = ["step", "loss", "elapsed_s"]


def build_prior(model_cfg: PriorModelConfig, train_cfg: PriorTrainConfig, seed: int) -> DiffusionPrior:
    """The prior initialised from the run's seed, leaving the caller's global RNG untouched."""
    with seeded_global_rng(seed, _STREAM_INIT):
        return DiffusionPrior(model_cfg, znorm_latent=train_cfg.znorm_latent, znorm_embed=train_cfg.znorm_embed)


def _validate(pairs: dict[str, Tensor], model_cfg: PriorModelConfig, train_cfg: PriorTrainConfig) -> None:
    w, e = pairs["w"], pairs["embeddings"]
    if w.shape != (len(w), model_cfg.latent_dim) or e.shape != (len(w), model_cfg.embed_dim):
        raise ValueError(f"pairs must be w (N, {model_cfg.latent_dim}) and embeddings (N, {model_cfg.embed_dim}) "
                         f"as the prior config says, got {tuple(w.shape)} and {tuple(e.shape)}")
    if len(w) < train_cfg.batch_size:
        raise ValueError(f"batch_size {train_cfg.batch_size} exceeds the {len(w)} pairs")


def train_prior(pairs: dict[str, Tensor], model_cfg: PriorModelConfig, train_cfg: PriorTrainConfig,
                work_dir: str | Path, out_weights: str | Path, curve_csv: str | Path,
                device: str | torch.device = "cpu", seed: int = 0, provenance: dict[str, Any] | None = None,
                progress: bool = True, final_snapshot: bool = True) -> dict[str, Any]:
    """Train (or resume) the prior on `pairs` (w, embeddings, w_mean, w_std, embed_mean, embed_std); write
    the EMA weights (+ the z-scoring stats, as buffers) to `out_weights` with a JSON sidecar, and the
    loss curve to `curve_csv`. Returns the sidecar metadata. final_snapshot: False skips the resume snapshot
    of the last step (TrainingRun), where the caller removes the work folder once the weights exist."""
    _validate(pairs, model_cfg, train_cfg)
    device = torch.device(device)
    work_dir, out_weights, curve_csv = Path(work_dir), Path(out_weights), Path(curve_csv)
    w_all, e_all = pairs["w"].float().cpu(), pairs["embeddings"].float().cpu()

    prior = build_prior(model_cfg, train_cfg, seed)
    prior.set_stats(pairs["w_mean"], pairs["w_std"], pairs["embed_mean"], pairs["embed_std"])
    prior.to(device)
    ema = ExponentialMovingAverage(prior, train_cfg.ema_decay)
    optimizer = torch.optim.AdamW(prior.parameters(), lr=train_cfg.learning_rate, betas=ADAM_BETAS,
                                  weight_decay=train_cfg.weight_decay)

    run = TrainingRun(
        "clip2latent prior", work_dir=work_dir, curve_csv=curve_csv, curve_fields=CURVE_FIELDS,
        total_steps=train_cfg.steps, snapshot_every=train_cfg.snapshot_every, progress=progress,
        final_snapshot=final_snapshot,
        settings={"model": model_cfg.to_dict(), "train": without_bookkeeping(train_cfg.to_dict()), "seed": seed,
                  "w": tensor_sha256(w_all), "embeddings": tensor_sha256(e_all)},
        state={"prior": prior, "ema": ema, "optimizer": optimizer})
    start_step = run.start()

    prior.train()
    batch = train_cfg.batch_size
    steps_per_epoch = len(w_all) // batch
    order_epoch, order = -1, None
    window: list[float] = []
    for step in range(start_step, train_cfg.steps):
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(len(w_all), generator=generator_for(seed, _STREAM_ORDER, epoch))
            order_epoch = epoch
        indices = order[offset * batch:(offset + 1) * batch]
        draws = generator_for(seed, _STREAM_STEP, step)
        embed = add_embedding_noise(e_all[indices], train_cfg.embed_noise_scale,
                                    torch.randn(batch, model_cfg.embed_dim, generator=draws))
        keep = keep_mask(batch, train_cfg.cond_drop_prob, draws)
        t = torch.randint(0, model_cfg.timesteps, (batch,), generator=draws)
        noise = torch.randn(batch, model_cfg.latent_dim, generator=draws)
        loss = prior.loss(w_all[indices].to(device), embed.to(device), keep.to(device), t.to(device), noise.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if done % train_cfg.ema_update_every == 0:
            ema.update(prior)
        window.append(loss.item())
        if done % train_cfg.log_every == 0 or done == train_cfg.steps:
            run.log({"step": done, "loss": round(sum(window) / len(window), 6)})
            window = []
        run.step_done(done, loss=loss)

    final_step = max(start_step, train_cfg.steps)
    meta = {
        "format": WEIGHTS_FORMAT,
        "weights": "ema",
        "step": final_step,
        "seed": seed,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "num_pairs": int(len(w_all)),
        **run.provenance(),
        **run.cost(),
        **(provenance or {}),
    }
    run.finish(lambda: save_weights(out_weights, ema.state_dict(), meta))
    return meta


def load_prior(path: str | Path, device: str | torch.device = "cpu") -> tuple[DiffusionPrior, dict[str, Any]]:
    """The EMA prior of a checkpoint (with its z-scoring stats), in eval mode, and its metadata."""
    meta = load_meta(path)
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise ValueError(f"{path} is not a clip2latent prior written by clipvqd.clip2latent.train "
                         f"(format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r})")
    model_cfg = PriorModelConfig.from_dict(meta["model_config"], source=f"{path} sidecar")
    # Of the training settings only the z-scoring switches shape the network; reading just them keeps a
    # checkpoint loadable when another training key is renamed.
    train = meta.get("train_config") or {}
    missing = [key for key in ("znorm_latent", "znorm_embed") if key not in train]
    if missing:
        raise ValueError(f"{path} sidecar: train_config lacks {missing}")
    prior = DiffusionPrior(model_cfg, znorm_latent=bool(train["znorm_latent"]), znorm_embed=bool(train["znorm_embed"]))
    load_weights(path, prior)
    return prior.to(device).eval(), meta
