"""CLIP-VQDiffusion's discrete diffusion: schedule and posteriors, denoiser, loss, conditions, sampler,
trainer. Every piece is usable without Snakemake; see docs/design.md §4 for the method's numbers."""

from .condition import NullCondition, l2_normalize, noisy_image_condition, text_condition
from .loss import DiffusionLoss, TimestepSampler, diffusion_loss
from .mask_and_replace import LOG_ZERO, MaskAndReplace, index_to_log_onehot, log_onehot_to_index
from .sampler import guided_log_x0, predict_log_x0, reverse_step_counts, sample, truncate, truncation_keep_mask
from .train import DenoiserAndNullCondition, load_denoiser, train_diffusion
from .train_config import DiffusionTrainConfig, TrainingMode
from .transformer import Denoiser, DenoiserConfig

__all__ = [
    "LOG_ZERO",
    "Denoiser",
    "DenoiserAndNullCondition",
    "DenoiserConfig",
    "DiffusionLoss",
    "DiffusionTrainConfig",
    "MaskAndReplace",
    "NullCondition",
    "TimestepSampler",
    "TrainingMode",
    "diffusion_loss",
    "guided_log_x0",
    "index_to_log_onehot",
    "l2_normalize",
    "load_denoiser",
    "log_onehot_to_index",
    "noisy_image_condition",
    "predict_log_x0",
    "reverse_step_counts",
    "sample",
    "text_condition",
    "train_diffusion",
    "truncate",
    "truncation_keep_mask",
]
