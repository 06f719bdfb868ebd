"""`python -m clipvqd oracle train | calibrate | score`: the attribute oracle's commands (rules oracle_train,
oracle_calibrate; `score` is for use outside the DAG, whose metrics jobs score through `clipvqd.evaluation`)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import (add_command, commands, compute_arguments, output_arguments, trainer_arguments,
                              write_json)


def cmd_train(args) -> None:
    from clipvqd.config_blocks import from_mapping
    from clipvqd.oracle import Oracle, OracleConfig, train_oracle

    cfg = from_mapping(OracleConfig, args.params, "oracle")
    train_oracle(args.manifest, args.world, cfg, args.work, args.out, args.curve, seed=args.seed,
                 final_snapshot=args.final_snapshot)
    oracle = Oracle(args.out)
    held_out = oracle.accuracy_on_manifest(args.manifest, fold="test")
    reference = oracle.accuracy_on_manifest(args.reference)
    write_json(args.metrics, {
        "held_out_accuracy": held_out, "held_out_min": min(held_out.values()),
        "reference_accuracy": reference, "reference_min": min(reference.values()),
    })


def cmd_calibrate(args) -> None:
    from clipvqd.oracle_calibration import calibrate_oracle

    if bool(args.tokenizer) != bool(args.codebook):
        raise SystemExit("--tokenizer and --codebook go together")
    result = calibrate_oracle(args.oracle, args.manifest, tokenizer=args.tokenizer, codebook=args.codebook,
                              resize=args.resize, seed=args.seed)
    if args.reconstruction_bound_work:
        from clipvqd.oracle_calibration import reconstruction_bound

        if not args.tokenizer:
            raise SystemExit("--reconstruction-bound-work needs --tokenizer and --codebook")
        result["reconstruction_bound"] = reconstruction_bound(
            args.oracle, args.manifest, args.tokenizer, args.codebook, args.reconstruction_bound_work,
            resize=args.resize, seed=args.seed)
        print(f"reconstruction bound: {result['reconstruction_bound']['accuracy']}")
    write_json(args.out, result)
    for row in result["levels"]:
        print(f"{row['label']:>20}: min {row['min']:.3f}, mean {row['mean']:.3f}, sharpness {row['sharpness']:.4f}")


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
    calibrate = add_command(table, "calibrate", cmd_calibrate,
                            "accuracy on held-out renders degraded the way generated images are")
    calibrate.add_argument("--oracle", required=True)
    calibrate.add_argument("--manifest", required=True, help="the world's oracle split (its test fold is used)")
    calibrate.add_argument("--tokenizer", default=None, help="tokenizer checkpoint: add its reconstructions")
    calibrate.add_argument("--codebook", default=None, help="the tokenizer's used-code mapping")
    calibrate.add_argument("--resize", action="store_true", help="resize renders to the tokenizer's resolution")
    calibrate.add_argument("--seed", type=int, default=0, help="the noise draws")
    calibrate.add_argument("--reconstruction-bound-work", default=None,
                           help="diagnostic: train an oracle on tokenizer reconstructions in this folder and record "
                                "what it reads off held-out reconstructions (the tokenizer's ceiling)")
    calibrate.add_argument("--out", required=True)
    compute_arguments(calibrate, device=False)
    output_arguments(calibrate, "reconstruction_bound_work")
    score = add_command(table, "score", cmd_score, "attribute accuracy of generated images")
    score.add_argument("--oracle", required=True)
    score.add_argument("--samples", required=True, help="samples manifest with a prompt_id column")
    score.add_argument("--prompts", required=True)
    score.add_argument("--out", required=True)
