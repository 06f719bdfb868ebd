"""Tokenizer evaluation on held-out images: reconstruction quality, codebook use, attribute retention.

Reconstructions are measured through the compacted vocabulary (the codes the diffusion model can
produce) and, for comparison, through the full codebook. On the worlds, an attribute oracle scores the
originals and the reconstructions; their ratio says whether tokenization keeps what prompts ask for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

from clipvqd.manifest import to_uint8
from clipvqd.tokenizer.compaction import CodeMapping, usage_statistics
from clipvqd.tokenizer.model import GumbelVQGAN

# (uint8 images (B, 3, H, W), the batch's manifest rows) -> mean attribute accuracy of the batch.
AttributeScorer = Callable[[torch.Tensor, pd.DataFrame], float]


def _quality(originals: np.ndarray, reconstructions: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of uint8 (B, H, W, 3) arrays."""
    psnr, ssim = [], []
    for original, reconstruction in zip(originals, reconstructions):
        if np.array_equal(original, reconstruction):
            psnr.append(float("inf"))
        else:
            psnr.append(float(peak_signal_noise_ratio(original, reconstruction, data_range=255)))
        ssim.append(float(structural_similarity(original, reconstruction, data_range=255, channel_axis=-1)))
    return psnr, ssim


def _hwc(images: torch.Tensor) -> np.ndarray:
    return to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def evaluate_tokenizer(model: GumbelVQGAN, dataset: Dataset, mapping: CodeMapping,
                       attribute_scorer: AttributeScorer | None = None, batch_size: int = 128,
                       device: str | torch.device = "cpu", progress: bool = False,
                       checkpoint_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of `model` on the held-out `dataset` (float images in [-1, 1]).

    `attribute_scorer` needs the dataset's manifest rows, so `dataset` must then have a `frame`
    (as `ManifestImages` does). `checkpoint_meta` (the checkpoint's sidecar) adds how the tokenizer was
    trained, including whether the perceptual loss was on.
    """
    mapping.check_matches(model)
    if attribute_scorer is not None and not hasattr(dataset, "frame"):
        raise ValueError("an attribute scorer needs the dataset's manifest rows (a dataset with a `frame`)")
    model.eval().to(device)
    allowed = mapping.used_codes.to(device)
    size = model.config.codebook_size
    full_counts = torch.zeros(size, dtype=torch.long)
    compact_counts = torch.zeros(mapping.vocab_size, dtype=torch.long)
    outside = 0
    psnr, ssim, psnr_full, ssim_full = [], [], [], []
    oracle_original = oracle_reconstructed = 0.0
    seen = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for images in tqdm(loader, desc="evaluate tokenizer", unit="batch", disable=not progress):
        images = images.to(device)
        features = model.encoder(images)
        full = model.quantizer.deterministic(features)
        restricted = model.quantizer.deterministic(features, allowed)
        full_counts += torch.bincount(full.codes.flatten().cpu(), minlength=size)
        compact_counts += torch.bincount(mapping.compact(restricted.codes).flatten().cpu(),
                                         minlength=mapping.vocab_size)
        outside += int((~mapping.is_used(full.codes)).sum())
        reconstructions = model.decode_vectors(restricted.vectors).clamp(-1, 1)
        reconstructions_full = model.decode_vectors(full.vectors).clamp(-1, 1)
        originals_u8 = _hwc(images)
        for values, target in ((_quality(originals_u8, _hwc(reconstructions)), (psnr, ssim)),
                               (_quality(originals_u8, _hwc(reconstructions_full)), (psnr_full, ssim_full))):
            target[0].extend(values[0])
            target[1].extend(values[1])
        if attribute_scorer is not None:
            rows = dataset.frame.iloc[seen:seen + len(images)].reset_index(drop=True)
            # Accuracies are batch means; weighting by batch size gives the mean over all images.
            oracle_original += attribute_scorer(to_uint8(images).cpu(), rows) * len(images)
            oracle_reconstructed += attribute_scorer(to_uint8(reconstructions).cpu(), rows) * len(images)
        seen += len(images)
    if seen == 0:
        raise ValueError("the held-out dataset is empty; nothing to evaluate")

    full_usage = usage_statistics(full_counts)
    compact_usage = usage_statistics(compact_counts)
    tokens = seen * model.config.token_grid[0] * model.config.token_grid[1]
    metrics: dict[str, Any] = {
        "images": seen,
        "reconstruction": {
            # Finite PSNRs only: an exact reconstruction would make the mean infinite.
            "psnr_db": _finite_mean(psnr),
            "ssim": float(np.mean(ssim)),
            "psnr_db_full_codebook": _finite_mean(psnr_full),
            "ssim_full_codebook": float(np.mean(ssim_full)),
            "measured_through": "compacted vocabulary (argmax restricted to the used codes)",
        },
        "codebook": {
            "codebook_size": size,
            "vocab_size_after_compaction": mapping.vocab_size,
            "fraction_used_on_training_split": mapping.vocab_size / size,
            "heldout_fraction_used_before_compaction": full_usage["fraction_used"],
            "heldout_perplexity_before_compaction": full_usage["perplexity"],
            "heldout_fraction_used_after_compaction": compact_usage["fraction_used"],
            "heldout_perplexity_after_compaction": compact_usage["perplexity"],
            "heldout_tokens_outside_vocabulary": outside / tokens,
        },
    }
    if attribute_scorer is not None:
        accuracy_original = oracle_original / seen
        accuracy_reconstructed = oracle_reconstructed / seen
        metrics["attribute_oracle"] = {
            "accuracy_on_originals": accuracy_original,
            "accuracy_on_reconstructions": accuracy_reconstructed,
            "ratio": accuracy_reconstructed / accuracy_original if accuracy_original > 0 else None,
        }
    if checkpoint_meta is not None:
        metrics["training"] = {key: checkpoint_meta.get(key) for key in
                               ("step", "epochs", "seed", "dataset_size", "perceptual_loss", "adversarial_loss",
                                "code_usage_last_interval")}
    return metrics


def _finite_mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def save_reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: str | Path,
                             columns: int = 8, upscale: int | None = None) -> Path:
    """PNG of alternating rows: `columns` originals, then their reconstructions, and so on.

    Images are float in [-1, 1] or uint8, shape (B, 3, H, W). Small images are enlarged by nearest
    neighbour (`upscale`, default up to about 128 px) so the grid stays readable in the report.
    """
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions "
                         f"{tuple(reconstructions.shape)} differ in shape")
    as_unit = [(to_uint8(x) if x.is_floating_point() else x).float() / 255.0 for x in (originals, reconstructions)]
    factor = upscale if upscale is not None else max(1, 128 // originals.shape[-1])
    if factor > 1:
        as_unit = [torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest") for x in as_unit]
    rows = []
    for start in range(0, len(originals), columns):
        rows += [as_unit[0][start:start + columns], as_unit[1][start:start + columns]]
    # A short last row is padded with blank tiles so every original sits above its reconstruction.
    rows = [torch.cat([row, row.new_ones(columns - len(row), *row.shape[1:])]) for row in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.cat(rows), nrow=columns, padding=2, pad_value=1.0), path)
    return path


@torch.no_grad()
def save_dataset_reconstructions(model: GumbelVQGAN, dataset: Dataset, mapping: CodeMapping, path: str | Path,
                                 count: int = 16, device: str | torch.device = "cpu") -> Path:
    """The grid of `save_reconstruction_grid` for the first `count` images of `dataset`, reconstructed
    through the compact vocabulary: what the diffusion model can actually produce."""
    originals = torch.stack([dataset[i] for i in range(min(count, len(dataset)))]).to(device)
    codes = model.encode(originals, allowed_codes=mapping.used_codes.to(device))
    return save_reconstruction_grid(originals.cpu(), model.decode_codes(codes).cpu(), path)


def oracle_attribute_scorer(oracle_path: str | Path) -> AttributeScorer:
    """An `AttributeScorer` from a world's attribute oracle: the share of (image, attribute) pairs whose
    value the oracle reads as the manifest row's true value."""
    from clipvqd.oracle import Oracle

    oracle = Oracle(oracle_path)

    def accuracy(images_uint8: torch.Tensor, rows: pd.DataFrame) -> float:
        predicted = oracle.predict(images_uint8)
        checks = [p == t for name in oracle.attributes for p, t in zip(predicted[name], rows[name])]
        return sum(checks) / len(checks)

    return accuracy
