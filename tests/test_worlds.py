"""The embedded worlds: determinism, disjoint splits, held-out combinations, visible attributes."""

import numpy as np
import pandas as pd
import pytest

from clipvqd.worlds import get_world
from clipvqd.worlds.base import matches
from conftest import HELD_OUT, make_faces


def _hashes(folder, split):
    return pd.read_csv(folder / f"{split}.csv")["sha256"].tolist()


def test_same_seed_same_files_different_seed_different(small_faces, tmp_path):
    make_faces(tmp_path / "again", seed=0)
    make_faces(tmp_path / "other", seed=1)
    for split in ("clip_pairs", "train", "reference", "oracle"):
        assert _hashes(small_faces, split) == _hashes(tmp_path / "again", split)
        assert set(_hashes(small_faces, split)).isdisjoint(_hashes(tmp_path / "other", split))
    assert (small_faces / "prompts.csv").read_text() == (tmp_path / "again" / "prompts.csv").read_text()


def test_splits_are_disjoint(small_faces):
    seen = {}
    for split in ("clip_pairs", "train", "reference", "oracle"):
        hashes = set(_hashes(small_faces, split))
        for other, other_hashes in seen.items():
            assert hashes.isdisjoint(other_hashes), f"{split} and {other} share images"
        seen[split] = hashes


def test_heldout_combinations_never_rendered_for_training(small_faces):
    for split in ("clip_pairs", "train", "reference"):
        frame = pd.read_csv(small_faces / f"{split}.csv", dtype=str, keep_default_na=False)
        for row in frame.to_dict("records"):
            assert not any(matches(row, combination) for combination in HELD_OUT), (split, row)
    # The oracle split is a measuring instrument and must cover them.
    oracle = pd.read_csv(small_faces / "oracle.csv", dtype=str, keep_default_na=False).to_dict("records")
    assert any(matches(row, HELD_OUT[1]) for row in oracle)


def test_generator_split_carries_no_caption(small_faces):
    assert "caption" not in pd.read_csv(small_faces / "train.csv").columns
    captions = pd.read_csv(small_faces / "train_captions.csv")
    assert len(captions) == len(pd.read_csv(small_faces / "train.csv"))


def test_prompts_ood_flags_match_heldout(small_faces):
    prompts = pd.read_csv(small_faces / "prompts.csv", dtype=str, keep_default_na=False)
    for row in prompts.to_dict("records"):
        specified = {k: v for k, v in row.items() if k not in ("prompt_id", "prompt", "ood") and v}
        contains_heldout = any(matches(specified, combination) for combination in HELD_OUT)
        assert contains_heldout == (row["ood"] == "1"), row
    assert (prompts["ood"] == "1").sum() == 2 * len(HELD_OUT)


@pytest.mark.parametrize("world_name", ["faces", "scenes"])
def test_every_attribute_is_visible(world_name):
    """Changing one attribute (same seed for everything else) visibly changes the image."""
    world = get_world(world_name)
    assert len(world.attributes) >= (6 if world_name == "faces" else 5)
    base = world.sample_attributes(np.random.default_rng(3))
    reference = np.asarray(world.render(base, np.random.default_rng(7), 32), dtype=float)
    for attribute in world.attributes:
        assert len(attribute.values) >= 2
        for value in attribute.values:
            if value == base[attribute.name]:
                continue
            changed = np.asarray(world.render({**base, attribute.name: value}, np.random.default_rng(7), 32), dtype=float)
            moved = np.abs(changed - reference).max(axis=2) > 40
            assert moved.sum() >= 4, f"{attribute.name}={value} changes only {moved.sum()} pixels"


def test_bad_heldout_value_is_named(tmp_path):
    from clipvqd.worlds.generate import generate_world

    with pytest.raises(ValueError, match=r"world.heldout\[0\].*'purple'.*hair_color"):
        generate_world("faces", tmp_path, seed=0, resolution=32,
                       sizes={"clip_pairs": 1, "train": 1, "reference": 1, "oracle": 1},
                       heldout=[{"hair_color": "purple"}], prompt_count=1, attributes_per_prompt=1,
                       ood_prompts_per_combination=0, oracle_test_fraction=0.5, clip_holdout_fraction=0.5,
                       progress=False)


