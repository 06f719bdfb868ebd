"""The embedded worlds: determinism, disjoint splits, held-out combinations, visible attributes."""

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from clipvqd.worlds import get_world
from clipvqd.worlds.base import matches
from conftest import HELD_OUT, make_faces


def _hashes(folder, split):
    return pd.read_csv(folder / f"{split}.csv")["sha256"].tolist()


SPLITS = ("clip_pairs", "judge_pairs", "train", "reference", "oracle")


def test_same_seed_same_files_different_seed_different(small_faces, tmp_path):
    make_faces(tmp_path / "again", seed=0)
    make_faces(tmp_path / "other", seed=1)
    for split in SPLITS:
        assert _hashes(small_faces, split) == _hashes(tmp_path / "again", split)
        assert set(_hashes(small_faces, split)).isdisjoint(_hashes(tmp_path / "other", split))
    assert (small_faces / "prompts.csv").read_text() == (tmp_path / "again" / "prompts.csv").read_text()


def test_splits_are_disjoint(small_faces):
    seen = {}
    for split in SPLITS:
        hashes = set(_hashes(small_faces, split))
        for other, other_hashes in seen.items():
            assert hashes.isdisjoint(other_hashes), f"{split} and {other} share images"
        seen[split] = hashes


def test_heldout_combinations_never_rendered_for_training(small_faces):
    for split in ("clip_pairs", "judge_pairs", "train", "reference"):
        frame = pd.read_csv(small_faces / f"{split}.csv", dtype=str, keep_default_na=False)
        for row in frame.to_dict("records"):
            assert not any(matches(row, combination) for combination in HELD_OUT), (split, row)
    # The oracle split is a measuring instrument and must cover them.
    oracle = pd.read_csv(small_faces / "oracle.csv", dtype=str, keep_default_na=False).to_dict("records")
    assert any(matches(row, HELD_OUT[1]) for row in oracle)


def _words(text):
    return re.findall(r"[a-z-]+", text.lower())


def _contains(caption, phrase):
    """`phrase` occurs in `caption` as whole words."""
    words, needle = _words(caption), _words(phrase)
    return any(words[i:i + len(needle)] == needle for i in range(len(words) - len(needle) + 1))


def _table_phrases(table):
    """Every literal phrase of one wording's tables (templates without their value slot)."""
    phrases = [*table["subjects"], *[o for options in table["phrases"].values() for o in options]]
    # Templates: their fixed fragments around the value slot ("against a {} backdrop" -> "against a", "backdrop").
    phrases += [part for template in (*table["skin"], *table["background"]) for part in template.split("{}")]
    phrases += [word for values in table["words"].values() for options in values.values() for word in options]
    return {p.strip() for p in phrases if set(_words(p)) - {"a", "an", "the"}}


