"""From CLIP text embeddings to pixels: sample compact token maps with the denoiser, expand them to the
tokenizer's codebook, decode. The glue between `sampler.sample` and the tokenizer, usable on its own."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clipvqd.manifest import to_uint8

from .condition import NullCondition, text_condition
from .mask_and_replace import MaskAndReplace
from .sampler import sample
from .transformer import Denoiser


@dataclass(frozen=True)
class SamplingSettings:
    """One point of the sampling sweep (docs/design.md §4 "Sampling")."""

    guidance_scale: float = 1.0
    """s of classifier-free guidance (1 = no guidance, no null pass)."""
    truncation_r: float = 1.0
    """Per token, keep the smallest set of codes whose probability reaches r (1 = no truncation)."""
    steps: int | None = None
    """Reverse steps; fewer than the model's T strides through the schedule (None = all T)."""
    purity: bool = False
    """Improved VQ-Diffusion's purity-prior unmasking order instead of posterior sampling."""
    unconditional: bool = False
    """Condition every image on the learnable null vector instead of its prompt (the lower-bound control)."""
    null_condition: str = "normalized"
    """How the guidance branch feeds the learnable null vector: "normalized" (the unit vector training
    substitutes, so the model sees it on the sphere it was trained on) or "raw" (the parameter as it is, as
    the release does: clip_vqdiffusion.py feeds transformer.empty_text_embed unnormalised although
    diffusion_transformer.py trains with empty_text_embed / its norm; docs/deviations.md D1). A sampling
    setting, so changing it resamples without retraining."""


def generate_images(denoiser: Denoiser, null_condition: NullCondition, tokenizer, code_mapping,
                    text_embeddings: Tensor, settings: SamplingSettings, *, seed: int, batch_size: int = 64,
                    progress: bool = True) -> Tensor:
    """One uint8 image `(N, 3, R, R)` per row of `text_embeddings` `(N, D)`; image i uses random stream (seed, i)."""
    config = denoiser.config
    if code_mapping.vocab_size != config.num_codes:
        raise ValueError(f"the denoiser has K={config.num_codes} codes but the tokenizer's code mapping has "
                         f"{code_mapping.vocab_size}: they were not trained together")
    if text_embeddings.shape[1] != config.condition_dim:
        raise ValueError(f"prompt embeddings have {text_embeddings.shape[1]} dimensions, the denoiser expects "
                         f"{config.condition_dim}: were they made by the conditioner CLIP?")
    device = next(denoiser.parameters()).device
    schedule = MaskAndReplace(config.num_codes, config.num_steps).to(device)
    if settings.unconditional:
        # The unconditional control's only condition is the normalised vector it was trained with;
        # settings.null_condition concerns the guidance branch of conditional models.
        condition = null_condition.normalized().detach().expand(len(text_embeddings), -1).clone()
    else:
        condition = text_condition(text_embeddings.float())
    guidance = 1.0 if settings.unconditional else settings.guidance_scale
    with torch.no_grad():
        codes = sample(denoiser, schedule, condition.to(device), guidance_scale=guidance,
                       truncation_r=settings.truncation_r, num_steps=settings.steps, purity=settings.purity,
                       seed=seed, batch_size=batch_size, null_condition=null_condition,
                       null_condition_form=settings.null_condition, progress=progress)
        images = [to_uint8(tokenizer.decode_codes(code_mapping.expand(codes[i:i + batch_size].to(device))).cpu())
                  for i in range(0, len(codes), batch_size)]
    return torch.cat(images)
