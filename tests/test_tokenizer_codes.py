"""Codebook compaction, tokenizing a split, and tokenizer evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipvqd.manifest import to_uint8
from clipvqd.tokenizer import (
    CodeMapping,
    GumbelVQGAN,
    UnknownCodeError,
    build_code_mapping,
    count_code_usage,
    evaluate_tokenizer,
    load_code_maps,
    save_reconstruction_grid,
    tokenize_dataset,
)
from clipvqd.tokenizer.compaction import usage_statistics
from clipvqd.tokenizer.evaluate import _quality
from tokenizer_helpers import TINY, TensorImages, blob_images, one_torch_thread  # noqa: F401 (fixture)


def test_mapping_keeps_used_codes_and_round_trips(tmp_path):
    counts = torch.tensor([0, 5, 0, 2, 1, 0, 0, 9])
    mapping = build_code_mapping(counts, provenance={"checkpoint_sha256": "abc"})
    assert mapping.used_codes.tolist() == [1, 3, 4, 7] and mapping.vocab_size == 4
    codes = torch.tensor([[1, 3], [7, 4], [1, 1]])
    compact = mapping.compact(codes)
    assert compact.tolist() == [[0, 1], [3, 2], [0, 0]]
    assert torch.equal(mapping.expand(compact), codes)
    with pytest.raises(UnknownCodeError, match=r"codes \[0, 5\] are not in the compacted vocabulary"):
        mapping.compact(torch.tensor([0, 1, 5]))
    with pytest.raises(UnknownCodeError, match="outside the vocabulary"):
        mapping.expand(torch.tensor([4]))
    mapping.save(tmp_path / "mapping.json")
    loaded = CodeMapping.load(tmp_path / "mapping.json")
    assert torch.equal(loaded.used_codes, mapping.used_codes) and torch.equal(loaded.counts, counts)
    assert loaded.provenance["checkpoint_sha256"] == "abc"
    assert build_code_mapping(counts, min_count=3).used_codes.tolist() == [1, 7]


def test_random_codes_round_trip_through_a_large_mapping():
    generator = torch.Generator().manual_seed(0)
    counts = (torch.rand(4096, generator=generator) < 0.35).long() * 7
    mapping = build_code_mapping(counts)
    codes = mapping.used_codes[torch.randint(mapping.vocab_size, (5, 16, 16), generator=generator)]
    compact = mapping.compact(codes)
    assert int(compact.max()) < mapping.vocab_size
    assert torch.equal(mapping.expand(compact), codes)


def test_usage_statistics_known_values():
    stats = usage_statistics(torch.tensor([5, 5, 0, 0]))
    assert stats["codes_used"] == 2 and stats["fraction_used"] == 0.5
    assert stats["perplexity"] == pytest.approx(2.0)


def _model() -> GumbelVQGAN:
    torch.manual_seed(0)
    return GumbelVQGAN(TINY).eval()


def test_tokenize_writes_compact_code_maps_that_decode(tmp_path):
    model = _model()
    images = TensorImages(blob_images(6))
    mapping = build_code_mapping(count_code_usage(model, images, batch_size=4))
    manifest = tokenize_dataset(model, images, mapping, tmp_path / "codes.npy", tmp_path / "codes.json",
                                batch_size=4, progress=False, provenance={"split": "train"})
    codes, loaded = load_code_maps(tmp_path / "codes.json")
    assert loaded == manifest and manifest["provenance"] == {"split": "train"}
    assert codes.shape == (6, 8, 8) and codes.dtype == np.int16
    assert int(codes.max()) < mapping.vocab_size
    # Tokenizing the split the mapping was counted on changes no code: compact -> expand is the argmax.
    assert torch.equal(mapping.expand(torch.from_numpy(codes)), model.encode(images.images))
    assert model.decode_codes(mapping.expand(torch.from_numpy(codes))).shape == (6, 3, 16, 16)
    np.save(tmp_path / "codes.npy", codes[:5])
    with pytest.raises(ValueError, match="sha256"):
        load_code_maps(tmp_path / "codes.json")


def test_tokenize_of_another_split_stays_inside_the_vocabulary(tmp_path):
    model = _model()
    mapping = build_code_mapping(count_code_usage(model, TensorImages(blob_images(2)), batch_size=2))
    other = TensorImages(blob_images(6, seed=9))
    tokenize_dataset(model, other, mapping, tmp_path / "c.npy", tmp_path / "c.json", progress=False)
    codes, _ = load_code_maps(tmp_path / "c.json")
    assert int(codes.max()) < mapping.vocab_size and int(codes.min()) >= 0


def test_psnr_and_ssim_known_values():
    original = np.full((1, 16, 16, 3), 100, dtype=np.uint8)
    shifted = original + np.uint8(5)  # MSE 25 -> PSNR = 10 log10(255^2 / 25)
    psnr, ssim = _quality(original, shifted)
    assert psnr[0] == pytest.approx(10 * np.log10(255 ** 2 / 25))
    assert _quality(original, original)[1][0] == pytest.approx(1.0)


class ManifestLike(TensorImages):
    def __init__(self, images):
        super().__init__(images)
        self.frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(len(images))]})


def test_evaluation_reports_reconstruction_codebook_and_oracle():
    model = _model()
    train, heldout = TensorImages(blob_images(8)), ManifestLike(blob_images(5, seed=4))
    mapping = build_code_mapping(count_code_usage(model, train))
    originals_u8 = to_uint8(heldout.images)
    seen_rows = []

    def scorer(images, rows):
        assert images.dtype == torch.uint8 and len(images) == len(rows)
        seen_rows.extend(rows["path"])
        # "Accuracy" 0.8 on the originals and 0.4 on anything else, to check the bookkeeping.
        return 0.8 if torch.equal(images, originals_u8) else 0.4

    metrics = evaluate_tokenizer(model, heldout, mapping, scorer, batch_size=8,
                                 checkpoint_meta={"step": 3, "perceptual_loss": {"enabled": False}})
    assert metrics["images"] == 5 and seen_rows == [f"img{i}.png" for i in range(5)] * 2
    oracle = metrics["attribute_oracle"]
    assert oracle["accuracy_on_originals"] == pytest.approx(0.8)
    assert oracle["ratio"] == pytest.approx(0.5)
    codebook = metrics["codebook"]
    assert codebook["codebook_size"] == 32 and codebook["vocab_size_after_compaction"] == mapping.vocab_size
    assert codebook["fraction_used_on_training_split"] == pytest.approx(mapping.vocab_size / 32)
    assert 0 < codebook["heldout_fraction_used_after_compaction"] <= 1
    assert 0 <= codebook["heldout_tokens_outside_vocabulary"] <= 1
    assert metrics["reconstruction"]["ssim"] <= 1 and metrics["reconstruction"]["psnr_db"] > 0
    assert metrics["training"]["perceptual_loss"] == {"enabled": False}


def test_reconstruction_grid_alternates_original_and_reconstruction_rows(tmp_path):
    originals = blob_images(5)
    reconstructions = -originals
    path = save_reconstruction_grid(originals, reconstructions, tmp_path / "grid.png", columns=4)
    grid = np.asarray(Image.open(path))
    tile = 16 * 8  # 16 px enlarged to 128 px
    assert grid.shape == (4 * (tile + 2) + 2, 4 * (tile + 2) + 2, 3)
    first_original = grid[2:2 + tile, 2:2 + tile]
    first_reconstruction = grid[tile + 4:2 * tile + 4, 2:2 + tile]
    expected = ((originals[0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(first_original[::8, ::8].astype(int) - expected).max() <= 1
    assert not np.array_equal(first_original, first_reconstruction)
