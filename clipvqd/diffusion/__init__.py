"""CLIP-VQDiffusion's discrete diffusion: schedule and posteriors, denoiser, loss, conditions, sampler,
trainer. Every piece is usable without Snakemake; see docs/design.md §4 for the method's numbers.

The names below are imported on first use (`clipvqd.lazy_exports`), so that the torch-free configuration
modules (`model_config`, `train_config`) can be imported without torch.
"""

from typing import TYPE_CHECKING

from clipvqd.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .condition import NullCondition, l2_normalize, noisy_image_condition, text_condition
    from .loss import DiffusionLoss, TimestepSampler, diffusion_loss
    from .mask_and_replace import LOG_ZERO, MaskAndReplace, index_to_log_onehot, log_onehot_to_index
    from .model_config import DenoiserConfig
    from .sampler import guided_log_x0, predict_log_x0, reverse_step_counts, sample, truncate, truncation_keep_mask
    from .train import DenoiserAndNullCondition, load_denoiser, train_diffusion
    from .train_config import DiffusionTrainConfig, TrainingMode
    from .transformer import Denoiser

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