@pytest.mark.parametrize("judge_wording", ["judge", "conditioner"])
def test_judge_trains_on_its_own_images_and_words(judge_wording, tmp_path):
    """The judge's pairs share no image with the conditioner's (nor with the held-out pairs that measure
    both), and in the judge wording use none of the conditioner's own paraphrases: only the prompts'
    wording is common. world.json records who trains on what."""
    from clipvqd.worlds.generate import generate_world

    out = tmp_path / judge_wording
    generate_world("faces", out, seed=0, resolution=32,
                   sizes={"clip_pairs": 300, "judge_pairs": 300, "train": 4, "reference": 4, "oracle": 4},
                   heldout=HELD_OUT, prompt_count=4, attributes_per_prompt=2, ood_prompts_per_combination=1,
                   oracle_test_fraction=0.5, clip_holdout_fraction=0.2, judge_wording=judge_wording, progress=False)
    clip_pairs = pd.read_csv(out / "clip_pairs.csv")
    judge_pairs = pd.read_csv(out / "judge_pairs.csv")
    conditioner_train = clip_pairs[clip_pairs["fold"] == "train"]
    held_out = clip_pairs[clip_pairs["fold"] == "test"]
    assert len(held_out) == 60 and len(judge_pairs) == 300 and set(judge_pairs["fold"]) == {"train"}
    judge_images = set(judge_pairs["sha256"])
    assert judge_images.isdisjoint(conditioner_train["sha256"]) and judge_images.isdisjoint(held_out["sha256"])
    assert set(clip_pairs["wording"]) == {"conditioner"} and set(judge_pairs["wording"]) == {judge_wording}

    summary = json.loads((out / "world.json").read_text())
    assert summary["clip_pairs"]["judge"] == {"split": "judge_pairs", "fold": "train", "pairs": 300,
                                              "wording": judge_wording}
    assert summary["clip_pairs"]["conditioner"]["pairs"] == 240 and summary["clip_pairs"]["held_out"]["pairs"] == 60
    tables = summary["caption_wordings"]
    conditioner_only = _table_phrases(tables["conditioner"]) - _table_phrases(tables["judge"])
    judge_only = _table_phrases(tables["judge"]) - _table_phrases(tables["conditioner"])
    assert {"eyeglasses", "a big smile", "a clean-shaven face"} <= conditioner_only
    assert {"spectacles", "a grin", "a bare head"} <= judge_only
    for caption in conditioner_train["caption"]:
        assert not any(_contains(caption, phrase) for phrase in judge_only), caption
    judge_used = {p for caption in judge_pairs["caption"] for p in judge_only if _contains(caption, p)}
    conditioner_used = {p for caption in judge_pairs["caption"] for p in conditioner_only if _contains(caption, p)}
    if judge_wording == "judge":
        assert not conditioner_used, conditioner_used
        assert len(judge_used) >= 0.8 * len(judge_only)  # the paraphrases are actually drawn
    else:
        assert not judge_used and conditioner_used


@pytest.mark.parametrize("world_name", ["faces"])
@pytest.mark.parametrize("wording", ["conditioner", "judge"])
def test_negative_caption_is_the_same_caption_with_one_named_attribute_changed(world_name, wording):
    """Replaying the caption's random state with exactly one attribute changed gives the negative (and no
    other single change does); a two-valued attribute is the one changed whenever the caption names one; the
    caption stream goes on as if no negative had been drawn."""
    world = get_world(world_name)
    rng, negative_rng, plain = (np.random.default_rng(seed) for seed in (3, 4, 3))
    flipped_binary = 0
    for _ in range(60):
        attributes = world.sample_attributes(np.random.default_rng(int(rng.integers(1 << 30))))
        plain.integers(1 << 30)
        state = rng.bit_generator.state
        caption, negative = world.caption_with_negative(attributes, rng, negative_rng, wording, 1)
        assert caption == world.caption(attributes, plain, wording, 1)  # same stream with or without negatives
        assert negative and negative != caption
        changes, named = [], []
        for attribute in world.attributes:
            for value in attribute.values:
                if value == attributes[attribute.name]:
                    continue
                replay = np.random.default_rng()
                replay.bit_generator.state = state
                text = world.caption({**attributes, attribute.name: value}, replay, wording, 1)
                if text != caption:
                    named.append(attribute.name)
                if text == negative:
                    changes.append(attribute.name)
        assert len(set(changes)) == 1, (caption, negative, changes)
        if any(len(world.attribute(name).values) == 2 for name in named):
            assert len(world.attribute(changes[0]).values) == 2, (caption, negative)
            flipped_binary += 1
    assert flipped_binary >= 20


