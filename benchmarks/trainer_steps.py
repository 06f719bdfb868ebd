#!/usr/bin/env python
"""Every CPU trainer's optimiser step in two forms, A and B, timed alternately in one process (issue 19,
target 1: the same learning for less CPU).

For each trainer of the default run the script builds the model(s), optimiser(s) and in-memory data at the
shapes of the run's resolved config (`--config`, read as Snakemake reads it, schema defaults filled), once per
form, and times `--steps` optimiser steps of A, then of B (B first in every other round), for `--rounds`
rounds. Per round it records the CPU seconds (this process and its children: inductor compiles in worker
processes) and the wall seconds of each form; the result is the ratio B / A per round, with its median, min
and max (the spread), the median of the rounds that ran A first and of those that ran B first, how many
rounds fell below 1, and whether all of them fell on the same side of 1 (`consistent`, from four rounds). A
run with B = A measures the spread itself. Both forms see the same step indices, hence the same batches and
draws: the losses they report at the first step (`first_step_loss_difference`: rounding-sized when the forms
compute the same function), over all steps (`max_abs_loss_difference`: how fast training amplifies rounding)
and the final weights (`bit_identical`) say how far apart their numbers drift. From the steady rate and the
warm-up's extra cost (compilation), `projected_job_b_over_a` estimates the ratio for the run's whole job.

A form is a set of knobs, `--a KEY=VALUE,...` and `--b KEY=VALUE,...`; a knob not given keeps the library's
own setting (the trainer's default). Knobs every trainer has:

  compile        0/1   `torch.compile` (inductor) of the trainer's networks, in place (`nn.Module.compile`);
                       compilation happens in the form's warm-up steps (`warmup`, `warmup_extra_cpu_s`);
                       inductor's on-disk cache is off unless --compile-cache, so it is counted in full
  channels_last  0/1   the networks' weights and the image batch in channels-last memory format (oneDNN's
                       preferred layout for convolutions on CPU)
  threads        N     torch intra-op threads while this form runs (jobs run with 1: device.torch_threads)

and trainer-specific ones (`--list` prints every trainer's knobs with the run's own settings; a trainer
ignores knobs it lacks, and is skipped when that leaves A and B the same). The trainers:

  tokenizer         Gumbel VQGAN (encoder, Gumbel quantizer, decoder; L1 + KL, as the default run trains it)
  diffusion         the denoiser in language-free mode (`clipvqd.diffusion.train`'s loop body)
  lafite            LAFITE's G and D steps, lazy R1, EMA, with the conditioner CLIP for the itc loss
  stylegan2         clip2latent's unconditional StyleGAN2 (the same loop without the CLIP)
  prior             clip2latent's diffusion prior
  clip_conditioner  the conditioner stand-in CLIP (open_clip), NegCLIP loss with its hard negatives
  clip_judge        the judge stand-in CLIP
  oracle            the attribute oracle (small CNN with augmentations)

`--profile` runs torch.profiler over `--profile-steps` steps of form A of each trainer after its warm-up
and stores the operators with the most self CPU time and the share of the step each family of operators
takes (convolution, matmul, optimiser, ...): where the time goes.

Data are random (images uniform in [-1, 1], token maps, unit embeddings); the CLIPs' captions and hard
negatives are the faces world's own (`World.caption_with_negatives`), since their length sets the text
tower's cost. The cost of a step does not depend on the values.

    python benchmarks/trainer_steps.py --trainers lafite,stylegan2 --a modulated_conv=grouped --b modulated_conv=scaled
    python benchmarks/trainer_steps.py --trainers tokenizer --a compile=0 --b compile=1 --rounds 4
    python benchmarks/trainer_steps.py --profile --rounds 0      # profiles only
    python benchmarks/trainer_steps.py --quick                   # tiny shapes: checks the script

Writes JSON to --out (default benchmarks/results/trainer_steps.json).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from clipvqd.paper_cost import resolve_config  # noqa: E402
from clipvqd.training import ExponentialMovingAverage, generator_for, seeded_global_rng, warmup_cosine  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "trainer_steps.json"
REPO = Path(__file__).resolve().parents[1]
COMMON_KNOBS = {"compile": 0, "channels_last": 0, "threads": 1}

# Families of profiler operators, first match wins (aten names; the backward ops carry "Backward").
FAMILIES = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("matmul", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm", "einsum")),
    ("attention", ("scaled_dot_product", "softmax")),
    ("optimizer", ("_foreach", "adam", "Optimizer", "lerp", "_fused")),
    ("pooling/resampling", ("pool", "upsample", "interpolate", "grid_sampler")),
    ("normalisation", ("norm", "batch_norm", "group_norm", "layer_norm")),
    ("random", ("rand", "normal", "multinomial", "bernoulli", "randperm")),
)


def parse_form(text: str) -> dict[str, str]:
    form = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise SystemExit(f"form item {item!r} is not KEY=VALUE (e.g. compile=1)")
        key, value = item.split("=", 1)
        form[key.strip()] = value.strip()
    return form


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"expected 0/1, got {value!r}")


def to_memory_format(modules: list[torch.nn.Module], channels_last: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        module.to(memory_format=fmt)


def compile_modules(modules: list[torch.nn.Module]) -> None:
    """In place, so state_dict keys (EMA, digests) are unchanged."""
    for module in modules:
        module.compile()


def random_images(n: int, resolution: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, resolution, resolution, generator=g) * 2 - 1


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1)


# ---- the trainers' steps -------------------------------------------------------------------------------------
# Each class mirrors the body of its trainer's loop (file named in the docstring) with the library's own
# modules and losses; the bookkeeping that is not per-step compute (snapshots, progress bar, the curve CSV)
# is left out. `knob_defaults(config)` gives the trainer-specific knobs and the run's own setting of each.


class TrainerStep:
    @classmethod
    def knob_defaults(cls, config: dict) -> dict[str, Any]:
        return {}

    def __init__(self, config: dict, form: dict[str, Any], seed: int, quick: bool):
        self.config, self.form, self.seed, self.quick = config, form, seed, quick
        self.channels_last = as_bool(form["channels_last"])
        self.compiled = as_bool(form["compile"])
        self.last_loss: float | None = None

    def networks(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def finish_build(self, convolutional: list[torch.nn.Module]) -> None:
        to_memory_format(convolutional, self.channels_last)
        if self.compiled:
            compile_modules(self.compiled_modules())

    def compiled_modules(self) -> list[torch.nn.Module]:
        return self.networks()

    def images_format(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def step(self, index: int) -> None:
        raise NotImplementedError

    def state(self) -> list[dict[str, torch.Tensor]]:
        return [module.state_dict() for module in self.networks()]

    @classmethod
    def job_steps(cls, config: dict) -> int | None:
        return None


class TokenizerStep(TrainerStep):
    """clipvqd/tokenizer/train.py: Gumbel sample at the annealed temperature, L1 (+ LPIPS, + PatchGAN after
    disc_start where the config enables them; the default run has neither), AdamW."""

    @classmethod
    def knob_defaults(cls, config):
        return {"channels_last": 1}  # the trainer stores both networks channels-last

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
        from clipvqd.tokenizer.losses import VQGANLoss
        from clipvqd.tokenizer.model import GumbelVQGAN

        model_cfg = TokenizerConfig.from_dict(config["tokenizer"]["model"])
        train_cfg = TokenizerTrainConfig.from_dict({**config["tokenizer"]["train"], "lpips_vgg_weights": None})
        if quick:
            train_cfg = replace(train_cfg, batch_size=2)
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        with seeded_global_rng(seed, 61):
            self.model = GumbelVQGAN(model_cfg)
            self.loss = VQGANLoss(train_cfg, model_cfg.in_channels, None)
        self.model.train(), self.loss.train()
        adamw = dict(betas=tuple(train_cfg.adam_betas), weight_decay=train_cfg.weight_decay)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=train_cfg.learning_rate, **adamw)
        self.opt_d = torch.optim.AdamW(self.loss.discriminator.parameters(), lr=train_cfg.disc_learning_rate, **adamw)
        self.images = random_images(train_cfg.batch_size * 8, model_cfg.resolution, seed)
        self.steps_total = 2000
        self.finish_build([self.model, self.loss])

    def networks(self):
        return [self.model, self.loss.discriminator]

    def compiled_modules(self):
        return [self.model.encoder, self.model.decoder]

    def step(self, index):
        from clipvqd.tokenizer.quantizer import cosine_temperature

        cfg, batch_size = self.train_cfg, self.train_cfg.batch_size
        order = torch.randperm(len(self.images), generator=generator_for(self.seed, 62, index))[:batch_size]
        batch = self.images_format(self.images[order])
        temperature = cosine_temperature(index, cfg.temperature_start, cfg.temperature_end, self.steps_total)
        reconstructions, quantized = self.model(batch, temperature, generator_for(self.seed, 63, index))
        generator_loss, terms = self.loss.generator_loss(batch, reconstructions, quantized.kl, index,
                                                         self.model.last_layer)
        self.opt_g.zero_grad(set_to_none=True)
        generator_loss.backward()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
        self.opt_g.step()
        if self.loss.gan_active(index):
            disc_loss = self.loss.discriminator_loss(batch, reconstructions, terms)
            self.opt_d.zero_grad(set_to_none=True)
            disc_loss.backward()
            self.opt_d.step()
        torch.bincount(quantized.codes.flatten(), minlength=self.model_cfg.codebook_size)  # the curve window
        self.last_loss = terms.generator_total

    @classmethod
    def job_steps(cls, config):
        train = config["tokenizer"]["train"]
        size = config["data"]["world"]["sizes"]["train"]
        return train["max_steps"] or train["epochs"] * (size // train["batch_size"])


class DiffusionStep(TrainerStep):
    """clipvqd/diffusion/train.py, `_train`'s loop body in language-free mode (the library's own batch draw,
    loss, AdamW, importance sampler and EMA)."""

    @classmethod
    def knob_defaults(cls, config):
        # The trainer stores the ConvMLP weights channels-last; num_codes: the tokenizer's codebook (the run
        # trains on its compacted vocabulary, about half of it in the default run: pass num_codes=N for that).
        return {"channels_last": 1, "mode": "language_free", "num_codes": config["tokenizer"]["model"]["codebook_size"]}

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        from clipvqd.diffusion import (DenoiserAndNullCondition, DenoiserConfig, DiffusionTrainConfig, MaskAndReplace,
                                       TimestepSampler, TrainingMode)
        from clipvqd.diffusion.train import build_optimizer
        from clipvqd.diffusion.transformer import ConvMLP

        tok = config["tokenizer"]["model"]
        grid = tok["resolution"] // 2 ** (len(tok["channel_multipliers"]) - 1)
        model_cfg = DenoiserConfig.from_dict({**config["diffusion"]["model"], "num_codes": form["num_codes"],
                                              "grid_height": grid, "grid_width": grid,
                                              "condition_dim": config["clip"]["conditioner"]["standin"]["embed_dim"]})
        train_cfg = DiffusionTrainConfig.from_dict(config["diffusion"]["pretrain"])
        if quick:
            model_cfg = replace(model_cfg, hidden_dim=16, num_layers=1, num_heads=2)
            train_cfg = replace(train_cfg, batch_size=2)
        self.mode = TrainingMode.parse(form["mode"])
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        with seeded_global_rng(seed, 1):
            self.parts = DenoiserAndNullCondition(model_cfg)
        self.parts.null_condition.vector.requires_grad_(self.mode.drops_condition)
        self.trained = [p for p in self.parts.parameters() if p.requires_grad]
        self.schedule = MaskAndReplace(model_cfg.num_codes, model_cfg.num_steps)
        self.ema = ExponentialMovingAverage(self.parts, train_cfg.ema_decay)
        self.optimizer = build_optimizer(self.trained, train_cfg, torch.device("cpu"))
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: warmup_cosine(
            step, train_cfg.steps, train_cfg.warmup_steps, train_cfg.final_lr_fraction))
        self.sampler = TimestepSampler(model_cfg.num_steps, train_cfg.importance_min_samples,
                                       train_cfg.importance_history_decay)
        g = torch.Generator().manual_seed(seed)
        count = train_cfg.batch_size * 8
        self.tokens = torch.randint(model_cfg.num_codes, (count, model_cfg.num_tokens), generator=g)
        self.conditions = torch.randn(count, model_cfg.condition_dim, generator=g)
        self.parts.train()
        # The library stores the ConvMLP weights channels-last (knob channels_last=1); 0 is PyTorch's layout.
        to_memory_format([m for m in self.parts.modules() if isinstance(m, ConvMLP)], self.channels_last)
        if self.compiled:
            compile_modules([self.parts.denoiser])

    def networks(self):
        return [self.parts]

    def step(self, index):
        from clipvqd.diffusion.train import _draw_training_batch, optimisation_step

        cfg = self.train_cfg
        rows = self.tokens.shape[0]
        order = torch.randperm(rows, generator=generator_for(self.seed, 2, index // (rows // cfg.batch_size)))
        indices = order[(index % (rows // cfg.batch_size)) * cfg.batch_size:][:cfg.batch_size]
        x0 = self.tokens[indices]
        xt, t, weight, condition, use_null = _draw_training_batch(
            x0, self.conditions[indices], list(range(cfg.batch_size)), index, self.seed, self.mode, self.schedule,
            self.sampler, cfg, self.model_cfg.condition_dim)
        outcome = optimisation_step(self.parts, self.parts, (x0, xt, t, weight, condition, use_null), index,
                                    schedule=self.schedule, optimizer=self.optimizer, lr_schedule=self.lr_schedule,
                                    trained=self.trained, timestep_sampler=self.sampler, ema=self.ema, train_cfg=cfg)
        self.last_loss = float(outcome.terms.loss)

    def state(self):
        return [self.parts.state_dict(), self.ema.state_dict()]

    @classmethod
    def job_steps(cls, config):
        return config["diffusion"]["pretrain"]["steps"]


def standin_clip(config: dict, role: str, quick: bool):
    """The role's stand-in CLIP (open_clip, random weights) and its config."""
    import open_clip

    from clipvqd.clip.encoder import register_model_config
    from clipvqd.clip.standin_config import StandinClipConfig

    fields = StandinClipConfig.__dataclass_fields__
    cfg = StandinClipConfig(**{k: v for k, v in config["clip"][role]["standin"].items() if k in fields})
    if quick:
        cfg = replace(cfg, batch_size=4, text_width=16, text_layers=1, text_heads=2, vision_width=8)
    model_cfg = cfg.model_cfg()
    register_model_config(cfg.model_name, model_cfg)
    seed = config["clip"][role].get("seed", 0)
    with seeded_global_rng(seed, 81):
        model = open_clip.create_model(cfg.model_name, pretrained=None)
    return model, cfg


