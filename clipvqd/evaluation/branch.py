"""The metrics of one branch (one method at one sweep point): every number the `metrics` rule writes.

`evaluate_branch` is the whole job from files (the way torch-fidelity's `calculate_metrics` takes its
inputs and returns every metric): it loads the two CLIPs, picks the FID feature extractor, decides whether
best-of-16 can be measured, and writes the table, the protocol record and the best-of-16 candidates.
`evaluate_samples` does the measuring on objects already loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

BEST_OF = 16  # the paper's FFHQ protocol; the table names only clipscore_best16
CANDIDATE_COLUMNS = ("clipscore", "rank", "chosen")
CROSS_CHECK = {"auto": None, "always": True, "never": False}  # None: only with Inception

log = logging.getLogger(__name__)


def evaluate_samples(samples_manifest, reference_manifest=None, *, method: str, variant: str = "default",
                     extractor=None, cache_dir=None, generator_clip=None, generator_label: str = "generator-clip",
                     judge_clip=None, judge_label: str = "judge-clip", oracle=None, prompts=None,
                     best_of: int | None = 16, cross_check: bool | None = None, reference_name: str | None = None,
                     out_metrics=None, out_protocol=None, out_candidates=None, device: str = "cpu",
                     kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 2020):
    """Everything one metrics job measures for one method/variant, as (table rows, ProtocolRecord).

    * FID/KID/precision/recall against `reference_manifest` with `extractor` (a FeatureExtractorSpec from
      `features.select_feature_extractor`), features cached under `cache_dir`; clean-fid cross-check when
      `cross_check` (default: only for Inception, where it is meaningful and affordable).
    * `clipscore_best16` (when `best_of` is 16) and `clipscore_mean` with `generator_clip`;
      `clipscore_judge_mean` with `judge_clip`. Best-of-N candidates go to `out_candidates` (CSV, every
      sample with its rank and a `chosen` flag; only the header when best-of-N was not measured).
    * attr_acc, attr_acc_ood and attr_acc/<attribute> with the attribute `oracle` (a file; worlds only),
      for the prompt table `prompts`.
    Any part is skipped when its input is None. Writes `out_metrics` / `out_protocol` if given.
    """
    from clipvqd.evaluation.clipscore import score_manifest, select_best_of_n, summarize_clipscores
    from clipvqd.evaluation.features import FeatureCache, ImageSet
    from clipvqd.evaluation.fid import cleanfid_cross_check, image_set_metrics, relative_difference
    from clipvqd.evaluation.protocol import ProtocolRecord, clipscore_entry, image_metrics_entry
    from clipvqd.evaluation.table import rows_from_metrics, write_metrics_table

    if oracle is not None and prompts is None:
        raise ValueError(f"{samples_manifest}: attribute accuracy needs the prompt table (prompts=None)")
    record, rows = ProtocolRecord(), []
    candidates_written = False
    verified = False  # re-hash the sample files once, whichever part reads them first
    if reference_manifest is not None:
        if extractor is None:
            raise ValueError(f"{samples_manifest}: FID needs a feature extractor (extractor=None)")
        generated, reference = ImageSet.from_manifest(samples_manifest), ImageSet.from_manifest(reference_manifest)
        verified = True
        cache = FeatureCache(cache_dir) if cache_dir is not None else None
        result = image_set_metrics(generated, reference, extractor, cache, kid_subsets=kid_subsets,
                                   kid_subset_size=kid_subset_size, seed=seed, device=device)
        check = None
        if (cross_check if cross_check is not None else extractor.is_inception):
            check = cleanfid_cross_check(generated, reference, extractor, device=device)
            check["torch_fidelity_fid"] = result["fid"]
            if check["fid"] is not None:
                check["relative_difference"] = relative_difference(result["fid"], check["fid"])
        protocol_id = record.add(image_metrics_entry(
            extractor=extractor, generated=generated, reference=reference, result=result,
            sample_manifest=samples_manifest, reference_name=reference_name, cross_check=check))
        values = {name: (result[name], result["n_generated"]) for name in ("fid", "kid", "precision", "recall")}
        rows += rows_from_metrics(method, variant, values, protocol_id)
    if generator_clip is not None:
        scores = score_manifest(generator_clip, samples_manifest, verify=not verified)
        verified = True
        protocol_id = record.add(clipscore_entry(
            clip_label=generator_label, clip_identity=generator_clip.identity, role="generator", scores=scores,
            best_of=best_of, sample_manifest=samples_manifest,
            input_resolution=getattr(generator_clip, "input_resolution", None)))
        rows += rows_from_metrics(method, variant, summarize_clipscores(scores, "generator", best_of), protocol_id)
        if out_candidates is not None and best_of is not None:
            Path(out_candidates).parent.mkdir(parents=True, exist_ok=True)
            select_best_of_n(scores, best_of).candidates.to_csv(out_candidates, index=False)
            candidates_written = True
    if judge_clip is not None:
        scores = score_manifest(judge_clip, samples_manifest, verify=not verified)
        protocol_id = record.add(clipscore_entry(
            clip_label=judge_label, clip_identity=judge_clip.identity, role="judge", scores=scores,
            best_of=None, sample_manifest=samples_manifest,
            input_resolution=getattr(judge_clip, "input_resolution", None)))
        rows += rows_from_metrics(method, variant, summarize_clipscores(scores, "judge"), protocol_id)
    if oracle is not None:
        from clipvqd.evaluation.attributes import attribute_accuracy_rows

        rows += attribute_accuracy_rows(oracle, samples_manifest, prompts, method, variant, record)
    if out_candidates is not None and not candidates_written:
        _write_empty_candidates(samples_manifest, out_candidates)
    if out_protocol is not None:
        record.write(out_protocol)
    if out_metrics is not None:
        write_metrics_table(rows, out_metrics, protocol_ids=record.ids())
    return rows, record


def _write_empty_candidates(samples_manifest, out_candidates) -> None:
    """A declared output even when best-of-N was not measured: the header alone says so."""
    import pandas as pd

    from clipvqd.manifest import read_manifest

    columns = list(read_manifest(samples_manifest, verify=False).columns) + list(CANDIDATE_COLUMNS)
    Path(out_candidates).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns=columns).to_csv(out_candidates, index=False)


def fewest_samples_per_prompt(samples_manifest) -> int:
    """The smallest number of samples any prompt of the set has (0 for a set without prompts)."""
    from clipvqd.manifest import read_manifest

    frame = read_manifest(samples_manifest, verify=False)
    if "prompt_id" not in frame.columns or frame.empty:
        return 0
    return int(frame.groupby("prompt_id").size().min())


def check_sample_set(samples_manifest, plan) -> None:
    """Refuse a sample set that does not hold exactly its plan (a `clipvqd.samples.SamplePlan`), or that
    lists a path outside its folder, before anything is measured."""
    from clipvqd.manifest import read_manifest

    plan.check(read_manifest(samples_manifest, verify=False), samples_manifest)


def evaluate_branch(samples, reference, prompts, conditioner, judge, oracle=None, *, method: str,
                    variant: str = "default", out_metrics, out_protocol, out_candidates=None, cache_dir=None,
                    inception_weights=None, inception_sha256: str | None = None, kid_subsets: int = 100,
                    kid_subset_size: int = 1000, cross_check: str = "auto", reference_name: str | None = None,
                    seed: int = 0, device: str = "cpu", plan=None):
    """Measure one branch from files and write its table, protocol record and best-of-16 candidates.

    `conditioner` and `judge` are CLIP files (CLIPscore with each; the judge conditioned no generator, so
    its image tower gives the FID features when no `inception_weights` file is given); `oracle` an
    attribute oracle file (worlds). `cross_check` is "auto" (clean-fid only with Inception), "always" or
    "never". best-of-16 is measured only when every prompt has at least 16 samples. `plan` (a
    `clipvqd.samples.SamplePlan`): the sample set must hold exactly it, checked before anything is
    loaded. Returns the table.
    """
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.evaluation.features import select_feature_extractor
    from clipvqd.evaluation.table import write_metrics_table

    if cross_check not in CROSS_CHECK:
        raise ValueError(f"cross_check must be one of {sorted(CROSS_CHECK)}, got {cross_check!r}")
    if inception_weights and not inception_sha256:
        raise ValueError(f"Inception weights {inception_weights} need their sha256 (the file is a pickle)")
    if plan is not None:
        check_sample_set(samples, plan)
    conditioner_clip = ClipEncoder.load(conditioner, device=device)
    judge_clip = ClipEncoder.load(judge, device=device)
    extractor = select_feature_extractor(inception_weights, inception_sha256, offline_clip=judge_clip,
                                         offline_label="judge-clip")
    log.info("feature extractor: %s%s", extractor.description,
             f" ({extractor.approximation})" if extractor.approximation else "")
    fewest = fewest_samples_per_prompt(samples)
    best_of = BEST_OF if fewest >= BEST_OF else None
    if best_of is None:
        log.info("clipscore_best16 not measured: %s has %d sample(s) for some prompt, best-of-%d needs %d "
                 "(sampling.samples_per_prompt)", samples, fewest, BEST_OF, BEST_OF)
    rows, record = evaluate_samples(
        samples, reference, method=method, variant=variant, extractor=extractor, cache_dir=cache_dir,
        generator_clip=conditioner_clip, generator_label="conditioner-clip", judge_clip=judge_clip,
        judge_label="judge-clip", oracle=oracle, prompts=prompts, best_of=best_of,
        cross_check=CROSS_CHECK[cross_check], reference_name=reference_name, out_candidates=out_candidates,
        device=device, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    record.write(out_protocol)
    return write_metrics_table(rows, out_metrics, protocol_ids=record.ids())