@pytest.mark.parametrize("wording", ["conditioner", "judge"])
def test_scene_negatives_flip_the_layout_swap_the_objects_swap_the_colours_or_change_one_attribute(wording):
    """A scenes negative is its caption replayed from the same random state with the layout flipped, the two
    objects swapped, the two colours swapped, or one other attribute changed; each kind is drawn (not only the
    layout, the world's one two-valued attribute); the caption stream goes on as if no negative had been drawn."""
    world = get_world("scenes")
    rng, negative_rng, plain = (np.random.default_rng(seed) for seed in (3, 4, 3))
    kinds = []
    for _ in range(120):
        attributes = world.sample_attributes(np.random.default_rng(int(rng.integers(1 << 30))))
        plain.integers(1 << 30)
        state = rng.bit_generator.state
        caption, negative = world.caption_with_negative(attributes, rng, negative_rng, wording, 1)
        assert caption == world.caption(attributes, plain, wording, 1)
        assert negative != caption

        def replay(**changes):
            again = np.random.default_rng()
            again.bit_generator.state = state
            return world.caption({**attributes, **changes}, again, wording, 1)

        a = attributes
        found = {
            "layout": replay(layout="vertical" if a["layout"] == "horizontal" else "horizontal"),
            "objects": replay(first_shape=a["second_shape"], first_color=a["second_color"],
                              second_shape=a["first_shape"], second_color=a["first_color"]),
            "colours": replay(first_color=a["second_color"], second_color=a["first_color"]),
        }
        kind = [name for name, text in found.items() if text == negative]
        if not kind:
            singles = [replay(**{attribute.name: value}) for attribute in world.attributes if attribute.name != "layout"
                       for value in attribute.values if value != a[attribute.name]]
            assert negative in singles, (caption, negative)
            kind = ["attribute"]
        kinds.append(kind[0])
    assert {kind: kinds.count(kind) >= 15 for kind in ("layout", "objects", "colours", "attribute")} == \
        dict.fromkeys(("layout", "objects", "colours", "attribute"), True), kinds


def test_scene_clip_captions_sometimes_leave_out_a_colour_or_shape_dataset_captions_never():
    """The CLIPs' pairs (min_attributes 1) teach the prompts' partial objects ("a red shape", "a circle"); the
    train and reference captions (the dataset style) name every colour and shape."""
    world = get_world("scenes")
    rng = np.random.default_rng(0)
    clip = [world.caption(world.sample_attributes(rng), rng, "conditioner", 1) for _ in range(300)]
    dataset = [world.caption(world.sample_attributes(rng), rng) for _ in range(300)]
    colours = "|".join(world.attribute("first_color").values)
    colourless = r"\ba (circle|square|triangle)\b"
    assert 0.2 <= sum(" shape" in c for c in clip) / len(clip) <= 0.4
    assert 0.2 <= sum(bool(re.search(colourless, c)) for c in clip) / len(clip) <= 0.4
    assert not any(" shape" in c or re.search(colourless, c) for c in dataset)
    assert all(len(re.findall(colours, c)) == 2 for c in dataset)


def test_scene_prompts_always_name_the_layout():
    """Without the layout a scenes prompt cannot say which object is first (left or top), which the oracle
    checks; the anchor is on top of the drawn attributes, and held-out prompts name it too."""
    from clipvqd.worlds.generate import make_prompts

    world = get_world("scenes")
    heldout = [{"first_color": "red", "first_shape": "triangle"},
               {"first_shape": "circle", "layout": "vertical", "second_shape": "square"}]
    rows = make_prompts(world, 0, 40, 4, heldout, 4)
    assert all(row["layout"] for row in rows)
    assert all(sum(bool(row[name]) for name in world.attribute_names) == 4 for row in rows)
    assert sum(row["ood"] for row in rows) == 8
    with pytest.raises(ValueError, match="attributes_per_prompt is 0"):
        make_prompts(world, 0, 4, 0, [], 0)


@pytest.mark.parametrize("world_name", ["faces", "scenes"])
@pytest.mark.parametrize("wording", ["conditioner", "judge"])
def test_every_negative_changes_its_own_attribute_and_the_chosen_one_is_unchanged(world_name, wording):
    """caption_with_negatives draws what caption_with_negative draws (same caption, same chosen negative, the
    streams left in the same state) and lists, in the world's attribute order, one negative for each attribute
    whose change alters the caption: that caption replayed with the attribute set to another value. The
    many-valued attributes (colours) are among them, which the chosen negative almost never is."""
    world = get_world(world_name)
    rng, negative_rng, rng2, negative_rng2 = (np.random.default_rng(seed) for seed in (3, 4, 3, 4))
    many_valued = 0
    for _ in range(60):
        attributes = world.sample_attributes(np.random.default_rng(int(rng.integers(1 << 30))))
        rng2.integers(1 << 30)
        negative_rng2.bit_generator.state = negative_rng.bit_generator.state  # scenes draws more (below)
        state = rng.bit_generator.state
        caption, negative, every = world.caption_with_negatives(attributes, rng, negative_rng, wording, 1)
        assert (caption, negative) == world.caption_with_negative(attributes, rng2, negative_rng2, wording, 1)
        assert rng.random() == rng2.random() and list(every) == [n for n in world.attribute_names if n in every]
        if world_name == "faces":  # the world default picks its chosen negative among these, in the same draws
            assert negative in every.values() and negative_rng.random() == negative_rng2.random()
        # scenes draws its own chosen negative first (a swap, a flip or a change), then these after it

        def replay(name, value):
            generator = np.random.default_rng()
            generator.bit_generator.state = state
            return world.caption({**attributes, name: value}, generator, wording, 1)

        for attribute in world.attributes:
            others = {replay(attribute.name, v) for v in attribute.values if v != attributes[attribute.name]}
            if others == {caption}:
                assert attribute.name not in every
            else:
                assert every[attribute.name] in others - {caption}, (caption, attribute.name, every)
        many_valued += sum(len(world.attribute(name).values) > 2 for name in every)
    assert many_valued >= 20