class GanStep(TrainerStep):
    """clipvqd/lafite/train.py, one iteration of `train_lafite`'s loop: G step (adversarial + itc + itd), D step
    on fresh fakes (+ lazy R1 every r1_interval steps), EMA with the ramped decay. Unconditional (clip2latent's
    StyleGAN2) without the CLIP and the contrastive terms."""

    conditional = True
    train_block = ("lafite", "train")

    @classmethod
    def knob_defaults(cls, config):
        block = config[cls.train_block[0]][cls.train_block[1]]
        return {"channels_last": int(block["channels_last"]), "modulated_conv": block["modulated_conv"],
                "discriminator_downsample": block["discriminator_downsample"]}

    def model_and_train(self, config):
        from clipvqd.lafite.config import LafiteModelConfig, LafiteTrainConfig

        dim = config["clip"]["conditioner"]["standin"]["embed_dim"]
        model_cfg = LafiteModelConfig.from_dict({**config["lafite"]["model"], "condition_dim": dim})
        return model_cfg, LafiteTrainConfig.from_dict(config["lafite"]["train"])

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        from clipvqd.clip.encoder import ClipEncoder
        from clipvqd.lafite.clip_features import freeze
        from clipvqd.lafite.train import build_networks, prepare_for_training

        model_cfg, train_cfg = self.model_and_train(config)
        train_cfg = replace(train_cfg, modulated_conv=form["modulated_conv"], channels_last=self.channels_last,
                            discriminator_downsample=form["discriminator_downsample"])
        if quick:
            train_cfg = replace(train_cfg, batch_size=4, r1_interval=2)
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.generator, self.discriminator = build_networks(model_cfg, seed)
        self.ema = ExponentialMovingAverage(self.generator, 0.0)
        betas = tuple(train_cfg.adam_betas)
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=train_cfg.learning_rate, betas=betas, eps=1e-8)
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=train_cfg.learning_rate, betas=betas,
                                      eps=1e-8)
        count = train_cfg.batch_size * 8
        self.images = random_images(count, model_cfg.resolution, seed)
        self.embeddings = unit_vectors(count, model_cfg.condition_dim, seed + 1)
        self.clip = None
        if self.conditional:
            model, _ = standin_clip(config, "conditioner", quick)
            self.clip = freeze(ClipEncoder(model, None, (0.5,) * 3, (0.5,) * 3, "random conditioner"))
        # The trainer's own preparation (computation forms, memory format), then the EMA as the trainer makes it.
        self.memory_format = prepare_for_training(self.generator, self.discriminator, self.clip, train_cfg,
                                                  torch.device("cpu"))
        self.ema = ExponentialMovingAverage(self.generator, 0.0)
        self.generator.train(), self.discriminator.train()
        if self.compiled:
            compile_modules(self.compiled_modules())

    def images_format(self, images):
        return images.contiguous(memory_format=self.memory_format)

    def networks(self):
        return [self.generator, self.discriminator]

    def compiled_modules(self):
        return [self.generator, self.discriminator] + ([self.clip.model.visual] if self.clip else [])

    def step(self, index):
        from clipvqd.lafite.clip_features import clip_image_features
        from clipvqd.lafite.conditioning import pseudo_text_feature
        from clipvqd.lafite.losses import (contrastive_loss, discriminator_adversarial_loss,
                                           generator_adversarial_loss, r1_penalty)
        from clipvqd.lafite.train import ema_decay

        cfg, model_cfg, seed, batch = self.train_cfg, self.model_cfg, self.seed, self.train_cfg.batch_size
        steps_per_epoch = len(self.images) // batch
        epoch, offset = divmod(index, steps_per_epoch)
        order = torch.randperm(len(self.images), generator=generator_for(seed, 12, epoch))
        indices = order[offset * batch:(offset + 1) * batch]
        real = self.images_format(self.images[indices])
        draws = generator_for(seed, 13, index, 0)
        if self.conditional:
            condition = pseudo_text_feature(self.embeddings[indices], cfg.xi,
                                            noise=torch.randn(batch, model_cfg.condition_dim, generator=draws))
        else:
            condition = torch.zeros(batch, model_cfg.condition_dim)
        z = torch.randn(batch, model_cfg.z_dim, generator=draws)
        no_loss = torch.zeros(())

        def contrastive(features, targets):
            return contrastive_loss(features, targets, cfg.temperature, cfg.contrastive_lambda, cfg.contrastive_form)

        self.discriminator.requires_grad_(False)
        fake = self.generator(z, condition, "random", generator_for(seed, 13, index, 1))
        fake_logits, fake_features = self.discriminator(fake, condition)
        loss_g = generator_adversarial_loss(fake_logits)
        if self.conditional:
            loss_g = loss_g + cfg.itc_weight * contrastive(clip_image_features(self.clip, fake), condition) \
                + cfg.itd_weight * contrastive(fake_features, condition)
        self.g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        self.g_opt.step()

        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = self.generator(z, condition, "random", generator_for(seed, 13, index, 2))
        fake_logits, _ = self.discriminator(fake, condition)
        real_logits, real_features = self.discriminator(real, condition)
        itd_real = contrastive(real_features, condition) if self.conditional else no_loss
        total_d = discriminator_adversarial_loss(real_logits, fake_logits) + cfg.itd_weight * itd_real
        if cfg.r1_gamma > 0 and index % cfg.r1_interval == 0:
            real_input = real.detach().requires_grad_(True)
            r1_logits, _ = self.discriminator(real_input, condition)
            total_d = total_d + r1_penalty(r1_logits, real_input).mean() * (cfg.r1_gamma / 2) * cfg.r1_interval
        self.d_opt.zero_grad(set_to_none=True)
        total_d.backward()
        self.d_opt.step()
        self.ema.decay = ema_decay(cfg, (index + 1) * batch)
        self.ema.update(self.generator)
        self.last_loss = float(loss_g) + float(total_d)

    def state(self):
        return [self.generator.state_dict(), self.discriminator.state_dict(), self.ema.state_dict()]

    @classmethod
    def job_steps(cls, config):
        return config["lafite"]["train"]["steps"]


