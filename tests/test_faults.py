"""Faults the workflow survives (kill -9 and resume is tests/test_kill_resume.py and tests/test_torchrun.py):

- a damaged resume snapshot stops training with an error naming the file and the intact one before it,
  which is kept and resumed from once the damaged file is removed;
- a damaged final checkpoint or sidecar is refused with its name, and a write that dies halfway leaves the
  previous checkpoint as it was;
- the same config and seed give byte-identical sample PNGs on CPU (two runs of the sample command);
- checkpoints are only ever loaded as safetensors or with torch.load(weights_only=True).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from clipvqd.checkpoint import CheckpointMismatch, load_meta, load_weights, save_weights
from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig, train_diffusion
from clipvqd.training import CorruptResumeState
from clipvqd.tokenizer import CodeMapping, GumbelVQGAN, TokenizerConfig
from conftest import REPO

MODEL = DenoiserConfig(num_codes=6, grid_height=4, grid_width=4, condition_dim=8, hidden_dim=16, num_layers=1,
                       num_heads=2, mlp_ratio=1, num_steps=6)


def _train_data(count: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, MODEL.num_codes, (count, 4, 4), generator=generator),
            torch.randn(count, MODEL.condition_dim, generator=generator))


def _train(folder: Path, steps: int) -> dict:
    tokens, conditions = _train_data()
    config = DiffusionTrainConfig(steps=steps, batch_size=4, warmup_steps=1, snapshot_every=2, log_every=2)
    return train_diffusion(tokens, conditions, MODEL, config, "language_free", folder / "work",
                           folder / "model.safetensors", folder / "curve.csv", progress=False, seed=1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- damaged snapshots and checkpoints ------------------------------------------------------------------

def test_damaged_newest_snapshot_is_named_and_the_previous_one_is_kept(tmp_path, single_thread):
    _train(tmp_path, steps=6)
    snapshots = sorted((tmp_path / "work").glob("state-*.pt"))
    assert [p.name for p in snapshots] == ["state-000000004.pt", "state-000000006.pt"]
    previous, newest = snapshots
    kept = _sha256(previous)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash mid-copy, a full disk

    with pytest.raises(CorruptResumeState) as raised:
        _train(tmp_path, steps=6)
    message = str(raised.value)
    assert str(newest) in message and str(previous) in message and "intact" in message
    assert _sha256(previous) == kept and newest.exists()  # nothing is deleted or overwritten behind the user

    # The user removes the damaged file, as the message says: training resumes from the previous snapshot.
    newest.unlink()
    meta = _train(tmp_path, steps=6)
    assert meta["step"] == 6
    assert [int(row.split(",")[0]) for row in (tmp_path / "curve.csv").read_text().splitlines()[1:]] == [2, 4, 6]


def test_damaged_final_checkpoint_or_sidecar_is_named(tmp_path):
    module = torch.nn.Linear(3, 2)
    path = tmp_path / "model.safetensors"
    save_weights(path, module.state_dict(), {"step": 1})
    good = path.read_bytes()
    path.write_bytes(good[:40])
    with pytest.raises(CheckpointMismatch, match=str(path)):
        load_weights(path, module)
    path.write_bytes(b"\x80\x04not safetensors at all")  # e.g. a pickle put in its place
    with pytest.raises(CheckpointMismatch, match=r"has sha256 [0-9a-f]{64}, but its sidecar .* records"):
        load_weights(path, module)
    sidecar = json.loads(path.with_suffix(".json").read_text())  # even with a sidecar that vouches for it
    path.with_suffix(".json").write_text(json.dumps({**sidecar, "weights_sha256": _sha256(path)}))
    with pytest.raises(CheckpointMismatch, match="cannot be read as safetensors"):
        load_weights(path, module)
    path.write_bytes(good)
    path.with_suffix(".json").write_text('{"step": ')
    with pytest.raises(ValueError, match=str(path.with_suffix(".json"))):
        load_meta(path)


def test_a_checkpoint_write_that_dies_halfway_keeps_the_previous_one(tmp_path, monkeypatch):
    import clipvqd.checkpoint as checkpoint

    module = torch.nn.Linear(3, 2)
    path = tmp_path / "model.safetensors"
    save_weights(path, module.state_dict(), {"step": 1})
    before, sidecar = _sha256(path), path.with_suffix(".json").read_text()

    def dies_halfway(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        save_weights(path, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, {"step": 2})
    assert _sha256(path) == before and path.with_suffix(".json").read_text() == sidecar
    load_weights(path, torch.nn.Linear(3, 2))


def test_sample_command_names_a_damaged_model(sampling_kit, tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(sampling_kit["model"].read_bytes()[:100])
    damaged.with_suffix(".json").write_text(sampling_kit["model"].with_suffix(".json").read_text())
    result = _sample(sampling_kit, tmp_path / "out", model=damaged)
    assert result.returncode != 0
    assert f"checkpoint {damaged} has sha256" in result.stderr


def test_weights_copied_over_another_checkpoint_are_named(tmp_path):
    """The sidecar records the sha256 of the weights written beside it: another checkpoint of the same
    architecture copied over the file (pretrain.safetensors over cfg.safetensors) is refused, naming the file
    and both hashes, where shapes alone would have accepted it."""
    first, second = tmp_path / "pretrain.safetensors", tmp_path / "cfg.safetensors"
    torch.manual_seed(0)
    recorded_first = save_weights(first, torch.nn.Linear(3, 2).state_dict(), {"stage": "pretrain"})
    recorded_second = save_weights(second, torch.nn.Linear(3, 2).state_dict(), {"stage": "cfg"})
    assert json.loads(second.with_suffix(".json").read_text())["weights_sha256"] == recorded_second == _sha256(second)
    second.write_bytes(first.read_bytes())
    with pytest.raises(CheckpointMismatch) as error:
        load_weights(second, torch.nn.Linear(3, 2))
    assert str(second) in str(error.value) and recorded_first in str(error.value) and recorded_second in str(error.value)


def test_sample_command_names_a_swapped_model_and_tokenizer(sampling_kit, tmp_path):
    import shutil

    from clipvqd.tokenizer import load_tokenizer

    # A second denoiser of the same architecture (other weights) copied over the kit's, its sidecar kept.
    swapped = tmp_path / "cfg.safetensors"
    shutil.copy(sampling_kit["model"], swapped)
    shutil.copy(sampling_kit["model"].with_suffix(".json"), swapped.with_suffix(".json"))
    other = _train(tmp_path / "other", steps=2)
    assert other["step"] == 2
    swapped.write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    result = _sample(sampling_kit, tmp_path / "out", model=swapped)
    assert result.returncode != 0 and f"checkpoint {swapped} has sha256" in result.stderr

    tokenizer = tmp_path / "tokenizer.safetensors"
    shutil.copy(sampling_kit["tokenizer"].with_suffix(".json"), tokenizer.with_suffix(".json"))
    config = TokenizerConfig(resolution=8, channels=8, channel_multipliers=(1, 2), z_channels=4, embed_dim=4,
                             codebook_size=16, norm_groups=4)
    torch.manual_seed(1)
    save_weights(tmp_path / "other-tokenizer.safetensors", GumbelVQGAN(config).state_dict(), {"model_config": config.to_dict()})
    tokenizer.write_bytes((tmp_path / "other-tokenizer.safetensors").read_bytes())
    with pytest.raises(CheckpointMismatch, match=f"checkpoint {tokenizer} has sha256"):
        load_tokenizer(tokenizer)


# ---- determinism ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sampling_kit(tmp_path_factory):
    """Everything `sample` reads for a diffusion method: a briefly trained denoiser, a tokenizer, its code mapping, prompts
    and their embeddings."""
    folder = tmp_path_factory.mktemp("kit")
    _train(folder, steps=4)
    torch.manual_seed(0)
    config = TokenizerConfig(resolution=8, channels=8, channel_multipliers=(1, 2), z_channels=4, embed_dim=4,
                             codebook_size=16, norm_groups=4)
    save_weights(folder / "tokenizer.safetensors", GumbelVQGAN(config).state_dict(),
                 {"model_config": config.to_dict()})
    CodeMapping(16, torch.tensor([1, 3, 4, 8, 9, 15]), torch.ones(16, dtype=torch.long), {}).save(folder / "codebook.json")
    (folder / "prompts.csv").write_text("prompt_id,prompt,ood\np0,a face,0\np1,a hat,0\np2,red hair and a beard,1\n")
    save_file({"embeddings": torch.randn(3, 8, generator=torch.Generator().manual_seed(2))},
              str(folder / "prompts.safetensors"), metadata={"count": "3"})
    return {"model": folder / "model.safetensors", "tokenizer": folder / "tokenizer.safetensors",
            "codebook": folder / "codebook.json", "prompts": folder / "prompts.csv",
            "embeddings": folder / "prompts.safetensors"}


def _sample(kit, out: Path, model: Path | None = None, seed: int = 5) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clipvqd", "sample", "--model", str(model or kit["model"]),
               "--tokenizer", str(kit["tokenizer"]), "--codebook", str(kit["codebook"]), "--prompts", str(kit["prompts"]),
               "--prompt-embeddings", str(kit["embeddings"]), "--method", "clip-vqdiffusion", "--variant", "default",
               "--settings", json.dumps({"s": 1.0, "r": 0.9, "steps": 4}), "--samples-per-prompt", "2",
               "--seed", str(seed), "--manifest", str(out / "manifest.csv"), "--device", "cpu"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _png_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*.png"))}


def test_same_config_and_seed_give_identical_pngs(sampling_kit, tmp_path):
    runs = [_sample(sampling_kit, tmp_path / name) for name in ("first", "second")]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    first, second = _png_hashes(tmp_path / "first"), _png_hashes(tmp_path / "second")
    assert len(first) == 6 and first == second
    other = _sample(sampling_kit, tmp_path / "other-seed", seed=6)
    assert other.returncode == 0, other.stderr[-3000:]
    assert set(_png_hashes(tmp_path / "other-seed").values()) != set(first.values())  # the seed matters


# ---- no unsafe loads ------------------------------------------------------------------------------------

UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("numpy", "load"), ("np", "load"),
                ("torch", "jit.load"), ("dill", "load"), ("joblib", "load")}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            parts, value = [node.func.attr], node.func.value
            while isinstance(value, ast.Attribute):
                parts.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                yield value.id, ".".join(parts), node


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def test_checkpoints_are_loaded_only_safely():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, no pickle at all. The one
    exception is torch-fidelity's Inception file, a pickle loaded inside that library, which
    clipvqd.evaluation.features hands over only after checking the file's sha256."""
    problems = []
    for source in sorted((REPO / "clipvqd").rglob("*.py")):
        tree = ast.parse(source.read_text())
        where = source.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(name and name.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for name in names):
                    problems.append(f"{where}:{node.lineno} imports a pickle library")
        for module, attribute, node in _calls(tree):
            if (module, attribute) not in UNSAFE_CALLS:
                continue
            if (module, attribute) == ("torch", "load"):
                flag = _keyword(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}:{node.lineno} torch.load without weights_only=True")
            elif attribute == "load" and module in ("np", "numpy"):
                flag = _keyword(node, "allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}:{node.lineno} np.load with allow_pickle")
            else:
                problems.append(f"{where}:{node.lineno} {module}.{attribute}")
    assert not problems, "unsafe loads:\n" + "\n".join(problems)

    features = (REPO / "clipvqd" / "evaluation" / "features.py").read_text()
    assert "sha256 is required before the file is unpickled" in features
