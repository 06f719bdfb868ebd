"""`python -m clipvqd tokenizer train | evaluate | tokenize` (rules tokenizer_train, tokenizer_evaluate,
tokenizer_tokenize)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import (add_command, commands, compute_arguments, output_arguments, trainer_arguments,
                              write_json)


def cmd_train(args) -> None:
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import (TokenizerConfig, TokenizerTrainConfig, build_code_mapping, count_code_usage,
                                   load_tokenizer, train_tokenizer)

    model_cfg = TokenizerConfig.from_dict(args.params["model"], "tokenizer.model")
    train_cfg = TokenizerTrainConfig.from_dict(args.params["train"], "tokenizer.train")
    dataset = ManifestImages(args.train, resolution=model_cfg.resolution, resize=args.params["resize"])
    train_tokenizer(dataset, model_cfg, train_cfg, args.work, args.out, args.curve, device=args.device,
                    seed=args.seed, final_snapshot=args.final_snapshot)
    # The compact vocabulary: the codes the trained tokenizer uses on the training split.
    model, _ = load_tokenizer(args.out, device=args.device, expected_config=model_cfg)
    counts = count_code_usage(model, dataset, device=args.device, progress=True)
    build_code_mapping(counts, provenance={"manifest": str(args.train), "tokenizer": str(args.out)}).save(args.codebook)


def cmd_evaluate(args) -> None:
    from clipvqd.checkpoint import load_meta
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import CodeMapping, evaluate_tokenizer, load_tokenizer
    from clipvqd.tokenizer.evaluate import oracle_attribute_scorer, save_dataset_reconstructions

    model, _ = load_tokenizer(args.model, device=args.device)
    mapping = CodeMapping.load(args.codebook)
    dataset = ManifestImages(args.heldout, resolution=model.config.resolution, resize=args.resize)
    scorer = oracle_attribute_scorer(args.oracle) if args.oracle else None
    metrics = evaluate_tokenizer(model, dataset, mapping, attribute_scorer=scorer, device=args.device,
                                 progress=True, checkpoint_meta=load_meta(args.model))
    save_dataset_reconstructions(model, dataset, mapping, args.grid, device=args.device)
    write_json(args.metrics, metrics)


def cmd_tokenize(args) -> None:
    from clipvqd.hashing import sha256_file
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import CodeMapping, load_tokenizer, tokenize_dataset

    model, _ = load_tokenizer(args.model, device=args.device)
    dataset = ManifestImages(args.train, resolution=model.config.resolution, resize=args.resize)
    tokenize_dataset(model, dataset, CodeMapping.load(args.codebook), args.out, args.manifest,
                     device=args.device, provenance={"manifest": str(args.train), "manifest_sha256": sha256_file(args.train),
                                                      "tokenizer": str(args.model)})


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    train = add_command(table, "train", cmd_train, "train, then build the used-code vocabulary")
    trainer_arguments(train, "the tokenizer config block as JSON")
    train.add_argument("--train", required=True, help="manifest of the generator training split")
    train.add_argument("--codebook", required=True, help="where the used-code mapping goes")
    output_arguments(train, "codebook")
    evaluate = add_command(table, "evaluate", cmd_evaluate, "PSNR, SSIM, code usage, oracle ratio, grid")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--codebook", required=True)
    evaluate.add_argument("--heldout", required=True, help="manifest of held-out images (the reference split)")
    evaluate.add_argument("--oracle", default=None, help="attribute oracle (worlds)")
    evaluate.add_argument("--resize", action="store_true")
    evaluate.add_argument("--metrics", required=True)
    evaluate.add_argument("--grid", required=True)
    compute_arguments(evaluate)
    output_arguments(evaluate, "metrics", "grid")
    tokenize = add_command(table, "tokenize", cmd_tokenize, "encode the training split to compact code maps")
    tokenize.add_argument("--model", required=True)
    tokenize.add_argument("--codebook", required=True)
    tokenize.add_argument("--train", required=True)
    tokenize.add_argument("--resize", action="store_true")
    tokenize.add_argument("--out", required=True)
    tokenize.add_argument("--manifest", required=True)
    compute_arguments(tokenize)
    output_arguments(tokenize, "manifest")
