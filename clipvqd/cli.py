"""Command line: `python -m clipvqd <group> <command> ...`, one command per workflow rule.

Each command takes explicit paths; configuration blocks arrive as JSON (`--params`) and are turned into
the documented dataclasses, so the package is usable without Snakemake and every rule stays one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

STAGE_ISSUES = {
    "dataset_download": 7, "dataset_prepare": 7,
    "tokenizer_train": 3, "tokenizer_tokenize": 3, "tokenizer_evaluate": 3,
    "diffusion_pretrain": 4, "diffusion_cfg_finetune": 4, "diffusion_paired": 4, "diffusion_unconditional": 4,
    "lafite_train": 6, "clip2latent_generator_train": 6, "clip2latent_latent_sample": 6,
    "clip2latent_prior_train": 6, "sample": 4, "metrics": 5, "report": 5,
}


class StageNotImplemented(SystemExit):
    pass


def _dataclass_from(cls, params: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SystemExit(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
    return cls(**params)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _write_json(path: str | Path, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True))


# ---- world -------------------------------------------------------------------------------------------

def cmd_world_generate(args) -> None:
    from clipvqd.worlds.generate import generate_world

    p = args.params
    generate_world(p["name"], args.out, seed=args.seed, resolution=p["resolution"], sizes=p["sizes"],
                   heldout=p["heldout"], prompt_count=p["prompts"]["count"],
                   attributes_per_prompt=p["prompts"]["attributes_per_prompt"],
                   ood_prompts_per_combination=p["prompts"]["ood_per_combination"],
                   oracle_test_fraction=p["oracle_test_fraction"], clip_holdout_fraction=p["clip_holdout_fraction"])


# ---- clip --------------------------------------------------------------------------------------------

def cmd_clip_get(args) -> None:
    from clipvqd.clip import sources
    from clipvqd.clip.standin import StandinClipConfig, train_standin_clip

    spec = args.params
    if spec["source"] == "standin":
        if not args.pairs:
            raise SystemExit("clip source 'standin' needs --pairs (the world's captioned split)")
        cfg = _dataclass_from(StandinClipConfig, spec["standin"], "clip.*.standin")
        train_standin_clip(args.pairs, cfg, args.work, args.out, args.curve, seed=args.seed, device=args.device)
    elif spec["source"] == "pretrained":
        sources.fetch_pretrained(spec["model"], spec["pretrained"], args.out)
    elif spec["source"] == "file":
        sources.import_weights_file(spec["model"], spec["weights"], spec.get("sha256"), args.out)
    else:
        raise SystemExit(f"clip source '{spec['source']}' is not one of standin, pretrained, file")


def cmd_clip_evaluate(args) -> None:
    from clipvqd.clip.evaluate import evaluate_clip

    _write_json(args.out, evaluate_clip(args.clip, args.pairs, args.world, gallery=args.gallery))


def cmd_clip_embed(args) -> None:
    from clipvqd.clip.embed import embed_images, embed_text_column
    from clipvqd.clip.encoder import ClipEncoder

    encoder = ClipEncoder.load(args.clip, device=args.device)
    embed_images(encoder, args.images, args.images_out)
    embed_text_column(encoder, args.prompts, "prompt", args.prompts_out, prefix=args.prompt_prefix)


def cmd_clip_embed_captions(args) -> None:
    from clipvqd.clip.embed import embed_text_column
    from clipvqd.clip.encoder import ClipEncoder

    embed_text_column(ClipEncoder.load(args.clip, device=args.device), args.captions, "caption", args.out)


# ---- oracle ------------------------------------------------------------------------------------------

def cmd_oracle_train(args) -> None:
    from clipvqd.oracle import Oracle, OracleConfig, train_oracle

    cfg = _dataclass_from(OracleConfig, args.params, "oracle")
    train_oracle(args.manifest, args.world, cfg, args.work, args.out, args.curve, seed=args.seed)
    oracle = Oracle(args.out)
    held_out = oracle.accuracy_on_manifest(args.manifest, fold="test")
    reference = oracle.accuracy_on_manifest(args.reference)
    _write_json(args.metrics, {
        "held_out_accuracy": held_out, "held_out_min": min(held_out.values()),
        "reference_accuracy": reference, "reference_min": min(reference.values()),
    })


def cmd_oracle_score(args) -> None:
    from clipvqd.oracle import score_samples

    _write_json(args.out, score_samples(args.oracle, args.samples, args.prompts))


# ---- tokenizer ---------------------------------------------------------------------------------------

def _tokenizer_configs(params: dict[str, Any]):
    from clipvqd.tokenizer import TokenizerConfig, TokenizerTrainConfig

    return (TokenizerConfig.from_dict(params["model"], "tokenizer.model"),
            TokenizerTrainConfig.from_dict(params["train"], "tokenizer.train"))


def cmd_tokenizer_train(args) -> None:
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import build_code_mapping, count_code_usage, load_tokenizer, train_tokenizer

    model_cfg, train_cfg = _tokenizer_configs(args.params)
    dataset = ManifestImages(args.train, resolution=model_cfg.resolution, resize=args.params["resize"])
    train_tokenizer(dataset, model_cfg, train_cfg, args.work, args.out, args.curve, device=args.device,
                    seed=args.seed)
    model, _ = load_tokenizer(args.out, device=args.device, expected_config=model_cfg)
    counts = count_code_usage(model, dataset, device=args.device, progress=True)
    build_code_mapping(counts, provenance={"manifest": str(args.train), "tokenizer": str(args.out)}).save(args.codebook)


def _oracle_scorer(oracle_path: str | None):
    if not oracle_path:
        return None
    from clipvqd.oracle import Oracle

    oracle = Oracle(oracle_path)

    def accuracy(images_uint8, rows) -> float:
        predicted = oracle.predict(images_uint8)
        checks = [p == t for name in oracle.attributes for p, t in zip(predicted[name], rows[name])]
        return sum(checks) / len(checks)

    return accuracy


def cmd_tokenizer_evaluate(args) -> None:
    import torch

    from clipvqd.checkpoint import load_meta
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import CodeMapping, evaluate_tokenizer, load_tokenizer, save_reconstruction_grid

    model, meta = load_tokenizer(args.model, device=args.device)
    mapping = CodeMapping.load(args.codebook)
    dataset = ManifestImages(args.heldout, resolution=model.config.resolution, resize=args.resize)
    metrics = evaluate_tokenizer(model, dataset, mapping, attribute_scorer=_oracle_scorer(args.oracle),
                                 device=args.device, progress=True, checkpoint_meta=load_meta(args.model))
    originals = torch.stack([dataset[i] for i in range(min(16, len(dataset)))]).to(args.device)
    with torch.no_grad():
        # Restricted to the compact vocabulary: what the diffusion model can actually produce.
        reconstructions = model.decode_codes(model.encode(originals, allowed_codes=mapping.used_codes.to(args.device)))
    save_reconstruction_grid(originals.cpu(), reconstructions.cpu(), args.grid)
    _write_json(args.metrics, metrics)


def cmd_tokenizer_tokenize(args) -> None:
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import CodeMapping, load_tokenizer, tokenize_dataset

    model, _ = load_tokenizer(args.model, device=args.device)
    dataset = ManifestImages(args.train, resolution=model.config.resolution, resize=args.resize)
    tokenize_dataset(model, dataset, CodeMapping.load(args.codebook), args.out, args.manifest,
                     device=args.device, provenance={"manifest": str(args.train), "tokenizer": str(args.model)})


# ---- stages that later issues fill -------------------------------------------------------------------

def cmd_not_implemented(args) -> None:
    issue = STAGE_ISSUES.get(args.stage)
    where = f" (issue #{issue})" if issue else ""
    raise StageNotImplemented(f"not implemented yet: {args.stage}{where}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvqd", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)

    def command(group: argparse._SubParsersAction, name: str, handler: Callable, help_text: str):
        sub = group.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        return sub

    world = groups.add_parser("world", help="embedded offline worlds").add_subparsers(dest="command", required=True)
    gen = command(world, "generate", cmd_world_generate, "render every split of a world")
    gen.add_argument("--params", type=_json, required=True, help="the data.world config block as JSON")
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--out", required=True, help="folder for the splits and their manifests")

    clip = groups.add_parser("clip", help="CLIP: get, evaluate, embed").add_subparsers(dest="command", required=True)
    get = command(clip, "get", cmd_clip_get, "produce the CLIP file from its configured source")
    get.add_argument("--params", type=_json, required=True, help="the clip.<role> config block as JSON")
    get.add_argument("--out", required=True)
    get.add_argument("--pairs", help="captioned split manifest (stand-in source only)")
    get.add_argument("--work", default=None, help="resume folder (stand-in source only)")
    get.add_argument("--curve", default=None, help="loss curve CSV (stand-in source only)")
    get.add_argument("--seed", type=int, default=0)
    get.add_argument("--device", default="cpu")
    ev = command(clip, "evaluate", cmd_clip_evaluate, "zero-shot retrieval and attribute accuracy")
    ev.add_argument("--clip", required=True)
    ev.add_argument("--pairs", required=True)
    ev.add_argument("--world", required=True)
    ev.add_argument("--gallery", type=int, default=100)
    ev.add_argument("--out", required=True)
    emb = command(clip, "embed", cmd_clip_embed, "cache image and text embeddings")
    emb.add_argument("--clip", required=True)
    emb.add_argument("--images", required=True, help="manifest of the generator training images")
    emb.add_argument("--images-out", required=True)
    emb.add_argument("--prompts", required=True, help="prompt table with a 'prompt' column")
    emb.add_argument("--prompts-out", required=True)
    emb.add_argument("--prompt-prefix", default="", help='e.g. "a photograph of " for FFHQ')
    emb.add_argument("--device", default="cpu")
    cap = command(clip, "embed-captions", cmd_clip_embed_captions, "cache text embeddings of training captions")
    cap.add_argument("--clip", required=True)
    cap.add_argument("--captions", required=True, help="training captions (read by the paired control only)")
    cap.add_argument("--out", required=True)
    cap.add_argument("--device", default="cpu")

    oracle = groups.add_parser("oracle", help="attribute oracle").add_subparsers(dest="command", required=True)
    otr = command(oracle, "train", cmd_oracle_train, "train on renders and record held-out accuracy")
    otr.add_argument("--params", type=_json, required=True)
    otr.add_argument("--world", required=True)
    otr.add_argument("--manifest", required=True, help="the world's oracle split")
    otr.add_argument("--reference", required=True, help="the world's reference split (second held-out check)")
    otr.add_argument("--work", required=True)
    otr.add_argument("--out", required=True)
    otr.add_argument("--curve", required=True)
    otr.add_argument("--metrics", required=True)
    otr.add_argument("--seed", type=int, default=0)
    osc = command(oracle, "score", cmd_oracle_score, "attribute accuracy of generated images")
    osc.add_argument("--oracle", required=True)
    osc.add_argument("--samples", required=True, help="samples manifest with a prompt_id column")
    osc.add_argument("--prompts", required=True)
    osc.add_argument("--out", required=True)

    tok = groups.add_parser("tokenizer", help="Gumbel VQGAN tokenizer").add_subparsers(dest="command", required=True)
    ttr = command(tok, "train", cmd_tokenizer_train, "train, then build the used-code vocabulary")
    ttr.add_argument("--params", type=_json, required=True, help="the tokenizer config block as JSON")
    ttr.add_argument("--train", required=True, help="manifest of the generator training split")
    ttr.add_argument("--work", required=True, help="resume folder (not a workflow output)")
    ttr.add_argument("--out", required=True)
    ttr.add_argument("--curve", required=True)
    ttr.add_argument("--codebook", required=True, help="where the used-code mapping goes")
    ttr.add_argument("--seed", type=int, default=0)
    ttr.add_argument("--device", default="cpu")
    tev = command(tok, "evaluate", cmd_tokenizer_evaluate, "PSNR, SSIM, code usage, oracle ratio, grid")
    tev.add_argument("--model", required=True)
    tev.add_argument("--codebook", required=True)
    tev.add_argument("--heldout", required=True, help="manifest of held-out images (the reference split)")
    tev.add_argument("--oracle", default=None, help="attribute oracle (worlds)")
    tev.add_argument("--resize", action="store_true")
    tev.add_argument("--metrics", required=True)
    tev.add_argument("--grid", required=True)
    tev.add_argument("--device", default="cpu")
    ttk = command(tok, "tokenize", cmd_tokenizer_tokenize, "encode the training split to compact code maps")
    ttk.add_argument("--model", required=True)
    ttk.add_argument("--codebook", required=True)
    ttk.add_argument("--train", required=True)
    ttk.add_argument("--resize", action="store_true")
    ttk.add_argument("--out", required=True)
    ttk.add_argument("--manifest", required=True)
    ttk.add_argument("--device", default="cpu")

    stage = groups.add_parser("stage", help="stages still to be built").add_subparsers(dest="command", required=True)
    ni = command(stage, "not-implemented", cmd_not_implemented, "fail loudly for a stage a later issue builds")
    ni.add_argument("stage")
    ni.add_argument("--outputs", nargs="*", default=[], help="ignored: the outputs it would have written")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None):
        from clipvqd.device import resolve_device

        args.device = resolve_device(args.device)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
