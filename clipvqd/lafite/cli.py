"""`python -m clipvqd lafite train` (rule lafite_train). Sampling is `python -m clipvqd sample --method lafite`."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, milestone_arguments, milestones, trainer_arguments


def cmd_train(args) -> None:
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.lafite import LafiteModelConfig, LafiteTrainConfig, train_lafite
    from clipvqd.lafite.data import training_embeddings
    from clipvqd.manifest import ManifestImages, read_manifest

    try:
        clip = ClipEncoder.load(args.clip, device=args.device)
        embeddings = training_embeddings(args.embeddings, args.train, clip.identity, args.clip,
                                         image_count=len(read_manifest(args.train, verify=False)))
        model_cfg = LafiteModelConfig.from_dict({**args.params.get("model", {}),
                                                 "condition_dim": int(embeddings.shape[1])}, source="lafite.model")
        train_cfg = LafiteTrainConfig.from_dict(args.params.get("train", {}), source="lafite.train")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    dataset = ManifestImages(args.train, resolution=model_cfg.resolution, resize=args.resize)
    train_lafite(dataset.all(), embeddings, clip, model_cfg, train_cfg, args.work, args.out, args.curve,
                 device=args.device, seed=args.seed, milestones=milestones(args), final_snapshot=args.final_snapshot)


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    train = add_command(table, "train", cmd_train, "train LAFITE on image embeddings (resumable)")
    trainer_arguments(train, '{"model": lafite.model, "train": lafite.train}')
    train.add_argument("--train", required=True, help="manifest of the generator training split")
    train.add_argument("--embeddings", required=True, help="CLIP image embeddings of that split")
    train.add_argument("--clip", required=True, help="the conditioner CLIP file that made them (itc loss)")
    train.add_argument("--resize", action="store_true", help="resize images to lafite.model.resolution")
    milestone_arguments(train)
