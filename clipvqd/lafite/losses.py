"""LAFITE's objectives (official: github.com/drboog/Lafite, training/loss.py `StyleGAN2Loss`).

G:  softplus(-D(G(z,h'), h'))  +  itc * C(CLIP(G(z,h')), h')  +  itd * C(D_feat(G(z,h')), h')
D:  softplus(D(G(z,h'), h')) + softplus(-D(x, h'))  +  itd * C(D_feat(x), h')  +  (gamma/2)|grad_x D(x, h')|^2

with C the contrastive loss below, h' the pseudo text feature of the real image x, and the R1 term applied
lazily. Path-length regularisation and style mixing of the official StyleGAN2 setup are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def contrastive_loss(features: Tensor, conditions: Tensor, temperature: float, lam: float = 0.0,
                     form: str = "official") -> Tensor:
    """Mean negative log-probability that row i of `features` and row i of `conditions` belong together.

    sim[i, j] = cos(features_i, conditions_j). Logits are sim / temperature ('infonce') or
    exp(sim / temperature) ('official', what the released `contra_loss` computes). With lam = 0 (the
    official default) the softmax runs over the features for each condition (dim 0); lam = 1 over the
    conditions for each feature; in between, a mix. The official code multiplies the probabilities by the
    temperature before the log, a constant offset of -log(temperature) that is left out here.
    """
    if features.shape != conditions.shape or features.dim() != 2:
        raise ValueError(f"features and conditions must both be (B, D), got {tuple(features.shape)} and "
                         f"{tuple(conditions.shape)}")
    sim = F.normalize(features.float(), dim=1) @ F.normalize(conditions.float(), dim=1).T
    logits = sim / temperature
    if form == "official":
        logits = logits.exp()
    elif form != "infonce":
        raise ValueError(f"contrastive form must be 'official' or 'infonce', got '{form}'")
    over_features = logits.log_softmax(dim=0).diagonal()
    over_conditions = logits.log_softmax(dim=1).diagonal()
    return -(lam * over_conditions + (1.0 - lam) * over_features).mean()


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating: -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """Per-sample |grad_x D(x)|^2 (real_images must require grad and be in the graph of the logits)."""
    (grads,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grads.square().sum(dim=(1, 2, 3))
