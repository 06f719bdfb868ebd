"""Evaluation library: FID/KID/PR through torch-fidelity, the feature cache, CLIPscore, best-of-N,
the metrics table and the protocol record.

Everything runs on tiny PNG sets and a fixed random conv net standing in for an image encoder, so the
file needs no pretrained weights and no network.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipvqd.evaluation import clipscore as cs
from clipvqd.evaluation.features import (
    FeatureCache,
    FeatureError,
    ImageSet,
    features_for,
    inception_feature_extractor,
    register_encoder,
)
from clipvqd.evaluation.fid import (
    cleanfid_cross_check,
    image_set_metrics,
    metric_settings,
    metrics_from_features,
    relative_difference,
    torch_fidelity_metrics,
)
from clipvqd.evaluation.protocol import ProtocolError, ProtocolRecord, clipscore_entry, image_metrics_entry, make_entry
from clipvqd.evaluation.table import (
    MetricsTableError,
    merge_metrics_tables,
    metric_row,
    parse_variant,
    read_metrics_table,
    variant_name,
    write_metrics_table,
)
from clipvqd.hashing import sha256_file

RESOLUTION = 16
SET_SIZE = 24


# ------------------------------------------------------------------------------------------------
# Fixtures: image sets as manifests, a deterministic fake encoder
# ------------------------------------------------------------------------------------------------


def blob_images(seed: int, n: int, brightness: float, spread: float) -> list[np.ndarray]:
    """Smooth random blobs: a family whose statistics are set by brightness and spread."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:RESOLUTION, 0:RESOLUTION] / RESOLUTION
    images = []
    for _ in range(n):
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        radius = rng.uniform(0.1, 0.35)
        colour = np.clip(rng.normal(brightness, spread, size=3), 0, 255)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2)[..., None]
        background = np.clip(rng.normal(255 - brightness, 20, size=3), 0, 255)
        image = np.where(mask, colour, background) + rng.normal(0, 6, size=(RESOLUTION, RESOLUTION, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def write_manifest(folder: Path, images: list[np.ndarray], method: str = "clip-vqdiffusion",
                   samples_per_prompt: int = 4, prompts: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, array in enumerate(images):
        name = f"img_{index:04d}.png"
        Image.fromarray(array).save(folder / name)
        prompt_index = index // samples_per_prompt
        prompt = prompts[prompt_index] if prompts else f"a photograph of face {prompt_index}"
        rows.append({"path": name, "sha256": sha256_file(folder / name), "prompt_id": f"p{prompt_index:03d}",
                     "prompt": prompt, "sample_index": index % samples_per_prompt, "seed": 1000 + index,
                     "method": method, "variant": "default", "alpha": 0.5, "s": 1.2, "r": 0.85, "steps": 100})
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class FakeEncoder:
    """A fixed random conv net: uint8 (B,3,H,W) -> (B, 16) L2-normalised, like a CLIP image tower."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            for parameter in self.conv.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        digest = hashlib.sha256()
        for parameter in self.conv.parameters():
            digest.update(parameter.detach().numpy().tobytes())
        self.identity = digest.hexdigest()
        self.calls = 0
        self.images_seen = 0

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8
        self.calls += 1
        self.images_seen += images.shape[0]
        hidden = torch.tanh(self.conv(images.float() / 127.5 - 1.0))
        features = torch.cat([hidden.mean(dim=(2, 3)), hidden.amax(dim=(2, 3))], dim=1)
        return torch.nn.functional.normalize(features, dim=-1)


@pytest.fixture(scope="module")
def encoder_spec():
    encoder = FakeEncoder(seed=0)
    return register_encoder(encoder, encoder.identity, label="fake-test")


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    base = blob_images(0, SET_SIZE, brightness=70, spread=30)
    # Same pixels, different folder and file order: content identity must not care.
    copy_dir = root / "copy"
    copy_dir.mkdir()
    manifests = {
        "reference": write_manifest(root / "reference", base),
        "other": write_manifest(root / "other", blob_images(1, SET_SIZE, brightness=200, spread=30)),
        "near": write_manifest(root / "near", blob_images(2, SET_SIZE, brightness=80, spread=30)),
    }
    manifests["copy"] = write_manifest(copy_dir, list(reversed(base)))
    return manifests


# ------------------------------------------------------------------------------------------------
# FID / KID / precision-recall
# ------------------------------------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_the_difference(image_sets, encoder_spec):
    reference = ImageSet.from_manifest(image_sets["reference"])
    same = image_set_metrics(image_sets["copy"], reference, encoder_spec)
    near = image_set_metrics(image_sets["near"], reference, encoder_spec)
    other = image_set_metrics(image_sets["other"], reference, encoder_spec)
    assert abs(same["fid"]) < 1e-6
    assert near["fid"] > 1e-4
    assert other["fid"] > near["fid"], "a far set must be further than a near one"
    assert same["n_generated"] == same["n_reference"] == SET_SIZE


def test_cached_metrics_equal_torch_fidelity_calculate_metrics(image_sets, encoder_spec, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    ours_cold = image_set_metrics(image_sets["near"], image_sets["reference"], encoder_spec, cache)
    ours_warm = image_set_metrics(image_sets["near"], image_sets["reference"], encoder_spec, cache)
    assert (cache.misses, cache.hits) == (2, 2)
    theirs = torch_fidelity_metrics(image_sets["near"], image_sets["reference"], encoder_spec)
    for ours in (ours_cold, ours_warm):
        for key in ("fid", "kid", "kid_std", "precision", "recall"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12), key


def test_cleanfid_cross_check_agrees_with_torch_fidelity(image_sets, encoder_spec):
    ours = image_set_metrics(image_sets["other"], image_sets["reference"], encoder_spec)
    check = cleanfid_cross_check(image_sets["other"], image_sets["reference"], encoder_spec)
    assert check["library"] == "clean-fid" and check["resize"] == "none"
    # Same features; clean-fid takes the matrix square root with scipy, torch-fidelity via eigenvalues.
    assert relative_difference(ours["fid"], check["fid"]) < 1e-4


def test_kid_and_precision_recall_behave(image_sets, encoder_spec):
    same = image_set_metrics(image_sets["copy"], image_sets["reference"], encoder_spec)
    other = image_set_metrics(image_sets["other"], image_sets["reference"], encoder_spec)
    assert abs(same["kid"]) < 1e-3 < other["kid"]
    assert same["precision"] == same["recall"] == 1.0
    assert other["precision"] < 0.5 and other["recall"] < 0.5
    # KID subsets cannot exceed the sets; the settings used are reported for the protocol.
    assert same["settings"]["kid_subset_size"] == SET_SIZE
    # A subset holding both whole sets: one computation is the mean of every subset torch-fidelity would draw.
    assert same["settings"]["kid_subsets"] == 1 and same["settings"]["kid_subsets_requested"] == 100
    from torch_fidelity.metric_kid import kid_features_to_metric

    features = [features_for(ImageSet.from_manifest(image_sets[k]), encoder_spec) for k in ("other", "reference")]
    hundred = kid_features_to_metric(*features, kid_subsets=100, kid_subset_size=SET_SIZE, verbose=False)
    assert other["kid"] == pytest.approx(hundred["kernel_inception_distance_mean"], rel=1e-5)


def test_precision_recall_follow_generated_reference_order():
    """Mode collapse: generated covers one of the reference's two clusters -> precise but low recall."""
    rng = np.random.default_rng(0)
    cluster_a = torch.from_numpy(rng.normal(0, 0.05, size=(40, 4))).float()
    cluster_b = torch.from_numpy(rng.normal(5, 0.05, size=(40, 4))).float()
    reference = torch.cat([cluster_a, cluster_b])
    generated = torch.from_numpy(rng.normal(0, 0.05, size=(40, 4))).float()
    result = metrics_from_features(generated, reference, metric_settings(40, 80))
    assert result["precision"] > 0.9
    assert 0.4 < result["recall"] < 0.6


def test_too_small_sets_are_refused_by_name():
    with pytest.raises(FeatureError, match="neighbourhood 3"):
        metric_settings(3, 100)


def test_mixed_image_sizes_are_refused_naming_a_file(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(FeatureError, match=r"mixes image sizes: .*16x16.*8x8"):
        ImageSet.from_folder(tmp_path).image_size()


# ------------------------------------------------------------------------------------------------
# Feature cache
# ------------------------------------------------------------------------------------------------


def test_feature_cache_hits_on_unchanged_content_and_misses_when_one_image_changes(tmp_path):
    encoder = FakeEncoder(seed=7)  # its own identity, so its calls can be counted
    spec = register_encoder(encoder, encoder.identity, label="counting")
    images = blob_images(3, 12, brightness=120, spread=40)
    manifest = write_manifest(tmp_path / "set", images)
    cache = FeatureCache(tmp_path / "cache")

    first = cache.features(ImageSet.from_manifest(manifest), spec)
    assert (cache.hits, cache.misses, encoder.images_seen) == (0, 1, 12)

    # The same content under another folder and other file names: a hit, no encoder call.
    renamed = write_manifest(tmp_path / "renamed", images[::-1])
    second = cache.features(ImageSet.from_manifest(renamed), spec)
    assert (cache.hits, cache.misses, encoder.images_seen) == (1, 1, 12)
    assert torch.equal(first, second)

    # One pixel of one image changes: a miss, recomputed.
    changed = [image.copy() for image in images]
    changed[5][0, 0] = (changed[5][0, 0].astype(int) + 1) % 256
    changed_manifest = write_manifest(tmp_path / "changed", changed)
    third = cache.features(ImageSet.from_manifest(changed_manifest), spec)
    assert (cache.hits, cache.misses, encoder.images_seen) == (1, 2, 24)
    assert third.shape == first.shape

    # Another extractor on the same images: a miss (the key covers the extractor's identity).
    other_encoder = FakeEncoder(seed=8)
    other_spec = register_encoder(other_encoder, other_encoder.identity, label="counting")
    cache.features(ImageSet.from_manifest(manifest), other_spec)
    assert cache.misses == 3
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 3


def test_feature_cache_refuses_a_file_that_does_not_match_its_key(tmp_path, encoder_spec):
    manifest = write_manifest(tmp_path / "set", blob_images(4, 8, 100, 30))
    other = write_manifest(tmp_path / "other", blob_images(5, 8, 100, 30))
    cache = FeatureCache(tmp_path / "cache")
    images, other_images = ImageSet.from_manifest(manifest), ImageSet.from_manifest(other)
    cache.features(other_images, encoder_spec)
    # Plant the other set's features under this set's key, as a hand copy or a collision would.
    shutil.copyfile(cache.path(other_images, encoder_spec), cache.path(images, encoder_spec))
    assert cache.load(images, encoder_spec) is None


def test_a_manifest_whose_file_changed_is_refused(tmp_path):
    manifest = write_manifest(tmp_path / "set", blob_images(6, 4, 100, 30))
    Image.fromarray(np.zeros((RESOLUTION, RESOLUTION, 3), np.uint8)).save(tmp_path / "set" / "img_0002.png")
    with pytest.raises(ValueError, match="img_0002.png has sha256"):
        ImageSet.from_manifest(manifest)


def test_inception_weights_need_a_matching_sha256_before_unpickling(tmp_path):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"not really weights")
    with pytest.raises(FeatureError, match="sha256 is required"):
        inception_feature_extractor(weights, "")
    with pytest.raises(ValueError, match="inception.pth has sha256"):
        inception_feature_extractor(weights, "0" * 64)


def test_inception_path_loads_the_local_weights_file_and_never_downloads(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download the Inception weights")

    monkeypatch.setattr(inception, "load_state_dict_from_url", no_download)
    with monkeypatch.context() as patch:  # a randomly initialised network stands in for the real weights
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None)
        torch.manual_seed(0)
        donor = inception.FeatureExtractorInceptionV3("donor", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(donor.state_dict(), weights)

    spec = inception_feature_extractor(weights, sha256_file(weights))
    assert spec.is_inception and spec.approximation is None
    assert spec.weights_sha256 == sha256_file(weights)
    assert spec.fidelity_kwargs()["feature_extractor_weights_path"] == str(weights.resolve())
    module = spec.create("cpu")  # through torch-fidelity's registry, as calculate_metrics would
    assert torch.equal(module.fc.weight, donor.fc.weight)


# ------------------------------------------------------------------------------------------------
# CLIPscore and best-of-N
# ------------------------------------------------------------------------------------------------


class ColourClip:
    """A CLIP whose image embedding is the mean RGB and whose text embedding is a named colour."""

    identity = "c" * 64
    input_resolution = None
    colours = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0],
               "anti-red": [-1.0, 0.0, 0.0], "yellow": [3.0, 3.0, 0.0]}

    def encode_images(self, images):
        return torch.nn.functional.normalize(images.float().mean(dim=(2, 3)), dim=-1)

    def encode_texts(self, texts):
        return torch.nn.functional.normalize(torch.tensor([self.colours[t] for t in texts]), dim=-1)


def test_cosine_scores_are_raw_cosines_of_normalised_embeddings():
    images = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[1.0, 0.0], [-5.0, 0.0], [0.0, 0.5]])
    # cos([3,4],[1,0]) = 0.6; opposite vectors give -1 (not clipped to 0); parallel give 1 (not 100).
    assert cs.cosine_scores(images, texts).tolist() == pytest.approx([0.6, -1.0, 1.0], abs=1e-12)


