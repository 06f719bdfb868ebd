"""The metrics stage's command (`python -m clipvqd evaluate metrics`, what the `metrics` rule runs) on a
tiny real world: two tiny stand-in CLIPs, a tiny oracle, and "samples" that are renders of the prompted
attributes (a perfect generator) or the same renders under the wrong prompts (a generator that ignores
its prompt); their distribution sets are the reference images themselves under their own captions (a
perfect match) or other renders under those captions. Also: the shared feature cache survives metrics jobs
writing it at the same time.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clipvqd.cli import main
from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
from clipvqd.evaluation.features import FeatureCache, ImageSet, register_encoder
from clipvqd.evaluation.protocol import ProtocolRecord
from clipvqd.evaluation.table import read_metrics_table
from clipvqd.hashing import sha256_file
from clipvqd.oracle import OracleConfig, train_oracle
from clipvqd.worlds import get_world

SAMPLES_PER_PROMPT = 16
SAMPLE_SEED = 7  # every image of a sample set is drawn from the run's sampling seed (its own stream per image)
DISTRIBUTION_SEED = 5  # ... and every image of a distribution set from the distribution set's
SETTINGS = {"alpha": 0.5, "s": 1.2, "r": 0.85, "steps": 100, "purity": False}
TINY_CLIP = dict(embed_dim=16, text_width=32, text_layers=1, text_heads=2, epochs=1, batch_size=100)


def _write_samples(folder, records, prompts, variant):
    """A sample manifest in the layout of the sample rule (paths relative to the manifest's folder)."""
    rows = []
    for record, prompt_id in zip(records, prompts):
        rows.append({"path": record["path"], "sha256": record["sha256"], "prompt_id": prompt_id,
                     "prompt": record["prompts"][prompt_id], "sample_index": record["sample_index"],
                     "seed": record["seed"], "method": "clip-vqdiffusion", "variant": variant, **SETTINGS})
    manifest = folder / f"{variant}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _write_distribution(folder, images, table):
    """A distribution set in the sample rule's layout: image i under the caption of reference image i."""
    import shutil

    folder.mkdir()
    rows = []
    for index, (source, row) in enumerate(zip(images, table.to_dict("records"))):
        name = f"{index:04d}.png"
        shutil.copyfile(source, folder / name)
        rows.append({"path": name, "sha256": sha256_file(folder / name), "prompt_id": row["prompt_id"],
                     "prompt": row["prompt"], "sample_index": 0, "seed": DISTRIBUTION_SEED, "method": "clip-vqdiffusion",
                     "variant": "default", **SETTINGS})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def setup(small_faces, tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("metrics-rule")
    world = get_world("faces")
    prompts = pd.read_csv(small_faces / "prompts.csv", dtype=str, keep_default_na=False)
    # Two in-distribution and two held-out-combination prompts, 16 renders each showing what they ask for.
    chosen = pd.concat([prompts[prompts["ood"] == "0"].head(2), prompts[prompts["ood"] == "1"].head(2)])
    assert len(chosen) == 4
    chosen.to_csv(root / "prompts.csv", index=False)  # the prompt table these sample sets were planned from
    texts = dict(zip(prompts["prompt_id"], prompts["prompt"]))
    samples = root / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    records = []
    for prompt in chosen.to_dict("records"):
        requested = {name: prompt[name] for name in world.attribute_names if prompt[name]}
        for index in range(SAMPLES_PER_PROMPT):
            attributes = world.sample_attributes(rng) | requested
            name = f"{prompt['prompt_id']}_{index:02d}.png"
            world.render(attributes, rng, 32).save(samples / name)
            records.append({"path": name, "sha256": sha256_file(samples / name), "prompt_id": prompt["prompt_id"],
                            "sample_index": index, "seed": SAMPLE_SEED, "attributes": attributes,
                            "prompts": texts})

    # The oracle is trained on these very renders (no augmentation, enough steps to know them all), so it
    # reads their attributes exactly and the test checks the metric's bookkeeping, not the oracle.
    oracle_rows = [{"path": r["path"], "sha256": r["sha256"], "fold": "train", **r["attributes"]} for r in records]
    pd.DataFrame(oracle_rows).to_csv(samples / "oracle.csv", index=False)
    oracle = root / "oracle.safetensors"
    train_oracle(samples / "oracle.csv", "faces",
                 OracleConfig(width=4, epochs=80, batch_size=64, learning_rate=5e-3, augment_noise=0.0,
                              augment_shift=0, augment_blur_probability=0.0),
                 root / "oracle-work", oracle, root / "oracle-curve.csv", seed=0, progress=False)

    clips = {}
    for role, tower in (("conditioner", {"vision_tower": "resnet", "vision_width": 8, "vision_layers": 1}),
                        ("judge", {"vision_tower": "vit", "patch_size": 8, "vision_width": 64, "vision_layers": 1})):
        clips[role] = root / f"{role}.safetensors"
        train_standin_clip(small_faces / "clip_pairs.csv",
                           StandinClipConfig(model_name=f"test-metrics-{role}", **tower, **TINY_CLIP),
                           root / f"work-{role}", clips[role], root / f"{role}-curve.csv", seed=len(role),
                           progress=False)

    matched = _write_samples(samples, records, [r["prompt_id"] for r in records], "default")
    # The distribution sets: one image per reference image, prompted with its caption.
    from clipvqd.evaluation.sets import distribution_prompt_table

    table = distribution_prompt_table(small_faces / "reference.csv", small_faces / "distribution_prompts.csv",
                                      world_summary=small_faces / "world.json")
    exact = _write_distribution(root / "exact", [small_faces / p for p in table["path"]], table)
    other = _write_distribution(root / "other", [samples / r["path"] for r in records[:len(table)]], table)
    # The same images under the next prompt's id (in0 -> in1 -> ood0 -> ood1 -> in0), 4 per prompt:
    # a generator that ignores its prompt, with too few samples per prompt for best-of-16.
    order = list(chosen["prompt_id"])
    shifted = [r for r in records if r["sample_index"] < 4]
    wrong_ids = [order[(order.index(r["prompt_id"]) + 1) % len(order)] for r in shifted]
    mismatched = _write_samples(samples, shifted, wrong_ids, "alpha=0.25")
    return {"root": root, "world": small_faces, "prompts_csv": root / "prompts.csv", "oracle": oracle, "clips": clips,
            "matched": matched, "exact": exact, "other": other, "n_reference": len(table),
            "mismatched": mismatched, "records": records, "shifted": shifted, "wrong_ids": wrong_ids,
            "prompts": prompts.set_index("prompt_id"), "cache": root / "feature-cache"}


def _run_metrics(setup, manifest, distribution, variant, name, samples_per_prompt=SAMPLES_PER_PROMPT):
    out = setup["root"] / "metrics" / f"{name}.csv"
    files = {suffix: setup["root"] / "metrics" / f"{name}.{suffix}" for suffix in
             ("by_seed.csv", "units.csv", "features.safetensors", "protocol.json", "best16.csv")}
    main(["evaluate", "metrics", "--samples", str(manifest), "--distribution-samples", str(distribution),
          "--seeds", "0", "--prompts", str(setup["prompts_csv"]),
          "--distribution-prompts", str(setup["world"] / "distribution_prompts.csv"),
          "--samples-per-prompt", str(samples_per_prompt), "--sample-seeds", str(SAMPLE_SEED),
          "--distribution-sample-seeds", str(DISTRIBUTION_SEED),
          "--conditioner", str(setup["clips"]["conditioner"]), "--judge", str(setup["clips"]["judge"]),
          "--oracle", str(setup["oracle"]), "--method", "clip-vqdiffusion", "--variant", variant,
          "--cache-dir", str(setup["cache"]), "--kid-subsets", "10", "--bootstrap-replicates", "200",
          "--reference-name", "faces world, reference split", "--out", str(out),
          "--by-seed-out", str(files["by_seed.csv"]), "--units-out", str(files["units.csv"]),
          "--features-out", str(files["features.safetensors"]), "--protocol-out", str(files["protocol.json"]),
          "--candidates", str(files["best16.csv"])])
    record = ProtocolRecord.read(files["protocol.json"])
    table = read_metrics_table(out, protocol_ids=record.ids())  # validates columns, names, values, protocol ids
    return table, record, files


def _expected_accuracy(setup, records, prompt_ids, ood: str) -> float:
    """Ground truth: share of (image, requested attribute) pairs where the render shows the requested value."""
    prompts = setup["prompts"]
    checks = [record["attributes"][name] == prompts.at[pid, name]
              for record, pid in zip(records, prompt_ids) if prompts.at[pid, "ood"] == ood
              for name in get_world("faces").attribute_names if prompts.at[pid, name]]
    return sum(checks) / len(checks)


def test_metrics_of_renders_that_show_the_prompted_attributes(setup):
    table, record, files = _run_metrics(setup, setup["matched"], setup["exact"], "default", "matched")
    values = dict(zip(table["metric"], table["value"]))
    counts = dict(zip(table["metric"], table["n"]))
    main_metrics = {"fid", "kid", "precision", "recall", "cmmd", "clipscore_best16", "clipscore_mean",
                    "clipscore_judge_mean", "attr_acc", "attr_acc_ood"}
    assert main_metrics <= set(values), sorted(values)
    requested = {name for name in get_world("faces").attribute_names
                 if (setup["prompts"].loc[[r["prompt_id"] for r in setup["records"]], name] != "").any()}
    assert {m for m in values if m.startswith("attr_acc/")} == {f"attr_acc/{name}" for name in requested}
    assert set(table["method"]) == {"clip-vqdiffusion"} and set(table["variant"]) == {"default"}

    # A perfect generator: every requested attribute is there, in and out of distribution.
    assert values["attr_acc"] == 1.0 and values["attr_acc_ood"] == 1.0, values
    assert all(values[f"attr_acc/{name}"] == 1.0 for name in requested)
    assert counts["attr_acc"] == 32 and counts["attr_acc_ood"] == 32
    assert counts["clipscore_best16"] == 4 and counts["clipscore_mean"] == 64
    assert -1 <= values["clipscore_mean"] <= values["clipscore_best16"] <= 1
    # The distribution set is the reference under its own captions: n is its size, and the distribution
    # metrics see two identical sets.
    assert {counts[m] for m in ("fid", "kid", "precision", "recall", "cmmd")} == {setup["n_reference"]}
    assert abs(values["fid"]) < 1e-3 and values["precision"] == values["recall"] == 1.0
    # Every alignment metric has an interval around its value; the per-attribute ones too.
    alignment = table[~table["metric"].isin(["fid", "kid", "precision", "recall", "cmmd"])]
    assert alignment["ci_low"].notna().all() and (alignment["ci_low"] <= alignment["value"]).all()
    assert (alignment["value"] <= alignment["ci_high"]).all()
    by_seed = pd.read_csv(files["by_seed.csv"])
    assert set(by_seed["seed"]) == {0} and len(by_seed) == len(table)
    units = pd.read_csv(files["units.csv"])
    assert set(units[units["metric"] == "attr_acc"]["unit"]) == {r["prompt_id"] for r in setup["records"]
                                                               if setup["prompts"].at[r["prompt_id"], "ood"] == "0"}

    # Every row points at an entry that says how it was measured.
    by_kind = {record[pid]["kind"]: record[pid] for pid in set(table["protocol"])}
    assert set(by_kind) == {"image_set_metrics", "clipscore", "attribute_accuracy", "cmmd", "within_prompt_diversity"}
    assert by_kind["cmmd"]["sigma"] == 10 and by_kind["cmmd"]["scale"] == 1000
    assert by_kind["image_set_metrics"]["evaluation_set"]["name"] == "distribution"
    assert by_kind["attribute_accuracy"]["interval"]["bootstrap"]["replicates"] == 200
    image_entry = by_kind["image_set_metrics"]
    assert image_entry["feature_extractor"]["weights_sha256"] == sha256_file(setup["clips"]["judge"])
    assert "not InceptionV3" in image_entry["approximation"]
    assert image_entry["settings"]["kid_subset_size"] == 20  # shrunk to the 20 reference images
    assert image_entry["reference"]["name"] == "faces world, reference split"
    assert image_entry["generated"]["sampling"]["settings"]["alpha"] == 0.5
    assert by_kind["attribute_accuracy"]["oracle"]["weights_sha256"] == sha256_file(setup["oracle"])
    clip_entries = [record[pid] for pid in set(table["protocol"]) if record[pid]["kind"] == "clipscore"]
    assert {e["role"] for e in clip_entries} == {"generator", "judge"}

    chosen = pd.read_csv(files["best16.csv"])
    assert len(chosen) == 64 and chosen["chosen"].sum() == 4

    # Within-prompt diversity: the two in-distribution prompts, each the mean pairwise distance of its 16 renders'
    # judge embeddings, recomputed here from the images (all pairs of the cdist matrix, diagonal excluded).
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.evaluation.image_set import UInt8Images

    judge = ClipEncoder.load(setup["clips"]["judge"])
    expected = []
    for prompt_id in sorted({r["prompt_id"] for r in setup["records"]
                             if setup["prompts"].at[r["prompt_id"], "ood"] == "0"}):
        paths = [setup["matched"].parent / r["path"] for r in setup["records"] if r["prompt_id"] == prompt_id]
        embedded = judge.encode_images(torch.stack([UInt8Images(paths)[i] for i in range(len(paths))]))
        expected.append(float(torch.cdist(embedded, embedded).sum()) / (len(paths) * (len(paths) - 1)))
    assert values["within_prompt_diversity"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert 0 < values["within_prompt_diversity"] < 2 and counts["within_prompt_diversity"] == 32
    assert len(units[units["metric"] == "within_prompt_diversity"]) == 2
    entry = by_kind["within_prompt_diversity"]
    assert entry["features"]["clip"]["weights_sha256"] == sha256_file(setup["clips"]["judge"])
    assert entry["prompts"] == {"in_distribution": 2, "samples_per_prompt_used": 16,
                                "held_out_combinations": entry["prompts"]["held_out_combinations"]}
    assert "near 0" in entry["reading"]


def test_metrics_of_renders_under_the_wrong_prompts(setup):
    before = {p.name for p in setup["cache"].glob("*.safetensors")}  # reference + matched set, if that ran
    table, record, files = _run_metrics(setup, setup["mismatched"], setup["other"], "alpha=0.25", "mismatched",
                                        samples_per_prompt=4)
    values = dict(zip(table["metric"], table["value"]))
    # A generator that ignores its prompt: accuracy falls to the chance agreement of the renders.
    expected_in = _expected_accuracy(setup, setup["shifted"], setup["wrong_ids"], "0")
    expected_ood = _expected_accuracy(setup, setup["shifted"], setup["wrong_ids"], "1")
    assert values["attr_acc"] == pytest.approx(expected_in, abs=0.05), values
    assert values["attr_acc_ood"] == pytest.approx(expected_ood, abs=0.05), values
    assert values["attr_acc"] <= 0.75 and values["attr_acc_ood"] <= 0.75, values
    # 4 samples per prompt: no best-of-16 number (never a NaN row), an empty candidates list.
    assert "clipscore_best16" not in values and "clipscore_mean" in values and values["fid"] > 0.001
    assert set(table["variant"]) == {"alpha=0.25"}
    assert pd.read_csv(files["best16.csv"]).empty
    # Features are cached by content: after the matched run, the reference images' are reused and only this
    # distribution set's are new.
    after = {p.name for p in setup["cache"].glob("*.safetensors")}
    assert before < after and len(after - before) == (1 if before else 2)
    assert not list(setup["cache"].glob("*.tmp"))


# ------------------------------------------------------------------------------------------------
# The shared feature cache under concurrent metrics jobs
# ------------------------------------------------------------------------------------------------


def _fake_encoder(images):
    return images.float().mean(dim=(2, 3))


def _cache_spec(paths):
    return ImageSet.from_paths(paths), register_encoder(_fake_encoder, identity="ab" * 32, label="concurrency-test")


def _cache_writer(root, paths, rounds, value):
    images, spec = _cache_spec(paths)
    # Large enough that a non-atomic write would be caught half-written by the reader.
    features = torch.full((len(paths), 200_000), float(value))
    cache = FeatureCache(root)
    for _ in range(rounds):
        cache.store(images, spec, features)


def test_feature_cache_survives_two_jobs_writing_the_same_entry(tmp_path, small_faces):
    """Two metrics jobs computing the same reference features at once, while a third reads them: every read
    sees one whole file (temp file + rename), never a torn or mixed one."""
    paths = sorted(small_faces.glob("reference/*.png"))[:4]
    images, spec = _cache_spec(paths)
    cache = FeatureCache(tmp_path)
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a process with threads
        writers = [context.Process(target=_cache_writer, args=(tmp_path, paths, 8, value)) for value in (1.0, 2.0)]
        for writer in writers:
            writer.start()
        reads, torn = 0, 0
        while any(writer.is_alive() for writer in writers):
            if cache.path(images, spec).exists():
                loaded = cache.load(images, spec)
                reads += 1
                if loaded is None or loaded.shape != (4, 200_000) or not bool((loaded == loaded[0, 0]).all()):
                    torn += 1
        for writer in writers:
            writer.join(timeout=120)
    assert all(writer.exitcode == 0 for writer in writers)
    assert reads > 0 and torn == 0, f"{torn} of {reads} reads saw a torn or mixed cache file"
    assert len(list(tmp_path.glob("*.safetensors"))) == 1 and not list(tmp_path.glob("*.tmp"))


def test_feature_cache_never_writes_the_entry_in_place(tmp_path, small_faces, monkeypatch):
    """While a job stores an entry, readers still open the previous whole file: the new one is written to a
    temporary file in the same folder (same filesystem) and renamed over it."""
    import safetensors.torch

    images, spec = _cache_spec(sorted(small_faces.glob("reference/*.png"))[:4])
    cache = FeatureCache(tmp_path)
    final = cache.path(images, spec)
    cache.store(images, spec, torch.zeros(4, 3))  # what another job stored earlier
    written, real_save = [], safetensors.torch.save_file

    def spy(tensors, filename, metadata=None):
        written.append(Path(filename))
        real_save(tensors, filename, metadata=metadata)
        seen = cache.load(images, spec)  # a reader in the middle of the store
        assert seen is not None and torch.equal(seen, torch.zeros(4, 3)), "the entry was replaced before the rename"

    monkeypatch.setattr(safetensors.torch, "save_file", spy)
    cache.store(images, spec, torch.ones(4, 3))
    assert len(written) == 1 and written[0] != final and written[0].parent == final.parent
    assert torch.equal(cache.load(images, spec), torch.ones(4, 3))
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


# ------------------------------------------------------------------------------------------------
# The rule's wiring of the evaluation config
# ------------------------------------------------------------------------------------------------


def _plan(tmp_path, evaluation: dict):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(json.dumps({"run": "tiny-metrics-plan", "evaluation": evaluation}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1",
         "results/tiny-metrics-plan/metrics/clip-vqdiffusion/default.csv",
         "--configfile", "tests/configs/tiny.yaml", str(overlay)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_inception_weights_are_a_checked_declared_input(tmp_path):
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"not really inception")
    refused = _plan(tmp_path, {"feature_extractor_weights_path": str(weights)})
    assert refused.returncode != 0
    assert "evaluation.feature_extractor_weights_sha256" in refused.stdout + refused.stderr
    sha256 = sha256_file(weights)
    planned = _plan(tmp_path, {"feature_extractor_weights_path": str(weights), "feature_extractor_weights_sha256": sha256,
                               "kid_subset_size": 50, "cross_check": "always"})
    assert planned.returncode == 0, planned.stderr[-3000:]
    command = next(line for line in planned.stdout.splitlines() if "clipvqd evaluate metrics" in line)
    assert f"--inception-weights {weights} --inception-sha256 {sha256}" in command
    assert "--kid-subset-size 50" in command and "--cross-check always" in command and "--oracle " in command
    job = planned.stdout.split("rule metrics:")[1].split("Shell command")[0]
    assert str(weights) in job.split("output:")[0]  # an input of the job: changing the file reruns it


# ------------------------------------------------------------------------------------------------
# A sample set must hold its plan, and list only files inside its folder
# ------------------------------------------------------------------------------------------------


def _edited_copy(setup, name, edit):
    """The matched sample set's manifest, edited, written beside it (same folder, same images)."""
    frame = pd.read_csv(setup["matched"], dtype={"prompt_id": str}, keep_default_na=False)
    manifest = setup["matched"].with_name(f"{name}.csv")
    edit(frame).to_csv(manifest, index=False)
    return manifest


def _refused(setup, manifest, name):
    with pytest.raises(SystemExit) as error:
        _run_metrics(setup, manifest, setup["exact"], "default", name)
    assert not (setup["root"] / "metrics" / f"{name}.csv").exists()
    return str(error.value.code)


def test_a_deleted_or_repeated_row_is_refused_naming_the_file_and_the_row(setup):
    deleted = _edited_copy(setup, "deleted", lambda frame: frame.drop(index=5))
    row = pd.read_csv(setup["matched"], dtype={"prompt_id": str}).iloc[5]
    message = _refused(setup, deleted, "deleted")
    assert str(deleted) in message and "1 missing row" in message
    assert f"prompt_id {row['prompt_id']}, sample_index {row['sample_index']}, seed {SAMPLE_SEED}" in message

    repeated = _edited_copy(setup, "repeated", lambda frame: pd.concat([frame, frame.iloc[[3]]]))
    message = _refused(setup, repeated, "repeated")
    assert str(repeated) in message and "1 extra or repeated row" in message

    reseeded = _edited_copy(setup, "reseeded", lambda frame: frame.assign(seed=SAMPLE_SEED + 1))
    message = _refused(setup, reseeded, "reseeded")
    assert "64 missing row(s)" in message and f"seed {SAMPLE_SEED + 1}" in message


@pytest.mark.parametrize("way_out", ["dotdot", "absolute", "symlink"])
def test_a_listed_path_outside_the_sample_folder_is_refused(setup, tmp_path, way_out):
    secret = tmp_path / "secret.png"
    secret.write_bytes((setup["matched"].parent / setup["records"][0]["path"]).read_bytes())
    folder = setup["matched"].parent
    if way_out == "dotdot":
        listed = os.path.relpath(secret, folder)
    elif way_out == "absolute":
        listed = str(secret)
    else:
        link = folder / f"link-{way_out}.png"
        link.unlink(missing_ok=True)
        link.symlink_to(secret)
        listed = link.name

    def edit(frame):
        frame.loc[0, "path"] = listed
        return frame

    manifest = _edited_copy(setup, f"escape-{way_out}", edit)
    message = _refused(setup, manifest, f"escape-{way_out}")
    assert str(manifest) in message and repr(listed) in message


def test_a_distribution_set_that_does_not_hold_its_plan_is_refused(setup):
    """One sample per row of the distribution prompt table, drawn from the distribution set's seed: a set
    drawn from another seed, or missing a reference image, is refused before anything is measured."""
    frame = pd.read_csv(setup["exact"], dtype={"prompt_id": str}, keep_default_na=False)
    for name, edited in (("reseeded", frame.assign(seed=DISTRIBUTION_SEED + 1)), ("short", frame.drop(index=2))):
        manifest = setup["exact"].with_name(f"{name}.csv")
        edited.to_csv(manifest, index=False)
        with pytest.raises(SystemExit) as error:
            _run_metrics(setup, setup["matched"], manifest, "default", f"distribution-{name}")
        message = str(error.value.code)
        assert str(manifest) in message and "missing row" in message, message
        assert not (setup["root"] / "metrics" / f"distribution-{name}.csv").exists()