def test_pair_splits_carry_negative_captions_train_captions_do_not(small_faces):
    """Both pair splits give each caption its chosen negative and list every named attribute's
    (negative_captions), the chosen one among them; the generators' captions have neither."""
    for split in ("clip_pairs", "judge_pairs"):
        rows = pd.read_csv(small_faces / f"{split}.csv", keep_default_na=False)
        assert (rows["negative_caption"] != "").all() and (rows["negative_caption"] != rows["caption"]).all()
        every = [json.loads(text) for text in rows["negative_captions"]]
        assert all(chosen in negatives.values() for chosen, negatives in zip(rows["negative_caption"], every))
        assert any("hair_color" in negatives or "background" in negatives for negatives in every)
    assert "negative_caption" not in pd.read_csv(small_faces / "train_captions.csv").columns


# The held-out fold of make_faces()'s clip_pairs (every column it had before negative_captions was added), as
# the generator wrote it before the conditioner's pairs listed every negative: both CLIPs' zero-shot numbers are
# measured on this fold, so a change that moves it makes them incomparable with earlier ones.
HELD_OUT_FOLD_SHA256 = "916d197bf6388f010e272b9b9f5ea3a539e9c71646b690caed64737b183ae54e"
HELD_OUT_FOLD_COLUMNS = ["path", "sha256", "hair_color", "hair_style", "skin_tone", "glasses", "expression", "beard",
                         "hat", "background", "caption", "negative_caption", "wording", "fold"]


def test_clip_pairs_held_out_fold_is_unchanged(small_faces):
    rows = pd.read_csv(small_faces / "clip_pairs.csv", dtype=str, keep_default_na=False)
    held_out = rows[rows["fold"] == "test"]
    text = "\n".join("\t".join(row) for row in held_out[HELD_OUT_FOLD_COLUMNS].itertuples(index=False))
    assert len(held_out) == 100
    assert hashlib.sha256(text.encode()).hexdigest() == HELD_OUT_FOLD_SHA256


def test_extra_clip_pairs_follow_the_held_out_fold_and_leave_it_and_the_other_splits_unchanged(small_faces, tmp_path):
    from clipvqd.worlds.generate import generate_world

    summary = generate_world(
        "faces", tmp_path, seed=0, resolution=32,
        sizes={"clip_pairs": 200, "clip_pairs_extra": 60, "judge_pairs": 40, "train": 40, "reference": 20, "oracle": 60},
        heldout=HELD_OUT, prompt_count=8, attributes_per_prompt=3, ood_prompts_per_combination=2,
        oracle_test_fraction=0.25, clip_holdout_fraction=0.5, progress=False)
    before = pd.read_csv(small_faces / "clip_pairs.csv", dtype=str, keep_default_na=False)
    after = pd.read_csv(tmp_path / "clip_pairs.csv", dtype=str, keep_default_na=False)
    assert len(after) == 260 and after.iloc[:200].equals(before)  # the held-out fold included
    assert set(after["fold"].iloc[200:]) == {"train"} and (after["fold"] == "test").sum() == 100
    assert summary["clip_pairs"]["conditioner"]["pairs"] == 160 and summary["clip_pairs"]["held_out"]["pairs"] == 100
    assert summary["sizes"]["clip_pairs_extra"] == 60
    for split in SPLITS[1:]:  # the other splits and the prompts are those of the world without extra pairs
        assert _hashes(tmp_path, split) == _hashes(small_faces, split)
        assert set(_hashes(tmp_path, split)).isdisjoint(after["sha256"])
    assert (tmp_path / "prompts.csv").read_text() == (small_faces / "prompts.csv").read_text()
    assert "clip_pairs_extra" not in json.loads((small_faces / "world.json").read_text())["sizes"]