def test_clipscore_of_a_manifest_matches_hand_computed_values(tmp_path):
    red = np.zeros((RESOLUTION, RESOLUTION, 3), np.uint8)
    red[..., 0] = 255
    yellow = np.zeros_like(red)
    yellow[..., :2] = 200
    manifest = write_manifest(tmp_path / "colours", [red, red, yellow, yellow], samples_per_prompt=1,
                              prompts=["red", "green", "red", "anti-red"])
    scores = cs.score_manifest(ColourClip(), manifest)
    # red vs red = 1; red vs green = 0; yellow vs red = 1/sqrt(2); yellow vs anti-red = -1/sqrt(2).
    expected = [1.0, 0.0, 1 / math.sqrt(2), -1 / math.sqrt(2)]
    assert scores["clipscore"].tolist() == pytest.approx(expected, abs=1e-6)
    assert cs.clipscore_mean(scores) == pytest.approx(sum(expected) / 4, abs=1e-6)


def _scores(table: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"prompt_id": pid, "prompt": pid, "sample_index": i, "seed": 10 * k + i, "clipscore": value}
        for k, (pid, values) in enumerate(table.items()) for i, value in enumerate(values)
    ])


def test_best_of_n_selects_within_the_first_n_and_keeps_every_candidate():
    scores = _scores({"p0": [0.20, 0.35, 0.10, 0.90],   # 0.90 is sample 3: outside best-of-3
                      "p1": [0.30, 0.30, 0.25, 0.00]})  # tie: the lower sample_index wins
    selection = cs.select_best_of_n(scores, n=3)
    assert selection.chosen[["prompt_id", "sample_index"]].values.tolist() == [["p0", 1], ["p1", 0]]
    assert selection.score == pytest.approx((0.35 + 0.30) / 2)
    assert len(selection.candidates) == 6 and selection.candidates["chosen"].sum() == 2
    assert selection.candidates.query("prompt_id == 'p0'")["rank"].tolist() == [2, 1, 3]
    assert cs.clipscore_best_of_n(scores, n=4) == pytest.approx((0.90 + 0.30) / 2)
    assert cs.clipscore_mean(scores) == pytest.approx(np.mean([0.2, 0.35, 0.1, 0.9, 0.3, 0.3, 0.25, 0.0]))


