"""What every trainer shares and no model code: the bookkeeping of a resumable training run.

seeding        random streams named by integers (derive_seed, generator_for, seeded_global_rng)
ema            the exponential moving average of a module's weights
distributed    rank, world size and barriers under torchrun (or one process alone)
schedules      learning-rate multipliers (linear warm-up, then cosine decay)
fingerprint    the identity of a run's data and settings, stored with each snapshot
resume_state   snapshots in a work folder, written atomically, loaded without executing pickled code
curve          the loss-curve CSV, written whole and atomically
run            TrainingRun: start or resume, snapshots, curve, elapsed time, progress bar, final save
work_lock      one trainer per work folder (an flock with the holder's pid inside)
lifetime       a job ends with the Snakemake that started it (no orphan trainers)

The trainers (stand-in CLIP, oracle, tokenizer, diffusion, LAFITE, clip2latent) build on these; nothing
here imports a model package.
"""

from .curve import write_curve_csv
from .distributed import Distributed
from .ema import ExponentialMovingAverage
from .fingerprint import BOOKKEEPING_KEYS, settings_fingerprint, tensor_sha256, without_bookkeeping
from .resume_state import CorruptResumeState, ResumeState
from .run import TrainingRun
from .schedules import warmup_cosine
from .seeding import derive_seed, generator_for, seeded_global_rng

__all__ = [
    "BOOKKEEPING_KEYS",
    "CorruptResumeState",
    "Distributed",
    "ExponentialMovingAverage",
    "ResumeState",
    "TrainingRun",
    "derive_seed",
    "generator_for",
    "seeded_global_rng",
    "settings_fingerprint",
    "tensor_sha256",
    "warmup_cosine",
    "without_bookkeeping",
    "write_curve_csv",
]
