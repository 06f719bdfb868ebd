"""`python -m clipvqd evaluate metrics | report` (rules metrics and report): each command checks its
arguments and makes one library call."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, json_mapping, json_object


def cmd_metrics(args) -> None:
    import logging

    from clipvqd.evaluation import evaluate_branch
    from clipvqd.evaluation.bootstrap import BootstrapError, BootstrapSettings
    from clipvqd.evaluation.branch import BranchError

    if args.inception_weights and not args.inception_sha256:
        raise SystemExit(f"--inception-weights {args.inception_weights} needs --inception-sha256 (the file is a pickle)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clipvqd").setLevel(logging.INFO)  # the feature extractor, feature cache hits and misses
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
            reference_name=args.reference_name, bootstrap=bootstrap, seed=args.seed, device=args.device)
    except (BranchError, BootstrapError) as error:
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
    from clipvqd.report import ReportError, build_report

    try:
        bootstrap = BootstrapSettings(args.bootstrap_replicates, args.confidence, args.bootstrap_seed)
        index = build_report(args.out_dir, args.tables, args.protocols, args.metrics_out, args.protocol_out,
                             by_seed=args.by_seed, by_seed_out=args.by_seed_out, units=args.units,
                             features=args.features, significance_out=args.significance_out, design=args.design,
                             bootstrap=bootstrap, significance_level=args.significance_level,
                             oracle_calibration=args.oracle_calibration, sample_grids=args.grids,
                             training_curves=args.curves, quality_files=args.quality,
                             benchmark_files=args.benchmarks, benchmark_dirs=args.benchmarks_dir,
                             paper_rows=args.paper_rows, title=args.title, run_name=args.run_name)
    except (ReportError, BootstrapError) as error:
        raise SystemExit(str(error)) from None
    print(f"report written to {index}")


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    met = add_command(table, "metrics", cmd_metrics,
                      "every metric of one method/variant over its seeds, with 95% intervals")
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
    met.add_argument("--device", default="cpu")
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
    rep.add_argument("--protocol-out", required=True, help="merged protocol.json (inside --out-dir)")
    rep.add_argument("--out-dir", required=True, help="report folder; index.html, figures/ and assets/ go there")
    rep.add_argument("--grids", type=json_mapping, default={}, help='{"label": sample manifest.csv or grid image}')
    rep.add_argument("--curves", type=json_mapping, default={}, help='{"model": training curve CSV}')
    rep.add_argument("--quality", type=json_mapping, default={}, help='{"group": metrics.json}')
    rep.add_argument("--benchmarks", nargs="*", default=[], help="Snakemake benchmark TSVs")
    rep.add_argument("--benchmarks-dir", nargs="*", default=[],
                     help="folders whose *.tsv benchmark files (as they exist now) are read")
    rep.add_argument("--paper-rows", default=None,
                     help="JSON list of cited numbers (method, metric, value, source[, dataset, note])")
    rep.add_argument("--title", default="clipvqd comparison report")
    rep.add_argument("--run-name", default=None)
