"""`python -m clipvqd world generate`: render every split of an embedded world (rule world_generate)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, json_object


def cmd_generate(args) -> None:
    from clipvqd.worlds.generate import generate_world

    p = args.params
    generate_world(p["name"], args.out, seed=args.seed, resolution=p["resolution"], sizes=p["sizes"],
                   heldout=p["heldout"], prompt_count=p["prompts"]["count"],
                   attributes_per_prompt=p["prompts"]["attributes_per_prompt"],
                   ood_prompts_per_combination=p["prompts"]["ood_per_combination"],
                   oracle_test_fraction=p["oracle_test_fraction"], clip_holdout_fraction=p["clip_holdout_fraction"],
                   judge_wording=p["judge_wording"])


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    gen = add_command(table, "generate", cmd_generate, "render every split of a world")
    gen.add_argument("--params", type=json_object, required=True, help="the data.world config block as JSON")
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--out", required=True, help="folder for the splits and their manifests")
