"""The two external ways to obtain a CLIP: an open_clip pretrained tag (needs a network) or a local file.

Both end in the same CLIP file (see `encoder.save_clip`); the third way, the worlds' stand-in trained in
the DAG, is in `standin.py`.
"""

from __future__ import annotations

from pathlib import Path

import open_clip

from clipvqd.clip.encoder import save_clip
from clipvqd.hashing import verify_sha256


def _normalisation(model) -> tuple[list[float], list[float]]:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    return list(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)), list(cfg.get("std", open_clip.OPENAI_DATASET_STD))


def _known_architecture(model_name: str) -> dict:
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ValueError(f"clip.model '{model_name}' is not an open_clip architecture (see open_clip.list_models())")
    return model_cfg


def fetch_pretrained(model_name: str, tag: str, out: str | Path, cache_dir: str | None = None,
                     expected_sha256: str | None = None) -> str:
    """Download `model_name`/`tag` through open_clip and write the CLIP file; return its sha256.

    The downloaded checkpoint's sha256 is recorded in the CLIP file's sidecar and, when `expected_sha256`
    (clip.<role>.sha256) is set, checked before the weights are loaded: a tag names weights, a hash pins
    them."""
    model_cfg = _known_architecture(model_name)
    # Checked before any download: offline, an unknown tag would only fail after a minute of retries.
    if (model_name, tag) not in set(open_clip.list_pretrained()):
        raise ValueError(f"clip.pretrained '{tag}' is not a published tag of '{model_name}' "
                         f"(known: {open_clip.list_pretrained_tags_by_model(model_name)})")
    checkpoint = open_clip.download_pretrained(open_clip.get_pretrained_cfg(model_name, tag), cache_dir=cache_dir)
    if not checkpoint:
        raise ValueError(f"open_clip gave no download for clip.model '{model_name}' clip.pretrained '{tag}'")
    source_sha = verify_sha256(checkpoint, expected_sha256,
                               what=f"CLIP checkpoint of {model_name}/{tag} (clip.sha256)")
    model = open_clip.create_model(model_name, pretrained=str(checkpoint))
    mean, std = _normalisation(model)
    return save_clip(out, model, model_name=model_name, model_cfg=model_cfg, mean=mean, std=std,
                     source={"kind": "pretrained", "model": model_name, "tag": tag, "sha256": source_sha})


def import_weights_file(model_name: str, weights: str | Path, expected_sha256: str | None, out: str | Path) -> str:
    """Check a local weights file against its sha256, load it with open_clip and write the CLIP file."""
    model_cfg = _known_architecture(model_name)
    source_sha = verify_sha256(weights, expected_sha256, what="CLIP weights file (clip.weights)")
    # open_clip loads .safetensors directly and other checkpoints with torch.load(weights_only=True).
    model = open_clip.create_model(model_name, pretrained=str(weights))
    mean, std = _normalisation(model)
    return save_clip(out, model, model_name=model_name, model_cfg=model_cfg, mean=mean, std=std,
                     source={"kind": "file", "model": model_name, "path": str(weights), "sha256": source_sha})
