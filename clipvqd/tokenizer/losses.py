"""VQGAN training objective: L1 + LPIPS + hinge PatchGAN with an adaptive weight + Gumbel KL.

As in taming-transformers' VQLPIPSWithDiscriminator, the GAN term's weight is set each step so its
gradient at the decoder's last layer has the same norm as the reconstruction gradient's (times
`disc_weight`); the discriminator and the GAN term only switch on at `disc_start`, after the
autoencoder has learnt to reconstruct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from clipvqd.tokenizer.config import TokenizerTrainConfig
from clipvqd.tokenizer.discriminator import PatchDiscriminator
if TYPE_CHECKING:  # torchvision's model zoo only where LPIPS is built (tokenizer/train.py)
    from clipvqd.tokenizer.perceptual import LPIPS


@dataclass
class LossTerms:
    """Scalars of one step, detached, for the loss curve."""

    l1: float = 0.0
    perceptual: float = 0.0
    kl: float = 0.0
    gan: float = 0.0
    adaptive_weight: float = 0.0
    generator_total: float = 0.0
    disc: float = 0.0
    logits_real: float = 0.0
    logits_fake: float = 0.0


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(reconstruction_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        maximum: float) -> torch.Tensor:
    """||d rec / d last|| / ||d gan / d last||: balances the two gradients where they meet the image."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, maximum).detach()


class VQGANLoss(nn.Module):
    """Holds the discriminator (trained by `discriminator_loss`) and the optional frozen LPIPS."""

    def __init__(self, config: TokenizerTrainConfig, in_channels: int = 3, perceptual: LPIPS | None = None):
        super().__init__()
        if config.perceptual_enabled and perceptual is None:
            raise ValueError("the training config enables LPIPS but no LPIPS network was given")
        self.config = config
        self.discriminator = PatchDiscriminator(in_channels, config.disc_channels, config.disc_layers)
        self.perceptual = perceptual if config.perceptual_enabled else None

    def gan_active(self, step: int) -> bool:
        return self.config.disc_weight > 0 and step >= self.config.disc_start

    def generator_loss(self, images: torch.Tensor, reconstructions: torch.Tensor, kl: torch.Tensor, step: int,
                       last_layer: torch.Tensor) -> tuple[torch.Tensor, LossTerms]:
        c = self.config
        l1 = (images - reconstructions).abs().mean()
        reconstruction = c.l1_weight * l1
        perceptual = torch.zeros((), device=images.device)
        if self.perceptual is not None:
            perceptual = self.perceptual(reconstructions, images).mean()
            reconstruction = reconstruction + c.perceptual_weight * perceptual
        total = reconstruction + c.kl_weight * kl
        terms = LossTerms(l1=l1.item(), perceptual=perceptual.item(), kl=kl.item())
        if self.gan_active(step):
            # The discriminator is a fixed critic here; its own update happens in discriminator_loss.
            self.discriminator.requires_grad_(False)
            try:
                gan = -self.discriminator(reconstructions).mean()
            finally:
                self.discriminator.requires_grad_(True)
            weight = adaptive_gan_weight(reconstruction, gan, last_layer, c.adaptive_weight_max) * c.disc_weight
            total = total + weight * gan
            terms.gan, terms.adaptive_weight = gan.item(), weight.item()
        terms.generator_total = total.item()
        return total, terms

    def discriminator_loss(self, images: torch.Tensor, reconstructions: torch.Tensor,
                           terms: LossTerms) -> torch.Tensor:
        logits_real = self.discriminator(images)
        logits_fake = self.discriminator(reconstructions.detach())
        loss = hinge_discriminator_loss(logits_real, logits_fake)
        terms.disc = loss.item()
        terms.logits_real = logits_real.mean().item()
        terms.logits_fake = logits_fake.mean().item()
        return loss
