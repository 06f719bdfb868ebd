"""`python -m clipvqd diffusion train`: language-free pretraining, the CFG fine-tune and the two controls
(rules diffusion_pretrain, diffusion_cfg_finetune, diffusion_control, diffusion_control_finetune). Sampling is `python -m clipvqd sample`."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, milestone_arguments, milestones, trainer_arguments
from clipvqd.diffusion.train_config import TrainingMode

MODES = tuple(mode.value for mode in TrainingMode)


def cmd_train(args) -> None:
    from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig, train_diffusion
    from clipvqd.diffusion.data import load_training_data

    try:
        data = load_training_data(args.tokens, args.mode, args.embeddings, default_condition_dim=args.condition_dim)
        height, width = data.grid
        model_cfg = DenoiserConfig.from_dict({**args.params["model"], "num_codes": data.vocab_size,
                                              "grid_height": height, "grid_width": width,
                                              "condition_dim": data.condition_dim}, source="diffusion.model")
        train_values = dict(args.params["train"])
        if args.alpha is not None:
            train_values["condition_noise_alpha"] = args.alpha
        train_cfg = DiffusionTrainConfig.from_dict(train_values, source=f"diffusion training ({args.mode})")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    train_diffusion(data.tokens, data.conditions, model_cfg, train_cfg, args.mode, args.work, args.out, args.curve,
                    device=args.device, seed=args.seed, init_weights=args.init, milestones=milestones(args),
                    final_snapshot=args.final_snapshot)


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    train = add_command(table, "train", cmd_train, "pretrain, CFG fine-tune, or train a control")
    trainer_arguments(train, '{"model": diffusion.model, "train": settings}')
    train.add_argument("--mode", required=True, choices=MODES)
    train.add_argument("--tokens", required=True, help="tokenized training split (manifest JSON)")
    train.add_argument("--embeddings", default=None,
                       help="image embeddings (language-free) or caption embeddings (paired)")
    train.add_argument("--condition-dim", type=int, default=512, help="condition length when there are no embeddings")
    train.add_argument("--alpha", type=float, default=None, help="condition noise scale of this branch")
    train.add_argument("--init", default=None, help="weights to start from (cfg_finetune)")
    milestone_arguments(train)
