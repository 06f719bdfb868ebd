"""The command line the rules call: its assembly (every group, every command a rule calls, cheap help),
and the tokenizer glue end to end on a tiny model."""

import ast
import inspect
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from clipvqd.cli import GROUPS, build_parser, main
from conftest import REPO

TINY_TOKENIZER = {
    "resize": False,
    "model": {"channels": 16, "channel_multipliers": [1, 2, 4], "num_res_blocks": 1, "attention_resolutions": [],
              "norm_groups": 8, "z_channels": 16, "embed_dim": 16, "codebook_size": 32},
    "train": {"max_steps": 3, "batch_size": 8, "log_every": 1, "disc_start": 2, "disc_weight": 0.8},
}


def test_tokenizer_train_evaluate_tokenize(small_faces, tmp_path):
    model, codebook = tmp_path / "model.safetensors", tmp_path / "codebook.json"
    main(["tokenizer", "train", "--params", json.dumps(TINY_TOKENIZER), "--train", str(small_faces / "train.csv"),
          "--work", str(tmp_path / "work"), "--out", str(model), "--curve", str(tmp_path / "curve.csv"),
          "--codebook", str(codebook)])
    main(["tokenizer", "evaluate", "--model", str(model), "--codebook", str(codebook),
          "--heldout", str(small_faces / "reference.csv"), "--metrics", str(tmp_path / "metrics.json"),
          "--grid", str(tmp_path / "grid.png")])
    main(["tokenizer", "tokenize", "--model", str(model), "--codebook", str(codebook),
          "--train", str(small_faces / "train.csv"), "--out", str(tmp_path / "tokens.npy"),
          "--manifest", str(tmp_path / "tokens.json")])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    vocab = json.loads(codebook.read_text())
    tokens = np.load(tmp_path / "tokens.npy")
    assert tokens.shape == (40, 8, 8)
    assert 0 <= tokens.min() and tokens.max() < metrics["codebook"]["vocab_size_after_compaction"]
    assert (tmp_path / "grid.png").stat().st_size > 0 and vocab


def test_unknown_tokenizer_key_is_named(small_faces, tmp_path):
    params = json.loads(json.dumps(TINY_TOKENIZER))
    params["model"]["chanels"] = 8
    with pytest.raises(ValueError, match="chanels"):
        main(["tokenizer", "train", "--params", json.dumps(params), "--train", str(small_faces / "train.csv"),
              "--work", str(tmp_path / "w"), "--out", str(tmp_path / "m.safetensors"),
              "--curve", str(tmp_path / "c.csv"), "--codebook", str(tmp_path / "cb.json")])


# ---- assembly -------------------------------------------------------------------------------------------

