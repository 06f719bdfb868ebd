"""The diffusion trainer's settings: the training mode and the optimisation settings, each documented."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Mapping

from clipvqd.config_blocks import from_mapping

# How the loss combines the per-step bound terms (see `loss_over_steps` below and clipvqd.diffusion.loss).
LOSS_OVER_STEPS = ("mean", "sum")


class TrainingMode(str, Enum):
    LANGUAGE_FREE = "language_free"
    CFG_FINETUNE = "cfg_finetune"
    PAIRED = "paired"
    PAIRED_CFG_FINETUNE = "paired_cfg_finetune"
    UNCONDITIONAL = "unconditional"

    @property
    def uses_text_condition(self) -> bool:
        """The paired control's two stages: conditioned on the real captions' CLIP text embeddings."""
        return self in (TrainingMode.PAIRED, TrainingMode.PAIRED_CFG_FINETUNE)

    @property
    def drops_condition(self) -> bool:
        """The CFG fine-tunes: a sample's condition is replaced by the learned null vector with probability p."""
        return self in (TrainingMode.CFG_FINETUNE, TrainingMode.PAIRED_CFG_FINETUNE)

    @property
    def needs_init(self) -> bool:
        return self.drops_condition

    @classmethod
    def parse(cls, value: "TrainingMode | str") -> "TrainingMode":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown training mode '{value}'; expected one of {[m.value for m in cls]}") from None


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """Optimisation settings. Defaults: language-free pretraining of the world's CPU-sized model."""

    steps: int = 1600
    """Optimiser steps in total (a resumed run stops at the same total). World default: about 9
    minutes on one CPU thread for the default model on 16x16 tokens (800 steps left the paired
    control at 0.56 attribute accuracy against 0.42 for the unconditional one)."""
    batch_size: int = 16
    """Global batch: token maps per step summed over all processes (must divide evenly among them)."""
    learning_rate: float = 1e-3
    """Peak learning rate reached after warm-up (paper pretraining: 4.5e-4; fine-tuning: 4e-6). The
    world default is higher because the small model trains for minutes, not days."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to learning_rate (paper pretraining: 2000; fine-tuning: 30000)."""
    final_lr_fraction: float = 0.1
    """After warm-up, cosine decay to learning_rate * this by the last step; 1.0 keeps it constant.
    (The paper reduces on a validation plateau, which a fixed-budget offline run cannot reproduce.)"""
    adam_betas: tuple[float, float] = (0.9, 0.96)
    """AdamW betas (paper)."""
    weight_decay: float = 4.5e-2
    """AdamW decoupled weight decay (paper), applied to every trained parameter as in the release."""
    grad_clip_norm: float = 0.5
    """Global gradient-norm clip, used only during the first grad_clip_steps steps (paper: 0.5)."""
    grad_clip_steps: int = 5000
    """Steps from the start during which gradients are clipped (paper: 5000)."""
    ema_decay: float = 0.99
    """Decay of the exponential moving average of the weights; the EMA weights are what is saved."""
    ema_update_every: int = 1
    """Steps between EMA updates (paper: 25 with decay 0.99, an averaging horizon of ~2500 steps). The
    world default updates every step (horizon ~100 steps): with every 5th step, the saved weights of a
    1200-step run lagged so far behind that the rarer attributes were not followed at all."""
    aux_loss_weight: float = 5e-4
    """lambda of the auxiliary -log p(x0 | x_t) term, scaled by (2 - t/T) (paper: 5e-4)."""
    importance_min_samples: int = 10
    """Timesteps are uniform until every step index has this many loss samples (paper: 10)."""
    importance_history_decay: float = 0.9
    """Decay of each step's moving average of L_t^2 that sets the importance distribution."""
    loss_over_steps: str = "mean"
    """"mean": the objective estimates the average of the per-step bound terms over the T steps (weight
    1/(p(t) T)); "sum": their sum, T times as large (weight 1/p(t)), as the official code optimises, so
    that grad_clip_norm acts on the official scale (clipvqd.diffusion.loss, docs/deviations.md)."""
    condition_noise_alpha: float = 0.5
    """alpha of the language-free condition noise (FFHQ 0.5, COCO 0.25; ablation 0.25-0.9). Used by
    language_free and cfg_finetune."""
    null_condition_probability: float = 0.1
    """cfg_finetune and paired_cfg_finetune: probability that a sample's condition is replaced by the
    null vector (paper 0.1)."""
    snapshot_every: int = 200
    """Steps between resume snapshots in work_dir."""
    log_every: int = 10
    """Steps averaged into one row of the loss-curve CSV."""

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "final_lr_fraction": 0.0 <= self.final_lr_fraction <= 1.0,
            "adam_betas": len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
            "weight_decay": self.weight_decay >= 0,
            "grad_clip_norm": self.grad_clip_norm > 0,
            "grad_clip_steps": self.grad_clip_steps >= 0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "ema_update_every": self.ema_update_every >= 1,
            "aux_loss_weight": self.aux_loss_weight >= 0,
            "importance_min_samples": self.importance_min_samples >= 1,
            "importance_history_decay": 0.0 <= self.importance_history_decay < 1.0,
            "loss_over_steps": self.loss_over_steps in LOSS_OVER_STEPS,
            "condition_noise_alpha": self.condition_noise_alpha >= 0,
            "null_condition_probability": 0.0 <= self.null_condition_probability <= 1.0,
            "snapshot_every": self.snapshot_every >= 1,
            "log_every": self.log_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DiffusionTrainConfig: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    @classmethod
    def world_finetune(cls) -> "DiffusionTrainConfig":
        """CFG fine-tuning of the world model: short, at a tenth of the pretraining learning rate."""
        return cls(steps=300, learning_rate=1e-4, warmup_steps=20, final_lr_fraction=1.0, grad_clip_steps=0)

    @classmethod
    def paper_pretrain(cls) -> "DiffusionTrainConfig":
        """The released FFHQ pretraining solver (batch 16 per GPU; steps are a budget choice)."""
        return cls(steps=300_000, batch_size=16, learning_rate=4.5e-4, warmup_steps=2000, final_lr_fraction=1.0,
                   ema_update_every=25, snapshot_every=2000, log_every=100)

    @classmethod
    def paper_finetune(cls) -> "DiffusionTrainConfig":
        """The released FFHQ CFG fine-tuning solver (warm-up to 4e-6 over 30k steps)."""
        return cls(steps=100_000, batch_size=8, learning_rate=4e-6, warmup_steps=30_000, final_lr_fraction=1.0,
                   ema_update_every=25, snapshot_every=2000, log_every=100)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["adam_betas"] = list(self.adam_betas)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "DiffusionTrainConfig":
        return from_mapping(cls, values, source)