def test_best_of_n_refuses_prompts_with_too_few_samples():
    scores = _scores({"p0": [0.1] * 16, "p1": [0.2] * 9})
    with pytest.raises(cs.ClipScoreError, match=r"best-of-16 .*'p1' \(9\)"):
        cs.select_best_of_n(scores, n=16)


def test_summaries_name_the_table_metrics():
    scores = _scores({"p0": list(np.linspace(0, 0.3, 16)), "p1": list(np.linspace(0.1, 0.2, 16))})
    generator = cs.summarize_clipscores(scores, role="generator")
    assert generator["clipscore_best16"] == (pytest.approx(0.25), 2)
    assert generator["clipscore_mean"] == (pytest.approx(0.15), 32)
    assert cs.summarize_clipscores(scores, role="judge") == {"clipscore_judge_mean": (pytest.approx(0.15), 32)}


# ------------------------------------------------------------------------------------------------
# metrics.csv
# ------------------------------------------------------------------------------------------------


def _good_rows(protocol: str = "image_set_metrics-000000000000") -> list[dict]:
    return [
        metric_row("clip-vqdiffusion", "default", "fid", 12.5, 64, protocol, 11.0, 14.0),
        metric_row("lafite", "default", "attr_acc/hair_colour", 0.75, 64, protocol),
        metric_row("clip-vqdiffusion", variant_name({"steps": 50, "alpha": 0.25, "s": 1.2, "r": 0.85}),
                   "clipscore_mean", 0.31, 1024, protocol),
    ]


