"""The metrics of one branch (one method at one sweep point, over its training seeds): every number the
`metrics` rule writes (docs/design.md §6).

Each seed of a branch has two sample sets (`sets.py`): the **alignment set** (the prompt table) gives the
CLIPscores and attribute accuracies, the **distribution set** (one sample per reference image, prompted
with its caption) gives FID, KID, precision/recall and CMMD against exactly those reference images.
`evaluate_branch` is the whole job from files: it measures every seed, averages over seeds, draws the
intervals (`uncertainty.py`), and writes the table, the per-seed table, the units and features the report's
paired comparisons read, the protocol record and the best-of-16 candidates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from clipvqd.evaluation.alignment import BEST_OF  # noqa: F401  (re-exported: the table's best-of-N)
from clipvqd.evaluation.bootstrap import BootstrapSettings

if TYPE_CHECKING:  # torch loads with the job, not with the command-line parser (`--help` stays light)
    import torch

CANDIDATE_COLUMNS = ("clipscore", "rank", "chosen")
CROSS_CHECK = {"auto": None, "always": True, "never": False}  # None: only with Inception

log = logging.getLogger(__name__)


class BranchError(ValueError):
    pass


def _features_in_manifest_order(images, features: torch.Tensor, manifest) -> torch.Tensor:
    """An ImageSet's features come in its canonical (content) order; put them back in the manifest's order."""
    import torch

    from clipvqd.manifest import absolute_paths, read_manifest

    position = {Path(path).resolve(): index for index, path in enumerate(images.paths)}
    frame = read_manifest(manifest, verify=False)
    order = [position[Path(path).resolve()] for path in absolute_paths(manifest, frame)]
    return features[torch.tensor(order, dtype=torch.long)]


def _check_distribution_manifest(manifest, table: pd.DataFrame, prompt_prefix: str) -> pd.DataFrame:
    """The distribution set of a seed: one sample per row of the distribution prompt table, prompted with the
    reference caption of that row (plus the prefix CLIP encoded); returned in the table's order."""
    from clipvqd.manifest import read_manifest

    frame = read_manifest(manifest, verify=False)
    frame = frame.assign(prompt_id=frame["prompt_id"].astype(str))
    if frame["prompt_id"].duplicated().any() or set(frame["prompt_id"]) != set(table["prompt_id"]):
        raise BranchError(f"{manifest} is not one sample per row of the distribution prompt table "
                          f"({len(frame)} samples, {frame['prompt_id'].nunique()} prompts; the table has {len(table)})")
    expected = dict(zip(table["prompt_id"], prompt_prefix + table["prompt"]))
    wrong = [pid for pid, prompt in zip(frame["prompt_id"], frame["prompt"]) if expected[pid] != prompt]
    if wrong:
        raise BranchError(f"{manifest}: prompt {wrong[0]} is not its reference image's caption "
                          f"{expected[wrong[0]]!r}; resample the distribution set")
    return frame.set_index("prompt_id").loc[list(table["prompt_id"])].reset_index()


def check_sample_sets(alignment: Sequence[str | Path], distribution: Sequence[str | Path], seeds: Sequence[int],
                      plans: Sequence[tuple]) -> None:
    """Refuse, before anything is measured, a seed's alignment or distribution set that does not hold exactly
    its plan (`plans[i]`: the (alignment, distribution) `clipvqd.samples.SamplePlan` of `seeds[i]`), or that
    lists a path outside its folder."""
    from clipvqd.manifest import read_manifest

    if len(plans) != len(seeds):
        raise BranchError(f"{len(plans)} sample plan(s) for seeds {list(seeds)}: one (alignment, distribution) "
                          "pair per seed")
    for seed_value, alignment_manifest, distribution_manifest, (alignment_plan, distribution_plan) in zip(
            seeds, alignment, distribution, plans):
        for manifest, plan in ((alignment_manifest, alignment_plan), (distribution_manifest, distribution_plan)):
            plan.check(read_manifest(manifest, verify=False), f"{manifest} (seed {seed_value})")


