"""The attribute oracle: a classifier that checks generated images without trusting CLIP.

It is trained only on rendered images with their true attributes (never on generated images), one
softmax head per attribute. Noise, shifts, Gaussian blur and down-and-up sampling during training keep it
honest on the soft images generators produce (how soft, and what the oracle reads there, is measured by
`oracle_calibration.py`); its held-out accuracy is recorded so a weak oracle is visible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from clipvqd.checkpoint import load_meta, load_weights, save_weights
from clipvqd.manifest import ManifestImages, read_manifest
from clipvqd.training import TrainingRun, generator_for, seeded_global_rng, tensor_sha256, warmup_cosine
from clipvqd.worlds import get_world

_STREAM_INIT, _STREAM_DATA_ORDER, _STREAM_AUGMENT = 71, 72, 73


@dataclass
class OracleConfig:
    width: int = 16  # channels of the first conv stage; doubled at each of the three stages
    epochs: int = 10  # passes over the oracle's training renders
    batch_size: int = 128
    learning_rate: float = 2e-3  # AdamW peak, cosine-decayed to zero
    weight_decay: float = 1e-4
    augment_noise: float = 0.08  # max std of Gaussian pixel noise (images in [-1, 1])
    augment_shift: int = 2  # max translation in pixels
    augment_blur_probability: float = 0.3  # chance of a blur: 3x3 box, or Gaussian when augment_blur_sigma > 0
    # Gaussian blur with sigma drawn uniformly in [0, augment_blur_sigma] pixels (0: the 3x3 box blur). Generated
    # images are as soft as renders blurred by sigma 1-1.5 (oracle_calibration), where an oracle trained with the
    # box blur alone fell to 0.76 on its worst attribute.
    augment_blur_sigma: float = 0.0
    augment_downsample_probability: float = 0.0  # chance of box down-sampling by 2 or 4, then bilinear back up


class AttributeOracle(nn.Module):
    def __init__(self, value_counts: Sequence[int], resolution: int, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for stage in range(3):
            out = width * 2 ** stage
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        # Keep a coarse spatial map (not a global pool): "left" and "top" matter in the scenes world.
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 256), nn.ReLU(inplace=True))
        self.heads = nn.ModuleList(nn.Linear(256, count) for count in value_counts)
        self.resolution = resolution

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.trunk(self.pool(self.features(images)))
        return [head(hidden) for head in self.heads]


def _gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own Gaussian (separable, replicate padding); sigma 0 leaves it unchanged."""
    radius = max(1, int(math.ceil(2.5 * float(sigmas.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    safe = sigmas.clamp_min(1e-3).to(images.dtype)[:, None]
    kernels = torch.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    kernels = torch.where(sigmas[:, None] > 0, kernels, (offsets[None, :] == 0).to(images.dtype))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    batch, channels, height, width = images.shape
    weights = kernels.repeat_interleave(channels, dim=0)  # (B * C, k)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), weights[:, None, None, :],
                    groups=batch * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), weights[:, None, :, None],
                    groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def _augment(images: torch.Tensor, cfg: OracleConfig, generator: torch.Generator) -> torch.Tensor:
    batch = images.shape[0]
    if cfg.augment_shift > 0:
        pad = cfg.augment_shift
        padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
        dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        images = padded[:, :, dy:dy + images.shape[2], dx:dx + images.shape[3]]
    blur = torch.rand(batch, generator=generator) < cfg.augment_blur_probability
    if cfg.augment_blur_sigma > 0:
        sigmas = torch.rand(batch, generator=generator) * cfg.augment_blur_sigma
        if blur.any():
            images = _gaussian_blur(images, torch.where(blur, sigmas, torch.zeros_like(sigmas)))
    elif blur.any():
        blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        images = torch.where(blur.view(-1, 1, 1, 1), blurred, images)
    if cfg.augment_downsample_probability > 0:
        chosen = torch.rand(batch, generator=generator) < cfg.augment_downsample_probability
        factors = torch.where(torch.rand(batch, generator=generator) < 0.5, 2, 4)
        size = images.shape[-2:]
        for factor in (2, 4):
            selected = chosen & (factors == factor)
            if selected.any() and min(size) >= factor:
                small = F.avg_pool2d(images[selected], factor)
                images = images.clone()
                images[selected] = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    noise_std = torch.rand(batch, 1, 1, 1, generator=generator) * cfg.augment_noise
    return images + noise_std * torch.randn(images.shape, generator=generator)


def _labels(frame: pd.DataFrame, world_name: str) -> torch.Tensor:
    world = get_world(world_name)
    columns = []
    for attribute in world.attributes:
        values = frame[attribute.name].tolist()
        bad = sorted({v for v in values if v not in attribute.values})
        if bad:
            raise ValueError(f"attribute '{attribute.name}' has unknown values {bad} in the oracle manifest")
        columns.append([attribute.values.index(v) for v in values])
    return torch.tensor(columns).T


def train_oracle(manifest: str | Path, world_name: str, cfg: OracleConfig, work_dir: str | Path, out: str | Path,
                 curve_csv: str | Path, seed: int = 0, progress: bool = True, final_snapshot: bool = True) -> None:
    """Train on the `fold == train` renders of `manifest`; write the oracle to `out` (+ JSON sidecar) and the
    loss curve to `curve_csv`. Resumable from the snapshot taken after each epoch in `work_dir`.
    final_snapshot: False skips the snapshot of the last step (TrainingRun), where the caller removes
    `work_dir` once the oracle exists."""
    world = get_world(world_name)
    dataset = ManifestImages(manifest)
    train_index = [i for i, fold in enumerate(dataset.frame["fold"]) if fold == "train"]
    images = torch.stack([dataset[i] for i in train_index])
    labels = _labels(dataset.frame.iloc[train_index], world_name)
    with seeded_global_rng(seed, _STREAM_INIT):
        model = AttributeOracle([len(a.values) for a in world.attributes], images.shape[-1], cfg.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(images) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    run = TrainingRun(
        "attribute oracle", work_dir=work_dir, curve_csv=curve_csv, curve_fields=["step", "loss", "lr"],
        total_steps=total, snapshot_every=steps_per_epoch, progress=progress, final_snapshot=final_snapshot,
        settings={"world": world_name, "config": asdict(cfg), "seed": seed, "images": tensor_sha256(images),
                  "labels": tensor_sha256(labels)},
        state={"model": model, "optimizer": optimizer})
    model.train()
    for step in range(run.start(), total):
        epoch, position = divmod(step, steps_per_epoch)
        order = torch.randperm(len(images), generator=generator_for(seed, _STREAM_DATA_ORDER, epoch))
        batch = order[position * cfg.batch_size:(position + 1) * cfg.batch_size]
        lr = cfg.learning_rate * warmup_cosine(step, total, warmup_steps=0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(_augment(images[batch], cfg, generator_for(seed, _STREAM_AUGMENT, step)))
        loss = sum(F.cross_entropy(head, labels[batch, i]) for i, head in enumerate(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log({"step": step + 1, "loss": f"{loss.item():.5f}", "lr": f"{lr:.6g}"})
        run.step_done(step + 1, loss=loss)
    run.finish(lambda: save_weights(out, model.state_dict(), {
        "world": world_name, "resolution": images.shape[-1], "config": asdict(cfg), "steps": total, "seed": seed,
        # A list of pairs, not a mapping: the sidecar's JSON keys are sorted, but the heads' order matters.
        "attributes": [[a.name, list(a.values)] for a in world.attributes],
        **run.provenance(), **run.cost(),
    }))


class Oracle:
    """A trained oracle ready to read attributes off uint8 images."""

    def __init__(self, path: str | Path):
        meta = load_meta(path)
        self.attributes: dict[str, list[str]] = {name: values for name, values in meta["attributes"]}
        self.resolution = meta["resolution"]
        self.world = meta["world"]
        self.model = AttributeOracle([len(v) for v in self.attributes.values()], self.resolution,
                                     meta["config"]["width"])
        load_weights(path, self.model)
        self.model.eval()

    @torch.no_grad()
    def predict(self, images_uint8: torch.Tensor, batch_size: int = 512) -> dict[str, list[str]]:
        images = images_uint8.float() / 127.5 - 1.0
        if images.shape[-1] != self.resolution:
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="bicubic",
                                   align_corners=False, antialias=True)
        outputs = [self.model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        result = {}
        for index, (name, values) in enumerate(self.attributes.items()):
            predicted = torch.cat([o[index] for o in outputs]).argmax(dim=1)
            result[name] = [values[i] for i in predicted.tolist()]
        return result

    def accuracy_on_manifest(self, manifest: str | Path, fold: str | None = None) -> dict[str, float]:
        dataset = ManifestImages(manifest)
        index = [i for i in range(len(dataset)) if fold is None or dataset.frame["fold"].iloc[i] == fold]
        images = ((torch.stack([dataset[i] for i in index]) + 1) * 127.5).round().to(torch.uint8)
        predicted = self.predict(images)
        frame = dataset.frame.iloc[index]
        return {name: sum(p == t for p, t in zip(predicted[name], frame[name])) / len(index)
                for name in self.attributes}


def score_requests(predicted: Mapping[str, Sequence[str]], requested: Sequence[Mapping[str, str]]) -> list[dict[str, bool]]:
    """For each image, whether each attribute its prompt asked for is what the oracle sees."""
    return [{name: predicted[name][i] == value for name, value in request.items()}
            for i, request in enumerate(requested)]


def score_samples(oracle_path: str | Path, samples_manifest: str | Path, prompts_csv: str | Path) -> dict:
    """Attribute accuracy of a folder of generated images against the prompts that asked for them.

    `samples_manifest` needs `path`, `sha256` and `prompt_id`; `prompts_csv` is the world's prompt split
    (a blank attribute cell means the prompt did not ask for it). Returns `attr_acc` (in-distribution
    prompts), `attr_acc_ood` (held-out combinations) and per-attribute accuracies, each the share of
    (image, requested attribute) pairs the oracle confirms.
    """
    oracle = Oracle(oracle_path)
    samples = read_manifest(samples_manifest)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str).set_index("prompt_id")
    unknown = sorted(set(samples["prompt_id"]) - set(prompts.index))
    if unknown:
        raise ValueError(f"{samples_manifest} refers to prompt ids {unknown[:5]} absent from {prompts_csv}")
    dataset = ManifestImages(samples_manifest, verify=False)
    images = ((dataset.all() + 1) * 127.5).round().to(torch.uint8)
    requested = [{name: prompts.at[pid, name] for name in oracle.attributes if prompts.at[pid, name]}
                 for pid in samples["prompt_id"]]
    checks = score_requests(oracle.predict(images), requested)
    ood = [prompts.at[pid, "ood"] == "1" for pid in samples["prompt_id"]]

    def share(selected: list[dict[str, bool]]) -> float | None:
        flat = [ok for check in selected for ok in check.values()]
        return sum(flat) / len(flat) if flat else None

    per_attribute = {}
    for name in oracle.attributes:
        flat = [check[name] for check in checks if name in check]
        if flat:
            per_attribute[name] = sum(flat) / len(flat)
    return {
        "attr_acc": share([c for c, o in zip(checks, ood) if not o]),
        "attr_acc_ood": share([c for c, o in zip(checks, ood) if o]),
        "attr_acc_all_requested": share(checks),
        "per_attribute": per_attribute,
        "images": len(checks),
        "images_ood": sum(ood),
    }