def test_metrics_table_round_trip_and_variant_names(tmp_path):
    path = tmp_path / "metrics.csv"
    written = write_metrics_table(_good_rows(), path)
    assert list(pd.read_csv(path).columns) == ["method", "variant", "metric", "value", "n", "ci_low", "ci_high",
                                               "protocol"]
    assert read_metrics_table(path).equals(written)
    assert written.loc[written["metric"] == "fid", ["ci_low", "ci_high"]].values.tolist() == [[11.0, 14.0]]
    assert written.loc[written["metric"] == "clipscore_mean", "ci_low"].isna().all()  # no interval: both empty
    assert "alpha=0.25,s=1.2,r=0.85,steps=50" in set(written["variant"])
    assert parse_variant("alpha=0.25,s=1.2,r=0.85,steps=50") == {"alpha": 0.25, "s": 1.2, "r": 0.85, "steps": 50}
    assert variant_name({"purity": True, "cfg": False}) == "purity=on,cfg=off"


@pytest.mark.parametrize("change, message", [
    (lambda f: f.rename(columns={"value": "values"}), r"missing column\(s\) 'value'.*unexpected column\(s\) 'values'"),
    (lambda f: f.drop(columns=["n"]), r"missing column\(s\) 'n'"),
    (lambda f: f.assign(metric=["fid50k", "fid", "fid"]), r"row 1: column 'metric' has 'fid50k'"),
    (lambda f: f.assign(metric=["fid", "attr_acc/Hair Colour", "kid"]), r"row 2: column 'metric' has 'attr_acc/Hair Colour'"),
    (lambda f: f.assign(method=["dalle", "lafite", "lafite"]), r"row 1: column 'method' has 'dalle'"),
    (lambda f: f.assign(value=["nan", "0.5", "0.5"]), r"row 1: column 'value' is nan"),
    (lambda f: f.assign(value=["12", "1.5", "0.3"]), r"row 2: column 'value' has 1.5 .*attr_acc/hair_colour"),
    (lambda f: f.assign(n=["64", "64", "2.5"]), r"row 3: column 'n' has '2.5'"),
    (lambda f: f.assign(ci_high=["14", "", "0.4"]), r"row 3: one of 'ci_low' and 'ci_high' is empty"),
    (lambda f: f.assign(ci_low=["15", "", ""], ci_high=["14", "", ""]), r"row 1: ci_low 15.0 is above ci_high 14.0"),
    (lambda f: f.assign(ci_low=["11", "0.2", ""], ci_high=["14", "1.2", ""]),
     r"row 2: column 'ci_high' has 1.2 .*attr_acc/hair_colour"),
    (lambda f: f.assign(variant=["default", "alpha:0.5", "default"]), r"row 2: column 'variant'.*'alpha:0.5'"),
    (lambda f: f.assign(metric=["fid", "fid", "fid"], method=["lafite"] * 3, variant=["default"] * 3),
     r"\(lafite, default, fid\) appears more than once"),
])
def test_metrics_table_validator_names_the_bad_column_or_value(tmp_path, change, message):
    good = pd.DataFrame(_good_rows()).astype(str).replace("nan", "")
    path = tmp_path / "metrics.csv"
    change(good).to_csv(path, index=False)
    with pytest.raises(MetricsTableError, match=message):
        read_metrics_table(path)