class _SeedMeasurements:
    """What one seed of a branch measured: rows' values, units, entries, features, candidates."""

    def __init__(self, reference_features: dict[str, torch.Tensor]):
        self.reference_features = reference_features  # the distribution set's reference, in table order
        self.values: dict[str, tuple[float, int]] = {}
        self.units: list[dict] = []
        self.entries: dict[str, dict] = {}  # group -> protocol entry
        self.candidates: pd.DataFrame | None = None


def _measure_alignment(manifest, prompts_csv, conditioner_clip, judge_clip, oracle, *, evaluation_set: str,
                       measured: _SeedMeasurements) -> None:
    from clipvqd.evaluation.alignment import (
        attribute_units,
        balanced_samples,
        best_of_units,
        clipscore_units,
        values_from_units,
    )
    from clipvqd.evaluation.clipscore import score_and_embed_manifest, score_manifest
    from clipvqd.evaluation.diversity import DIVERSITY_METRIC, diversity_entry, diversity_units
    from clipvqd.evaluation.protocol import clipscore_entry

    scores = score_manifest(conditioner_clip, manifest, verify=True)
    k = balanced_samples(scores)
    units = clipscore_units(scores, "clipscore_mean", k)
    best, measured.candidates = best_of_units(scores)
    units += best
    judge_scores, judge_embeddings = score_and_embed_manifest(judge_clip, manifest, verify=False)
    units += clipscore_units(judge_scores, "clipscore_judge_mean", k)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str)
    diversity = diversity_units(judge_scores, judge_embeddings, prompts, k)
    units += diversity
    set_description = {"name": evaluation_set, "prompt_table": str(prompts_csv), "samples_per_prompt_used": k,
                       "best_of_16_prompts": len(best)}
    measured.entries["clipscore_generator"] = clipscore_entry(
        clip_label="conditioner-clip", clip_identity=conditioner_clip.identity, role="generator", scores=scores,
        best_of=BEST_OF if best else None, sample_manifest=manifest,
        input_resolution=getattr(conditioner_clip, "input_resolution", None)) | {"evaluation_set": set_description}
    measured.entries["clipscore_judge"] = clipscore_entry(
        clip_label="judge-clip", clip_identity=judge_clip.identity, role="judge", scores=judge_scores, best_of=None,
        sample_manifest=manifest, input_resolution=getattr(judge_clip, "input_resolution", None)) | {
        "evaluation_set": set_description}
    if diversity:  # in-distribution prompts with at least 2 samples each
        measured.entries[DIVERSITY_METRIC] = diversity_entry(
            clip_label="judge-clip", clip_identity=judge_clip.identity, samples=judge_scores, k=k,
            n_prompts=len(diversity), input_resolution=getattr(judge_clip, "input_resolution", None)) | {
            "evaluation_set": set_description}
    if oracle is not None:
        from clipvqd.evaluation.attributes import attribute_checks, attribute_entry

        checks = attribute_checks(oracle, manifest, prompts_csv)
        attribute = attribute_units(checks, prompts, k)
        units += attribute
        counts = {m: sum(u["n"] for u in attribute if u["metric"] == m) for m in ("attr_acc", "attr_acc_ood")}
        measured.entries["attribute_accuracy"] = attribute_entry(
            oracle, manifest, prompts_csv, counts["attr_acc"], counts["attr_acc_ood"]) | {
            "evaluation_set": set_description}
    measured.units += units
    measured.values.update(values_from_units(pd.DataFrame(units)))


