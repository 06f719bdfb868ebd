"""`python -m clipvqd oracle train | score`: the attribute oracle's commands (rule oracle_train; `score` is
for use outside the DAG, whose metrics jobs score through `clipvqd.evaluation`)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, output_arguments, trainer_arguments, write_json


def cmd_train(args) -> None:
    from clipvqd.config_blocks import from_mapping
    from clipvqd.oracle import Oracle, OracleConfig, train_oracle

    cfg = from_mapping(OracleConfig, args.params, "oracle")
    train_oracle(args.manifest, args.world, cfg, args.work, args.out, args.curve, seed=args.seed)
    oracle = Oracle(args.out)
    held_out = oracle.accuracy_on_manifest(args.manifest, fold="test")
    reference = oracle.accuracy_on_manifest(args.reference)
    write_json(args.metrics, {
        "held_out_accuracy": held_out, "held_out_min": min(held_out.values()),
        "reference_accuracy": reference, "reference_min": min(reference.values()),
    })


def cmd_score(args) -> None:
    from clipvqd.oracle import score_samples

    write_json(args.out, score_samples(args.oracle, args.samples, args.prompts))


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    train = add_command(table, "train", cmd_train, "train on renders and record held-out accuracy")
    trainer_arguments(train, "the oracle config block as JSON", device=False)
    train.add_argument("--world", required=True)
    train.add_argument("--manifest", required=True, help="the world's oracle split")
    train.add_argument("--reference", required=True, help="the world's reference split (second held-out check)")
    train.add_argument("--metrics", required=True)
    output_arguments(train, "metrics")
    score = add_command(table, "score", cmd_score, "attribute accuracy of generated images")
    score.add_argument("--oracle", required=True)
    score.add_argument("--samples", required=True, help="samples manifest with a prompt_id column")
    score.add_argument("--prompts", required=True)
    score.add_argument("--out", required=True)
