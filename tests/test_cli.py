"""The command line the rules call: tokenizer glue end to end on a tiny model, stage stubs fail loudly."""

import json

import numpy as np
import pytest

from clipvqd.cli import main

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
