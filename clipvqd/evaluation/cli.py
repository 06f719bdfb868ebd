"""`python -m clipvqd evaluate metrics | report` (rules metrics and report): each command checks its
arguments and makes one library call."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import (add_command, commands, compute_arguments, json_mapping, json_object,
                              output_arguments, positive_int)


def sample_plans(args) -> list[tuple]:
    """The plan of every seed's alignment and distribution set, [(alignment plan, distribution plan)] in the
    order of --seeds: the same prompts and counts for every seed, each drawn from its own sampling seed."""
    from clipvqd.samples import SamplePlan

    for name in ("sample_seeds", "distribution_sample_seeds"):
        if len(getattr(args, name)) != len(args.seeds):
            raise SystemExit(f"--{name.replace('_', '-')} gives {len(getattr(args, name))} seed(s) for "
                             f"{len(args.seeds)} training seed(s) (--seeds): one per seed")
    return [(SamplePlan(args.prompts, args.samples_per_prompt, alignment_seed, args.prompt_prefix,
                        best_of_prompts=args.best_of_prompts),
             SamplePlan(args.distribution_prompts, 1, distribution_seed, args.prompt_prefix))
            for alignment_seed, distribution_seed in zip(args.sample_seeds, args.distribution_sample_seeds)]


def cmd_metrics(args) -> None:
    import logging

    from clipvqd.evaluation import evaluate_branch
    from clipvqd.evaluation.bootstrap import BootstrapError, BootstrapSettings
    from clipvqd.evaluation.branch import BranchError
    from clipvqd.manifest import ManifestError
    from clipvqd.samples import SampleSetError

    if args.inception_weights and not args.inception_sha256:
        raise SystemExit(f"--inception-weights {args.inception_weights} needs --inception-sha256 (the file is a pickle)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clipvqd").setLevel(logging.INFO)  # the feature extractor, feature cache hits and misses
    plans = sample_plans(args)
    try:
        bootstrap = BootstrapSettings(args.bootstrap_replicates, args.confidence, args.bootstrap_seed)
        table = evaluate_branch(
            args.samples, args.distribution_samples, args.seeds, args.prompts, args.distribution_prompts,
            args.conditioner, args.judge, args.oracle, method=args.method, variant=args.variant,
            evaluation_set=args.evaluation_set, prompt_prefix=args.prompt_prefix, out_metrics=args.out,
            out_by_seed=args.by_seed_out, out_units=args.units_out, out_features=args.features_out,
            out_protocol=args.protocol_out, out_candidates=args.candidates, cache_dir=args.cache_dir,
            inception_weights=args.inception_weights, inception_sha256=args.inception_sha256,
            kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, cross_check=args.cross_check,
            reference_name=args.reference_name, bootstrap=bootstrap, seed=args.seed, device=args.device,
            plans=plans)
    except (BranchError, BootstrapError, ManifestError, SampleSetError) as error:  # named: no traceback needed
        raise SystemExit(str(error)) from None
    print(table.to_string(index=False))


def cmd_distribution_prompts(args) -> None:
    from clipvqd.evaluation.sets import EvaluationSetError, distribution_prompt_table

    try:
        table = distribution_prompt_table(args.reference, args.out, count=args.count,
                                          generic_prompt=args.generic_prompt, world_summary=args.world_summary,
                                          seed=args.seed)
    except EvaluationSetError as error:
        raise SystemExit(str(error)) from None
    print(f"{len(table)} distribution-set prompts ({table['caption_source'].iloc[0]}) written to {args.out}")


def cmd_report(args) -> None:
    from clipvqd.evaluation.bootstrap import BootstrapError, BootstrapSettings
    from clipvqd.evaluation.compute import ComputeCostError
    from clipvqd.report import ReportError, build_report
    from clipvqd.samples import SamplePlan

    given = [args.prompts is not None, args.samples_per_prompt is not None, args.sample_seed is not None]
    if any(given) and not all(given):
        raise SystemExit("--prompts, --samples-per-prompt and --sample-seed state the sample plan together")
    plan = (SamplePlan(args.prompts, args.samples_per_prompt, args.sample_seed, args.prompt_prefix,
                       best_of_prompts=args.best_of_prompts) if all(given) else None)
    try:
        bootstrap = BootstrapSettings(args.bootstrap_replicates, args.confidence, args.bootstrap_seed)
        index = build_report(args.out_dir, args.tables, args.protocols, args.metrics_out, args.protocol_out,
                             by_seed=args.by_seed, by_seed_out=args.by_seed_out, units=args.units,
                             features=args.features, significance_out=args.significance_out, design=args.design,
                             bootstrap=bootstrap, significance_level=args.significance_level,
                             oracle_calibration=args.oracle_calibration, sample_grids=args.grids,
                             training_curves=args.curves, quality_files=args.quality,
                             benchmark_files=args.benchmarks, benchmark_dirs=args.benchmarks_dir,
                             paper_rows=args.paper_rows, title=args.title, run_name=args.run_name, plan=plan,
                             training_stages=args.training_stages, machine_speed=args.machine_speed,
                             compute_curve=args.compute_curve)
    except (ReportError, BootstrapError, ComputeCostError) as error:
        raise SystemExit(str(error)) from None
    print(f"report written to {index}")


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    met = add_command(table, "metrics", cmd_metrics,
                      "every metric of one method/variant over its seeds, with bootstrap intervals")
    met.add_argument("--samples", nargs="+", required=True,
                     help="the alignment sets' sample manifests, one per seed (the prompt table's samples)")
    met.add_argument("--distribution-samples", nargs="+", required=True,
                     help="the distribution sets' sample manifests, one per seed, in the order of --seeds")
    met.add_argument("--seeds", nargs="+", type=int, required=True, help="the training seed of each manifest")
    met.add_argument("--prompts", required=True, help="the alignment set's prompt table (prompt_id, prompt, ood, "
                                                      "attributes)")
    met.add_argument("--evaluation-set", choices=("alignment", "validation"), default="alignment",
                     help="alignment: the test prompts; validation: a tuning run's validation prompts")
    met.add_argument("--distribution-prompts", required=True,
                     help="the distribution set's prompt table, a manifest of the reference images it pairs with")
    met.add_argument("--prompt-prefix", default="", help="the data.prompt_prefix the samples were prompted with")
    met.add_argument("--samples-per-prompt", type=positive_int, required=True,
                     help="the alignment sets' plan: images of every prompt (sampling.samples_per_prompt)")
    met.add_argument("--best-of-prompts", type=int, default=0,
                     help="... and how many first prompts have 16 (sampling.best_of_prompts)")
    met.add_argument("--sample-seeds", nargs="+", type=int, required=True,
                     help="the seed each alignment set was drawn from, in the order of --seeds")
    met.add_argument("--distribution-sample-seeds", nargs="+", type=int, required=True,
                     help="the seed each distribution set (one image per row of its table) was drawn from")
    met.add_argument("--conditioner", required=True, help="CLIP file that conditioned the generators (CLIPscore)")
    met.add_argument("--judge", required=True, help="CLIP file that conditioned no generator (judge CLIPscore, "
                                                     "CMMD; FID features when no Inception file is given)")
    met.add_argument("--oracle", default=None, help="attribute oracle (worlds): attr_acc, attr_acc_ood")
    met.add_argument("--method", required=True)
    met.add_argument("--variant", default="default")
    met.add_argument("--cache-dir", required=True, help="feature cache shared by every metrics job")
    met.add_argument("--inception-weights", default=None, help="local torch-fidelity InceptionV3 weights file")
    met.add_argument("--inception-sha256", default=None, help="its sha256 (required with it)")
    met.add_argument("--kid-subsets", type=int, default=100)
    met.add_argument("--kid-subset-size", type=int, default=1000,
                     help="shrunk to the smaller image set when that has fewer images")
    met.add_argument("--cross-check", choices=("auto", "always", "never"), default="auto",
                     help="clean-fid cross-check of FID (auto: only with Inception)")
    met.add_argument("--reference-name", default=None, help="name of the reference set in the protocol")
    met.add_argument("--bootstrap-replicates", type=int, default=1000, help="bootstrap resamples per interval")
    met.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's random generator")
    met.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals")
    met.add_argument("--seed", type=int, default=0, help="KID subset draws")
    met.add_argument("--out", required=True, help="the branch's metrics table (CSV), values with intervals")
    met.add_argument("--by-seed-out", required=True, help="the branch's per-seed values (CSV)")
    met.add_argument("--units-out", required=True, help="per-prompt sums of every alignment metric (CSV)")
    met.add_argument("--features-out", required=True, help="the distribution sets' features (safetensors)")
    met.add_argument("--protocol-out", required=True, help="the branch's protocol record (JSON)")
    met.add_argument("--candidates", default=None, help="best-of-16 candidates with rank and chosen flag (CSV)")
    compute_arguments(met)
    output_arguments(met, "by_seed_out", "units_out", "features_out")
    dis = add_command(table, "distribution-prompts", cmd_distribution_prompts,
                      "the distribution set's prompts: one per reference image, its own caption")
    dis.add_argument("--reference", required=True, help="the reference split's manifest (with a caption column)")
    dis.add_argument("--out", required=True)
    dis.add_argument("--count", type=lambda text: None if text == "none" else int(text), default=None,
                     help="a seeded subset of this many reference images ('none': all)")
    dis.add_argument("--generic-prompt", default=None, help="the prompt of every image when the reference has no "
                                                            "captions (FFHQ)")
    dis.add_argument("--world-summary", default=None, help="a world's world.json: refuse held-out combinations")
    dis.add_argument("--seed", type=int, default=0)
    rep = add_command(table, "report", cmd_report, "merge the branch tables and write the HTML report")
    rep.add_argument("--tables", nargs="+", required=True, help="per-branch metrics tables")
    rep.add_argument("--protocols", nargs="+", required=True, help="per-branch protocol records, same order")
    rep.add_argument("--by-seed", nargs="*", default=[], help="per-branch per-seed tables, same order")
    rep.add_argument("--units", nargs="*", default=[], help="per-branch units tables (paired comparisons), same order")
    rep.add_argument("--features", nargs="*", default=[],
                     help="per-branch distribution features (paired comparisons), same order")
    rep.add_argument("--metrics-out", required=True, help="merged metrics.csv (inside --out-dir)")
    rep.add_argument("--by-seed-out", default=None, help="merged metrics_by_seed.csv (inside --out-dir)")
    rep.add_argument("--significance-out", default=None, help="significance.csv: differences from CLIP-VQDiffusion")
    rep.add_argument("--design", type=json_object, default=None, help="protocol.json's description of the evaluation")
    rep.add_argument("--bootstrap-replicates", type=int, default=1000)
    rep.add_argument("--bootstrap-seed", type=int, default=0)
    rep.add_argument("--confidence", type=float, default=0.95)
    rep.add_argument("--significance-level", type=float, default=0.05)
    rep.add_argument("--oracle-calibration", default=None, help="the oracle's accuracy on degraded renders (JSON)")
    rep.add_argument("--machine-speed", default=None,
                     help="the run's machine-speed calibration (`python -m clipvqd calibrate --out`, JSON)")
    rep.add_argument("--protocol-out", required=True, help="merged protocol.json (inside --out-dir)")
    rep.add_argument("--out-dir", required=True, help="report folder; index.html, figures/ and assets/ go there")
    rep.add_argument("--grids", type=json_mapping, default={}, help='{"label": sample manifest.csv or grid image}')
    rep.add_argument("--curves", type=json_mapping, default={}, help='{"model": training curve CSV}')
    rep.add_argument("--quality", type=json_mapping, default={}, help='{"group": metrics.json}')
    rep.add_argument("--benchmarks", nargs="*", default=[], help="Snakemake benchmark TSVs")
    rep.add_argument("--benchmarks-dir", nargs="*", default=[],
                     help="folders whose *.tsv benchmark files (as they exist now) are read")
    rep.add_argument("--training-stages", type=json_object, default={},
                     help='{"method": [one {"stage": {"benchmark", "sidecar", "weights", "shared"}} per seed]}: '
                          "each method's training cost (clipvqd.evaluation.compute)")
    rep.add_argument("--compute-curve", type=json_object, default={},
                     help='{"method": [{"fraction", "table", "stages": [per seed {"stage": {...}}]}]}: quality versus '
                          "training compute (clipvqd.evaluation.compute_curve), drawn when given")
    rep.add_argument("--paper-rows", default=None,
                     help="JSON list of cited numbers (method, metric, value, source[, dataset, note])")
    rep.add_argument("--prompts", default=None, help="the sample plan the grids' manifests must hold: prompt table")
    rep.add_argument("--samples-per-prompt", type=positive_int, default=None, help="... images of every prompt")
    rep.add_argument("--best-of-prompts", type=int, default=0, help="... and how many first prompts have 16")
    rep.add_argument("--sample-seed", type=int, default=None, help="... and the seed they were drawn from")
    rep.add_argument("--prompt-prefix", default="", help="... and the prefix CLIP read before each prompt")
    output_arguments(rep, "by_seed_out", "significance_out")
    rep.add_argument("--title", default="clipvqd comparison report")
    rep.add_argument("--run-name", default=None)
