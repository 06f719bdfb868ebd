"""`python -m clipvqd clip get | evaluate | embed | embed-prompts | embed-captions` (rules clip_train_standin,
clip_get, clip_evaluate, clip_embed, clip_embed_prompts, clip_embed_captions)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import add_command, commands, compute_arguments, trainer_arguments, write_json


def cmd_get(args) -> None:
    from clipvqd.clip import sources

    spec = args.params
    if spec["source"] == "standin":
        from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
        from clipvqd.config_blocks import from_mapping

        if not args.pairs:
            raise SystemExit("clip source 'standin' needs --pairs (the world's captioned split)")
        cfg = from_mapping(StandinClipConfig, spec["standin"], "clip.*.standin")
        train_standin_clip(args.pairs, cfg, args.work, args.out, args.curve, seed=args.seed, device=args.device,
                           final_snapshot=args.final_snapshot)
    elif spec["source"] == "pretrained":
        sources.fetch_pretrained(spec["model"], spec["pretrained"], args.out, expected_sha256=spec.get("sha256"))
    elif spec["source"] == "file":
        sources.import_weights_file(spec["model"], spec["weights"], spec.get("sha256"), args.out)
    else:
        raise SystemExit(f"clip source '{spec['source']}' is not one of standin, pretrained, file")


def cmd_evaluate(args) -> None:
    from clipvqd.clip.evaluate import evaluate_clip

    write_json(args.out, evaluate_clip(args.clip, args.pairs, args.world, gallery=args.gallery))


def cmd_embed(args) -> None:
    from clipvqd.clip.embed import embed_images, embed_text_column
    from clipvqd.clip.encoder import ClipEncoder

    encoder = ClipEncoder.load(args.clip, device=args.device)
    embed_images(encoder, args.images, args.images_out)
    embed_text_column(encoder, args.prompts, "prompt", args.prompts_out, prefix=args.prompt_prefix)


def cmd_embed_prompts(args) -> None:
    from clipvqd.clip.embed import embed_text_column
    from clipvqd.clip.encoder import ClipEncoder

    encoder = ClipEncoder.load(args.clip, device=args.device)
    embed_text_column(encoder, args.prompts, "prompt", args.out, prefix=args.prompt_prefix)


def cmd_embed_captions(args) -> None:
    from clipvqd.clip.embed import embed_text_column
    from clipvqd.clip.encoder import ClipEncoder

    embed_text_column(ClipEncoder.load(args.clip, device=args.device), args.captions, "caption", args.out)


def register(group: argparse.ArgumentParser) -> None:
    table = commands(group)
    get = add_command(table, "get", cmd_get, "produce the CLIP file from its configured source")
    trainer_arguments(get, "the clip.<role> config block as JSON", resumable=False)
    get.add_argument("--pairs", help="captioned split manifest (stand-in source only; so are --work and --curve)")
    ev = add_command(table, "evaluate", cmd_evaluate, "zero-shot retrieval and attribute accuracy")
    ev.add_argument("--clip", required=True)
    ev.add_argument("--pairs", required=True)
    ev.add_argument("--world", required=True)
    ev.add_argument("--gallery", type=int, default=100)
    ev.add_argument("--out", required=True)
    compute_arguments(ev, device=False)
    emb = add_command(table, "embed", cmd_embed, "cache image and text embeddings")
    emb.add_argument("--clip", required=True)
    emb.add_argument("--images", required=True, help="manifest of the generator training images")
    emb.add_argument("--images-out", required=True)
    emb.add_argument("--prompts", required=True, help="prompt table with a 'prompt' column")
    emb.add_argument("--prompts-out", required=True)
    emb.add_argument("--prompt-prefix", default="", help='e.g. "a photograph of " for FFHQ')
    compute_arguments(emb)
    pro = add_command(table, "embed-prompts", cmd_embed_prompts,
                      "cache text embeddings of a prompt table (validation prompts, the distribution set's captions)")
    pro.add_argument("--clip", required=True)
    pro.add_argument("--prompts", required=True, help="prompt table with a 'prompt' column")
    pro.add_argument("--out", required=True)
    pro.add_argument("--prompt-prefix", default="", help='e.g. "a photograph of " for FFHQ')
    compute_arguments(pro)
    cap = add_command(table, "embed-captions", cmd_embed_captions, "cache text embeddings of training captions")
    cap.add_argument("--clip", required=True)
    cap.add_argument("--captions", required=True, help="training captions (read by the paired control only)")
    cap.add_argument("--out", required=True)
    compute_arguments(cap)
