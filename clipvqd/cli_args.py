"""What every package's commands share: the command factory, the trainer arguments, the sampling interface.

Each package registers its own commands with `register(group)` (`clipvqd/<package>/cli.py`, or
`clipvqd/<module>_cli.py` beside a single-module concept); `clipvqd.cli` only assembles the groups.
Pure Python with no heavy import, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from clipvqd.config_blocks import json_object

__all__ = ["add_command", "commands", "json_mapping", "json_object", "sampling_arguments", "trainer_arguments",
           "write_json"]


def commands(group: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The sub-command table of a command group (`python -m clipvqd <group> <command>`)."""
    return group.add_subparsers(dest="command", required=True)


def add_command(table: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], Any],
                help_text: str) -> argparse.ArgumentParser:
    """One command: its parser, whose parsed arguments go to `handler(args)`."""
    sub = table.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub


def trainer_arguments(sub: argparse.ArgumentParser, params_help: str, *, resumable: bool = True,
                      device: bool = True) -> None:
    """The arguments every trainer shares: its config block, resume folder, output, loss curve, seed, device.

    `resumable=False` makes --work and --curve optional (a command that trains only for some sources)."""
    sub.add_argument("--params", type=json_object, required=True, help=params_help)
    sub.add_argument("--work", required=resumable, default=None,
                     help="resume folder (not a workflow output: Snakemake deletes the outputs of a failed job)")
    sub.add_argument("--out", required=True, help="the trained weights (safetensors, JSON sidecar beside it)")
    sub.add_argument("--curve", required=resumable, default=None, help="loss curve CSV")
    sub.add_argument("--seed", type=int, default=0)
    if device:
        sub.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def sampling_arguments(sub: argparse.ArgumentParser) -> None:
    """The sampling interface, as arguments: prompts (and their CLIP text embeddings) in, PNGs + manifest out."""
    sub.add_argument("--prompts", required=True, help="prompt table (prompt_id, prompt, ...)")
    sub.add_argument("--prompt-embeddings", required=True, help="the prompts' CLIP text embeddings (clip embed)")
    sub.add_argument("--prompt-prefix", default="", help="the data.prompt_prefix the prompt embeddings were made with")
    sub.add_argument("--samples-per-prompt", type=int, default=16)
    sub.add_argument("--best-of-prompts", type=int, default=0,
                     help="the first N prompts get 16 samples (best-of-16 CLIPscore)")
    sub.add_argument("--batch-size", type=int, default=64)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--manifest", required=True, help="sample manifest; PNGs go to images/ beside it")
    sub.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def json_mapping(text: str) -> dict[str, str]:
    """argparse type for a `{"label": "path"}` argument."""
    value = json_object(text)
    bad = [key for key, path in value.items() if not isinstance(path, str)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected {{label: path}}; not a path for {bad}")
    return value


def write_json(path: str | Path, payload: dict) -> None:
    """A command's JSON output (sorted keys, so reruns give the same bytes)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True))
