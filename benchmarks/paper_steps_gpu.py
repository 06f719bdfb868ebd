#!/usr/bin/env python
"""Seconds of one unit of every GPU stage of a paper run, on one GPU (issue 19 target 3, issue 17 item 3).

The shapes come from the run's own resolved config (`--config config.yaml configs/ffhq.yaml`, merged and
filled with the schema's defaults as Snakemake does), built into the library's config blocks: the Gumbel
VQGAN tokenizer (256 px, f = 16, K = 4096) with its LPIPS loss and PatchGAN, the 24 x 512 denoiser, LAFITE's
StyleGAN2 generator + discriminator at 256 px (with the conditioner CLIP for its itc loss), clip2latent's
StyleGAN2 and its 512 x 12 prior, the conditioner and judge CLIPs (ViT-B/32, ViT-L/14), torch-fidelity's
InceptionV3. Every weight is a random initialisation: the cost of a step does not depend on it.

Training stages run the library's trainers themselves (`train_tokenizer`, `train_diffusion`,
`train_lafite`, `train_generator`, `train_prior`) on random data held in memory, so a step is the
trainer's step with its bookkeeping (EMA, curve, lazy R1), not a stripped copy. A hook on the trainers'
common `TrainingRun.step_done` records a (GPU-synchronised) time stamp after every optimiser step; the rate
is the mean interval over the timed steps after `--warmup` steps (the GAN trainers time a multiple of their
R1 interval, so the lazy R1 step is amortised as in a run). Snapshots are switched off; model building and
the final write are not timed. Precision is the library's own: bf16 autocast for the denoiser and the prior
on CUDA, float32 (PyTorch's default TF32 convolutions) for the tokenizer and the GANs; `--fp32-denoiser`
also times the denoiser with autocast off, for comparison.

Inference stages are timed per image at the batch the library uses: CLIP image and text embedding
(`ClipEncoder`), tokenizer encode and decode, one reverse step of the denoiser at batch 64 with and without
guidance (`clipvqd.diffusion.sample`), LAFITE and clip2latent image generation, the (w, CLIP) pairs of
clip2latent, judge embedding and Inception features of the metrics.

The JSON holds `rates` (seconds per unit, the input of `python -m clipvqd cost predict`) and `stages`
(per-stage details: steps, images/s, peak GPU memory, precision, errors), rewritten after every stage.

On the GPU machine (a few minutes on an H200):
    python benchmarks/paper_steps_gpu.py --config config.yaml configs/ffhq.yaml --out $OUT/paper_steps_gpu.json
CPU smoke run of the script itself (1 + 1 steps, batch 2, the models of the config given; measures nothing):
    python benchmarks/paper_steps_gpu.py --smoke --config config.yaml --out /tmp/paper_steps_smoke.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from clipvqd.paper_cost import resolve_config  # noqa: E402
from clipvqd.training import run as training_run  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "paper_steps_gpu.json"
ALL_STAGES = ("clip", "tokenizer", "diffusion", "sampling", "lafite", "clip2latent", "metrics")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", nargs="+", default=["config.yaml", "configs/ffhq.yaml"],
                   help="config files in the order Snakemake would read them (config.yaml first)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU check of the script: 1 warm-up + 1 timed step, batch 2, 2 images per inference stage")
    p.add_argument("--device", default=None, help="torch device (default cuda, cpu with --smoke)")
    p.add_argument("--stages", default=",".join(ALL_STAGES), help=f"comma-separated subset of {ALL_STAGES}")
    p.add_argument("--warmup", type=int, default=None, help="untimed training steps (default 3)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps (default 16; the GAN trainers round up to their R1 interval)")
    p.add_argument("--diffusion-batches", default=None,
                   help="denoiser training batches (default: the config's pretrain and finetune batches, and 8, 16, 32)")
    p.add_argument("--sample-batch", type=int, default=None, help="denoiser sampling batch (default 64)")
    p.add_argument("--sample-steps", type=int, default=None, help="reverse steps timed per sampling run (default 10)")
    p.add_argument("--images", type=int, default=None, help="images per inference measurement (default 256)")
    p.add_argument("--fp32-denoiser", action="store_true", help="also time the denoiser step with autocast off")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 with --smoke)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    smoke = args.smoke
    for key, full, small in (("device", "cuda", "cpu"), ("warmup", 3, 1), ("steps", 16, 1), ("sample_batch", 64, 2),
                             ("sample_steps", 10, 2), ("images", 256, 2), ("threads", None, 1)):
        if getattr(args, key) is None:
            setattr(args, key, small if smoke else full)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stages) - set(ALL_STAGES))
    if unknown:
        p.error(f"unknown --stages {unknown}; choose from {ALL_STAGES}")
    if args.steps < 1 or args.warmup < 1 or args.images < 2:
        p.error("--steps and --warmup must be >= 1 (a step is timed from the end of the one before), --images >= 2")
    return args


class Clock:
    """GPU-synchronised wall clock and peak memory of one device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if self.cuda else None


