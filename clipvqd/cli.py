"""Command line: `python -m clipvqd <group> <command> ...`, one command per workflow rule.

Each command takes explicit paths; configuration blocks arrive as JSON (`--params`) and are turned into
the documented dataclasses, so the package is usable without Snakemake and every rule stays one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from clipvqd.config_blocks import from_mapping
from clipvqd.config_blocks import json_object as _json

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
                   oracle_test_fraction=p["oracle_test_fraction"], clip_holdout_fraction=p["clip_holdout_fraction"],
                   judge_wording=p["judge_wording"])


# ---- clip --------------------------------------------------------------------------------------------

def cmd_clip_get(args) -> None:
    from clipvqd.clip import sources
    from clipvqd.clip.standin import StandinClipConfig, train_standin_clip

    spec = args.params
    if spec["source"] == "standin":
        if not args.pairs:
            raise SystemExit("clip source 'standin' needs --pairs (the world's captioned split)")
        cfg = from_mapping(StandinClipConfig, spec["standin"], "clip.*.standin")
        train_standin_clip(args.pairs, cfg, args.work, args.out, args.curve, seed=args.seed, device=args.device)
    elif spec["source"] == "pretrained":
        sources.fetch_pretrained(spec["model"], spec["pretrained"], args.out, expected_sha256=spec.get("sha256"))
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

    cfg = from_mapping(OracleConfig, args.params, "oracle")
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
    from clipvqd.hashing import sha256_file
    from clipvqd.manifest import ManifestImages
    from clipvqd.tokenizer import CodeMapping, load_tokenizer, tokenize_dataset

    model, _ = load_tokenizer(args.model, device=args.device)
    dataset = ManifestImages(args.train, resolution=model.config.resolution, resize=args.resize)
    tokenize_dataset(model, dataset, CodeMapping.load(args.codebook), args.out, args.manifest,
                     device=args.device, provenance={"manifest": str(args.train), "manifest_sha256": sha256_file(args.train),
                                                      "tokenizer": str(args.model)})


# ---- diffusion ---------------------------------------------------------------------------------------

def _embeddings_with_source(path: str | Path) -> tuple[Any, dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor("embeddings"), dict(handle.metadata() or {})


def _training_conditions(args, codes_manifest: dict[str, Any], count: int):
    """The condition embeddings of a mode, checked to describe the same images as the token maps."""
    if args.mode == "unconditional":
        return None
    if not args.embeddings:
        raise SystemExit(f"mode '{args.mode}' needs --embeddings")
    embeddings, meta = _embeddings_with_source(args.embeddings)
    if len(embeddings) != count:
        raise SystemExit(f"{args.embeddings} holds {len(embeddings)} embeddings but {args.tokens} has {count} "
                         "token maps: they were made from different splits")
    expected = codes_manifest.get("provenance", {}).get("manifest_sha256")
    if args.mode != "paired" and expected and meta.get("source_sha256") != expected:
        raise SystemExit(f"{args.embeddings} embeds {meta.get('source')} (sha256 {meta.get('source_sha256')}), "
                         f"but the token maps come from a manifest with sha256 {expected}; rerun clip_embed")
    return embeddings


def cmd_diffusion_train(args) -> None:
    import torch

    from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig, train_diffusion
    from clipvqd.tokenizer import load_code_maps

    params = args.params
    codes, manifest = load_code_maps(args.tokens)
    conditions = _training_conditions(args, manifest, len(codes))
    height, width = manifest["token_grid"]
    if conditions is not None:
        condition_dim = conditions.shape[1]
    elif args.embeddings:  # the unconditional control: the embeddings only size its (null) condition
        condition_dim = _embeddings_with_source(args.embeddings)[0].shape[1]
    else:
        condition_dim = args.condition_dim
    try:
        model_cfg = DenoiserConfig.from_dict({**params["model"], "num_codes": manifest["vocab_size"],
                                              "grid_height": height, "grid_width": width,
                                              "condition_dim": condition_dim}, source="diffusion.model")
        train_values = dict(params["train"])
        if args.alpha is not None:
            train_values["condition_noise_alpha"] = args.alpha
        train_cfg = DiffusionTrainConfig.from_dict(train_values, source=f"diffusion training ({args.mode})")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    train_diffusion(torch.from_numpy(codes.astype("int64")), conditions, model_cfg, train_cfg, args.mode,
                    args.work, args.out, args.curve, device=args.device, seed=args.seed, init_weights=args.init)


def _planned_prompts(args, expected_clip_sha256: str | None = None):
    """The shared sampling interface, input side: the prompts (with the prefix CLIP encoded, which is what
    the manifest records and CLIPscore compares), the fixed plan, and each planned image's prompt embedding."""
    from clipvqd.clip.embed import load_embeddings
    from clipvqd.samples import prompt_rows, read_prompts, sample_plan

    prompts = read_prompts(args.prompts)
    prompts["prompt"] = args.prompt_prefix + prompts["prompt"]
    plan = sample_plan(prompts, args.samples_per_prompt)
    embeddings = load_embeddings(args.prompt_embeddings, expected_clip_sha256=expected_clip_sha256)
    return prompts, plan, prompt_rows(embeddings, prompts, plan)