def _commands(parser) -> dict[str, object]:
    """{"group command": parser} of every command (a group without sub-commands is itself the command)."""
    found = {}
    for group_name, group in parser._subparsers._group_actions[0].choices.items():
        tables = [a for a in group._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not tables:
            found[group_name] = group
        for name, command in (tables[0].choices.items() if tables else ()):
            found[f"{group_name} {name}"] = command
    return found


def test_cli_module_only_assembles():
    """Handlers and their logic live in the packages: clipvqd/cli.py defines the parser and main only."""
    tree = ast.parse((REPO / "clipvqd" / "cli.py").read_text())
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert functions == {"build_parser", "main"}, functions


def test_every_group_registers_through_one_signature():
    import importlib

    for name, (module, _) in GROUPS.items():
        register = importlib.import_module(module).register
        assert list(inspect.signature(register).parameters) == ["group"], (name, module)


def test_every_command_a_rule_calls_exists():
    commands = _commands(build_parser())
    called = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        # `clipvqd_command("<group> [<command>] ...")`, and the trainers' `clipvqd_trainer("<group> <command> ...")`
        for group, command in re.findall(r'clipvqd_(?:command|trainer)\(\s*"([a-z0-9]+)(?: ([a-z][a-z0-9-]*))?', text):
            called.add(f"{group} {command}" if command else group)  # a one-command group: sample, calibrate
    assert len(called) >= 23, sorted(called)
    missing = called - set(commands)
    assert not missing, f"rules call commands the CLI does not have: {sorted(missing)}"


def test_every_torch_command_takes_threads():
    """Every command that computes with torch (it takes --device, or is a trainer) takes --threads, so the
    workflow can hand it the job's share of the cores."""
    lacking = [name for name, command in _commands(build_parser()).items()
               if {"--device", "--work"} & set(command._option_string_actions)
               and "--threads" not in command._option_string_actions]
    assert not lacking, f"commands without --threads: {lacking}"


# ---- --no-final-snapshot: every trainer takes it and hands it to its TrainingRun ------------------------------

TINY_CLIP = {"model_name": "test-cli-final-snapshot", "embed_dim": 16, "vision_tower": "resnet", "vision_width": 8,
             "vision_layers": 1, "text_width": 32, "text_layers": 1, "text_heads": 2, "epochs": 1, "batch_size": 100}


@pytest.fixture(scope="module")
def trainer_inputs(small_faces, tmp_path_factory):
    """What each trainer command reads, at the smallest size that builds its model: the faces world, a tiny
    stand-in CLIP with the embeddings of the training split, a tokenized split and clip2latent pairs."""
    import torch
    from safetensors.torch import save_file

    from clipvqd.clip.embed import embed_images
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
    from clipvqd.clip2latent.pairs import save_pairs
    from clipvqd.hashing import sha256_file

    root = tmp_path_factory.mktemp("final-snapshot")
    clip = root / "clip.safetensors"
    train_standin_clip(small_faces / "clip_pairs.csv", StandinClipConfig(**TINY_CLIP), root / "clip-work", clip,
                       root / "clip-curve.csv", progress=False)
    embed_images(ClipEncoder.load(clip), small_faces / "train.csv", root / "train_images.safetensors", progress=False)
    np.save(root / "tokens.npy", np.random.default_rng(0).integers(0, 12, size=(16, 4, 4)).astype(np.int16))
    (root / "tokens.json").write_text(json.dumps({
        "kind": "tokenized_split", "codes_file": "tokens.npy", "codes_sha256": sha256_file(root / "tokens.npy"),
        "count": 16, "token_grid": [4, 4], "dtype": "int16", "vocab_size": 12, "codebook_size": 16,
        "provenance": {}}))
    w, embeddings = torch.randn(16, 6), torch.nn.functional.normalize(torch.randn(16, 10), dim=1)
    save_pairs(root / "pairs.safetensors", {"w": w, "embeddings": embeddings},
               {"w_mean": w.mean(0), "w_std": w.std(0), "embed_mean": embeddings.mean(0),
                "embed_std": embeddings.std(0)}, {"count": 16})
    return {"faces": small_faces, "root": root, "clip": clip}


def _trainer_arguments(command: str, inputs: dict, out) -> list[str]:
    """The command's own arguments (beyond --work, --out, --curve) on `inputs`; tiny models."""
    faces, root = inputs["faces"], inputs["root"]
    if command == "clip get":
        return ["--params", json.dumps({"source": "standin", "standin": TINY_CLIP}),
                "--pairs", str(faces / "clip_pairs.csv")]
    if command == "oracle train":
        return ["--params", json.dumps({"width": 4, "epochs": 1}), "--world", "faces",
                "--manifest", str(faces / "oracle.csv"), "--reference", str(faces / "reference.csv"),
                "--metrics", str(out / "metrics.json")]
    if command == "tokenizer train":
        return ["--params", json.dumps(TINY_TOKENIZER), "--train", str(faces / "train.csv"),
                "--codebook", str(out / "codebook.json")]
    if command == "diffusion train":
        params = {"model": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 1, "num_steps": 8},
                  "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1}}
        return ["--params", json.dumps(params), "--mode", "unconditional", "--tokens", str(root / "tokens.json")]
    if command == "lafite train":
        params = {"model": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "condition_hidden": 8, "channel_base": 128,
                            "channel_max": 8}, "train": {"steps": 4, "batch_size": 8}}
        return ["--params", json.dumps(params), "--train", str(faces / "train.csv"),
                "--embeddings", str(root / "train_images.safetensors"), "--clip", str(inputs["clip"])]
    if command == "clip2latent train-generator":
        params = {"generator_model": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64,
                                      "channel_max": 4}, "generator_train": {"steps": 2, "batch_size": 8}}
        return ["--params", json.dumps(params), "--train", str(faces / "train.csv")]
    if command == "clip2latent train-prior":
        params = {"prior_model": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "timesteps": 20},
                  "prior_train": {"steps": 3, "batch_size": 8}}
        return ["--params", json.dumps(params), "--pairs", str(root / "pairs.safetensors")]
    raise AssertionError(f"no test arguments for the trainer '{command}': add them here")