def test_metrics_rows_must_point_into_the_protocol(tmp_path):
    path = tmp_path / "metrics.csv"
    write_metrics_table(_good_rows("clipscore-abc"), path)
    with pytest.raises(MetricsTableError, match=r"'clipscore-abc', which protocol.json does not define"):
        read_metrics_table(path, protocol_ids={"image_set_metrics-000000000000"})


def test_merging_branch_tables(tmp_path):
    rows = _good_rows()
    write_metrics_table(rows[:2], tmp_path / "a.csv")
    write_metrics_table(rows[1:], tmp_path / "b.csv")  # overlaps a.csv on one identical row
    merged = merge_metrics_tables([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "metrics.csv")
    assert len(merged) == 3 and len(read_metrics_table(tmp_path / "metrics.csv")) == 3
    conflicting = dict(rows[1], value=0.5)
    write_metrics_table([conflicting], tmp_path / "c.csv")
    with pytest.raises(MetricsTableError, match=r"0.75 \(n=64\) in .*a.csv but 0.5 \(n=64\) in .*c.csv"):
        merge_metrics_tables([tmp_path / "a.csv", tmp_path / "c.csv"])


# ------------------------------------------------------------------------------------------------
# protocol.json
# ------------------------------------------------------------------------------------------------


def test_protocol_records_how_each_number_was_measured(image_sets, encoder_spec, tmp_path):
    generated, reference = ImageSet.from_manifest(image_sets["near"]), ImageSet.from_manifest(image_sets["reference"])
    result = image_set_metrics(generated, reference, encoder_spec)
    record = ProtocolRecord()
    fid_id = record.add(image_metrics_entry(extractor=encoder_spec, generated=generated, reference=reference,
                                            result=result, sample_manifest=image_sets["near"],
                                            reference_name="faces/reference"))
    scores = cs.score_manifest(type("Clip", (), {"encode_images": staticmethod(FakeEncoder(1)),
                                                 "encode_texts": staticmethod(lambda t: torch.ones(len(t), 16)),
                                                 "identity": "d" * 64})(), image_sets["near"])
    clip_id = record.add(clipscore_entry(clip_label="judge", clip_identity="d" * 64, role="judge", scores=scores))
    oracle_id = record.add(make_entry("attribute_accuracy", oracle_sha256="e" * 64, prompts="ood"))
    path = record.write(tmp_path / "protocol.json")

    rows = [metric_row("clip-vqdiffusion", "default", "fid", result["fid"], result["n_generated"], fid_id),
            metric_row("clip-vqdiffusion", "default", "clipscore_judge_mean", 0.2, len(scores), clip_id),
            metric_row("clip-vqdiffusion", "default", "attr_acc_ood", 0.5, 24, oracle_id)]
    reread = ProtocolRecord.read(path)
    write_metrics_table(rows, tmp_path / "metrics.csv", protocol_ids=reread.ids())

    entry = reread[fid_id]
    assert entry["library"] == {"name": "torch-fidelity", "version": "0.4.0"}
    assert entry["feature_extractor"]["weights_sha256"] == encoder_spec.weights_sha256
    assert "not InceptionV3" in entry["approximation"]
    assert entry["generated"]["n"] == entry["reference"]["n"] == SET_SIZE
    assert entry["reference"]["content_sha256"] == reference.content_sha256
    assert entry["reference"]["name"] == "faces/reference"
    assert entry["resolution"] == [RESOLUTION, RESOLUTION]
    sampling = entry["generated"]["sampling"]
    assert sampling["prompt_set"]["n_prompts"] == SET_SIZE // 4
    assert sampling["seeds"]["values"][:2] == [1000, 1001]
    assert sampling["settings"] == {"alpha": 0.5, "r": 0.85, "s": 1.2, "steps": 100}
    assert reread[clip_id]["role"] == "judge" and "not x100" in reread[clip_id]["definition"]

    # Ids are content hashes: an edited entry no longer matches its id and is refused.
    data = json.loads(path.read_text())
    data["entries"][fid_id]["settings"]["kid_subsets"] = 5
    path.write_text(json.dumps(data))
    with pytest.raises(ProtocolError, match=f"entry '{fid_id}' does not match its content"):
        ProtocolRecord.read(path)


# ------------------------------------------------------------------------------------------------
# One metrics job, and merging the branches
# ------------------------------------------------------------------------------------------------


class FakeClip:
    """encode_images from a fixed conv net, encode_texts from a hash of the prompt: a CLIP-shaped stub."""

    input_resolution = None

    def __init__(self, seed: int):
        self.encoder = FakeEncoder(seed)
        self.identity = self.encoder.identity

    def encode_images(self, images):
        return self.encoder(images)

    def encode_texts(self, texts):
        rows = [torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)) for t in texts]
        return torch.nn.functional.normalize(torch.stack([torch.randn(16, generator=g) for g in rows]), dim=-1)