def _write_planned_samples(args, images, prompts, plan, settings: dict[str, Any]) -> None:
    """The shared sampling interface, output side: PNGs + manifest beside `args.manifest`."""
    from clipvqd.samples import write_sample_set

    write_sample_set(images, plan, Path(args.manifest).parent, args.manifest, method=args.method,
                     variant=args.variant, seed=args.seed, settings=settings)
    print(f"wrote {len(plan)} images ({len(prompts)} prompts x {args.samples_per_prompt}) and {args.manifest}")


def cmd_diffusion_sample(args) -> None:
    import torch

    from clipvqd.diffusion import load_denoiser
    from clipvqd.diffusion.generate import SamplingSettings, generate_images
    from clipvqd.tokenizer import CodeMapping, load_tokenizer

    settings = dict(args.settings)
    denoiser, null_condition, meta = load_denoiser(args.model, device=args.device)
    tokenizer, _ = load_tokenizer(args.tokenizer, device=args.device)
    mapping = CodeMapping.load(args.codebook)
    prompts, plan, conditions = _planned_prompts(args)
    sampling = SamplingSettings(guidance_scale=settings.get("s", 1.0), truncation_r=settings.get("r", 1.0),
                                steps=settings.get("steps"), purity=settings.get("purity", False),
                                unconditional=args.method == "unconditional")
    if sampling.guidance_scale != 1.0 and meta.get("mode") == "language_free":
        raise SystemExit(f"{args.model} was pretrained without condition dropout, so it has no trained null "
                         f"vector for guidance s={sampling.guidance_scale}; sample it with s=1 or use the CFG model")
    torch.manual_seed(args.seed)
    images = generate_images(denoiser, null_condition, tokenizer, mapping, conditions, sampling, seed=args.seed,
                             batch_size=args.batch_size)
    _write_planned_samples(args, images, prompts, plan, settings)


# ---- lafite ------------------------------------------------------------------------------------------

def _lafite_configs(params: dict[str, Any], condition_dim: int):
    from clipvqd.lafite import LafiteModelConfig, LafiteTrainConfig

    try:
        return (LafiteModelConfig.from_dict({**params.get("model", {}), "condition_dim": condition_dim},
                                            source="lafite.model"),
                LafiteTrainConfig.from_dict(params.get("train", {}), source="lafite.train"))
    except ValueError as error:
        raise SystemExit(str(error)) from None


