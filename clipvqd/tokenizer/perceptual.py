"""LPIPS perceptual distance (Zhang et al. 2018, VGG16 variant), built only from declared local files.

Nothing is downloaded: the VGG16 backbone and the five LPIPS linear heads each come from a safetensors
file whose sha256 is checked first. Only safetensors is accepted (no pickles); the official `vgg.pth`
release converts with `safetensors.torch.save_file(torch.load(path, weights_only=True), out)`, and
torchvision's VGG16 weights likewise (their `features.*` keys are used, `classifier.*` is ignored).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from clipvqd.checkpoint import CheckpointMismatch, check_compatible
from clipvqd.hashing import verify_sha256

# Indices into torchvision's vgg16().features after which LPIPS taps relu1_2 ... relu5_3.
VGG_TAPS = (3, 8, 15, 22, 29)
VGG_TAP_CHANNELS = (64, 128, 256, 512, 512)


def _read_safetensors(path: str | Path, sha256: str | None, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{what} {path} must be a .safetensors file (pickled weights are never loaded)")
    verify_sha256(path, sha256, what)
    return load_file(str(path))


class LPIPS(nn.Module):
    """Distance (B,) between image batches in [-1, 1]; frozen, so it only passes gradients to its inputs."""

    def __init__(self) -> None:
        super().__init__()
        # LPIPS' own input normalisation (ImageNet statistics expressed for [-1, 1] images).
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        # VGG16's convolutional stack ("D") without its classifier, which LPIPS never uses.
        self.features = make_layers(cfgs["D"])[: VGG_TAPS[-1] + 1]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in VGG_TAP_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, vgg_weights: str | Path, vgg_sha256: str | None, linear_weights: str | Path,
                   linear_sha256: str | None) -> "LPIPS":
        model = cls()
        vgg = _read_safetensors(vgg_weights, vgg_sha256, "LPIPS VGG16 weights")
        backbone = {k.removeprefix("features."): v for k, v in vgg.items() if not k.startswith("classifier.")}
        # features.30 (the last max-pool) has no weights, so a full vgg16 file matches this truncated stack.
        check_compatible(model.features.state_dict(), backbone, str(vgg_weights))
        model.features.load_state_dict(backbone)
        linear = _read_safetensors(linear_weights, linear_sha256, "LPIPS linear weights")
        heads = {}
        for index in range(len(VGG_TAP_CHANNELS)):
            # The LPIPS release names them lin{i}.model.1.weight (a Dropout sits at model.0).
            for key in (f"lin{index}.model.1.weight", f"lin{index}.weight"):
                if key in linear:
                    heads[f"{index}.weight"] = linear[key]
                    break
            else:
                raise CheckpointMismatch(
                    f"LPIPS linear weights {linear_weights} have no 'lin{index}.model.1.weight' "
                    f"(keys: {sorted(linear)[:8]})"
                )
        check_compatible(model.heads.state_dict(), heads, str(linear_weights))
        model.heads.load_state_dict(heads)
        return model

    def train(self, mode: bool = True) -> "LPIPS":
        # Always evaluation mode: a frozen metric has no training behaviour.
        return super().train(False)

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        both = (torch.cat([images, targets]) - self.shift) / self.scale
        distance = images.new_zeros(images.shape[0])
        head_index = 0
        h = both
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in VGG_TAPS:
                # Unit-normalise each position's channel vector, then a learned weighted squared difference.
                unit = h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                first, second = unit.chunk(2)
                distance = distance + self.heads[head_index]((first - second).pow(2)).mean(dim=(1, 2, 3))
                head_index += 1
        return distance
