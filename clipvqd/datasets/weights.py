"""Pretrained weights that the suite fetches: where they come from and how they become safetensors.

The published LPIPS and VGG16 files are PyTorch pickles. They are read here only after their sha256
matched the declared one (the download rule checks it; `to_safetensors` checks it again), and then
only with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
The tokenizer reads the resulting safetensors files (`clipvqd.tokenizer.perceptual`). Inception for
FID stays a pickle because torch-fidelity loads that format itself, after the suite checks its sha256.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from clipvqd.hashing import verify_sha256


def to_safetensors(source: str | Path, sha256: str, out: str | Path, what: str = "weights") -> str:
    """Check `source` against `sha256`, load its tensors safely, write them to `out`; return out's sha256."""
    verify_sha256(source, sha256, what)
    state = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} {source} is not a flat mapping of tensor names to tensors")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    # safetensors refuses tensors that share memory; contiguous copies keep every name.
    save_file({name: tensor.detach().contiguous().clone() for name, tensor in state.items()}, str(tmp),
              metadata={"source": Path(source).name, "source_sha256": sha256.lower()})
    os.replace(tmp, out)
    return verify_sha256(out, None, what)