TRAINERS = ["clip get", "oracle train", "tokenizer train", "diffusion train", "lafite train",
            "clip2latent train-generator", "clip2latent train-prior"]


def test_every_trainer_takes_no_final_snapshot():
    """A trainer is a command with a resume folder (--work); each is listed in TRAINERS, so that the test
    below runs it, and takes --no-final-snapshot (the workflow's keep_final_snapshots: false)."""
    trainers = {name: command for name, command in _commands(build_parser()).items()
                if "--work" in command._option_string_actions}
    assert sorted(trainers) == sorted(TRAINERS)
    lacking = [name for name, command in trainers.items()
               if "--no-final-snapshot" not in command._option_string_actions]
    assert not lacking, f"trainers without --no-final-snapshot: {lacking}"


class _Constructed(Exception):
    """Raised in place of training, once the command has built its TrainingRun."""


@pytest.mark.parametrize("command", TRAINERS)
def test_no_final_snapshot_reaches_the_training_run(command, trainer_inputs, tmp_path, monkeypatch):
    """`--no-final-snapshot` becomes TrainingRun(final_snapshot=False); without it, the run keeps the snapshot."""
    from clipvqd.training.run import TrainingRun

    signature = inspect.signature(TrainingRun.__init__)
    seen = []

    def construct(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        seen.append(bound.arguments["final_snapshot"])
        raise _Constructed(bound.arguments["name"])

    monkeypatch.setattr(TrainingRun, "__init__", construct)
    group, name = command.split()
    for flag, expected in (([], True), (["--no-final-snapshot"], False)):
        out = tmp_path / f"final-snapshot={expected}"
        argv = [group, name, *_trainer_arguments(command, trainer_inputs, out), "--work", str(out / "work"),
                "--out", str(out / "model.safetensors"), "--curve", str(out / "curve.csv"), *flag]
        with pytest.raises(_Constructed):
            main(argv)
        assert seen[-1] is expected, (command, flag)
    assert len(seen) == 2

def test_threads_reach_torch_before_the_command_runs(monkeypatch, tmp_path):
    import torch

    import clipvqd.oracle_cli

    seen = []
    monkeypatch.setattr(clipvqd.oracle_cli, "cmd_train", lambda args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        for threads in (3, 1):
            main(["oracle", "train", "--params", "{}", "--world", "faces", "--manifest", "m.csv", "--reference", "r.csv",
                  "--work", str(tmp_path), "--out", "o", "--curve", "c", "--metrics", "x", "--threads", str(threads)])
    finally:
        torch.set_num_threads(before)
    assert seen == [3, 1]
    with pytest.raises(SystemExit):
        main(["oracle", "train", "--params", "{}", "--world", "faces", "--manifest", "m", "--reference", "r",
              "--work", "w", "--out", "o", "--curve", "c", "--metrics", "x", "--threads", "0"])


def test_help_of_the_cli_and_of_every_group(capsys):
    for argv in [["--help"]] + [[group, "--help"] for group in GROUPS]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0, argv
    text = capsys.readouterr().out
    assert all(group in text for group in GROUPS)


@pytest.mark.parametrize("argv", [["--help"], ["data", "download", "--help"], ["sample", "--help"],
                                  ["evaluate", "metrics", "--help"], ["clip2latent", "--help"]])
def test_help_does_not_load_torch(argv):
    """A group's stack is imported when it runs, not to build the parser."""
    code = ("import sys\nfrom clipvqd.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().endswith("NO TORCH"), (argv, result.stderr[-2000:])
    assert "usage: clipvqd" in result.stdout


def test_sample_refuses_model_files_its_method_does_not_read(tmp_path):
    with pytest.raises(SystemExit, match="method 'lafite' reads model, clip; not read by it: tokenizer"):
        main(["sample", "--method", "lafite", "--model", str(tmp_path / "g.safetensors"), "--tokenizer",
              str(tmp_path / "t.safetensors"), "--prompts", str(tmp_path / "p.csv"), "--prompt-embeddings",
              str(tmp_path / "e.safetensors"), "--manifest", str(tmp_path / "m.csv")])
    with pytest.raises(SystemExit, match="missing: tokenizer, codebook"):
        main(["sample", "--method", "paired", "--model", str(tmp_path / "d.safetensors"), "--prompts",
              str(tmp_path / "p.csv"), "--prompt-embeddings", str(tmp_path / "e.safetensors"),
              "--manifest", str(tmp_path / "m.csv")])


# ---- outputs that cannot be written stop a command before it computes -------------------------------------


@pytest.fixture()
def unwritable_folder(tmp_path):
    """A folder no process can create files in: read-only mode, made immutable where the test runs as root
    (root ignores permission bits); skipped where neither holds."""
    import os
    import shutil

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root
        immutable = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)],
                                                              capture_output=True).returncode == 0
    try:
        (folder / "probe").touch()
        (folder / "probe").unlink()
        pytest.skip("no way to make a folder unwritable here")
    except OSError:
        pass
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["read-only folder", "under a file"])
def test_an_unwritable_output_stops_a_trainer_before_it_trains(small_faces, tmp_path, where, request):
    if where == "read-only folder":
        out = request.getfixturevalue("unwritable_folder") / "sub" / "model.safetensors"
    else:
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "model.safetensors"
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as error:
        main(["tokenizer", "train", "--params", json.dumps(TINY_TOKENIZER), "--train", str(small_faces / "train.csv"),
              "--work", str(work), "--out", str(out), "--curve", str(tmp_path / "c.csv"),
              "--codebook", str(tmp_path / "cb.json")])
    message = str(error.value.code)
    assert message.startswith(f"--out {out}: ") and "nothing was computed" in message
    assert not work.exists()  # not one step trained


