"""Command line: `python -m clipvqd <group> <command> ...`, one command per workflow rule.

Each command takes explicit paths; configuration blocks arrive as JSON (`--params`) and are turned into
the documented dataclasses, so the package is usable without Snakemake and every rule stays one line.
Each package registers its own commands (`register(group)` in its `cli` module); this module only
assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from clipvqd.cli_args import check_output_locations

# group: (module whose `register(group_parser)` adds the group's commands, help). A group's module is
# imported only when that group runs (or for a full parser): importing a package such as clipvqd.diffusion
# loads torch and the rest of its stack, which neither `--help` nor another family's job should pay for,
# and which another family's conda environment need not have.
GROUPS = {
    "world": ("clipvqd.worlds.cli", "embedded offline worlds"),
    "data": ("clipvqd.datasets.cli", "real data sets and pretrained weights"),
    "clip": ("clipvqd.clip.cli", "CLIP: get, evaluate, embed"),
    "oracle": ("clipvqd.oracle_cli", "attribute oracle"),
    "tokenizer": ("clipvqd.tokenizer.cli", "Gumbel VQGAN tokenizer"),
    "diffusion": ("clipvqd.diffusion.cli", "CLIP-VQDiffusion and its controls"),
    "lafite": ("clipvqd.lafite.cli", "the LAFITE baseline (language-free StyleGAN2)"),
    "clip2latent": ("clipvqd.clip2latent.cli", "the clip2latent baseline (StyleGAN2 + diffusion prior)"),
    "sample": ("clipvqd.sampling_cli", "any method: prompts in, PNGs + manifest out"),
    "evaluate": ("clipvqd.evaluation.cli", "metrics of sample sets and the comparison report"),
    "cost": ("clipvqd.paper_cost_cli", "predicted GPU cost of a run from per-step measurements"),
    "calibrate": ("clipvqd.machine_speed_cli", "machine-speed calibration: a fixed one-thread torch workload, timed"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every group, or, with `only`, one whose other groups are listed but not loaded."""
    parser = argparse.ArgumentParser(prog="clipvqd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = parser.add_subparsers(dest="group", required=True, metavar="{" + ",".join(GROUPS) + "}")
    for name, (module, help_text) in GROUPS.items():
        group = groups.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(module).register(group)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not sys.stderr.isatty():
        # Rule logs are files: a progress bar redrawn ten times a second buries them, so redraw every 10 s
        # there (tqdm reads TQDM_* defaults when first imported, which happens inside the handlers).
        os.environ.setdefault("TQDM_MININTERVAL", "10")
    chosen = argv[0] if argv and argv[0] in GROUPS else ""  # "": no group given, argparse says what is wrong
    args = build_parser(only=chosen).parse_args(argv)
    check_output_locations(args)  # before any work: an unwritable output stops the command at once
    if os.environ.get("CLIPVQD_STOP_WITH_PID"):  # a job of the workflow: end with its Snakemake, never orphaned
        from clipvqd.training.lifetime import stop_with_workflow

        stop_with_workflow()
    if getattr(args, "threads", None):
        # Once, before the command computes: the job's share of the cores (Snakemake's threads), whatever
        # OMP_NUM_THREADS says.
        import torch

        torch.set_num_threads(args.threads)
    if getattr(args, "device", None):
        from clipvqd.device import resolve_device

        args.device = resolve_device(args.device)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
