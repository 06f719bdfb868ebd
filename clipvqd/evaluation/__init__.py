"""Evaluation: image-set metrics (FID/KID/precision-recall), CLIPscore, the tidy table and the protocol.

Every function here takes a method's samples as a manifest (PNGs + `manifest.csv`), so metrics never
know which method made the images (DESIGN §3). Heavy imports (torch-fidelity, clean-fid) stay inside
the submodules that need them.
"""

from clipvqd.evaluation.table import (
    ALLOWED_METHODS,
    ALLOWED_METRICS,
    METRICS_COLUMNS,
    MetricsTableError,
    merge_metrics_tables,
    metric_row,
    parse_variant,
    read_metrics_table,
    validate_metrics_table,
    variant_name,
    write_metrics_table,
)

__all__ = [
    "ALLOWED_METHODS",
    "ALLOWED_METRICS",
    "METRICS_COLUMNS",
    "MetricsTableError",
    "merge_metrics_tables",
    "metric_row",
    "parse_variant",
    "read_metrics_table",
    "validate_metrics_table",
    "variant_name",
    "write_metrics_table",
]


def evaluate_samples(samples_manifest, reference_manifest=None, *, method: str, variant: str = "default",
                     extractor=None, cache_dir=None, generator_clip=None, generator_label: str = "generator-clip",
                     judge_clip=None, judge_label: str = "judge-clip", best_of: int | None = 16,
                     cross_check: bool | None = None, reference_name: str | None = None,
                     out_metrics=None, out_protocol=None, out_candidates=None, device: str = "cpu",
                     kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 2020):
    """Everything one metrics job measures for one method/variant, as (table rows, ProtocolRecord).

    * FID/KID/precision/recall against `reference_manifest` with `extractor` (a FeatureExtractorSpec from
      `features.select_feature_extractor`), features cached under `cache_dir`; clean-fid cross-check when
      `cross_check` (default: only for Inception, where it is meaningful and affordable).
    * `clipscore_best16` (when `best_of` is 16) and `clipscore_mean` with `generator_clip`;
      `clipscore_judge_mean` with `judge_clip`. Best-of-N candidates go to `out_candidates` (CSV, every
      sample with its rank and a `chosen` flag).
    Any of the three parts is skipped when its input is None. Writes `out_metrics` / `out_protocol` if given.
    """
    from clipvqd.evaluation.clipscore import score_manifest, select_best_of_n, summarize_clipscores
    from clipvqd.evaluation.features import FeatureCache, ImageSet
    from clipvqd.evaluation.fid import cleanfid_cross_check, image_set_metrics, relative_difference
    from clipvqd.evaluation.protocol import ProtocolRecord, clipscore_entry, image_metrics_entry
    from clipvqd.evaluation.table import rows_from_metrics

    record, rows = ProtocolRecord(), []
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
            select_best_of_n(scores, best_of).candidates.to_csv(out_candidates, index=False)
    if judge_clip is not None:
        scores = score_manifest(judge_clip, samples_manifest, verify=not verified)
        protocol_id = record.add(clipscore_entry(
            clip_label=judge_label, clip_identity=judge_clip.identity, role="judge", scores=scores,
            best_of=None, sample_manifest=samples_manifest,
            input_resolution=getattr(judge_clip, "input_resolution", None)))
        rows += rows_from_metrics(method, variant, summarize_clipscores(scores, "judge"), protocol_id)
    if out_protocol is not None:
        record.write(out_protocol)
    if out_metrics is not None:
        write_metrics_table(rows, out_metrics, protocol_ids=record.ids())
    return rows, record


def merge_results(metrics_paths, protocol_paths, out_metrics, out_protocol):
    """Join per-branch metrics tables and protocol records into the run's metrics.csv and protocol.json;
    every row must point at an entry of the merged protocol."""
    from clipvqd.evaluation.protocol import merge_protocol_files

    record = merge_protocol_files(protocol_paths, out_protocol)
    return merge_metrics_tables(metrics_paths, out_metrics, protocol_ids=record.ids()), record


__all__ += ["evaluate_samples", "merge_results"]
