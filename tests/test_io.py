"""Bad inputs are named: manifests, checkpoints, resume state, weights files, embedding caches."""

import shutil

import pytest
import torch

from clipvqd.checkpoint import CheckpointMismatch, build_with_weights, load_weights, save_weights
from clipvqd.hashing import ChecksumMismatch, sha256_file, verify_sha256
from clipvqd.manifest import ManifestError, ManifestImages, load_rgb, read_manifest
from clipvqd.training import CorruptResumeState, ResumeState


def _copy_world(small_faces, tmp_path):
    target = tmp_path / "world"
    shutil.copytree(small_faces, target)
    return target


def test_manifest_missing_file_is_named(small_faces, tmp_path):
    world = _copy_world(small_faces, tmp_path)
    (world / "train" / "000003.png").unlink()
    with pytest.raises(ManifestError, match=r"train/000003\.png.*does not exist"):
        read_manifest(world / "train.csv")


def test_manifest_changed_file_is_named_with_both_hashes(small_faces, tmp_path):
    world = _copy_world(small_faces, tmp_path)
    shutil.copy(world / "train" / "000001.png", world / "train" / "000002.png")
    with pytest.raises(ManifestError, match=r"000002\.png has sha256 [0-9a-f]{64}, but manifest .* records [0-9a-f]{64}"):
        read_manifest(world / "train.csv")


def test_wrong_image_size_is_refused_or_resized(small_faces):
    path = next((small_faces / "train").glob("*.png"))
    with pytest.raises(ManifestError, match=r"is 32x32, expected 64x64"):
        load_rgb(path, 64)
    assert load_rgb(path, 64, resize=True).size == (64, 64)
    assert ManifestImages(small_faces / "train.csv")[0].shape == (3, 32, 32)


def test_weights_sha256_mismatch_names_both_hashes(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"not the weights you are looking for")
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch) as error:
        verify_sha256(weights, wrong, what="CLIP weights file")
    assert wrong in str(error.value) and verify_sha256(weights, None) in str(error.value)


def test_checkpoint_from_other_config_names_the_key(tmp_path):
    save_weights(tmp_path / "m.safetensors", torch.nn.Linear(4, 3).state_dict(), {"step": 1})
    with pytest.raises(CheckpointMismatch, match=r"'weight' has shape \(3, 4\) in the checkpoint but \(5, 4\)"):
        load_weights(tmp_path / "m.safetensors", torch.nn.Linear(4, 5))
    meta = load_weights(tmp_path / "m.safetensors", torch.nn.Linear(4, 3))
    assert meta == {"step": 1, "weights_sha256": sha256_file(tmp_path / "m.safetensors")}


def test_a_module_built_for_its_weights_equals_one_initialised_then_loaded(tmp_path):
    from clipvqd.diffusion import DenoiserConfig
    from clipvqd.diffusion.train import DenoiserAndNullCondition

    config = DenoiserConfig(num_codes=16, grid_height=4, grid_width=4, condition_dim=8, hidden_dim=16,
                            num_layers=2, num_heads=2)
    torch.manual_seed(0)
    save_weights(tmp_path / "d.safetensors", DenoiserAndNullCondition(config).state_dict(), {"step": 3})
    torch.manual_seed(1)
    loaded = DenoiserAndNullCondition(config)
    expected_meta = load_weights(tmp_path / "d.safetensors", loaded)
    rng = torch.get_rng_state()
    built, meta = build_with_weights(tmp_path / "d.safetensors", lambda: DenoiserAndNullCondition(config))
    assert meta == expected_meta and torch.equal(torch.get_rng_state(), rng)  # no random initialisation drawn
    reference = dict(loaded.named_parameters())
    for name, value in built.named_parameters():
        assert value.device.type == "cpu" and torch.equal(value, reference[name]), name
        assert value.stride() == reference[name].stride(), name  # the convolutions stay channels-last
    assert built.state_dict().keys() == loaded.state_dict().keys()
    # A damaged file is refused as by load_weights; a module with a buffer outside its state dict is refused.
    with pytest.raises(CheckpointMismatch, match="does not match"):
        build_with_weights(tmp_path / "d.safetensors", lambda: torch.nn.Linear(4, 5))

    class Computed(torch.nn.Linear):
        def __init__(self):
            super().__init__(4, 3)
            self.register_buffer("table", torch.arange(3.0), persistent=False)

    save_weights(tmp_path / "c.safetensors", Computed().state_dict(), {})
    with pytest.raises(ValueError, match=r"Computed has buffers outside its state dict \(table\)"):
        build_with_weights(tmp_path / "c.safetensors", Computed)