def _measure_distribution(manifest, table: pd.DataFrame, reference, extractor, clip_extractor, cache, *,
                          prompt_prefix: str, kid_subsets: int, kid_subset_size: int, seed: int, cross_check,
                          reference_name, device: str, measured: _SeedMeasurements) -> dict[str, torch.Tensor]:
    """FID/KID/PR (torch-fidelity) and CMMD of one seed's distribution set; returns its features in the table's
    order ({"fid": ..., "clip": ...})."""
    from clipvqd.evaluation import cmmd as cmmd_module
    from clipvqd.evaluation.features import ImageSet, features_for
    from clipvqd.evaluation.fid import cleanfid_cross_check, image_set_metrics, relative_difference
    from clipvqd.evaluation.protocol import image_metrics_entry, make_entry, sampling_description
    from clipvqd.evaluation.resampled import precision_recall_indicators
    from clipvqd.manifest import read_manifest

    ordered = _check_distribution_manifest(manifest, table, prompt_prefix)
    generated = ImageSet.from_manifest(manifest)  # re-hashes every file
    result = image_set_metrics(generated, reference, extractor, cache, kid_subsets=kid_subsets,
                               kid_subset_size=kid_subset_size, seed=seed, device=device)
    check = None
    if cross_check if cross_check is not None else extractor.is_inception:
        check = cleanfid_cross_check(generated, reference, extractor, device=device)
        check["torch_fidelity_fid"] = result["fid"]
        if check["fid"] is not None:
            check["relative_difference"] = relative_difference(result["fid"], check["fid"])
    features = {}
    for space, spec in (("fid", extractor), ("clip", clip_extractor)):
        raw = features_for(generated, spec, cache, device=device)
        features[space] = _features_in_manifest_order(generated, raw, manifest)
        del raw
    # The per-image indicators must give torch-fidelity's precision and recall (they are its definition).
    reference_features = measured.reference_features["fid"]
    precision, recall = precision_recall_indicators(features["fid"], reference_features,
                                                    result["settings"]["prc_neighborhood"])
    for name, indicators in (("precision", precision), ("recall", recall)):
        if abs(float(np.mean(indicators)) - result[name]) > 1e-6:
            raise BranchError(f"{manifest}: per-image {name} indicators average {np.mean(indicators)}, "
                              f"torch-fidelity says {result[name]}")
    estimates = cmmd_module.cmmd_estimates(features["clip"], measured.reference_features["clip"])
    n = len(ordered)
    for name in ("fid", "kid", "precision", "recall"):
        measured.values[name] = (result[name], n)
    measured.values["cmmd"] = (estimates["unbiased"], n)
    set_description = {"name": "distribution", "prompt_table": "one sample per reference image, prompted with "
                       "its own caption", "n": n, "caption_source": sorted(set(table["caption_source"]))}
    measured.entries["image_set_metrics"] = image_metrics_entry(
        extractor=extractor, generated=generated, reference=reference, result=result, sample_manifest=manifest,
        reference_name=reference_name, cross_check=check) | {"evaluation_set": set_description}
    measured.entries["cmmd"] = make_entry(
        "cmmd", metrics=["cmmd"], **cmmd_module.describe(), cmmd_biased=estimates["biased"],
        feature_extractor=clip_extractor.describe(), approximation=(
            f"measured on {clip_extractor.description} embeddings, not the paper's CLIP ViT-L/14@336px: "
            "comparable between the methods of this report only"),
        generated={**generated.describe(), "sampling": sampling_description(read_manifest(manifest, verify=False))},
        reference=reference.describe() | ({"name": reference_name} if reference_name else {}),
        evaluation_set=set_description)
    return features


