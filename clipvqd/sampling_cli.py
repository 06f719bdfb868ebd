"""`python -m clipvqd sample --method M ...`: every method's sampling job, one command (rule sample)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import json_object, sampling_arguments
from clipvqd.sampling import METHODS


def cmd_sample(args) -> None:
    from clipvqd.sampling import SamplingError, sample_prompts

    files = {"model": args.model, "tokenizer": args.tokenizer, "codebook": args.codebook,
             "generator": args.generator, "clip": args.clip}
    try:
        written = sample_prompts(args.method, files, args.prompts, args.prompt_embeddings, args.manifest,
                                 variant=args.variant, settings=args.settings, prompt_prefix=args.prompt_prefix,
                                 samples_per_prompt=args.samples_per_prompt,
                                 best_of_prompts=args.best_of_prompts, seed=args.seed,
                                 batch_size=args.batch_size, device=args.device)
    except SamplingError as error:
        raise SystemExit(str(error)) from None
    print(f"wrote {len(written)} images ({written['prompt_id'].nunique()} prompts x {args.samples_per_prompt}, "
          f"16 for the first {args.best_of_prompts}) and {args.manifest}")


def register(group: argparse.ArgumentParser) -> None:
    group.set_defaults(handler=cmd_sample)
    group.add_argument("--method", required=True, choices=METHODS)
    group.add_argument("--variant", default="default", help="the sweep point's name, recorded in the manifest")
    group.add_argument("--settings", type=json_object, default={},
                       help='the sweep point, e.g. {"s": 1.2, "r": 0.85, "steps": 25} (diffusion methods); the '
                            'clip2latent.sampling block (clip2latent); recorded only (lafite)')
    group.add_argument("--model", required=True, help="denoiser (diffusion methods), generator (lafite) or prior "
                                                      "(clip2latent) checkpoint")
    group.add_argument("--tokenizer", default=None, help="tokenizer checkpoint (diffusion methods)")
    group.add_argument("--codebook", default=None, help="the tokenizer's used-code mapping (diffusion methods)")
    group.add_argument("--generator", default=None, help="generator the prior's pairs came from (clip2latent)")
    group.add_argument("--clip", default=None, help="conditioner CLIP file, checked against the checkpoint's record "
                                                    "(lafite, clip2latent)")
    sampling_arguments(group)