def cmd_lafite_train(args) -> None:
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.hashing import sha256_file
    from clipvqd.lafite import train_lafite
    from clipvqd.manifest import ManifestImages

    embeddings, meta = _embeddings_with_source(args.embeddings)
    manifest_sha = sha256_file(args.train)
    if meta.get("source_sha256") and meta["source_sha256"] != manifest_sha:
        raise SystemExit(f"{args.embeddings} embeds {meta.get('source')} (sha256 {meta.get('source_sha256')}), "
                         f"not {args.train} (sha256 {manifest_sha}); rerun clip_embed")
    clip = ClipEncoder.load(args.clip, device=args.device)
    if meta.get("clip_sha256") and meta["clip_sha256"] != clip.identity:
        raise SystemExit(f"{args.embeddings} was made by CLIP {meta['clip_sha256']}, not by {args.clip} "
                         f"({clip.identity}); rerun clip_embed")
    model_cfg, train_cfg = _lafite_configs(args.params, int(embeddings.shape[1]))
    dataset = ManifestImages(args.train, resolution=model_cfg.resolution, resize=args.resize)
    if len(dataset) != len(embeddings):
        raise SystemExit(f"{args.embeddings} holds {len(embeddings)} embeddings but {args.train} lists "
                         f"{len(dataset)} images")
    train_lafite(dataset.all(), embeddings, clip, model_cfg, train_cfg, args.work, args.out, args.curve,
                 device=args.device, seed=args.seed)


def cmd_lafite_sample(args) -> None:
    from clipvqd.hashing import sha256_file
    from clipvqd.lafite import generate_images, load_generator

    generator, meta = load_generator(args.model, device=args.device)
    if args.clip and meta.get("clip_sha256") and sha256_file(args.clip) != meta["clip_sha256"]:
        raise SystemExit(f"{args.model} was trained with CLIP {meta['clip_sha256']}, not with {args.clip}")
    prompts, plan, conditions = _planned_prompts(args, expected_clip_sha256=meta.get("clip_sha256"))
    images = generate_images(generator, conditions, seed=args.seed, batch_size=args.batch_size)
    _write_planned_samples(args, images, prompts, plan, dict(args.settings))


# ---- evaluation: metrics of one sample set, the comparison report -----------------------------------

BEST_OF = 16  # the paper's FFHQ protocol; the table names only clipscore_best16
CANDIDATE_COLUMNS = ("clipscore", "rank", "chosen")


def _fewest_samples_per_prompt(manifest) -> int:
    from clipvqd.manifest import read_manifest

    frame = read_manifest(manifest, verify=False)
    if "prompt_id" not in frame.columns or frame.empty:
        return 0
    return int(frame.groupby("prompt_id").size().min())


def _attribute_accuracy_rows(oracle_path, samples, prompts_csv, method: str, variant: str, record) -> list[dict]:
    """attr_acc, attr_acc_ood and attr_acc/<attribute> from the world's oracle, under one protocol entry."""
    import pandas as pd

    from clipvqd.checkpoint import load_meta
    from clipvqd.evaluation.protocol import make_entry, sampling_description
    from clipvqd.evaluation.table import rows_from_metrics
    from clipvqd.hashing import sha256_file, sha256_of_hashes
    from clipvqd.manifest import read_manifest
    from clipvqd.oracle import score_samples

    scores = score_samples(oracle_path, samples, prompts_csv)
    frame = read_manifest(samples, verify=False)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str).set_index("prompt_id")
    prompt_ids = frame["prompt_id"].astype(str)
    meta = load_meta(oracle_path)
    n_ood = int(scores["images_ood"])
    n_in = int(scores["images"]) - n_ood
    entry = make_entry(
        "attribute_accuracy",
        metrics=["attr_acc", "attr_acc_ood", "attr_acc/<attribute>"],
        definition=("share of (image, requested attribute) pairs whose value the attribute oracle reads off the "
                    "image; attr_acc over in-distribution prompts, attr_acc_ood over prompts asking for held-out "
                    "attribute combinations, attr_acc/<attribute> over every prompt that requests the attribute"),
        oracle={"weights_sha256": sha256_file(oracle_path), "world": meta.get("world"),
                "resolution": meta.get("resolution"),
                "trained_on": "renders with their true attributes, never generated images"},
        prompt_table={"path": str(prompts_csv), "sha256": sha256_file(prompts_csv), "n_prompts": len(prompts),
                      "n_ood_prompts": int((prompts["ood"] == "1").sum())},
        sampling=sampling_description(frame),
        samples_content_sha256=sha256_of_hashes(frame["sha256"].astype(str)),
        sample_manifest=str(samples),
        images={"in_distribution": n_in, "ood": n_ood},
    )
    protocol_id = record.add(entry)
    values = {}
    if scores["attr_acc"] is not None:
        values["attr_acc"] = (scores["attr_acc"], n_in)
    if scores["attr_acc_ood"] is not None:
        values["attr_acc_ood"] = (scores["attr_acc_ood"], n_ood)
    for name, accuracy in scores["per_attribute"].items():
        requesting = int(sum(bool(prompts.at[pid, name]) for pid in prompt_ids))
        values[f"attr_acc/{name}"] = (accuracy, requesting)
    return rows_from_metrics(method, variant, values, protocol_id)


