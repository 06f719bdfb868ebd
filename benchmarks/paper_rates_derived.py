#!/usr/bin/env python
"""Seconds per unit of every GPU stage of a paper run, DERIVED from FLOP counts at throughputs measured on
the denoiser, until benchmarks/paper_steps_gpu.py has measured them on a GPU (issue 19 target 3).

What is measured comes from a diffusion_gpu JSON (benchmarks/diffusion_gpu.py on one GPU): the denoiser's
training step (configuration `bf16_sdpa_fused`, the trainer's precision, optimiser and attention) at batches
32 and 64, and its 100-step sampling at batch 64 with and without guidance. Those rates are written with
basis "measured (...)".

Everything else is counted, not timed: the FLOPs of one forward of each network at the config's shapes
(torch.utils.flop_counter on the meta device, so nothing is computed), combined per unit by the formulas
below (a backward costs twice its forward), and divided by the model throughput (FLOP/s) the denoiser
reached in the same GPU run under the same numeric policy:
  conv_tf32  fp32 networks dominated by convolutions (tokenizer, its LPIPS and PatchGAN, StyleGAN2 G and D,
             Inception): PyTorch's default float32 policy, cuDNN convolutions in TF32 -> the denoiser's
             `fp32_eager_tf32_convs` throughput (93% of its FLOPs are 3x3 convolutions);
  fp32       fp32 matmul networks (the CLIP ViTs, which ClipEncoder runs in float32 with TF32 matmuls off,
             PyTorch's default) -> `fp32_eager` (plain float32);
  bf16       the prior under bf16 autocast -> `bf16_sdpa_fused`.
Each derived rate says so in its basis. This is an estimate: another architecture reaches another fraction of
the same peak (StyleGAN2's modulated grouped convolutions and the tokenizer's 256-px GroupNorm layers are
likely less efficient than the denoiser's 16x16 convolutions), and the data pipeline is not counted.

    python benchmarks/paper_rates_derived.py --config config.yaml configs/ffhq.yaml \
        --from benchmarks/measured/diffusion_gpu-h200-2026-11-27.json --out benchmarks/measured/paper_rates_derived-h200.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from paper_steps_gpu import clip_model, clip_dim  # noqa: E402

from clipvqd.paper_cost import resolve_config  # noqa: E402

META = torch.device("meta")


def forward_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def throughputs(diffusion_json: dict, batch: int = 32) -> dict[str, dict]:
    """Model FLOP/s of the denoiser's training configurations at `batch`, by numeric policy."""
    by_config = {r["config"]: r for r in diffusion_json["training"] if r.get("batch") == batch and r.get("ok")}
    policy = {"conv_tf32": "fp32_eager_tf32_convs", "fp32": "fp32_eager", "bf16": "bf16_sdpa_fused"}
    return {name: {"flops_per_s": by_config[config]["model_tflops_per_s"] * 1e12, "config": config,
                   "mfu": by_config[config]["mfu"], "batch": batch} for name, config in policy.items()}


