"""Shared fixtures of the tokenizer tests: a tiny architecture and synthetic coloured-blob images."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from clipvqd.tokenizer import TokenizerConfig, TokenizerTrainConfig

TINY = TokenizerConfig(
    resolution=16,
    channels=16,
    channel_multipliers=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    z_channels=16,
    embed_dim=16,
    codebook_size=32,
    norm_groups=8,
)


def tiny_training(**overrides) -> TokenizerTrainConfig:
    values = dict(max_steps=6, batch_size=4, learning_rate=2e-3, disc_learning_rate=2e-3, disc_start=2, disc_weight=0.8,
                  disc_layers=1, disc_channels=8, snapshot_every=100, log_every=2, preload=True)
    values.update(overrides)
    return TokenizerTrainConfig(**values)


def blob_images(count: int, resolution: int = 16, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1]: a plain background with one coloured disc of random position and size."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, resolution)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    images = []
    for _ in range(count):
        background, colour = torch.rand(2, 3, 1, 1, generator=generator) * 2 - 1
        cx, cy = (0.25 + 0.5 * torch.rand(2, generator=generator)).tolist()
        radius = 0.15 + 0.2 * torch.rand(1, generator=generator).item()
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2).float()
        images.append(background * (1 - inside) + colour * inside)
    return torch.stack(images)


class TensorImages(Dataset):
    """Images held in one tensor, with the optional `paths` a manifest dataset has."""

    def __init__(self, images: torch.Tensor, paths: list[str] | None = None):
        self.images = images
        if paths is not None:
            self.paths = paths

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine OpenMP's
    spin-waiting for a descheduled thread made each step tens of times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