def cmd_evaluate_metrics(args) -> None:
    import logging

    import pandas as pd

    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.evaluation import evaluate_samples, write_metrics_table
    from clipvqd.evaluation.features import select_feature_extractor
    from clipvqd.manifest import read_manifest

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clipvqd").setLevel(logging.INFO)  # feature cache hits and misses
    if args.inception_weights and not args.inception_sha256:
        raise SystemExit(f"--inception-weights {args.inception_weights} needs --inception-sha256 (the file is a pickle)")
    for output in (args.out, args.protocol_out, args.candidates):
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
    conditioner = ClipEncoder.load(args.conditioner, device=args.device)
    judge = ClipEncoder.load(args.judge, device=args.device)
    # The judge's image tower when no Inception file is given: it conditioned no generator.
    extractor = select_feature_extractor(args.inception_weights, args.inception_sha256, offline_clip=judge,
                                         offline_label="judge-clip")
    print(f"feature extractor: {extractor.description}" + (f" ({extractor.approximation})" if extractor.approximation else ""))
    fewest = _fewest_samples_per_prompt(args.samples)
    best_of = BEST_OF if fewest >= BEST_OF else None
    if best_of is None:
        print(f"clipscore_best16 not measured: {args.samples} has {fewest} sample(s) for some prompt, "
              f"best-of-{BEST_OF} needs {BEST_OF} (sampling.samples_per_prompt)")
    rows, record = evaluate_samples(
        args.samples, args.reference, method=args.method, variant=args.variant, extractor=extractor,
        cache_dir=args.cache_dir, generator_clip=conditioner, generator_label="conditioner-clip", judge_clip=judge,
        judge_label="judge-clip", best_of=best_of, cross_check={"auto": None, "always": True, "never": False}[args.cross_check],
        reference_name=args.reference_name, out_candidates=args.candidates if best_of else None, device=args.device,
        kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, seed=args.seed,
    )
    if args.oracle:
        rows += _attribute_accuracy_rows(args.oracle, args.samples, args.prompts, args.method, args.variant, record)
    if args.candidates and best_of is None:
        # A declared output even when best-of-16 was not measured: the header alone says so.
        columns = list(read_manifest(args.samples, verify=False).columns) + list(CANDIDATE_COLUMNS)
        pd.DataFrame(columns=columns).to_csv(args.candidates, index=False)
    record.write(args.protocol_out)
    table = write_metrics_table(rows, args.out, protocol_ids=record.ids())
    print(table.to_string(index=False))


