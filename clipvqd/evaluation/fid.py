"""FID, KID and precision/recall of a generated image set against a reference set.

Features come from `features.py` (torch-fidelity's extractors, cached by content); the metrics are then
computed with torch-fidelity's own feature-level functions, so a number here is the number
`torch_fidelity.calculate_metrics` gives on the same images (`torch_fidelity_metrics` runs that call
end to end, and the tests compare the two). clean-fid is the independent cross-check.

Conventions follow torch-fidelity: input 1 is *generated*, input 2 is *reference* (precision: generated
samples inside the reference manifold; recall: reference samples inside the generated manifold).
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from pathlib import Path

import torch

from clipvqd.evaluation.features import (
    FeatureCache,
    FeatureError,
    FeatureExtractorSpec,
    ImageSet,
    features_for,
)

# torch-fidelity's defaults, restated so the protocol can record them.
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
DEFAULT_PRC_NEIGHBORHOOD = 3
DEFAULT_SEED = 2020


def _as_image_set(images: ImageSet | str | Path) -> ImageSet:
    return images if isinstance(images, ImageSet) else ImageSet.from_manifest(images)


def metric_settings(n_generated: int, n_reference: int, kid_subsets: int = DEFAULT_KID_SUBSETS,
                    kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
                    prc_neighborhood: int = DEFAULT_PRC_NEIGHBORHOOD, seed: int = DEFAULT_SEED) -> dict:
    """The settings actually used: the KID subset shrinks to the smaller set (torch-fidelity would refuse),
    which the protocol records, since KID from small subsets is noisier. When a subset holds every image of
    two equal-sized sets (the distribution set against its reference), every subset is the same two sets in
    another order, so one subset gives the mean of any number of them: one is computed (about 5 CPU-seconds
    saved per 100 subsets of 1000 images), and the number requested is recorded beside it."""
    smallest = min(n_generated, n_reference)
    if smallest < 2:
        raise FeatureError(f"FID needs at least 2 images per set; got {n_generated} generated, {n_reference} reference")
    if smallest <= prc_neighborhood:
        raise FeatureError(
            f"precision/recall with neighbourhood {prc_neighborhood} needs more than {prc_neighborhood} images "
            f"per set; got {n_generated} generated, {n_reference} reference"
        )
    subset_size = min(kid_subset_size, smallest)
    settings = {
        "kid_subsets": kid_subsets,
        "kid_subset_size": subset_size,
        "prc_neighborhood": prc_neighborhood,
        "rng_seed": seed,
    }
    if subset_size == n_generated == n_reference and kid_subsets > 1:
        settings.update(kid_subsets=1, kid_subsets_requested=kid_subsets)
    return settings


def fid_from_features(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """FID between two feature matrices with torch-fidelity's statistics and distance."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    stats_generated = fid_features_to_statistics(generated.to(torch.float32).cpu())
    stats_reference = fid_features_to_statistics(reference.to(torch.float32).cpu())
    return float(fid_statistics_to_metric(stats_generated, stats_reference, verbose=False)[KEY_METRIC_FID])