def test_resume_restores_exactly_and_names_a_damaged_snapshot(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    generator = torch.Generator().manual_seed(5)
    state = ResumeState(tmp_path / "work")
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state.save(10, {"model": model, "optimizer": optimizer, "generator": generator}, {"note": "x"})
    expected_draw = torch.rand(3, generator=generator)
    state.save(20, {"model": model, "optimizer": optimizer, "generator": generator})

    fresh_model, fresh_generator = torch.nn.Linear(3, 2), torch.Generator()
    fresh_optimizer = torch.optim.AdamW(fresh_model.parameters())
    (tmp_path / "work" / "state-000000020.pt").unlink()
    step, extra = state.restore({"model": fresh_model, "optimizer": fresh_optimizer, "generator": fresh_generator})
    assert (step, extra) == (10, {"note": "x"})
    assert torch.equal(fresh_model.weight, model.weight)
    assert torch.equal(torch.rand(3, generator=fresh_generator), expected_draw)

    state.save(30, {"model": model, "optimizer": optimizer, "generator": generator})
    (tmp_path / "work" / "state-000000030.pt").write_bytes(b"truncated")
    with pytest.raises(CorruptResumeState, match=r"state-000000030\.pt is damaged.*state-000000010\.pt is intact"):
        state.restore({"model": fresh_model, "optimizer": fresh_optimizer, "generator": fresh_generator})
    assert (tmp_path / "work" / "state-000000010.pt").exists()


# ---- a listed path never leaves its manifest's folder ----------------------------------------------------


@pytest.mark.parametrize("way_out", ["dotdot", "dotdot-inside-first", "absolute", "symlink", "symlinked-folder",
                                     "empty"])
def test_a_manifest_path_leaving_its_folder_is_refused(small_faces, tmp_path, way_out):
    """Every reader goes through read_manifest, which refuses the row (with the file's true hash, so only the
    path rule can stop it), naming the manifest and the path."""
    import os

    import pandas as pd

    world = _copy_world(small_faces, tmp_path)
    secret = tmp_path / "secret.png"
    shutil.copy(world / "train" / "000001.png", secret)
    listed = {"dotdot": os.path.relpath(secret, world), "dotdot-inside-first": "train/../../secret.png",
              "absolute": str(secret), "symlink": "train/link.png", "symlinked-folder": "elsewhere/secret.png",
              "empty": " "}[way_out]
    if way_out == "symlink":
        (world / "train" / "link.png").symlink_to(secret)
    if way_out == "symlinked-folder":
        (world / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    frame = pd.read_csv(world / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "path"], frame.loc[0, "sha256"] = listed, sha256_file(secret)
    frame.to_csv(world / "train.csv", index=False)
    for read in (lambda: read_manifest(world / "train.csv"), lambda: read_manifest(world / "train.csv", verify=False),
                 lambda: ManifestImages(world / "train.csv", verify_on_read=True)):
        with pytest.raises(ManifestError) as error:
            read()
        assert str(world / "train.csv") in str(error.value)
        assert (repr(listed) in str(error.value)) or way_out == "empty"


def test_a_symlink_that_stays_inside_the_folder_is_accepted(small_faces, tmp_path):
    import pandas as pd

    world = _copy_world(small_faces, tmp_path)
    (world / "train" / "link.png").symlink_to(world / "train" / "000001.png")
    frame = pd.read_csv(world / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "path"], frame.loc[0, "sha256"] = "train/link.png", sha256_file(world / "train" / "000001.png")
    frame.to_csv(world / "train.csv", index=False)
    assert len(read_manifest(world / "train.csv")) == len(frame)