class StyleGAN2Step(GanStep):
    __doc__ = "clipvqd/clip2latent/generator.py: " + GanStep.__doc__
    conditional = False
    train_block = ("clip2latent", "generator_train")

    def model_and_train(self, config):
        from clipvqd.clip2latent.config import GeneratorModelConfig, GeneratorTrainConfig

        c = config["clip2latent"]
        return (GeneratorModelConfig.from_dict(c["generator_model"]).to_lafite(),
                GeneratorTrainConfig.from_dict(c["generator_train"]).to_lafite())

    @classmethod
    def job_steps(cls, config):
        return config["clip2latent"]["generator_train"]["steps"]


class PriorStep(TrainerStep):
    """clipvqd/clip2latent/train.py: noised, partly hidden embeddings, random timesteps, MSE, AdamW, EMA."""

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        from clipvqd.clip2latent.config import GeneratorModelConfig, PriorModelConfig, PriorTrainConfig
        from clipvqd.clip2latent.pairs import pair_stats
        from clipvqd.clip2latent.train import ADAM_BETAS, build_prior

        c = config["clip2latent"]
        w_dim = GeneratorModelConfig.from_dict(c["generator_model"]).w_dim
        dim = config["clip"]["conditioner"]["standin"]["embed_dim"]
        model_cfg = PriorModelConfig.from_dict({**c["prior_model"], "latent_dim": w_dim, "embed_dim": dim})
        train_cfg = PriorTrainConfig.from_dict(c["prior_train"])
        if quick:
            train_cfg = replace(train_cfg, batch_size=4)
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        count = train_cfg.batch_size * 8
        g = torch.Generator().manual_seed(seed)
        made = {"w": torch.randn(count, w_dim, generator=g), "embeddings": unit_vectors(count, dim, seed)}
        pairs = {**made, **pair_stats(made, count)}
        self.w, self.e = pairs["w"], pairs["embeddings"]
        self.prior = build_prior(model_cfg, train_cfg, seed)
        self.prior.set_stats(pairs["w_mean"], pairs["w_std"], pairs["embed_mean"], pairs["embed_std"])
        self.ema = ExponentialMovingAverage(self.prior, train_cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(self.prior.parameters(), lr=train_cfg.learning_rate, betas=ADAM_BETAS,
                                           weight_decay=train_cfg.weight_decay)
        self.prior.train()
        self.finish_build([])

    def networks(self):
        return [self.prior]

    def compiled_modules(self):
        return [self.prior.network]

    def step(self, index):
        from clipvqd.clip2latent.conditioning import add_embedding_noise, keep_mask

        cfg, m, batch = self.train_cfg, self.model_cfg, self.train_cfg.batch_size
        steps_per_epoch = len(self.w) // batch
        epoch, offset = divmod(index, steps_per_epoch)
        order = torch.randperm(len(self.w), generator=generator_for(self.seed, 42, epoch))
        indices = order[offset * batch:(offset + 1) * batch]
        draws = generator_for(self.seed, 43, index)
        embed = add_embedding_noise(self.e[indices], cfg.embed_noise_scale,
                                    torch.randn(batch, m.embed_dim, generator=draws))
        keep = keep_mask(batch, cfg.cond_drop_prob, draws)
        t = torch.randint(0, m.timesteps, (batch,), generator=draws)
        noise = torch.randn(batch, m.latent_dim, generator=draws)
        loss = self.prior.loss(self.w[indices], embed, keep, t, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if (index + 1) % cfg.ema_update_every == 0:
            self.ema.update(self.prior)
        self.last_loss = float(loss)

    def state(self):
        return [self.prior.state_dict(), self.ema.state_dict()]

    @classmethod
    def job_steps(cls, config):
        return config["clip2latent"]["prior_train"]["steps"]


class ClipStep(TrainerStep):
    """clipvqd/clip/standin.py, `train_standin_clip`'s loop body: a uniform or hard batch, each chosen caption's
    hard negatives appended to the texts, open_clip forward, NegCLIP loss, fused AdamW, logit-scale clamp."""

    role = "conditioner"
    pairs = 512  # captioned pairs built in memory (the batch draw needs a pool; the cost does not depend on it)

    @classmethod
    def knob_defaults(cls, config):
        standin = config["clip"][cls.role]["standin"]
        return {"vocabulary_rows": standin["vocabulary_rows"], "channels_last": int(standin["channels_last"])}

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        import json

        import numpy as np
        import open_clip
        import pandas as pd

        from clipvqd.clip.standin import _negative_captions
        from clipvqd.worlds import get_world
        from clipvqd.worlds.generate import CLIP_CAPTION_MIN_ATTRIBUTES

        self.model, self.cfg = standin_clip(config, self.role, quick)
        self.cfg = replace(self.cfg, vocabulary_rows=form["vocabulary_rows"], channels_last=self.channels_last)
        world_cfg = config["data"]["world"]
        world = get_world(world_cfg["name"])
        wording = "conditioner" if self.role == "conditioner" else world_cfg.get("judge_wording", "judge")
        rng, caption_rng, negative_rng = (np.random.default_rng([seed, k]) for k in (1, 2, 3))
        rows = []
        for _ in range(self.pairs):
            attributes = world.sample_attributes(rng)
            caption, negative, every = world.caption_with_negatives(attributes, caption_rng, negative_rng, wording,
                                                                    CLIP_CAPTION_MIN_ATTRIBUTES)
            rows.append({**attributes, "caption": caption, "negative_caption": negative or "",
                         "negative_captions": json.dumps(every)})
        frame = pd.DataFrame(rows)
        tokenizer = open_clip.get_tokenizer(self.cfg.model_name)
        self.tokens = tokenizer(list(frame["caption"]))
        negatives = _negative_captions(frame, self.cfg, "in-memory pairs")
        counts = torch.tensor([len(n) for n in negatives])
        self.first_negative = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.has_negative = counts > 0
        self.negative_tokens = tokenizer([t for texts in negatives for t in texts] or [""])[: int(counts.sum())]
        self.vocabulary = None
        if self.cfg.vocabulary_rows == "used":
            from clipvqd.clip.standin import UsedTokenRows

            self.vocabulary = UsedTokenRows(self.model, self.tokens, self.negative_tokens)
            self.tokens, self.negative_tokens = (self.vocabulary.remap(self.tokens),
                                                 self.vocabulary.remap(self.negative_tokens))
        self.attributes = frame[[a.name for a in world.attributes]]
        self.shared = [c for c in self.attributes.columns
                       if self.attributes[c].nunique() >= self.cfg.hard_negative_min_values]
        self.images = random_images(self.pairs, self.cfg.image_size, seed)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=self.cfg.learning_rate,
                                           fused=True)
        self.total = self.job_steps(config) or 1
        self.model.train()
        self.finish_build([self.model.visual])
        self.text_rows: list[int] = []

    def networks(self):
        return [self.model]

    def state(self):
        """The weights as the trainer saves them: with the trained rows back in the full token table."""
        state = dict(self.model.state_dict())
        if self.vocabulary is not None:
            table = self.vocabulary.full.weight.detach().clone()
            table[self.vocabulary.used] = state["token_embedding.weight"]
            state["token_embedding.weight"] = table
        return [state]

    def step(self, index):
        from clipvqd.clip.standin import _draw_batch, _learning_rate, contrastive_loss

        cfg = self.cfg
        draws = generator_for(self.seed, 82, index)
        hard = bool(torch.rand(1, generator=draws) < cfg.hard_negative_fraction)
        batch = _draw_batch(self.attributes, self.shared, cfg.batch_size, hard, draws)
        lr = _learning_rate(index, self.total, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        chosen = torch.rand(len(batch), generator=draws) < cfg.text_negative_fraction
        with_negative = batch[self.has_negative[batch] & chosen]
        rows = [torch.arange(self.first_negative[i], self.first_negative[i + 1]) for i in with_negative.tolist()]
        texts = torch.cat([self.tokens[batch], self.negative_tokens[torch.cat(rows)] if rows else self.tokens[:0]])
        self.text_rows.append(len(texts))
        image_features, text_features, logit_scale = self.model(self.images_format(self.images[batch]), texts)
        loss = contrastive_loss(image_features, text_features, logit_scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        self.last_loss = float(loss)

    @classmethod
    def job_steps(cls, config):
        sizes = config["data"]["world"]["sizes"]
        standin = config["clip"][cls.role]["standin"]
        if cls.role == "conditioner":
            holdout = config["data"]["world"]["clip_holdout_fraction"]
            pairs = int(sizes["clip_pairs"] * (1 - holdout)) + sizes.get("clip_pairs_extra", 0)
        else:
            pairs = sizes["judge_pairs"]
        return standin["epochs"] * max(1, pairs // standin["batch_size"])


class JudgeStep(ClipStep):
    __doc__ = ClipStep.__doc__
    role = "judge"


class OracleStep(TrainerStep):
    """clipvqd/oracle.py, `train_oracle`'s loop body: augmentations, the CNN, one cross-entropy per attribute."""

    def __init__(self, config, form, seed, quick):
        super().__init__(config, form, seed, quick)
        from clipvqd.oracle import AttributeOracle, OracleConfig
        from clipvqd.worlds import get_world

        world = get_world(config["data"]["world"]["name"])
        self.cfg = OracleConfig(**config["oracle"])
        if quick:
            self.cfg = replace(self.cfg, batch_size=4)
        resolution = config["data"]["world"]["resolution"]
        with seeded_global_rng(seed, 71):
            self.model = AttributeOracle([len(a.values) for a in world.attributes], resolution, self.cfg.width)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.learning_rate,
                                           weight_decay=self.cfg.weight_decay)
        count = self.cfg.batch_size * 4
        self.images = random_images(count, resolution, seed)
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.stack([torch.randint(len(a.values), (count,), generator=g) for a in world.attributes], 1)
        self.model.train()
        self.finish_build([self.model])

    def networks(self):
        return [self.model]

    def step(self, index):
        from clipvqd.oracle import _augment

        cfg = self.cfg
        order = torch.randperm(len(self.images), generator=generator_for(self.seed, 72, index))[:cfg.batch_size]
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate * warmup_cosine(index, 1000, warmup_steps=0)
        inputs = _augment(self.images[order], cfg, generator_for(self.seed, 73, index))
        logits = self.model(self.images_format(inputs))
        loss = sum(F.cross_entropy(head, self.labels[order, i]) for i, head in enumerate(logits))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_loss = float(loss)

    @classmethod
    def job_steps(cls, config):
        sizes = config["data"]["world"]["sizes"]
        train = int(sizes["oracle"] * (1 - config["data"]["world"]["oracle_test_fraction"]))
        return config["oracle"]["epochs"] * math.ceil(train / config["oracle"]["batch_size"])


TRAINERS: dict[str, type[TrainerStep]] = {
    "tokenizer": TokenizerStep, "diffusion": DiffusionStep, "lafite": GanStep, "stylegan2": StyleGAN2Step,
    "prior": PriorStep, "clip_conditioner": ClipStep, "clip_judge": JudgeStep, "oracle": OracleStep,
}


def knob_defaults(name: str, config: dict) -> dict[str, Any]:
    return {**COMMON_KNOBS, **TRAINERS[name].knob_defaults(config)}


def resolve_form(name: str, config: dict, given: dict[str, str]) -> dict[str, Any]:
    """The form's knobs for this trainer: the run's settings, overridden by those given that it has."""
    defaults = knob_defaults(name, config)
    form = {**defaults, **{key: value for key, value in given.items() if key in defaults}}
    form["threads"] = int(form["threads"])
    form["compile"], form["channels_last"] = int(as_bool(form["compile"])), int(as_bool(form["channels_last"]))
    if name == "diffusion":
        form["num_codes"] = int(form["num_codes"])
    return form


# ---- timing ----------------------------------------------------------------------------------------------------

def tree_cpu() -> float:
    """CPU seconds of this process and its children, live or waited for: inductor compiles C++ in worker
    processes, whose CPU a job pays for too (Snakemake's benchmark files count the process tree)."""
    import psutil

    me = psutil.Process()
    times = me.cpu_times()
    # This process from the kernel's nanosecond clock (psutil's counters tick in 10 ms), children from psutil.
    total = time.process_time() + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.Error:  # ended between the listing and the read: counted once it is waited for
            continue
        total += child_times.user + child_times.system
    return total


def run_steps(trainer: TrainerStep, threads: int, first: int, count: int, losses: list) -> tuple[float, float]:
    torch.set_num_threads(threads)
    cpu, wall = tree_cpu(), time.perf_counter()
    for index in range(first, first + count):
        trainer.step(index)
        losses.append(trainer.last_loss)
    return tree_cpu() - cpu, time.perf_counter() - wall


def ratio_summary(b: list[float], a: list[float]) -> dict[str, Any]:
    """B / A per round (round 0, 2, ... ran A first; 1, 3, ... B first): median, spread, the median of each
    order, how many rounds fell below 1."""
    per_round = [y / x for x, y in zip(a, b) if x > 0]
    if not per_round:
        return {"median": None, "min": None, "max": None, "per_round": [], "consistent": None}
    return {"median": round(statistics.median(per_round), 4), "min": round(min(per_round), 4),
            "max": round(max(per_round), 4), "per_round": [round(r, 4) for r in per_round],
            "of_totals": round(sum(b) / sum(a), 4),
            "median_a_first": round(statistics.median(per_round[0::2]), 4),
            "median_b_first": round(statistics.median(per_round[1::2]), 4) if len(per_round) > 1 else None,
            "rounds_below_1": sum(r < 1 for r in per_round),
            # every round on the same side of 1 (of four or more): a difference beyond the round-to-round spread
            "consistent": (all(r < 1 for r in per_round) or all(r > 1 for r in per_round)) if len(per_round) >= 4
            else None}


def compare(name: str, config: dict, forms: dict[str, dict], args) -> dict[str, Any]:
    built, build_s, warmup = {}, {}, {}
    losses: dict[str, list] = {"A": [], "B": []}
    for label in ("A", "B"):
        started = time.perf_counter()
        built[label] = TRAINERS[name](config, forms[label], args.seed, args.quick)
        build_s[label] = round(time.perf_counter() - started, 3)
    for label in ("A", "B"):  # warm-up, compile included: its cost per form, measured apart
        cpu, wall = run_steps(built[label], forms[label]["threads"], 0, args.warmup, losses[label])
        warmup[label] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
    cpu = {"A": [], "B": []}
    wall = {"A": [], "B": []}
    loads = [benchlib.loadavg()]
    for round_index in range(args.rounds):
        order = ("A", "B") if round_index % 2 == 0 else ("B", "A")
        first = args.warmup + round_index * args.steps
        for label in order:
            c, w = run_steps(built[label], forms[label]["threads"], first, args.steps, losses[label])
            cpu[label].append(c)
            wall[label].append(w)
        loads.append(benchlib.loadavg())
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"forms": forms, "build_s": build_s, "warmup": warmup,
                              "steps_per_round": args.steps, "rounds": args.rounds,
                              "cpu_s": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
                              "wall_s": {k: [round(x, 4) for x in v] for k, v in wall.items()},
                              "loadavg_per_round": loads}
    if args.rounds:
        result["b_over_a_cpu"] = ratio_summary(cpu["B"], cpu["A"])
        result["b_over_a_wall"] = ratio_summary(wall["B"], wall["A"])
        per_step = {k: statistics.median(v) / args.steps for k, v in cpu.items()}
        result["cpu_s_per_step_median"] = {k: round(v, 5) for k, v in per_step.items()}
        # What the warm-up cost beyond its steps at the steady rate (compilation, first-call allocations), and
        # the job's projected CPU with it: the trainer's step count in this config times the steady rate.
        extra = {k: warmup[k]["cpu_s"] - args.warmup * per_step[k] for k in cpu}
        job = TRAINERS[name].job_steps(config)
        result["warmup_extra_cpu_s"] = {k: round(v, 3) for k, v in extra.items()}
        if job:
            projected = {k: job * per_step[k] + max(extra[k], 0.0) for k in cpu}
            result["job_steps"] = job
            result["projected_job_cpu_s"] = {k: round(v, 1) for k, v in projected.items()}
            result["projected_job_b_over_a"] = round(projected["B"] / projected["A"], 4)
    pairs = [(x, y) for x, y in zip(losses["A"], losses["B"]) if x is not None and y is not None]
    if pairs:
        # The first step shows whether the two forms compute the same function (rounding-sized); later steps
        # also show how fast the training dynamics amplify that rounding (a GAN at a high learning rate: fast).
        result["first_step_loss_difference"] = abs(pairs[0][0] - pairs[0][1])
        result["max_abs_loss_difference"] = max(abs(x - y) for x, y in pairs)
        result["mean_loss"] = {"A": statistics.fmean(x for x, _ in pairs), "B": statistics.fmean(y for _, y in pairs)}
    states = {k: built[k].state() for k in built}
    result["bit_identical"] = benchlib.state_sha256(*states["A"]) == benchlib.state_sha256(*states["B"])
    if isinstance(built["A"], ClipStep):
        result["texts_per_step_mean"] = round(statistics.fmean(built["A"].text_rows), 1)
    return result


def family(op: str) -> str:
    lowered = op.lower()
    for name, keys in FAMILIES:
        if any(key.lower() in lowered for key in keys):
            return name
    return "other"


def profile(name: str, config: dict, form: dict, args) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = TRAINERS[name](config, form, args.seed, args.quick)
    torch.set_num_threads(form["threads"])
    for index in range(args.warmup):
        trainer.step(index)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.process_time()
        for index in range(args.warmup, args.warmup + args.profile_steps):
            trainer.step(index)
        cpu = time.process_time() - started
    torch.set_num_threads(args.threads)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.profile_top]
    families: dict[str, float] = {}
    for event in events:
        name_of = family(event.key)
        families[name_of] = families.get(name_of, 0.0) + event.self_cpu_time_total
    return {
        "form": form, "steps": args.profile_steps,
        "cpu_s_per_step_profiled": round(cpu / args.profile_steps, 5),
        "ops_per_step": round(sum(e.count for e in events) / args.profile_steps, 1),
        "top_ops": [{"op": e.key, "self_share": round(e.self_cpu_time_total / total, 4),
                     "self_ms_per_step": round(e.self_cpu_time_total / 1000 / args.profile_steps, 3),
                     "calls_per_step": round(e.count / args.profile_steps, 1)} for e in top],
        "families": {k: round(v / total, 4) for k, v in sorted(families.items(), key=lambda kv: -kv[1])},
    }


# ---- main --------------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", default=["config.yaml"],
                   help="config files in the order Snakemake reads them (config.yaml first), from the repository root")
    p.add_argument("--trainers", default=",".join(TRAINERS), help=f"comma-separated subset of {list(TRAINERS)}")
    p.add_argument("--a", default="", help="form A: KEY=VALUE,... (knobs not given keep the library's setting)")
    p.add_argument("--b", default="", help="form B: KEY=VALUE,...")
    p.add_argument("--rounds", type=int, default=6, help="alternating rounds (0: no A/B comparison)")
    p.add_argument("--steps", type=int, default=10, help="optimiser steps per form and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per form first (compilation happens here)")
    p.add_argument("--profile", action="store_true", help="also profile form A of each trainer")
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch threads outside the forms (and their default)")
    p.add_argument("--compile-cache", action="store_true",
                   help="let inductor reuse its on-disk caches (default: off and a fresh kernel folder, so compile "
                        "time is counted in full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny batches and models, few steps: checks the script")
    p.add_argument("--list", action="store_true", help="print each trainer's knobs and their defaults, and exit")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    unknown = sorted(set(args.trainers) - set(TRAINERS))
    if unknown:
        p.error(f"unknown --trainers {unknown}; choose from {list(TRAINERS)}")
    if args.quick:
        args.rounds, args.steps, args.warmup, args.profile_steps = min(args.rounds, 2), 1, 1, 1
    if args.rounds < 0 or args.steps < 1 or args.warmup < 0:
        p.error("--rounds must be >= 0, --steps >= 1, --warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = benchlib.check_out(args.out)
    COMMON_KNOBS["threads"] = args.threads
    config = resolve_config(args.config)
    if args.list:
        for name in TRAINERS:
            print(f"{name}: {knob_defaults(name, config)}")
        return {}
    if not args.compile_cache:
        # Every compilation from scratch, as in a job on a fresh machine: inductor's caches off, and its
        # compiled kernels in a new, empty folder (a shared one would hand back kernels another process built).
        import atexit
        import os
        import shutil
        import tempfile

        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="trainer_steps_inductor_")
        atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    threads = benchlib.set_threads(args.threads)
    env = benchlib.environment("cpu")
    given = {"A": parse_form(args.a), "B": parse_form(args.b)}
    payload: dict[str, Any] = {"benchmark": "trainer_steps", "environment": env, "config_files": args.config,
                               "settings": {k: v for k, v in vars(args).items() if k not in ("out", "list")},
                               "trainers": {}}
    everywhere = set().union(*(knob_defaults(name, config) for name in args.trainers))
    unknown = sorted((set(given["A"]) | set(given["B"])) - everywhere)
    if unknown:
        raise SystemExit(f"unknown knob(s) {unknown}; the trainers chosen have {sorted(everywhere)} (--list)")
    rows = []
    for name in args.trainers:
        forms = {label: resolve_form(name, config, given[label]) for label in ("A", "B")}
        ignored = sorted((set(given["A"]) | set(given["B"])) - set(knob_defaults(name, config)))
        if ignored and forms["A"] == forms["B"]:  # none of the difference asked for applies to this trainer
            print(f"{name}: skipped (it has none of the knobs that differ)", flush=True)
            payload["trainers"][name] = {"skipped": f"A and B are the same here: it lacks {ignored}"}
            continue
        entry: dict[str, Any] = {"ignored_knobs": ignored} if ignored else {}
        print(f"{name}: A={forms['A']} B={forms['B']}", flush=True)
        if args.profile:
            entry["profile"] = profile(name, config, forms["A"], args)
            fam = entry["profile"]["families"]
            print("  profile: " + ", ".join(f"{k} {v:.0%}" for k, v in list(fam.items())[:5]), flush=True)
        if args.rounds:
            try:
                entry["comparison"] = compare(name, config, forms, args)
            except Exception as error:  # e.g. inductor failing on a network: record it, go on with the others
                import traceback

                entry["comparison"] = {"ok": False, "forms": forms, "error": f"{type(error).__name__}: {error}"[:2000],
                                       "traceback": traceback.format_exc()[-3000:]}
                print(f"  FAILED: {entry['comparison']['error'][:300]}", flush=True)
                payload["trainers"][name] = entry
                benchlib.write_json(out, payload)
                continue
            r = entry["comparison"]["b_over_a_cpu"]
            rows.append({"trainer": name, "B/A cpu median": r["median"], "min": r["min"], "max": r["max"],
                         "consistent": r["consistent"], "job B/A": entry["comparison"].get("projected_job_b_over_a"),
                         "bit_identical": entry["comparison"]["bit_identical"]})
        payload["trainers"][name] = entry
        benchlib.write_json(out, payload)
    payload["environment"] = benchlib.finish(env, threads)
    benchlib.write_json(out, payload)
    if rows:
        benchlib.print_table(rows, ["trainer", "B/A cpu median", "min", "max", "consistent", "job B/A",
                                    "bit_identical"])
    print(f"load average {env['loadavg_start']} -> {env['loadavg_end']}; contended: {env['contended']}; wrote {out}")
    return payload


if __name__ == "__main__":
    main()
