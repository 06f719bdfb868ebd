"""`python -m clipvqd cost predict`: GPU-hours per stage of a run, from its config and per-step measurements
(clipvqd.paper_cost)."""

from __future__ import annotations

import json
from pathlib import Path

from clipvqd.cli_args import add_command, commands, output_arguments


def cmd_predict(args) -> None:
    from clipvqd.paper_cost import (dataset_sizes, format_markdown, load_rates, parse_dry_run, plan_jobs, predict,
                                    resolve_config, stage_table, total_hours)

    configfiles = args.configfile
    config = resolve_config(configfiles)
    if args.dry_run:
        jobs = parse_dry_run(Path(args.dry_run).read_text())
    else:
        jobs = plan_jobs(configfiles, workdir=Path(configfiles[0]).resolve().parent)
    sizes = dataset_sizes(config, Path(configfiles[0]).resolve().parent)
    rates = load_rates(args.measurements)
    stages = predict(jobs, config, sizes, rates)
    gpu_hours, wall_low, wall_high = total_hours(stages, args.gpus)
    print(f"run '{config['run']}' ({' '.join(map(str, configfiles))}): {len(jobs)} jobs; {sizes['train']:,} training "
          f"images, {sizes['reference']:,} reference images, {sizes['prompts']:,} prompts "
          f"({sizes['alignment']:,} images per alignment set, {sizes['distribution']:,} per distribution set)")
    print(format_markdown(stages, args.gpus))
    print(f"\nTotal: {gpu_hours:,.0f} GPU-hours; wall on 1 GPU {gpu_hours:,.0f} h; on {args.gpus} GPUs between "
          f"{wall_low:,.0f} h (GPU-hours / {args.gpus}, or the longest one-GPU job) and {wall_high:,.0f} h (the stages "
          f"one after another), with ideal DDP scaling of the diffusion trainers and one GPU for every other job.")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config_files": list(map(str, configfiles)), "gpus": args.gpus, "sizes": sizes,
            "rates": {name: vars(rate) for name, rate in rates.items()},
            "stages": stage_table(stages, args.gpus), "total_gpu_hours": round(gpu_hours, 2),
            f"wall_hours_{args.gpus}_gpus_lower_bound": round(wall_low, 2),
            f"wall_hours_{args.gpus}_gpus_upper_bound": round(wall_high, 2)}, indent=2) + "\n")


def register(group) -> None:
    table = commands(group)
    sub = add_command(table, "predict", cmd_predict,
                      "GPU-hours per stage and in total of a run's config, on 1 GPU and on N under DDP, from "
                      "per-step measurements (benchmarks/paper_steps_gpu.py) or derived rates")
    sub.add_argument("--configfile", nargs="+", required=True,
                     help="config files as Snakemake reads them, config.yaml first (e.g. config.yaml configs/ffhq.yaml); "
                          "the jobs come from `snakemake -n` with them, in config.yaml's folder")
    sub.add_argument("--measurements", nargs="+", required=True,
                     help="JSON files with a 'rates' block; a later file's rate replaces an earlier one's")
    sub.add_argument("--gpus", type=int, default=8, help="N for the multi-GPU column")
    sub.add_argument("--dry-run", default=None, help="read the jobs from this saved `snakemake -n` output instead")
    sub.add_argument("--json", default=None, help="also write the table as JSON here")
    output_arguments(sub, "json")