# ------------------------------------------------------------------------------------------------
# The evaluation sets' prompt tables
# ------------------------------------------------------------------------------------------------


def test_reference_captions_come_from_their_own_stream(small_faces, tmp_path):
    """Captioning the reference split does not change a single image of it."""
    from clipvqd.worlds.generate import _render_split

    world = get_world("faces")
    plain = _render_split(world, "reference", 20, tmp_path / "plain", 0, 32, HELD_OUT, False, False)
    captioned = pd.read_csv(small_faces / "reference.csv", dtype=str, keep_default_na=False)
    assert [row["sha256"] for row in plain] == captioned["sha256"].tolist()
    assert captioned["caption"].str.len().min() > 0


def test_validation_prompts_share_the_distribution_but_no_text(small_faces):
    test = pd.read_csv(small_faces / "prompts.csv", dtype=str, keep_default_na=False)
    validation = pd.read_csv(small_faces / "validation_prompts.csv", dtype=str, keep_default_na=False)
    assert set(test["prompt"]).isdisjoint(validation["prompt"])
    assert (validation["ood"] == "0").sum() == (test["ood"] == "0").sum() == 8
    assert validation["prompt_id"].str.startswith("v").all() and test["prompt_id"].str.startswith("p").all()
    for row in validation.to_dict("records"):  # the same flags: an OOD prompt asks for a held-out combination
        specified = {k: v for k, v in row.items() if k not in ("prompt_id", "prompt", "ood") and v}
        assert any(matches(specified, c) for c in HELD_OUT) == (row["ood"] == "1"), row


def test_distribution_prompts_are_the_reference_captions(small_faces, tmp_path):
    """One prompt per reference image, its own caption, paired with that image; no held-out combination."""
    from clipvqd.evaluation.sets import distribution_prompt_table

    reference = pd.read_csv(small_faces / "reference.csv", dtype=str, keep_default_na=False)
    table = distribution_prompt_table(small_faces / "reference.csv", tmp_path / "distribution_prompts.csv",
                                      world_summary=small_faces / "world.json")
    assert table["prompt"].tolist() == [" ".join(c.split()) for c in reference["caption"]]
    assert table[["path", "sha256"]].values.tolist() == reference[["path", "sha256"]].values.tolist()
    assert (table["ood"] == 0).all() and table["prompt_id"].is_unique
    # A seeded subset keeps each image with its own caption.
    subset = distribution_prompt_table(small_faces / "reference.csv", tmp_path / "subset.csv", count=7, seed=3)
    captions = dict(zip(reference["path"], reference["caption"]))
    assert len(subset) == 7 and all(captions[p] == c for p, c in zip(subset["path"], subset["prompt"]))
    with pytest.raises(ValueError, match="distribution_samples is 21.*only 20"):
        distribution_prompt_table(small_faces / "reference.csv", tmp_path / "x.csv", count=21)


def test_distribution_prompts_refuse_a_held_out_combination_and_need_captions(small_faces, tmp_path):
    from clipvqd.evaluation.sets import distribution_prompt_table

    reference = pd.read_csv(small_faces / "reference.csv", dtype=str, keep_default_na=False)
    bad = reference.copy()
    bad.loc[3, ["hair_color", "beard"]] = ["red", "yes"]
    (tmp_path / "data").mkdir()
    bad.to_csv(tmp_path / "data" / "reference.csv", index=False)
    with pytest.raises(ValueError, match=r"reference/000003.png shows a held-out combination"):
        distribution_prompt_table(tmp_path / "data" / "reference.csv", tmp_path / "out.csv",
                                  world_summary=small_faces / "world.json")
    # Without captions (FFHQ) every image gets the generic prompt, or the table is refused.
    reference.drop(columns=["caption"]).to_csv(tmp_path / "data" / "plain.csv", index=False)
    with pytest.raises(ValueError, match="no 'caption' column"):
        distribution_prompt_table(tmp_path / "data" / "plain.csv", tmp_path / "out.csv")
    generic = distribution_prompt_table(tmp_path / "data" / "plain.csv", tmp_path / "out.csv", generic_prompt="a face")
    assert set(generic["prompt"]) == {"a face"} and set(generic["caption_source"]) == {"generic prompt"}
