"""`python -m clipvqd clip2latent train-generator | pairs | train-prior` (rules clip2latent_generator_train,
clip2latent_latent_sample, clip2latent_prior_train). Sampling is `python -m clipvqd sample --method clip2latent`.
"""

from __future__ import annotations

import argparse
from typing import Any

from clipvqd.cli_args import (add_command, commands, compute_arguments, json_object, milestone_arguments, milestones,
                               trainer_arguments)


def _configs(cls_pairs: list[tuple[type, str]], params: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None):
    """Build each (dataclass, key) from params[key], naming the clip2latent key of a bad value."""
    overrides = overrides or {}
    try:
        return [cls.from_dict({**params.get(key, {}), **overrides.get(key, {})}, source=f"clip2latent.{key}")
                for cls, key in cls_pairs]
    except (TypeError, ValueError) as error:
        raise SystemExit(str(error)) from None


def cmd_train_generator(args) -> None:
    from clipvqd.manifest import ManifestImages

    from .config import GeneratorModelConfig, GeneratorTrainConfig
    from .generator import train_generator

    model_cfg, train_cfg = _configs([(GeneratorModelConfig, "generator_model"), (GeneratorTrainConfig, "generator_train")],
                                    args.params)
    dataset = ManifestImages(args.train, resolution=model_cfg.resolution, resize=args.resize)
    if len(dataset) < train_cfg.batch_size:
        raise SystemExit(f"{args.train} lists {len(dataset)} images, fewer than clip2latent.generator_train."
                         f"batch_size {train_cfg.batch_size}")
    meta = train_generator(dataset.all(), model_cfg, train_cfg, args.work, args.out, args.curve, device=args.device,
                           seed=args.seed, milestones=milestones(args), final_snapshot=args.final_snapshot)
    print(f"clip2latent generator: {meta['step']} steps in {meta['elapsed_s']:.0f} s -> {args.out}")


def cmd_pairs(args) -> None:
    from clipvqd.clip.encoder import ClipEncoder

    from .config import PairsConfig
    from .generator import load_generator
    from .pairs import make_pairs, pair_stats, pairs_file_meta, save_pairs

    (cfg,) = _configs([(PairsConfig, "pairs")], args.params)
    generator, _ = load_generator(args.generator, device=args.device)
    clip = ClipEncoder.load(args.clip, device=args.device)
    pairs = make_pairs(generator, clip, cfg, seed=args.seed)
    stats = pair_stats(pairs, cfg.stats_count)
    save_pairs(args.out, pairs, stats, pairs_file_meta(args.generator, clip, cfg, args.seed))
    print(f"clip2latent pairs: {cfg.count} (w {tuple(pairs['w'].shape[1:])}, CLIP {tuple(pairs['embeddings'].shape[1:])})"
          f" -> {args.out}")


def cmd_train_prior(args) -> None:
    from clipvqd.hashing import sha256_file

    from .config import PriorModelConfig, PriorTrainConfig
    from .pairs import load_pairs
    from .train import train_prior

    pairs, meta = load_pairs(args.pairs)
    sizes = {"latent_dim": int(pairs["w"].shape[1]), "embed_dim": int(pairs["embeddings"].shape[1])}
    model_cfg, train_cfg = _configs([(PriorModelConfig, "prior_model"), (PriorTrainConfig, "prior_train")],
                                    args.params, {"prior_model": sizes})
    provenance = {"pairs_sha256": sha256_file(args.pairs), "generator_sha256": meta.get("generator_sha256"),
                  "clip_sha256": meta.get("clip_sha256")}
    result = train_prior(pairs, model_cfg, train_cfg, args.work, args.out, args.curve, device=args.device,
                         seed=args.seed, provenance=provenance, final_snapshot=args.final_snapshot)
    print(f"clip2latent prior: {result['step']} steps in {result['elapsed_s']:.0f} s -> {args.out}")


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    gen = add_command(table, "train-generator", cmd_train_generator, "train the unconditional StyleGAN2 (resumable)")
    trainer_arguments(gen, "the clip2latent config block as JSON")
    gen.add_argument("--train", required=True, help="manifest of the generator training split")
    gen.add_argument("--resize", action="store_true", help="resize images to generator_model.resolution")
    milestone_arguments(gen)
    prs = add_command(table, "pairs", cmd_pairs, "sample (w, CLIP image embedding of G(w)) pairs")
    prs.add_argument("--params", type=json_object, required=True, help="the clip2latent config block as JSON")
    prs.add_argument("--generator", required=True, help="generator checkpoint from train-generator")
    prs.add_argument("--clip", required=True, help="the conditioner CLIP file")
    prs.add_argument("--out", required=True, help="pairs file (safetensors, with the z-scoring stats)")
    prs.add_argument("--seed", type=int, default=0)
    compute_arguments(prs)
    pri = add_command(table, "train-prior", cmd_train_prior, "train the diffusion prior on the pairs (resumable)")
    trainer_arguments(pri, "the clip2latent config block as JSON")
    pri.add_argument("--pairs", required=True)
