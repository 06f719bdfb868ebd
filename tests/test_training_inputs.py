"""The generators' training inputs are checked against each other before any compute: condition embeddings
must describe the images the token maps (diffusion) or the training split (LAFITE) come from."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from clipvqd.diffusion.data import TrainingDataError, load_training_data
from clipvqd.hashing import sha256_file
from clipvqd.lafite.data import TrainingDataError as LafiteDataError
from clipvqd.lafite.data import training_embeddings


def _tokens(folder, count=6, manifest_sha256="a" * 64):
    """A tokenized split as `tokenize_dataset` writes it: int16 code maps and their manifest."""
    codes = np.arange(count * 4, dtype=np.int16).reshape(count, 2, 2) % 5
    np.save(folder / "codes.npy", codes)
    manifest = {"kind": "tokenized_split", "codes_file": "codes.npy", "codes_sha256": sha256_file(folder / "codes.npy"),
                "count": count, "token_grid": [2, 2], "dtype": "int16", "vocab_size": 5, "codebook_size": 16,
                "provenance": {"manifest_sha256": manifest_sha256}}
    (folder / "tokens.json").write_text(json.dumps(manifest))
    return folder / "tokens.json"


def _embeddings(path, count=6, dim=8, source_sha256="a" * 64, clip_sha256="c" * 64):
    save_file({"embeddings": torch.randn(count, dim)}, str(path),
              metadata={"source": "train.csv", "source_sha256": source_sha256, "clip_sha256": clip_sha256})
    return path


def test_diffusion_data_per_mode(tmp_path):
    tokens = _tokens(tmp_path)
    embeddings = _embeddings(tmp_path / "images.safetensors")
    data = load_training_data(tokens, "language_free", embeddings)
    assert data.tokens.dtype == torch.int64 and data.tokens.shape == (6, 2, 2)
    assert data.conditions.shape == (6, 8) and data.condition_dim == 8
    assert data.vocab_size == 5 and data.grid == (2, 2)
    # the unconditional control reads no condition; the embeddings only size its null vector
    unconditional = load_training_data(tokens, "unconditional", embeddings)
    assert unconditional.conditions is None and unconditional.condition_dim == 8
    assert load_training_data(tokens, "unconditional", default_condition_dim=32).condition_dim == 32


def test_diffusion_data_refuses_embeddings_of_other_images(tmp_path):
    tokens = _tokens(tmp_path)
    with pytest.raises(TrainingDataError, match="needs condition embeddings"):
        load_training_data(tokens, "cfg_finetune")
    with pytest.raises(TrainingDataError, match="holds 5 embeddings but .* has 6 token maps"):
        load_training_data(tokens, "language_free", _embeddings(tmp_path / "short.safetensors", count=5))
    other = _embeddings(tmp_path / "other.safetensors", source_sha256="b" * 64)
    with pytest.raises(TrainingDataError, match="rerun clip_embed"):
        load_training_data(tokens, "language_free", other)
    # caption embeddings (paired control) embed another file, the captions table: only the count is checked
    assert load_training_data(tokens, "paired", other).conditions.shape == (6, 8)


def test_lafite_embeddings_must_embed_the_split_with_the_same_clip(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("path,sha256\n")
    embeddings = _embeddings(tmp_path / "images.safetensors", source_sha256=sha256_file(train))
    assert training_embeddings(embeddings, train, "c" * 64, "clip.safetensors", image_count=6).shape == (6, 8)
    with pytest.raises(LafiteDataError, match="was made by CLIP c+, not by clip.safetensors"):
        training_embeddings(embeddings, train, "d" * 64, "clip.safetensors")
    with pytest.raises(LafiteDataError, match="holds 6 embeddings but .* lists 7 images"):
        training_embeddings(embeddings, train, "c" * 64, "clip.safetensors", image_count=7)
    stale = _embeddings(tmp_path / "stale.safetensors", source_sha256="b" * 64)
    with pytest.raises(LafiteDataError, match="not .*train.csv"):
        training_embeddings(stale, train, "c" * 64, "clip.safetensors")
