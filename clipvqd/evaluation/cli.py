"""`python -m clipvqd evaluate metrics | report` (rules metrics and report): each command checks its
arguments and makes one library call."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, compute_arguments, json_mapping


def cmd_metrics(args) -> None:
    import logging

    from clipvqd.evaluation import evaluate_branch
    from clipvqd.manifest import ManifestError
    from clipvqd.samples import SamplePlan, SampleSetError

    if args.inception_weights and not args.inception_sha256:
        raise SystemExit(f"--inception-weights {args.inception_weights} needs --inception-sha256 (the file is a pickle)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clipvqd").setLevel(logging.INFO)  # the feature extractor, feature cache hits and misses
    plan = SamplePlan(args.prompts, args.samples_per_prompt, args.sample_seed, args.prompt_prefix)
    try:
        table = evaluate_branch(
            args.samples, args.reference, args.prompts, args.conditioner, args.judge, args.oracle, method=args.method,
            variant=args.variant, out_metrics=args.out, out_protocol=args.protocol_out, out_candidates=args.candidates,
            cache_dir=args.cache_dir, inception_weights=args.inception_weights, inception_sha256=args.inception_sha256,
            kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, cross_check=args.cross_check,
            reference_name=args.reference_name, seed=args.seed, device=args.device, plan=plan)
    except (ManifestError, SampleSetError) as error:  # a damaged input, named: no traceback needed
        raise SystemExit(str(error)) from None
    print(table.to_string(index=False))


def cmd_report(args) -> None:
    from clipvqd.report import ReportError, build_report
    from clipvqd.samples import SamplePlan

    given = [args.prompts is not None, args.samples_per_prompt is not None, args.sample_seed is not None]
    if any(given) and not all(given):
        raise SystemExit("--prompts, --samples-per-prompt and --sample-seed state the sample plan together")
    plan = SamplePlan(args.prompts, args.samples_per_prompt, args.sample_seed, args.prompt_prefix) if all(given) else None
    try:
        index = build_report(args.out_dir, args.tables, args.protocols, args.metrics_out, args.protocol_out,
                             sample_grids=args.grids, training_curves=args.curves, quality_files=args.quality,
                             benchmark_files=args.benchmarks, benchmark_dirs=args.benchmarks_dir,
                             paper_rows=args.paper_rows, title=args.title, run_name=args.run_name, plan=plan)
    except ReportError as error:
        raise SystemExit(str(error)) from None
    print(f"report written to {index}")


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    met = add_command(table, "metrics", cmd_metrics,
                      "FID/KID/precision/recall, CLIPscores and attribute accuracy of one method/variant")
    met.add_argument("--samples", required=True, help="the method's sample manifest (PNGs + manifest.csv)")
    met.add_argument("--reference", required=True, help="manifest of the reference split (FID)")
    met.add_argument("--prompts", required=True, help="the prompt table (prompt_id, prompt, ood, attributes)")
    met.add_argument("--conditioner", required=True, help="CLIP file that conditioned the generators (CLIPscore)")
    met.add_argument("--judge", required=True, help="CLIP file that conditioned no generator (judge CLIPscore; "
                                                     "FID features when no Inception file is given)")
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
    met.add_argument("--seed", type=int, default=0, help="KID subset draws")
    met.add_argument("--samples-per-prompt", type=int, required=True,
                     help="the sample plan: images of every prompt the set must hold (sampling.samples_per_prompt)")
    met.add_argument("--sample-seed", type=int, required=True, help="the sample plan: the seed every image was drawn from")
    met.add_argument("--prompt-prefix", default="", help="the sample plan: the prefix CLIP read before each prompt")
    met.add_argument("--out", required=True, help="the branch's metrics table (CSV)")
    met.add_argument("--protocol-out", required=True, help="the branch's protocol record (JSON)")
    met.add_argument("--candidates", default=None, help="best-of-16 candidates with rank and chosen flag (CSV)")
    compute_arguments(met)
    rep = add_command(table, "report", cmd_report, "merge the branch tables and write the HTML report")
    rep.add_argument("--tables", nargs="+", required=True, help="per-branch metrics tables")
    rep.add_argument("--protocols", nargs="+", required=True, help="per-branch protocol records, same order")
    rep.add_argument("--metrics-out", required=True, help="merged metrics.csv (inside --out-dir)")
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
    rep.add_argument("--prompts", default=None, help="the sample plan the grids' manifests must hold: prompt table")
    rep.add_argument("--samples-per-prompt", type=int, default=None, help="... images of every prompt")
    rep.add_argument("--sample-seed", type=int, default=None, help="... and the seed they were drawn from")
    rep.add_argument("--prompt-prefix", default="", help="... and the prefix CLIP read before each prompt")
    rep.add_argument("--title", default="clipvqd comparison report")
    rep.add_argument("--run-name", default=None)
