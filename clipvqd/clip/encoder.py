"""The CLIP file every downstream rule reads, and the encoder built from it.

Whatever its source (an open_clip pretrained tag, a local weights file, or the world's stand-in trained
in the DAG), a CLIP reaches the rest of the workflow as one safetensors file plus a JSON sidecar with
the open_clip architecture config, the image normalisation and the weights' sha256 — its identity,
checked against the file's bytes whenever it is loaded.
Downstream jobs receive that path, never a hub name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

import open_clip
import torch
import torch.nn.functional as F

from clipvqd.checkpoint import load_meta, load_weights, save_weights

def register_model_config(name: str, model_cfg: dict[str, Any]) -> None:
    """Make `name` known to open_clip (create_model, get_tokenizer) with `model_cfg`, unless built in.

    open_clip registers configs only from files (`add_model_config` reads a directory's JSON files into its
    in-memory registry), so the config is written to a private temporary directory that is removed as soon as
    open_clip has read it: nothing is left in the temporary folder, even when the job is killed afterwards, and
    parallel jobs never share a file. open_clip keeps the (now missing) path in its search list; a later
    rescan skips a path that no longer exists and keeps the configs already read."""
    existing = open_clip.get_model_config(name)
    if existing is not None:
        if existing != model_cfg:
            raise ValueError(f"open_clip already knows a different model called '{name}'; rename the custom model")
        return
    with tempfile.TemporaryDirectory(prefix="clipvqd-open-clip-config-") as folder:
        (Path(folder) / f"{name}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(folder)
    if open_clip.get_model_config(name) is None:
        raise RuntimeError(f"open_clip did not register the model config '{name}'")


def save_clip(path: str | Path, model: torch.nn.Module, *, model_name: str, model_cfg: dict[str, Any],
              mean: Sequence[float], std: Sequence[float], source: dict[str, Any], extra: dict | None = None) -> str:
    """Write the CLIP file and its sidecar (with the weights' sha256, `weights_sha256`); return that sha256,
    the CLIP's identity."""
    meta = {
        "model_name": model_name,
        "model_cfg": model_cfg,
        "image_mean": list(mean),
        "image_std": list(std),
        "source": source,
        **(extra or {}),
    }
    return save_weights(path, model.state_dict(), meta)


@contextlib.contextmanager
def _weights_loaded_next():
    """open_clip warns "No pretrained weights loaded ... initialized randomly" when a model is built with
    pretrained=None, which is how a CLIP file is read: the weights are loaded right after, so the warning
    is dropped (that message only; every other warning passes)."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded for model")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class ClipEncoder:
    """Encodes uint8 images and strings to L2-normalised CLIP embeddings (no grad, batched)."""

    def __init__(self, model: torch.nn.Module, tokenizer, mean: Sequence[float], std: Sequence[float],
                 identity: str, device: str | torch.device = "cpu", batch_size: int = 256):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.identity = identity
        self.batch_size = batch_size
        size = model.visual.image_size
        self.input_resolution = int(size[0] if isinstance(size, (tuple, list)) else size)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 256) -> "ClipEncoder":
        meta = load_meta(path)
        register_model_config(meta["model_name"], meta["model_cfg"])
        with _weights_loaded_next():
            model = open_clip.create_model(meta["model_name"], pretrained=None)
        identity = load_weights(path, model)["weights_sha256"]  # checked against the file's bytes
        tokenizer = open_clip.get_tokenizer(meta["model_name"])
        return cls(model, tokenizer, meta["image_mean"], meta["image_std"], identity, device, batch_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float at the model's input resolution."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        pixels = images.to(self.device, torch.float32) / 255.0
        if pixels.shape[-1] != self.input_resolution or pixels.shape[-2] != self.input_resolution:
            pixels = F.interpolate(pixels, size=(self.input_resolution, self.input_resolution), mode="bicubic",
                                   align_corners=False, antialias=True).clamp(0, 1)
        return (pixels - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            F.normalize(self.model.encode_image(self.preprocess(images[i:i + self.batch_size])).float(), dim=-1)
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks).cpu() if chunks else torch.empty(0)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i:i + self.batch_size])).to(self.device)
            chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(chunks).cpu() if chunks else torch.empty(0)