@contextmanager
def step_stamps(clock: Clock):
    """Time stamps after every optimiser step of any trainer (TrainingRun.step_done), snapshots off."""
    stamps: list[float] = []
    original_done, original_snapshot = training_run.TrainingRun.step_done, training_run.TrainingRun.snapshot

    def step_done(self, done, **postfix):
        stamps.append(clock.now())
        return original_done(self, done, **postfix)

    training_run.TrainingRun.step_done = step_done
    training_run.TrainingRun.snapshot = lambda self, step: None
    try:
        yield stamps
    finally:
        training_run.TrainingRun.step_done = original_done
        training_run.TrainingRun.snapshot = original_snapshot


def step_rate(stamps: list[float], warmup: int) -> dict:
    """Mean seconds per step over the steps after `warmup` (stamp i is the end of step i + 1)."""
    intervals = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    if not intervals:
        raise RuntimeError(f"only {len(stamps)} steps recorded; need warmup + 1 or more")
    mean = sum(intervals) / len(intervals)
    return {"seconds_per_step": round(mean, 6), "timed_steps": len(intervals),
            "median_s": round(sorted(intervals)[len(intervals) // 2], 6),
            "min_s": round(min(intervals), 6), "max_s": round(max(intervals), 6)}


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# ---- models from the resolved config -------------------------------------------------------------------


def clip_model(config: dict, role: str, device: str = "cpu"):
    """An open_clip model of the role's architecture (random weights) wrapped in the library's ClipEncoder."""
    import open_clip

    from clipvqd.clip.encoder import ClipEncoder, register_model_config
    from clipvqd.clip.standin_config import StandinClipConfig

    spec = config["clip"][role]
    if spec["source"] == "standin":
        fields = StandinClipConfig.__dataclass_fields__
        standin = StandinClipConfig(**{k: v for k, v in spec["standin"].items() if k in fields})
        register_model_config(standin.model_name, standin.model_cfg())
        name = standin.model_name
    else:
        name = spec["model"]
    model = open_clip.create_model(name, pretrained=None, device=device)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    return ClipEncoder(model, open_clip.get_tokenizer(name), mean, std, identity=f"random {name}", device=device), name


def clip_dim(encoder) -> int:
    return int(encoder.model.text_projection.shape[1]) if hasattr(encoder.model, "text_projection") else 512


def data_resolution(config: dict) -> int:
    source = config["data"]["source"]
    return config["data"][source]["resolution"] if source in ("ffhq", "coco") else config["data"]["world"]["resolution"]


def random_images(n: int, resolution: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)


def lpips_files(folder: Path) -> dict:
    """Random LPIPS VGG16 and linear-head files in the layout the tokenizer's loss reads."""
    from safetensors.torch import save_file

    from clipvqd.tokenizer.perceptual import LPIPS

    model = LPIPS()
    vgg, linear = folder / "vgg16.safetensors", folder / "lpips.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in model.features.state_dict().items()}, str(vgg))
    save_file({f"lin{k.split('.')[0]}.weight": v.contiguous() for k, v in model.heads.state_dict().items()}, str(linear))
    return {"lpips_vgg_weights": str(vgg), "lpips_vgg_sha256": None, "lpips_linear_weights": str(linear),
            "lpips_linear_sha256": None}


# ---- the stages --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, config: dict, device: torch.device, work: Path, payload: dict):
        self.args, self.config, self.device, self.work, self.payload = args, config, device, work, payload
        self.clock = Clock(device)
        self.resolution = data_resolution(config)

    def record(self, name: str, rate_name: str | None, fn, unit: str, batch: int | None = None,
               precision: str = "fp32") -> None:
        """Run fn() -> (seconds per unit, details); store the rate and the stage, or the error."""
        self.clock.reset()
        started = time.perf_counter()
        try:
            seconds, details = fn()
            entry = {"ok": True, "seconds_per_unit": round(seconds, 6), "unit": unit, "batch": batch,
                     "precision": precision, "peak_memory_gib": self.clock.peak_gib(), **details}
            if batch and unit == "step":
                entry["images_per_s"] = round(batch / seconds, 2)
            elif unit in ("image", "image-step", "pair"):
                entry["per_s"] = round(1 / seconds, 2)
            if rate_name:
                device_name = self.payload["environment"].get("gpu") or self.payload["environment"].get("device")
                self.payload["rates"][rate_name] = {
                    "seconds": round(seconds, 6), "batch": batch, "unit": unit, "precision": precision,
                    "basis": f"measured ({device_name}, {precision})" if not self.args.smoke else "smoke run (not a measurement)"}
        except Exception as error:  # record and go on: one failing stage must not lose the others
            entry = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
            print(f"  {name}: FAILED {entry['error']}", flush=True)
        entry["wall_s"] = round(time.perf_counter() - started, 2)
        self.payload["stages"][name] = entry
        if entry.get("ok"):
            print(f"  {name}: {entry['seconds_per_unit']:.5g} s per {unit}"
                  + (f" (batch {batch})" if batch else "") + f", peak {entry['peak_memory_gib']} GiB", flush=True)
        benchlib.write_json(self.args.out, self.payload)

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def trainer_steps(self, r1_interval: int = 1) -> tuple[int, int]:
        timed = self.args.steps if self.args.smoke else ceil_to(self.args.steps, r1_interval)
        return self.args.warmup, timed

    def run_trainer(self, train) -> tuple[float, dict]:
        with step_stamps(self.clock) as stamps:
            train()
        rate = step_rate(stamps, self.args.warmup)
        return rate["seconds_per_step"], rate

    # -- CLIP ------------------------------------------------------------------------------------------------
    def clip(self) -> None:
        for role, rate_name in (("conditioner", "clip_conditioner_image"), ("judge", "judge_image")):
            encoder, name = clip_model(self.config, role)
            encoder.model.to(self.device)
            encoder.device = self.device
            encoder.mean, encoder.std = encoder.mean.to(self.device), encoder.std.to(self.device)
            images = random_images(self.args.images, self.resolution)

            def embed(encoder=encoder, images=images):
                encoder.encode_images(images[: min(len(images), encoder.batch_size)])  # warm-up
                start = self.clock.now()
                encoder.encode_images(images)
                return (self.clock.now() - start) / len(images), {"model": name, "images": len(images),
                                                                   "encoder_batch": encoder.batch_size}

            unit_name = "clip_judge_image" if role == "judge" else "clip_conditioner_image"
            self.record(unit_name, rate_name, embed, "image", precision="fp32 (ClipEncoder)")
            if role == "conditioner":
                texts = [f"a photograph of a person number {i}" for i in range(self.args.images)]

                def embed_texts(encoder=encoder):
                    encoder.encode_texts(texts[:8])
                    start = self.clock.now()
                    encoder.encode_texts(texts)
                    return (self.clock.now() - start) / len(texts), {"model": name, "texts": len(texts)}

                self.record("clip_conditioner_text", "clip_conditioner_text", embed_texts, "text")
                self.conditioner = encoder
            else:
                del encoder
            gc.collect()

    # -- tokenizer -------------------------------------------------------------------------------------------
    def tokenizer(self) -> None:
        from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
        from clipvqd.tokenizer.train import train_tokenizer

        model_cfg = TokenizerConfig.from_dict(self.config["tokenizer"]["model"])
        base = dict(self.config["tokenizer"]["train"])
        warmup, timed = self.trainer_steps()
        batch = 2 if self.args.smoke else base["batch_size"]
        lpips = lpips_files(self.folder("lpips")) if base.get("perceptual_weight", 1.0) else {}
        images = random_images(batch * 2, model_cfg.resolution).float() / 127.5 - 1

        class Images(torch.utils.data.Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, index):
                return images[index]

        for with_disc in (True, False):
            cfg = TokenizerTrainConfig.from_dict({
                **base, **lpips, "batch_size": batch, "max_steps": warmup + timed, "preload": True, "num_workers": 0,
                "snapshot_every": 10**9, "log_every": 1, "disc_start": 0 if with_disc else 10**9})
            name = f"tokenizer_train{'' if with_disc else '_no_disc'}"
            folder = self.folder(name)

            def train(cfg=cfg, folder=folder):
                return self.run_trainer(lambda: train_tokenizer(
                    Images(), model_cfg, cfg, folder / "work", folder / "model.safetensors", folder / "curve.csv",
                    device=self.device, progress=False))

            rate = "tokenizer_step" if with_disc else "tokenizer_step_no_disc"
            self.record(name, rate, train, "step", batch=batch, precision="fp32 (TF32 convolutions by default)")
        self.tokenizer_cfg = model_cfg

        from clipvqd.tokenizer.model import GumbelVQGAN

        model = GumbelVQGAN(model_cfg).to(self.device, memory_format=torch.channels_last).eval()
        per_batch = min(self.args.images, 64)
        pixels = (random_images(per_batch, model_cfg.resolution).float() / 127.5 - 1).to(self.device)

        @torch.no_grad()
        def encode():
            model.encode(pixels)
            start = self.clock.now()
            codes = model.encode(pixels)
            self.codes = codes
            return (self.clock.now() - start) / per_batch, {"batch": per_batch}

        @torch.no_grad()
        def decode():
            model.decode_codes(self.codes)
            start = self.clock.now()
            model.decode_codes(self.codes)
            return (self.clock.now() - start) / per_batch, {"batch": per_batch}

        self.record("tokenizer_encode", "tokenizer_encode_image", encode, "image")
        self.record("tokenizer_decode", "tokenizer_decode_image", decode, "image")
        del model
        gc.collect()

    # -- denoiser ----------------------------------------------------------------------------------------------
    def denoiser_config(self):
        from clipvqd.diffusion import DenoiserConfig

        tok = self.config["tokenizer"]["model"]
        grid = tok["resolution"] // 2 ** (len(tok["channel_multipliers"]) - 1)
        condition = getattr(self, "conditioner", None)
        condition_dim = clip_dim(condition) if condition is not None else 512
        return DenoiserConfig.from_dict({**self.config["diffusion"]["model"], "num_codes": tok["codebook_size"],
                                         "grid_height": grid, "grid_width": grid, "condition_dim": condition_dim})

    def diffusion(self) -> None:
        from clipvqd.diffusion import DiffusionTrainConfig
        from clipvqd.diffusion.train import train_diffusion

        cfg = self.denoiser_config()
        d = self.config["diffusion"]
        if self.args.diffusion_batches:
            batches = [int(b) for b in self.args.diffusion_batches.split(",")]
        elif self.args.smoke:
            batches = [2]
        else:
            batches = sorted({d["pretrain"]["batch_size"], d["finetune"]["batch_size"], 8, 16, 32})
        warmup, timed = self.trainer_steps()
        # "bf16": the library's own trainer as it runs (bf16 autocast on CUDA, float32 on CPU).
        precisions = ["bf16"] + (["fp32"] if self.args.fp32_denoiser and self.device.type == "cuda" else [])
        for precision in precisions:
            for batch in batches:
                g = torch.Generator().manual_seed(batch)
                n = batch * 2
                tokens = torch.randint(0, cfg.num_codes, (n, cfg.grid_height, cfg.grid_width), generator=g)
                conditions = torch.nn.functional.normalize(torch.randn(n, cfg.condition_dim, generator=g), dim=-1)
                train_cfg = DiffusionTrainConfig.from_dict({**d["pretrain"], "batch_size": batch, "steps": warmup + timed,
                                                            "snapshot_every": 10**9, "log_every": 1})
                folder = self.folder(f"diffusion_{precision}_{batch}")

                def train(tokens=tokens, conditions=conditions, train_cfg=train_cfg, folder=folder, precision=precision):
                    autocast = torch.autocast
                    if precision == "fp32":  # the library always autocasts on CUDA: switch it off for this run
                        torch.autocast = lambda *a, **k: autocast(*a, **{**k, "enabled": False})
                    try:
                        seconds, rate = self.run_trainer(lambda: train_diffusion(
                            tokens, conditions, cfg, train_cfg, "language_free", folder / "work",
                            folder / "model.safetensors", folder / "curve.csv", device=self.device, progress=False))
                    finally:
                        torch.autocast = autocast
                    return seconds, {**rate, "model": cfg.to_dict(), "tokens_per_s": round(batch * cfg.num_tokens / seconds)}

                library = "bf16 autocast (the library's choice on CUDA)" if self.device.type == "cuda" else "fp32 (CPU)"
                rate = f"diffusion_step@{batch}" if precision == "bf16" else None
                label = f"diffusion_train_b{batch}" if precision == "bf16" else f"diffusion_train_fp32_b{batch}"
                self.record(label, rate, train, "step", batch=batch,
                            precision=library if precision == "bf16" else "fp32 (autocast off; not what the library runs)")

    def sampling(self) -> None:
        from clipvqd.diffusion import MaskAndReplace, sample
        from clipvqd.diffusion.train import DenoiserAndNullCondition

        cfg = self.denoiser_config()
        parts = DenoiserAndNullCondition(cfg).to(self.device).eval()
        schedule = MaskAndReplace(cfg.num_codes, cfg.num_steps).to(self.device)
        batch, steps = self.args.sample_batch, self.args.sample_steps
        g = torch.Generator().manual_seed(0)
        conditions = torch.nn.functional.normalize(torch.randn(batch, cfg.condition_dim, generator=g), dim=-1).to(self.device)
        # A stride that makes `steps` reverse steps of the T-step schedule: each is one forward (two rows a
        # prompt with guidance) and one posterior, as in a 100-step run.
        truncation = self.config["sampling"]["truncation_r"][0]

        for guided, rate in ((True, "denoiser_sample_step_guided"), (False, "denoiser_sample_step")):
            scale = 1.2 if guided else 1.0

            @torch.no_grad()
            def run(scale=scale):
                def once():
                    return sample(parts.denoiser, schedule, conditions, guidance_scale=scale, truncation_r=truncation,
                                  num_steps=steps, seed=0, batch_size=batch,
                                  null_condition=parts.null_condition if scale != 1.0 else None)
                once()
                start = self.clock.now()
                once()
                seconds = self.clock.now() - start
                return seconds / (batch * steps), {"images": batch, "reverse_steps": steps, "guidance_scale": scale,
                                                    "images_per_s_at_100_steps": round(batch / (seconds * 100 / steps), 3)}

            self.record(f"sampling_{'guided' if guided else 's1'}_b{batch}", rate, run, "image-step", batch=None,
                        precision="bf16 autocast (the library's sampler on CUDA)")
        del parts
        gc.collect()

    # -- LAFITE and clip2latent ------------------------------------------------------------------------------
    def gan_images(self, resolution: int, n: int) -> torch.Tensor:
        return random_images(n, resolution).float() / 127.5 - 1

    def lafite(self) -> None:
        from clipvqd.lafite.config import LafiteModelConfig, LafiteTrainConfig
        from clipvqd.lafite.sample import generate_images
        from clipvqd.lafite.train import build_networks, train_lafite

        encoder = getattr(self, "conditioner", None) or clip_model(self.config, "conditioner")[0]
        encoder.model.to(self.device)
        encoder.device = self.device
        encoder.mean, encoder.std = encoder.mean.to(self.device), encoder.std.to(self.device)
        dim = clip_dim(encoder)
        model_cfg = LafiteModelConfig.from_dict({**self.config["lafite"]["model"], "condition_dim": dim})
        spec = self.config["lafite"]["train"]
        warmup, timed = self.trainer_steps(spec["r1_interval"])
        batch = 2 if self.args.smoke else spec["batch_size"]
        train_cfg = LafiteTrainConfig.from_dict({**spec, "batch_size": batch, "steps": warmup + timed,
                                                 "snapshot_every": 10**9, "log_every": 1})
        n = batch * 2
        images = self.gan_images(model_cfg.resolution, n)
        embeddings = torch.nn.functional.normalize(torch.randn(n, dim), dim=-1)
        folder = self.folder("lafite")

        def train():
            seconds, rate = self.run_trainer(lambda: train_lafite(
                images, embeddings, encoder, model_cfg, train_cfg, folder / "work", folder / "model.safetensors",
                folder / "curve.csv", device=self.device, progress=False))
            return seconds, {**rate, "r1_interval": spec["r1_interval"]}

        self.record("lafite_train", "lafite_step", train, "step", batch=batch, precision="fp32 (TF32 convolutions by default)")
        generator, _ = build_networks(model_cfg, 0)
        generator.to(self.device).eval()
        count = self.args.images

        @torch.no_grad()
        def generate():
            generate_images(generator, embeddings[:2], 0, progress=False)
            start = self.clock.now()
            generate_images(generator, embeddings[:1].repeat(count, 1), 0, batch_size=64, progress=False)
            return (self.clock.now() - start) / count, {"images": count}

        self.record("lafite_sample", "lafite_image", generate, "image")
        del generator
        gc.collect()

    def clip2latent(self) -> None:
        from clipvqd.clip2latent.config import (GeneratorModelConfig, GeneratorTrainConfig, PairsConfig,
                                                PriorModelConfig, PriorSamplingConfig, PriorTrainConfig)
        from clipvqd.clip2latent.generator import train_generator
        from clipvqd.clip2latent.pairs import make_pairs, pair_stats
        from clipvqd.clip2latent.sample import generate_images
        from clipvqd.clip2latent.train import build_prior, train_prior
        from clipvqd.lafite.train import build_networks

        c = self.config["clip2latent"]
        model_cfg = GeneratorModelConfig.from_dict(c["generator_model"])
        spec = c["generator_train"]
        warmup, timed = self.trainer_steps(spec["r1_interval"])
        batch = 2 if self.args.smoke else spec["batch_size"]
        train_cfg = GeneratorTrainConfig.from_dict({**spec, "batch_size": batch, "steps": warmup + timed,
                                                    "snapshot_every": 10**9, "log_every": 1})
        images = self.gan_images(model_cfg.resolution, batch * 2)
        folder = self.folder("clip2latent")

        def train_g():
            seconds, rate = self.run_trainer(lambda: train_generator(
                images, model_cfg, train_cfg, folder / "g_work", folder / "g.safetensors", folder / "g_curve.csv",
                device=self.device, progress=False))
            return seconds, {**rate, "r1_interval": spec["r1_interval"]}

        self.record("clip2latent_generator_train", "stylegan2_step", train_g, "step", batch=batch,
                    precision="fp32 (TF32 convolutions by default)")
        generator, _ = build_networks(model_cfg.to_lafite(), 0)
        generator.to(self.device).eval()
        encoder = getattr(self, "conditioner", None) or clip_model(self.config, "conditioner")[0]
        encoder.model.to(self.device)
        encoder.device = self.device
        encoder.mean, encoder.std = encoder.mean.to(self.device), encoder.std.to(self.device)
        count = self.args.images
        pairs_cfg = PairsConfig.from_dict({**c["pairs"], "count": count, "batch_size": min(c["pairs"]["batch_size"], count),
                                           "stats_count": count})

        @torch.no_grad()
        def pairs():
            make_pairs(generator, encoder, PairsConfig.from_dict({**pairs_cfg.to_dict(), "count": pairs_cfg.batch_size}),
                       0, progress=False)
            start = self.clock.now()
            made = make_pairs(generator, encoder, pairs_cfg, 0, progress=False)
            self.pairs = {**made, **pair_stats(made, count)}
            return (self.clock.now() - start) / count, {"pairs": count, "batch": pairs_cfg.batch_size}

        self.record("clip2latent_pairs", "clip2latent_pair", pairs, "pair")

        prior_model = PriorModelConfig.from_dict({**c["prior_model"], "latent_dim": model_cfg.w_dim,
                                                  "embed_dim": clip_dim(encoder)})
        pspec = c["prior_train"]
        pbatch = 2 if self.args.smoke else pspec["batch_size"]
        prior_train = PriorTrainConfig.from_dict({**pspec, "batch_size": pbatch, "steps": warmup + timed,
                                                  "snapshot_every": 10**9, "log_every": 1})
        g = torch.Generator().manual_seed(1)
        n = max(pbatch * 2, 4)
        made = {"w": torch.randn(n, model_cfg.w_dim, generator=g),
                "embeddings": torch.nn.functional.normalize(torch.randn(n, clip_dim(encoder), generator=g), dim=-1)}
        prior_pairs = {**made, **pair_stats(made, n)}

        def train_p():
            return self.run_trainer(lambda: train_prior(
                prior_pairs, prior_model, prior_train, folder / "p_work", folder / "p.safetensors", folder / "p_curve.csv",
                device=self.device, progress=False))

        self.record("clip2latent_prior_train", "prior_step", train_p, "step", batch=pbatch,
                    precision="bf16 autocast (the library's choice on CUDA)" if self.device.type == "cuda" else "fp32 (CPU)")
        prior = build_prior(prior_model, prior_train, 0)
        prior.set_stats(prior_pairs["w_mean"], prior_pairs["w_std"], prior_pairs["embed_mean"], prior_pairs["embed_std"])
        prior.to(self.device).eval()
        settings = PriorSamplingConfig.from_dict(c["sampling"])
        texts = torch.nn.functional.normalize(torch.randn(count, clip_dim(encoder), generator=g), dim=-1)

        @torch.no_grad()
        def generate():
            generate_images(prior, generator, texts[:2], settings, 0, progress=False)
            start = self.clock.now()
            generate_images(prior, generator, texts, settings, 0, progress=False)
            return (self.clock.now() - start) / count, {"images": count, "prior_steps": settings.steps}

        self.record("clip2latent_sample", "clip2latent_image", generate, "image")
        del generator, prior
        gc.collect()

    # -- metrics -----------------------------------------------------------------------------------------------
    def metrics(self) -> None:
        import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

        cls = fidelity_inception.FeatureExtractorInceptionV3
        placeholder = self.folder("inception") / "empty.pth"
        torch.save({}, placeholder)
        original = cls.load_state_dict
        cls.load_state_dict = lambda self, state_dict, *args, **kwargs: None  # random weights: no file to read
        try:
            inception = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(placeholder))
        finally:
            cls.load_state_dict = original
        inception.to(self.device).eval()
        count = min(self.args.images, 64)
        images = random_images(count, self.resolution).to(self.device)

        @torch.no_grad()
        def features():
            inception(images[:2])
            start = self.clock.now()
            inception(images)
            return (self.clock.now() - start) / count, {"images": count, "extractor": "torch-fidelity inception-v3-compat"}

        self.record("inception_features", "inception_image", features, "image")


def main(argv=None) -> dict:
    args = parse_args(argv)
    benchlib.check_out(args.out)
    if args.threads:
        benchlib.set_threads(args.threads)
    device = torch.device(args.device)
    config = resolve_config(args.config)
    payload = {"benchmark": "paper_steps_gpu", "smoke": args.smoke, "complete": False,
               "environment": benchlib.environment(args.device), "config_files": args.config,
               "settings": {"warmup_steps": args.warmup, "timed_steps": args.steps, "sample_batch": args.sample_batch,
                            "sample_steps": args.sample_steps, "images": args.images},
               "rates": {}, "stages": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="paper_steps_") as work:
        bench = Bench(args, config, device, Path(work), payload)
        for stage in ALL_STAGES:  # fixed order: later stages reuse the conditioner CLIP and the tokenizer's codes
            if stage in args.stages:
                print(f"{stage}:", flush=True)
                try:
                    getattr(bench, stage)()
                except Exception as error:
                    payload["stages"][f"{stage} (setup)"] = {"ok": False, "error": f"{type(error).__name__}: {error}",
                                                             "traceback": traceback.format_exc()[-3000:]}
                    print(f"  {stage}: setup FAILED {error}", flush=True)
                benchlib.write_json(args.out, payload)
    payload["environment"] = benchlib.finish(payload["environment"], torch.get_num_threads())
    payload["total_s"] = round(time.perf_counter() - started, 1)
    payload["complete"] = True
    benchlib.write_json(args.out, payload)
    failed = [name for name, entry in payload["stages"].items() if not entry.get("ok")]
    print(f"wrote {args.out} in {payload['total_s']} s; {len(payload['rates'])} rates"
          + (f"; FAILED: {failed}" if failed else ""))
    return payload


if __name__ == "__main__":
    main()