def test_alignment_units_give_the_pooled_metrics():
    """Every prompt contributes its first k samples (k = the fewest any prompt has); a metric is the ratio of
    the summed numerators and denominators, so attr_acc pools (image, attribute) pairs as before."""
    from clipvqd.evaluation.alignment import attribute_units, balanced_samples, best_of_units, clipscore_units, \
        values_from_units

    scores = _scores({"p0": list(np.linspace(0, 0.3, 16)), "p1": [0.1, 0.2, 0.3, 0.4], "p2": [0.5, 0.5, 0.5, 0.9]})
    k = balanced_samples(scores)
    assert k == 4
    units = pd.DataFrame(clipscore_units(scores, "clipscore_mean", k) + best_of_units(scores)[0])
    values = values_from_units(units)
    first_four = list(np.linspace(0, 0.3, 16)[:4]) + [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.9]
    assert values["clipscore_mean"] == (pytest.approx(np.mean(first_four)), 12)
    assert values["clipscore_best16"] == (pytest.approx(0.3), 1)  # only p0 has 16 samples
    checks = pd.DataFrame([
        {"prompt_id": "p0", "sample_index": i, "attribute": a, "correct": ok}
        for i in range(16) for a, ok in (("hat", i % 2 == 0), ("beard", True))] + [
        {"prompt_id": "p1", "sample_index": i, "attribute": "hat", "correct": i < 1} for i in range(4)])
    prompts = pd.DataFrame({"prompt_id": ["p0", "p1"], "ood": ["0", "1"]})
    attribute = values_from_units(pd.DataFrame(attribute_units(checks, prompts, k)))
    assert attribute["attr_acc"] == (pytest.approx(6 / 8), 4)  # p0's first 4 images, 2 attributes each
    assert attribute["attr_acc_ood"] == (pytest.approx(1 / 4), 4)
    assert attribute["attr_acc/hat"] == (pytest.approx(3 / 8), 8)