def count_forwards(config: dict) -> dict[str, float]:
    """FLOPs of one forward per image (per sample for the prior) of every network, on the meta device."""
    from clipvqd.clip2latent.config import GeneratorModelConfig, PriorModelConfig, PriorTrainConfig
    from clipvqd.clip2latent.train import build_prior
    from clipvqd.lafite.config import LafiteModelConfig
    from clipvqd.lafite.train import build_networks
    from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
    from clipvqd.tokenizer.discriminator import PatchDiscriminator
    from clipvqd.tokenizer.model import GumbelVQGAN
    from clipvqd.tokenizer.perceptual import LPIPS

    flops: dict[str, float] = {}
    batch = 4
    with torch.device(META):
        tok_cfg = TokenizerConfig.from_dict(config["tokenizer"]["model"])
        tok_train = TokenizerTrainConfig.from_dict(config["tokenizer"]["train"])
        vq = GumbelVQGAN(tok_cfg).eval()  # the deterministic quantizer: the same FLOPs as the Gumbel sample
        images = torch.zeros(batch, 3, tok_cfg.resolution, tok_cfg.resolution)
        flops["tokenizer_forward"] = forward_flops(lambda: vq(images)) / batch
        flops["tokenizer_encode"] = forward_flops(lambda: vq.quantize(images)) / batch
        flops["lpips_pair"] = forward_flops(lambda: LPIPS()(images, images)) / batch
        disc = PatchDiscriminator(tok_cfg.in_channels, tok_train.disc_channels, tok_train.disc_layers)
        flops["patchgan"] = forward_flops(lambda: disc(images)) / batch

        resolution = config["lafite"]["model"]["resolution"]
        encoder, _ = clip_model(config, "conditioner", "meta")
        dim = clip_dim(encoder)
        lafite_cfg = LafiteModelConfig.from_dict({**config["lafite"]["model"], "condition_dim": dim})
        g, d = build_networks(lafite_cfg, 0)
        zs, cond = torch.zeros(batch, lafite_cfg.z_dim), torch.zeros(batch, dim)
        flops["lafite_g"] = forward_flops(lambda: g(zs, cond, "const")) / batch
        gan_images = torch.zeros(batch, 3, resolution, resolution)
        flops["lafite_d"] = forward_flops(lambda: d(gan_images, cond)) / batch

        sg_cfg = GeneratorModelConfig.from_dict(config["clip2latent"]["generator_model"]).to_lafite()
        sg, sd = build_networks(sg_cfg, 0)
        flops["stylegan2_g"] = forward_flops(lambda: sg(torch.zeros(batch, sg_cfg.z_dim), torch.zeros(batch, 1), "const")) / batch
        sg_images = torch.zeros(batch, 3, sg_cfg.resolution, sg_cfg.resolution)
        flops["stylegan2_d"] = forward_flops(lambda: sd(sg_images, torch.zeros(batch, 1))) / batch

        clip_in = torch.zeros(batch, 3, encoder.input_resolution, encoder.input_resolution)
        flops["clip_conditioner"] = forward_flops(lambda: encoder.model.encode_image(clip_in)) / batch
        tokens = torch.zeros(batch, encoder.model.context_length, dtype=torch.long)
        flops["clip_conditioner_text"] = forward_flops(lambda: encoder.model.encode_text(tokens)) / batch
        judge, _ = clip_model(config, "judge", "meta")
        judge_in = torch.zeros(batch, 3, judge.input_resolution, judge.input_resolution)
        flops["clip_judge"] = forward_flops(lambda: judge.model.encode_image(judge_in)) / batch

        c = config["clip2latent"]
        prior_cfg = PriorModelConfig.from_dict({**c["prior_model"], "latent_dim": sg_cfg.w_dim, "embed_dim": dim})
        prior = build_prior(prior_cfg, PriorTrainConfig.from_dict(c["prior_train"]), 0)
        w = torch.zeros(batch, sg_cfg.w_dim)
        flops["prior"] = forward_flops(lambda: prior.network(w, torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dim),
                                                         torch.ones(batch, dtype=torch.bool))) / batch

    from torchvision.models import inception_v3

    with torch.device(META):
        inception = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        flops["inception"] = forward_flops(lambda: inception(torch.zeros(batch, 3, 299, 299))) / batch
    return flops