def evaluate_branch(alignment: Sequence[str | Path], distribution: Sequence[str | Path], seeds: Sequence[int],
                    prompts, distribution_prompts, conditioner, judge, oracle=None, *, method: str,
                    variant: str = "default", evaluation_set: str = "alignment", prompt_prefix: str = "",
                    out_metrics, out_by_seed, out_units, out_features, out_protocol, out_candidates=None,
                    cache_dir=None, inception_weights=None, inception_sha256: str | None = None,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, cross_check: str = "auto",
                    reference_name: str | None = None, bootstrap: BootstrapSettings | None = None, seed: int = 0,
                    device: str = "cpu", plans: Sequence[tuple] | None = None) -> pd.DataFrame:
    """Measure one branch from files and write everything its metrics job declares; return the table.

    `alignment[i]` and `distribution[i]` are the sample manifests of training seed `seeds[i]`. `prompts` is the
    alignment set's prompt table (test or validation: `evaluation_set` names it), `distribution_prompts` the
    distribution set's (a manifest of the matched reference images). `conditioner` and `judge` are CLIP files:
    CLIPscore with each; the judge's image tower gives CMMD's embeddings, and FID's features when no
    `inception_weights` file is given. `oracle`: the attribute oracle (worlds). `cross_check`: "auto"
    (clean-fid only with Inception), "always" or "never". `seed`: KID's subset draws. `plans`: one
    (alignment plan, distribution plan) pair of `clipvqd.samples.SamplePlan` per seed; every sample set must
    hold exactly its plan, and every listed path stay in its folder, checked before anything is loaded.
    """
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.evaluation.features import (
        FeatureCache,
        ImageSet,
        clip_feature_extractor,
        features_for,
        select_feature_extractor,
    )
    from clipvqd.evaluation.protocol import ProtocolRecord, combine_seed_entries
    from clipvqd.evaluation.sets import check_distribution_prompts
    from clipvqd.evaluation.table import BY_SEED_COLUMNS, metric_row, seed_row, write_metrics_table
    from clipvqd.evaluation.uncertainty import DistributionFeatures, branch_intervals, interval_kind, write_units
    from clipvqd.manifest import read_manifest

    bootstrap = bootstrap or BootstrapSettings()
    seeds = [int(s) for s in seeds]
    if not (len(alignment) == len(distribution) == len(seeds)) or not seeds:
        raise BranchError(f"one alignment and one distribution manifest per seed: got {len(alignment)} and "
                          f"{len(distribution)} for seeds {seeds}")
    if len(set(seeds)) != len(seeds):
        raise BranchError(f"seeds {seeds} repeat a value")
    if cross_check not in CROSS_CHECK:
        raise BranchError(f"cross_check must be one of {sorted(CROSS_CHECK)}, got {cross_check!r}")
    if inception_weights and not inception_sha256:
        raise BranchError(f"Inception weights {inception_weights} need their sha256 (the file is a pickle)")
    read_manifest(distribution_prompts, verify=False)  # its reference paths stay in its folder; hashed below
    table = pd.read_csv(distribution_prompts, keep_default_na=False, dtype=str)
    check_distribution_prompts(table, distribution_prompts)
    if plans is not None:
        check_sample_sets(alignment, distribution, seeds, plans)

    conditioner_clip = ClipEncoder.load(conditioner, device=device)
    judge_clip = ClipEncoder.load(judge, device=device)
    extractor = select_feature_extractor(inception_weights, inception_sha256, offline_clip=judge_clip,
                                         offline_label="judge-clip")
    clip_extractor = extractor if not extractor.is_inception else clip_feature_extractor(judge_clip, "judge-clip")
    log.info("feature extractor: %s%s", extractor.description,
             f" ({extractor.approximation})" if extractor.approximation else "")
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    reference = ImageSet.from_manifest(distribution_prompts)
    reference_features = {}
    for space, spec in (("fid", extractor), ("clip", clip_extractor)):
        reference_features[space] = _features_in_manifest_order(
            reference, features_for(reference, spec, cache, device=device), distribution_prompts)

    per_seed: dict[int, _SeedMeasurements] = {}
    generated_features: dict[str, dict[int, torch.Tensor]] = {"fid": {}, "clip": {}}
    for seed_value, alignment_manifest, distribution_manifest in zip(seeds, alignment, distribution):
        measured = per_seed[seed_value] = _SeedMeasurements(reference_features)
        _measure_alignment(alignment_manifest, prompts, conditioner_clip, judge_clip, oracle,
                           evaluation_set=evaluation_set, measured=measured)
        features = _measure_distribution(
            distribution_manifest, table, reference, extractor, clip_extractor, cache, prompt_prefix=prompt_prefix,
            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed, cross_check=CROSS_CHECK[cross_check],
            reference_name=reference_name, device=device, measured=measured)
        for space, tensor in features.items():
            generated_features[space][seed_value] = tensor
        log.info("seed %d: %s", seed_value, {k: round(v, 4) for k, (v, _) in measured.values.items()})

    units = pd.DataFrame([dict(unit, seed=s) for s, m in per_seed.items() for unit in m.units])
    features = DistributionFeatures(
        prompt_ids=list(table["prompt_id"]), neighborhood=3,
        spaces={space: {"reference": reference_features[space], "generated": generated_features[space]}
                for space in ("fid", "clip")},
        identities={"fid": extractor.identity_sha256(), "clip": clip_extractor.identity_sha256()})

    metric_names = list(dict.fromkeys(name for m in per_seed.values() for name in m.values))
    missing = {name: [s for s, m in per_seed.items() if name not in m.values] for name in metric_names}
    missing = {name: seeds_without for name, seeds_without in missing.items() if seeds_without}
    if missing:
        raise BranchError(f"metrics not measured on every seed: {missing}")
    intervals = branch_intervals(metric_names, units, features, bootstrap)

    # One protocol entry per measurement group, describing every seed and how its intervals were drawn.
    record = ProtocolRecord()
    group_of = {"fid": "image_set_metrics", "kid": "image_set_metrics", "precision": "image_set_metrics",
                "recall": "image_set_metrics", "cmmd": "cmmd", "clipscore_best16": "clipscore_generator",
                "clipscore_mean": "clipscore_generator", "clipscore_judge_mean": "clipscore_judge",
                "within_prompt_diversity": "within_prompt_diversity"}
    groups = list(dict.fromkeys(group for m in per_seed.values() for group in m.entries))
    entry_ids = {}
    for group in groups:
        group_metrics = [name for name in metric_names if group_of.get(name, "attribute_accuracy") == group]
        distribution_group = group in ("image_set_metrics", "cmmd")
        units_name = ("distribution-set images (a generated image and its reference together; precision over "
                      "generated images with the reference fixed, recall over reference images with the "
                      "generated set fixed)" if distribution_group else "prompts")
        kinds = {name: interval_kind(name) for name in group_metrics if interval_kind(name) != "percentile"}
        interval = {"bootstrap": bootstrap.describe(units_name, kinds),
                    "without_interval": {name: intervals[name] for name in group_metrics
                                         if isinstance(intervals[name], str)}}
        entry_ids[group] = record.add(combine_seed_entries({s: m.entries[group] for s, m in per_seed.items()},
                                                           interval=interval, value="mean over the seeds"))

    rows, seed_rows = [], []
    for name in metric_names:
        protocol = entry_ids[group_of.get(name, "attribute_accuracy")]
        counts = {m.values[name][1] for m in per_seed.values()}
        if len(counts) != 1:
            raise BranchError(f"{name} was measured on different numbers of samples across seeds: {sorted(counts)}")
        value = float(np.mean([m.values[name][0] for m in per_seed.values()]))
        interval = intervals[name]
        low, high = interval if not isinstance(interval, str) else (None, None)
        rows.append(metric_row(method, variant, name, value, counts.pop(), protocol, low, high))
        seed_rows += [seed_row(method, variant, s, name, m.values[name][0], m.values[name][1], protocol)
                      for s, m in per_seed.items()]

    write_units(units.assign(seed=units["seed"].astype(int)), out_units)
    features.write(out_features)
    record.files = {role: listed_file(out_protocol, path) for role, path in (("units", out_units),
                                                                             ("features", out_features))}
    record.write(out_protocol)
    write_metrics_table(seed_rows, out_by_seed, protocol_ids=record.ids(), columns=BY_SEED_COLUMNS)
    if out_candidates is not None:
        _write_candidates(per_seed, alignment, out_candidates)
    return write_metrics_table(rows, out_metrics, protocol_ids=record.ids())


def listed_file(record_path, path) -> dict:
    """How a branch's protocol record lists another file its job wrote: its path relative to the record's
    folder and its sha256 (the report refuses a units table or feature file that is not that file)."""
    import os

    from clipvqd.hashing import sha256_file

    relative = os.path.relpath(Path(path).resolve(), Path(record_path).resolve().parent)
    return {"path": Path(relative).as_posix(), "sha256": sha256_file(path)}


def _write_candidates(per_seed: dict[int, _SeedMeasurements], alignment, out_candidates) -> None:
    """Every seed's best-of-16 candidates with a `seed_branch` column; only the header when best-of-16 was not
    measured (a declared output either way)."""
    from clipvqd.manifest import read_manifest

    frames = [m.candidates.assign(seed_branch=s) for s, m in per_seed.items() if m.candidates is not None]
    Path(out_candidates).parent.mkdir(parents=True, exist_ok=True)
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(out_candidates, index=False)
        return
    columns = list(read_manifest(alignment[0], verify=False).columns) + list(CANDIDATE_COLUMNS) + ["seed_branch"]
    pd.DataFrame(columns=columns).to_csv(out_candidates, index=False)