def test_an_unwritable_output_stops_the_metrics_job_before_it_loads_anything(unwritable_folder, tmp_path):
    with pytest.raises(SystemExit, match=r"--protocol-out .*read-only.*cannot be written"):
        main(["evaluate", "metrics", "--samples", "no-such.csv", "--distribution-samples", "d.csv", "--seeds", "0",
              "--prompts", "p.csv", "--distribution-prompts", "dp.csv", "--conditioner", "c", "--judge", "j",
              "--method", "lafite", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "m.csv"),
              "--by-seed-out", str(tmp_path / "m.by_seed.csv"), "--units-out", str(tmp_path / "m.units.csv"),
              "--features-out", str(tmp_path / "m.features.safetensors"),
              "--protocol-out", str(unwritable_folder / "m.protocol.json"),
              "--samples-per-prompt", "1", "--sample-seeds", "0", "--distribution-sample-seeds", "5"])


def test_an_empty_prompt_is_refused_naming_the_file_and_line(tmp_path):
    from clipvqd.clip.embed import embed_text_column
    from clipvqd.samples import read_prompts

    table = tmp_path / "prompts.csv"
    table.write_text("prompt_id,prompt,ood\np0000,a face with glasses,0\np0001,  ,0\n")
    with pytest.raises(ValueError, match=rf"prompt table {table} has an empty prompt on line\(s\) \[3\]"):
        read_prompts(table)
    with pytest.raises(ValueError, match=rf"{table} has an empty prompt on line\(s\) \[3\]"):
        embed_text_column(None, table, "prompt", tmp_path / "out.safetensors")