def test_merge_results_with_the_per_seed_tables_and_the_design(tmp_path):
    from clipvqd.evaluation import merge_results
    from clipvqd.evaluation.table import BY_SEED_COLUMNS, seed_row

    outputs = []
    for method in ("clip-vqdiffusion", "lafite"):
        record = ProtocolRecord()
        pid = record.add(make_entry("attribute_accuracy", method=method))
        record.write(tmp_path / f"{method}.protocol.json")
        write_metrics_table([metric_row(method, "default", "attr_acc", 0.6, 512, pid, 0.55, 0.65)],
                            tmp_path / f"{method}.csv", protocol_ids=record.ids())
        write_metrics_table([seed_row(method, "default", s, "attr_acc", 0.6 + s / 100, 512, pid) for s in (0, 1)],
                            tmp_path / f"{method}.by_seed.csv", protocol_ids=record.ids(), columns=BY_SEED_COLUMNS)
        outputs.append(method)
    merged, protocol = merge_results([tmp_path / f"{m}.csv" for m in outputs],
                                     [tmp_path / f"{m}.protocol.json" for m in outputs], tmp_path / "metrics.csv",
                                     tmp_path / "protocol.json", by_seed_paths=[tmp_path / f"{m}.by_seed.csv"
                                                                                 for m in outputs],
                                     out_by_seed=tmp_path / "metrics_by_seed.csv", design={"judge_split": None})
    assert len(merged) == 2 and set(merged["ci_low"]) == {0.55}
    by_seed = read_metrics_table(tmp_path / "metrics_by_seed.csv", columns=BY_SEED_COLUMNS)
    assert sorted(by_seed["seed"]) == [0, 0, 1, 1]
    reread = ProtocolRecord.read(tmp_path / "protocol.json")
    assert reread.design == {"judge_split": None} and reread.ids() == protocol.ids()


def test_seed_entries_combine_into_one(tmp_path):
    from clipvqd.evaluation.protocol import combine_seed_entries

    entries = {0: make_entry("clipscore", role="judge", samples="aaa"), 1: make_entry("clipscore", role="judge",
                                                                                      samples="bbb")}
    combined = combine_seed_entries(entries, interval={"replicates": 10})
    assert combined["role"] == "judge" and combined["seeds"] == [0, 1] and combined["interval"] == {"replicates": 10}
    assert combined["by_seed"] == {"0": {"samples": "aaa"}, "1": {"samples": "bbb"}} and "samples" not in combined
    assert "by_seed" not in combine_seed_entries({3: entries[0]})
