"""An exponential moving average of a module's weights: what the diffusion, LAFITE and clip2latent
trainers save and sample from."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn


class ExponentialMovingAverage:
    """EMA of a module's floating-point state (integer buffers are copied).

    `update` moves every shadow value a fraction 1 - decay of the way to the module's current one;
    `decay` may be changed between updates (LAFITE ramps it up with the images seen)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {key: value.detach().clone() for key, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        shadows, values = [], []
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                shadows.append(self.shadow[key])
                values.append(value.detach())
            else:
                self.shadow[key].copy_(value)
        # One multi-tensor call: per tensor the same lerp as a loop of lerp_ (bit-identical), without the
        # per-tensor dispatch that dominated this update for small models.
        if shadows:
            torch._foreach_lerp_(shadows, values, 1.0 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return {key: value.clone() for key, value in self.shadow.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the model's parameters")
        for key, value in state.items():
            self.shadow[key].copy_(value)