def derive(config: dict, diffusion_json: dict) -> dict:
    f = count_forwards(config)
    tp = throughputs(diffusion_json)
    gpu = diffusion_json["environment"].get("gpu", "GPU")
    rates: dict[str, dict] = {}

    def add(name: str, parts: dict[str, float], formula: str, batch: int | None = None, unit: str = "image") -> None:
        seconds = sum(flops * (batch or 1) / tp[policy]["flops_per_s"] for policy, flops in parts.items())
        used = ", ".join(f"{p} at {tp[p]['flops_per_s'] / 1e12:.0f} TFLOP/s ({tp[p]['config']})" for p in parts)
        rates[name] = {"seconds": round(seconds, 7), "batch": batch, "unit": unit,
                       "flops_per_image": round(sum(parts.values())),
                       "basis": f"derived: FLOPs ({formula}) at the denoiser's measured throughput on the {gpu}: {used}"}

    tcfg, ltr, gtr = config["tokenizer"]["train"], config["lafite"]["train"], config["clip2latent"]["generator_train"]
    # Training steps (per image of the batch; x batch in `add`). Backward = 2 x forward.
    add("tokenizer_step", {"conv_tf32": 3 * (f["tokenizer_forward"] + f["lpips_pair"] + f["patchgan"]) + 6 * f["patchgan"]},
        "3(VQGAN + LPIPS + PatchGAN) + 3 x 2 PatchGAN", tcfg["batch_size"], "step")
    add("tokenizer_step_no_disc", {"conv_tf32": 3 * (f["tokenizer_forward"] + f["lpips_pair"])},
        "3(VQGAN + LPIPS)", tcfg["batch_size"], "step")
    r1 = 3 * f["lafite_d"] / ltr["r1_interval"]
    add("lafite_step", {"conv_tf32": 3 * (f["lafite_g"] + f["lafite_d"]) + f["lafite_g"] + 6 * f["lafite_d"] + r1,
                        "fp32": 3 * f["clip_conditioner"]},
        "G step 3(G + D) + 3 CLIP; D step G + 3 x 2 D; lazy R1 3 D / interval", ltr["batch_size"], "step")
    add("stylegan2_step", {"conv_tf32": 3 * (f["stylegan2_g"] + f["stylegan2_d"]) + f["stylegan2_g"] + 6 * f["stylegan2_d"]
                           + 3 * f["stylegan2_d"] / gtr["r1_interval"]},
        "3(G + D) + G + 3 x 2 D + lazy R1", gtr["batch_size"], "step")
    add("prior_step", {"bf16": 3 * f["prior"]}, "3 x prior", config["clip2latent"]["prior_train"]["batch_size"], "step")
    # Inference, per image.
    add("clip_conditioner_image", {"fp32": f["clip_conditioner"]}, "CLIP image tower")
    add("clip_conditioner_text", {"fp32": f["clip_conditioner_text"]}, "CLIP text tower", unit="text")
    add("judge_image", {"fp32": f["clip_judge"]}, "judge CLIP image tower")
    add("inception_image", {"conv_tf32": f["inception"]}, "InceptionV3 at 299 px")
    add("tokenizer_encode_image", {"conv_tf32": f["tokenizer_encode"]}, "VQGAN encoder")
    add("tokenizer_decode_image", {"conv_tf32": max(f["tokenizer_forward"] - f["tokenizer_encode"], 0)}, "VQGAN decoder")
    add("lafite_image", {"conv_tf32": f["lafite_g"]}, "LAFITE G")
    steps = config["clip2latent"]["sampling"]["steps"]
    guided = config["clip2latent"]["sampling"]["guidance_scale"] != 1.0
    add("clip2latent_image", {"bf16": steps * (2 if guided else 1) * f["prior"], "conv_tf32": f["stylegan2_g"]},
        f"{steps} prior steps{' x 2 (guidance)' if guided else ''} + StyleGAN2 G")
    add("clip2latent_pair", {"conv_tf32": f["stylegan2_g"], "fp32": f["clip_conditioner"]}, "StyleGAN2 G + CLIP image tower",
        unit="pair")

    # Measured on the GPU: the denoiser's training step and its sampling.
    for row in diffusion_json["training"]:
        if row.get("config") == "bf16_sdpa_fused" and row.get("ok"):
            rates[f"diffusion_step@{row['batch']}"] = {
                "seconds": round(1 / row["steps_per_s"], 6), "batch": row["batch"], "unit": "step",
                "basis": f"measured ({gpu}, diffusion_gpu bf16_sdpa_fused: the model's step without the trainer's EMA "
                         "and bookkeeping)"}
    for run in diffusion_json["sampling"]["runs"]:
        if run.get("ok") and run["setting"] in ("cfg s=1.2, batched cond+null", "s=1 (no null pass)"):
            settings = diffusion_json["sampling"]["settings"]
            name = "denoiser_sample_step_guided" if run["guidance_scale"] != 1.0 else "denoiser_sample_step"
            rates[name] = {"seconds": round(1 / (run["images_per_s"] * settings["steps"]), 8), "batch": None,
                           "unit": "image-step",
                           "basis": f"measured ({gpu}, diffusion_gpu: {settings['steps']} steps at batch "
                                    f"{settings['batch_size']}, bf16)"}
    return {"forward_flops_per_image": {k: round(v) for k, v in f.items()}, "throughputs": tp, "rates": rates}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", nargs="+", default=["config.yaml", "configs/ffhq.yaml"])
    p.add_argument("--from", dest="source", required=True, type=Path, help="a diffusion_gpu JSON (measured on a GPU)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    benchlib.check_out(args.out)
    config = resolve_config(args.config)
    source = json.loads(args.source.read_text())
    payload = {"benchmark": "paper_rates_derived", "config_files": args.config, "measured_from": str(args.source),
               "measured_environment": source["environment"], "environment": benchlib.environment("meta"),
               **derive(config, source)}
    benchlib.write_json(args.out, payload)
    for name, rate in payload["rates"].items():
        print(f"{name:32s} {rate['seconds']:.6g} s per {rate['unit']}  [{rate['basis'][:60]}]")
    return payload


if __name__ == "__main__":
    main()