def test_clip_captions_range_from_one_phrase_train_captions_do_not(tmp_path):
    """The CLIPs' pairs include one-phrase captions (like the one-attribute zero-shot probes); the train
    split's captions, read by the paired control, keep naming three or more attributes."""
    from clipvqd.worlds.generate import generate_world

    generate_world("faces", tmp_path, seed=0, resolution=32,
                   sizes={"clip_pairs": 300, "judge_pairs": 300, "train": 300, "reference": 4, "oracle": 4},
                   heldout=HELD_OUT, prompt_count=4, attributes_per_prompt=2, ood_prompts_per_combination=1,
                   oracle_test_fraction=0.5, clip_holdout_fraction=0.2, progress=False)

    def one_phrase_share(captions):
        return sum("," not in c and " and " not in c for c in captions) / len(captions)

    assert one_phrase_share(pd.read_csv(tmp_path / "clip_pairs.csv")["caption"]) >= 0.08
    assert one_phrase_share(pd.read_csv(tmp_path / "judge_pairs.csv")["caption"]) >= 0.08
    assert one_phrase_share(pd.read_csv(tmp_path / "train_captions.csv")["caption"]) <= 0.02


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


def test_unknown_judge_wording_is_named(tmp_path):
    from clipvqd.worlds.generate import generate_world

    with pytest.raises(ValueError, match=r"no caption wording 'poetic'"):
        generate_world("faces", tmp_path, seed=0, resolution=32,
                       sizes={"clip_pairs": 1, "train": 1, "reference": 1, "oracle": 1},
                       heldout=[], prompt_count=1, attributes_per_prompt=1, ood_prompts_per_combination=0,
                       oracle_test_fraction=0.5, clip_holdout_fraction=0.5, judge_wording="poetic", progress=False)
    assert not (tmp_path / "clip_pairs.csv").exists()


@pytest.mark.parametrize("world_name", ["faces", "scenes"])
def test_conditioner_wording_is_the_default_and_prompts_are_in_both(world_name):
    """Captions in the conditioner wording are what `caption` always drew (the default), and the judge
    wording keeps the prompts' phrases among its options, so the judge can read every prompt."""
    world = get_world(world_name)
    attributes = world.sample_attributes(np.random.default_rng(5))
    assert world.caption(attributes, np.random.default_rng(1)) == \
        world.caption(attributes, np.random.default_rng(1), "conditioner")
    judge_captions = {world.caption(attributes, np.random.default_rng(seed), "judge") for seed in range(40)}
    conditioner_captions = {world.caption(attributes, np.random.default_rng(seed)) for seed in range(40)}
    assert len(judge_captions - conditioner_captions) >= 20


@pytest.mark.parametrize("attribute, off, on", [("glasses", "no", "yes"), ("expression", "neutral", "smiling"),
                                                ("beard", "no", "yes"), ("hat", "no", "yes")])
def test_fine_attributes_show_on_every_face(attribute, off, on):
    """At 32 px each fine attribute moves at least 15 pixels clearly (by more than 40 levels) on every hair
    colour, skin tone and hair style: no combination where a CLIP could not see it (a brown beard on dark
    skin once moved none)."""
    world = get_world("faces")
    for hair in world.attribute("hair_color").values:
        for skin in world.attribute("skin_tone").values:
            for style in world.attribute("hair_style").values:
                base = {**world.sample_attributes(np.random.default_rng(0)), "hair_color": hair, "skin_tone": skin,
                        "hair_style": style}
                images = [np.asarray(world.render({**base, attribute: value}, np.random.default_rng(7), 32), dtype=float)
                          for value in (off, on)]
                moved = (np.abs(images[1] - images[0]).max(axis=2) > 40).sum()
                assert moved >= 15, f"{attribute} on {hair} {style} hair, {skin} skin moves {moved} pixels"


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