def metrics_from_features(generated: torch.Tensor, reference: torch.Tensor, settings: dict) -> dict:
    """FID, KID (mean and std over subsets), precision and recall from features, via torch-fidelity."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    if generated.shape[1] != reference.shape[1]:
        raise FeatureError(f"feature widths differ: generated {generated.shape[1]}, reference {reference.shape[1]}")
    kid = kid_features_to_metric(generated, reference, kid_subsets=settings["kid_subsets"],
                                 kid_subset_size=settings["kid_subset_size"], rng_seed=settings["rng_seed"],
                                 verbose=False)
    prc = prc_features_to_metric(generated, reference, prc_neighborhood=settings["prc_neighborhood"],
                                 verbose=False)
    return {
        "fid": fid_from_features(generated, reference),
        "kid": float(kid[KEY_METRIC_KID_MEAN]),
        "kid_std": float(kid[KEY_METRIC_KID_STD]),
        "precision": float(prc[KEY_METRIC_PRECISION]),
        "recall": float(prc[KEY_METRIC_RECALL]),
    }


def image_set_metrics(generated: ImageSet | str | Path, reference: ImageSet | str | Path,
                      extractor: FeatureExtractorSpec, cache: FeatureCache | None = None, *,
                      kid_subsets: int = DEFAULT_KID_SUBSETS, kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
                      prc_neighborhood: int = DEFAULT_PRC_NEIGHBORHOOD, seed: int = DEFAULT_SEED,
                      device: str = "cpu", batch_size: int = 64) -> dict:
    """FID/KID/precision/recall of `generated` against `reference` (ImageSets or manifest paths).

    Returns `fid`, `kid`, `kid_std`, `precision`, `recall`, `n_generated`, `n_reference` and `settings`
    (the KID/PR settings actually used, for the protocol).
    """
    generated, reference = _as_image_set(generated), _as_image_set(reference)
    settings = metric_settings(len(generated), len(reference), kid_subsets, kid_subset_size,
                               prc_neighborhood, seed)
    features_generated = features_for(generated, extractor, cache, device=device, batch_size=batch_size)
    features_reference = features_for(reference, extractor, cache, device=device, batch_size=batch_size)
    result = metrics_from_features(features_generated, features_reference, settings)
    result.update(n_generated=len(generated), n_reference=len(reference), settings=settings)
    return result


def torch_fidelity_metrics(generated: ImageSet | str | Path, reference: ImageSet | str | Path,
                           extractor: FeatureExtractorSpec, *, kid_subsets: int = DEFAULT_KID_SUBSETS,
                           kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
                           prc_neighborhood: int = DEFAULT_PRC_NEIGHBORHOOD, seed: int = DEFAULT_SEED,
                           device: str = "cpu", batch_size: int = 64) -> dict:
    """The same four numbers from one plain `torch_fidelity.calculate_metrics` call (no cache of ours,
    torch-fidelity's own cache off): the reference implementation `image_set_metrics` must match."""
    import torch_fidelity

    generated, reference = _as_image_set(generated), _as_image_set(reference)
    settings = metric_settings(len(generated), len(reference), kid_subsets, kid_subset_size,
                               prc_neighborhood, seed)
    out = torch_fidelity.calculate_metrics(
        input1=generated.dataset(), input2=reference.dataset(), fid=True, kid=True, prc=True,
        cuda=str(device).startswith("cuda"), batch_size=batch_size, cache=False, save_cpu_ram=True,
        verbose=False, **extractor.fidelity_kwargs(), **settings,
    )
    return {
        "fid": float(out[torch_fidelity.KEY_METRIC_FID]),
        "kid": float(out[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(out[torch_fidelity.KEY_METRIC_KID_STD]),
        "precision": float(out[torch_fidelity.KEY_METRIC_PRECISION]),
        "recall": float(out[torch_fidelity.KEY_METRIC_RECALL]),
    }


def _link_set_into(folder: Path, images: ImageSet) -> None:
    """clean-fid reads whole folders; give it one holding exactly the set's files (as links)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(images.paths):
        target = folder / f"{index:06d}{path.suffix.lower()}"
        try:
            os.symlink(Path(path).resolve(), target)
        except OSError:  # filesystems without symlinks
            target.write_bytes(Path(path).read_bytes())


def cleanfid_cross_check(generated: ImageSet | str | Path, reference: ImageSet | str | Path,
                         extractor: FeatureExtractorSpec, *, resize: str | None = None,
                         device: str = "cpu", batch_size: int = 32) -> dict:
    """FID of the same two sets through clean-fid's `compute_fid`, with our extractor plugged in.

    clean-fid's own Inception is a download, so the extractor is passed as `custom_feat_extractor`.
    `resize`:
      * "none": images reach the extractor as they are (it resizes as in torch-fidelity), so the result
        must agree with torch-fidelity up to the matrix square root (clean-fid uses scipy's sqrtm,
        torch-fidelity eigenvalues): a check of the FID arithmetic and the image reading;
      * "clean": clean-fid's PIL-bicubic resize to 299x299 first (its "clean" mode): the number clean-fid
        reports for Inception; it differs from torch-fidelity's by the resize alone.
    Default: "clean" for Inception, "none" for other encoders (which have their own input size).
    """
    from cleanfid import fid as cleanfid
    from cleanfid.resize import build_resizer

    generated, reference = _as_image_set(generated), _as_image_set(reference)
    resize = resize or ("clean" if extractor.is_inception else "none")
    if resize not in ("clean", "none"):
        raise FeatureError(f"cleanfid_cross_check: resize must be 'clean' or 'none', got {resize!r}")
    module = extractor.create(device)

    def extract(batch: torch.Tensor) -> torch.Tensor:
        # clean-fid hands over float images in [0, 255]; torch-fidelity extractors take uint8.
        as_uint8 = batch.round().clamp(0, 255).to(torch.uint8)
        return module(as_uint8)[0]

    fn_resize = build_resizer("clean") if resize == "clean" else (lambda array: array)
    value, error = None, None
    with tempfile.TemporaryDirectory(prefix="clipvqd-cleanfid-") as scratch, warnings.catch_warnings():
        # clean-fid passes scipy's deprecated `disp` argument; that is clean-fid's business, not the user's.
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        folder_generated, folder_reference = Path(scratch, "generated"), Path(scratch, "reference")
        _link_set_into(folder_generated, generated)
        _link_set_into(folder_reference, reference)
        try:
            value = float(cleanfid.compute_fid(
                str(folder_generated), str(folder_reference), mode="clean", custom_feat_extractor=extract,
                custom_fn_resize=fn_resize, device=torch.device(device), num_workers=0, batch_size=batch_size,
                verbose=False, use_dataparallel=False,
            ))
        except FeatureError:
            raise  # our extractor's own complaint, not clean-fid's arithmetic
        except ValueError as failure:
            # clean-fid refuses a matrix square root with a large imaginary part, which happens when
            # there are fewer images than feature dimensions; the cross-check then records why it failed
            # instead of failing the measurement it was meant to check.
            error = f"clean-fid failed: {failure}"
    return {
        "fid": value,
        "error": error,
        "library": "clean-fid",
        "version": importlib.metadata.version("clean-fid"),
        "resize": resize,
        "feature_extractor": extractor.registry_name,
        "n_generated": len(generated),
        "n_reference": len(reference),
    }


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


__all__ = [
    "cleanfid_cross_check",
    "fid_from_features",
    "image_set_metrics",
    "metric_settings",
    "metrics_from_features",
    "relative_difference",
    "torch_fidelity_metrics",
]