def _with_chance(value, chance) -> str:
    return f"{value:.4g} (chance {chance:.4g})"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten_numbers(value, prefix: str = "") -> dict:
    """Nested quality JSON -> {"a.b.c": leaf}, one line per number in the report. A number and its chance
    level ({"accuracy": a, "chance": c}, or "x" beside "x_chance") become one line "a (chance c)"."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    if set(value) == {"accuracy", "chance"} and all(_is_number(v) for v in value.values()):
        return {prefix or "accuracy": _with_chance(value["accuracy"], value["chance"])}
    flat = {}
    for key, item in value.items():
        key = str(key)
        base = key[:-len("_chance")] if key.endswith("_chance") else None
        if base and _is_number(item) and _is_number(value.get(base)):
            continue  # shown with its number
        name = f"{prefix}.{key}" if prefix else key
        if _is_number(item) and _is_number(value.get(f"{key}_chance")):
            flat[name] = _with_chance(item, value[f"{key}_chance"])
        else:
            flat.update(_flatten_numbers(item, name))
    return flat


def _json_mapping(text: str) -> dict[str, str]:
    value = _json(text)
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected {{label: path}}; not a path for {bad}")
    return value


def cmd_evaluate_report(args) -> None:
    from clipvqd.evaluation import merge_results
    from clipvqd.report import render_report

    if len(args.tables) != len(args.protocols):
        raise SystemExit(f"{len(args.tables)} metrics tables but {len(args.protocols)} protocol files; "
                         "give one protocol per table")
    merge_results(args.tables, args.protocols, args.metrics_out, args.protocol_out)
    benchmarks = [str(p) for p in args.benchmarks]
    for folder in args.benchmarks_dir:
        # Snakemake writes a benchmark file after each job: take those that exist now.
        benchmarks += sorted(str(p) for p in Path(folder).rglob("*.tsv"))
    quality = {}
    for label, path in args.quality.items():
        try:
            quality[label] = _flatten_numbers(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"quality numbers '{label}': cannot read {path}: {error}") from error
    paper_rows = json.loads(Path(args.paper_rows).read_text()) if args.paper_rows else None
    index = render_report(args.out_dir, args.metrics_out, args.protocol_out, sample_grids=args.grids,
                          training_curves=args.curves, benchmark_files=benchmarks, quality_numbers=quality,
                          paper_rows=paper_rows, title=args.title, run_name=args.run_name)
    # Always present, so the workflow can declare it (empty when no figure could be drawn).
    (Path(args.out_dir) / "figures").mkdir(parents=True, exist_ok=True)
    print(f"report written to {index}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvqd", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)

    def command(group: argparse._SubParsersAction, name: str, handler: Callable, help_text: str):
        sub = group.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def sampling_interface(sub: argparse.ArgumentParser) -> None:
        """The arguments every generator's sample command shares: prompts in, PNGs + manifest out."""
        sub.add_argument("--prompts", required=True)
        sub.add_argument("--prompt-embeddings", required=True)
        sub.add_argument("--prompt-prefix", default="", help="the data.prompt_prefix the prompt embeddings were made with")
        sub.add_argument("--samples-per-prompt", type=int, default=16)
        sub.add_argument("--batch-size", type=int, default=64)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--manifest", required=True, help="sample manifest; PNGs go to images/ beside it")
        sub.add_argument("--device", default="cpu")

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

    dif = groups.add_parser("diffusion", help="CLIP-VQDiffusion and its controls").add_subparsers(
        dest="command", required=True)
    dtr = command(dif, "train", cmd_diffusion_train, "pretrain, CFG fine-tune, or train a control")
    dtr.add_argument("--mode", required=True, choices=["language_free", "cfg_finetune", "paired", "unconditional"])
    dtr.add_argument("--params", type=_json, required=True, help='{"model": diffusion.model, "train": settings}')
    dtr.add_argument("--tokens", required=True, help="tokenized training split (manifest JSON)")
    dtr.add_argument("--embeddings", default=None, help="image embeddings (language-free) or caption embeddings (paired)")
    dtr.add_argument("--condition-dim", type=int, default=512, help="condition length when there are no embeddings")
    dtr.add_argument("--alpha", type=float, default=None, help="condition noise scale of this branch")
    dtr.add_argument("--init", default=None, help="weights to start from (cfg_finetune)")
    dtr.add_argument("--work", required=True, help="resume folder (not a workflow output)")
    dtr.add_argument("--out", required=True)
    dtr.add_argument("--curve", required=True)
    dtr.add_argument("--seed", type=int, default=0)
    dtr.add_argument("--device", default="cpu")
    dsa = command(dif, "sample", cmd_diffusion_sample, "prompts in, PNGs + manifest out")
    dsa.add_argument("--model", required=True)
    dsa.add_argument("--tokenizer", required=True)
    dsa.add_argument("--codebook", required=True)
    dsa.add_argument("--method", required=True)
    dsa.add_argument("--variant", required=True)
    dsa.add_argument("--settings", type=_json, required=True, help='e.g. {"s": 1.2, "r": 0.85, "steps": 100}')
    sampling_interface(dsa)

    laf = groups.add_parser("lafite", help="the LAFITE baseline (language-free StyleGAN2)").add_subparsers(
        dest="command", required=True)
    ltr = command(laf, "train", cmd_lafite_train, "train LAFITE on image embeddings (resumable)")
    ltr.add_argument("--params", type=_json, required=True, help='{"model": lafite.model, "train": lafite.train}')
    ltr.add_argument("--train", required=True, help="manifest of the generator training split")
    ltr.add_argument("--embeddings", required=True, help="CLIP image embeddings of that split")
    ltr.add_argument("--clip", required=True, help="the conditioner CLIP file that made them (itc loss)")
    ltr.add_argument("--resize", action="store_true", help="resize images to lafite.model.resolution")
    ltr.add_argument("--work", required=True, help="resume folder (not a workflow output)")
    ltr.add_argument("--out", required=True)
    ltr.add_argument("--curve", required=True)
    ltr.add_argument("--seed", type=int, default=0)
    ltr.add_argument("--device", default="cpu")
    lsa = command(laf, "sample", cmd_lafite_sample, "prompts in, PNGs + manifest out")
    lsa.add_argument("--model", required=True, help="generator checkpoint from lafite train")
    lsa.add_argument("--clip", default=None, help="conditioner CLIP file, checked against the checkpoint")
    lsa.add_argument("--method", default="lafite")
    lsa.add_argument("--variant", default="default")
    lsa.add_argument("--settings", type=_json, default={}, help="settings recorded in the manifest")
    sampling_interface(lsa)

    from clipvqd.clip2latent.cli import add_commands as add_clip2latent_commands

    add_clip2latent_commands(groups, command, sampling_interface, _planned_prompts, _write_planned_samples)

    evaluate = groups.add_parser("evaluate", help="metrics of sample sets and the comparison report").add_subparsers(
        dest="command", required=True)
    met = command(evaluate, "metrics", cmd_evaluate_metrics,
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
    met.add_argument("--out", required=True, help="the branch's metrics table (CSV)")
    met.add_argument("--protocol-out", required=True, help="the branch's protocol record (JSON)")
    met.add_argument("--candidates", default=None, help="best-of-16 candidates with rank and chosen flag (CSV)")
    met.add_argument("--device", default="cpu")
    rep = command(evaluate, "report", cmd_evaluate_report, "merge the branch tables and write the HTML report")
    rep.add_argument("--tables", nargs="+", required=True, help="per-branch metrics tables")
    rep.add_argument("--protocols", nargs="+", required=True, help="per-branch protocol records, same order")
    rep.add_argument("--metrics-out", required=True, help="merged metrics.csv (inside --out-dir)")
    rep.add_argument("--protocol-out", required=True, help="merged protocol.json (inside --out-dir)")
    rep.add_argument("--out-dir", required=True, help="report folder; index.html, figures/ and assets/ go there")
    rep.add_argument("--grids", type=_json_mapping, default={}, help='{"label": sample manifest.csv or grid image}')
    rep.add_argument("--curves", type=_json_mapping, default={}, help='{"model": training curve CSV}')
    rep.add_argument("--quality", type=_json_mapping, default={}, help='{"group": metrics.json}')
    rep.add_argument("--benchmarks", nargs="*", default=[], help="Snakemake benchmark TSVs")
    rep.add_argument("--benchmarks-dir", nargs="*", default=[],
                     help="folders whose *.tsv benchmark files (as they exist now) are read")
    rep.add_argument("--paper-rows", default=None,
                     help="JSON list of cited numbers (method, metric, value, source[, dataset, note])")
    rep.add_argument("--title", default="clipvqd comparison report")
    rep.add_argument("--run-name", default=None)

    from clipvqd.datasets.cli import register as register_data_commands

    register_data_commands(groups, command)  # `data ...`: downloads, COCO/FFHQ preparation, weights
    return parser


def main(argv: list[str] | None = None) -> int:
    if not sys.stderr.isatty():
        # Rule logs are files: a progress bar redrawn ten times a second buries them, so redraw every 10 s
        # there (tqdm reads TQDM_* defaults when first imported, which happens inside the handlers).
        os.environ.setdefault("TQDM_MININTERVAL", "10")
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None):
        from clipvqd.device import resolve_device

        args.device = resolve_device(args.device)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
