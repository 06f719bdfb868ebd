"""What every package's commands share: the command factory, the trainer arguments, the sampling interface.

Each package registers its own commands with `register(group)` (`clipvqd/<package>/cli.py`, or
`clipvqd/<module>_cli.py` beside a single-module concept); `clipvqd.cli` only assembles the groups.
Pure Python with no heavy import, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from clipvqd.config_blocks import json_object

__all__ = ["OUTPUT_ARGUMENTS", "add_command", "check_output_locations", "commands", "compute_arguments",
           "json_mapping", "json_object", "milestone_arguments", "milestones", "output_arguments", "positive_int",
           "sampling_arguments", "trainer_arguments", "write_json"]

# Arguments that name what a command writes (files or folders), in every command that has them; a command
# adds its own others with `output_arguments` (e.g. `--manifest`, an output of sampling but an input elsewhere).
OUTPUT_ARGUMENTS = ("out", "work", "curve", "out_dir", "metrics_out", "protocol_out", "images_out", "prompts_out",
                    "candidates")


def commands(group: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The sub-command table of a command group (`python -m clipvqd <group> <command>`)."""
    return group.add_subparsers(dest="command", required=True)


def add_command(table: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], Any],
                help_text: str) -> argparse.ArgumentParser:
    """One command: its parser, whose parsed arguments go to `handler(args)`."""
    sub = table.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub


def output_arguments(sub: argparse.ArgumentParser, *names: str) -> None:
    """Declare more of `sub`'s arguments (by dest) as outputs, checked for writability before it runs."""
    sub.set_defaults(extra_outputs=tuple(sub.get_default("extra_outputs") or ()) + names)


def _unwritable(path: Path) -> str | None:
    """Why `path` cannot be written (as a file or a folder, with its missing parent folders), or None."""
    target = path if path.is_dir() else path.parent
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    try:  # a real write: permissions, read-only mounts and immutable folders all show up here
        with tempfile.NamedTemporaryFile(dir=target, prefix=".clipvqd-write-check-"):
            pass
    except OSError as error:
        return f"folder {target} cannot be written ({error.strerror or error})"
    if path.is_file() and not os.access(path, os.W_OK):
        return f"{path} cannot be overwritten"
    return None


def check_output_locations(args: argparse.Namespace) -> None:
    """Stop before any work, naming the argument and the folder, when an output cannot be written: a job
    must not compute for an hour and then fail to save."""
    names = OUTPUT_ARGUMENTS + tuple(getattr(args, "extra_outputs", None) or ())
    for name in names:
        value = getattr(args, name, None)
        if not value or not isinstance(value, (str, Path)):
            continue
        problem = _unwritable(Path(value))
        if problem:
            raise SystemExit(f"--{name.replace('_', '-')} {value}: {problem}; nothing was computed")


def trainer_arguments(sub: argparse.ArgumentParser, params_help: str, *, resumable: bool = True,
                      device: bool = True) -> None:
    """The arguments every trainer shares: its config block, resume folder, output, loss curve, seed, device,
    and --no-final-snapshot (`args.final_snapshot`, for TrainingRun's final_snapshot).

    `resumable=False` makes --work and --curve optional (a command that trains only for some sources)."""
    sub.add_argument("--params", type=json_object, required=True, help=params_help)
    sub.add_argument("--work", required=resumable, default=None,
                     help="resume folder (not a workflow output: Snakemake deletes the outputs of a failed job)")
    # The workflow's keep_final_snapshots: false passes it to every trainer whose --work it removes afterwards.
    sub.add_argument("--no-final-snapshot", dest="final_snapshot", action="store_false",
                     help="skip the resume snapshot of the last step (7.7 GB for the paper's diffusion model), for a "
                          "caller that removes --work once the weights exist; a kill while they are written then "
                          "resumes from the last periodic snapshot")
    sub.add_argument("--out", required=True, help="the trained weights (safetensors, JSON sidecar beside it)")
    sub.add_argument("--curve", required=resumable, default=None, help="loss curve CSV")
    sub.add_argument("--seed", type=int, default=0)
    compute_arguments(sub, device=device)


def milestone_arguments(sub: argparse.ArgumentParser) -> None:
    """--milestone STEP OUT (repeatable): also write the weights after optimiser step STEP to OUT (+ sidecar),
    for the quality-versus-compute curve (evaluation.compute_curve)."""
    sub.add_argument("--milestone", nargs=2, action="append", default=[], metavar=("STEP", "OUT"),
                     help="also keep the weights after STEP steps as OUT (repeatable)")


def milestones(args: argparse.Namespace) -> dict[int, str]:
    """{step: path} of the --milestone arguments; a bad or repeated step stops the command, naming it."""
    found: dict[int, str] = {}
    for step, path in args.milestone:
        try:
            number = positive_int(step)
        except argparse.ArgumentTypeError as error:
            raise SystemExit(f"--milestone {step} {path}: {error}") from None
        if number in found:
            raise SystemExit(f"--milestone {step} is given twice")
        problem = _unwritable(Path(path))
        if problem:
            raise SystemExit(f"--milestone {step} {path}: {problem}; nothing was computed")
        found[number] = path
    return found


def positive_int(text: str) -> int:
    """argparse type for a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def compute_arguments(sub: argparse.ArgumentParser, *, device: bool = True) -> None:
    """Where a torch command computes: --device (cpu, cuda or auto, resolved once by the CLI) and --threads
    (torch's intra-op threads, set once by the CLI before the command runs; the workflow passes each job's
    Snakemake threads). Without --threads torch keeps its default (OMP_NUM_THREADS, else every core)."""
    if device:
        sub.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    sub.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads for torch (torch.set_num_threads); default: torch's own choice")


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
    compute_arguments(sub)
    output_arguments(sub, "manifest")


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
