#!/usr/bin/env python
"""CLIP embedding cache throughput against the bare encoder on the same batches (issue 8, target 4).

  cache  `clipvqd.clip.embed.embed_images(encoder, manifest, out)`: what the clip_embed rule runs,
         end to end: manifest read with every file's sha256 checked, PNG decoding, batching, encoding,
         and the safetensors write (with the manifest's hash in its metadata).
  bare   `ClipEncoder.encode_images` alone on the same images, preloaded as uint8 tensors and cut into the
         same batches: the encoder's own throughput, the ceiling of the cache.

The target is cache >= 90% of bare (data loading is not the bottleneck). The two are timed alternately
(--repeats times; medians reported), the embeddings are checked to be identical, and the cache's time
is split so a shortfall says where it comes from: the manifest's up-front check (files exist; each
file's sha256 is checked as the decoding process reads it), reading + hashing + decoding timed serially
here (in the cache it overlaps the encoder in a loader process), and what is left over (loader start-up,
waiting for the first batch, stacking, the save).

By default it builds what it measures in a temporary folder: a small faces world (--images training
images, 32 px) and an untrained stand-in CLIP with the default run's conditioner architecture (read from
config.yaml; throughput does not depend on the weights). Or point it at existing files, read only:
    --clip results/default/clip/conditioner/model.safetensors --manifest results/default/data/train.csv
Writes JSON to --out (default benchmarks/results/clip_embed_cpu.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from clipvqd.clip.embed import embed_images  # noqa: E402
from clipvqd.clip.encoder import ClipEncoder  # noqa: E402
from clipvqd.manifest import ManifestImages, read_manifest, to_uint8  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "clip_embed_cpu.json"
HELD_OUT = [{"hair_color": "red", "beard": "yes"}, {"glasses": "yes", "hat": "yes"}]
# The default run's conditioner (config.yaml clip.conditioner.standin), used if config.yaml cannot be read.
CONDITIONER_FALLBACK = {"vision_tower": "resnet", "vision_width": 16, "vision_layers": 1, "text_width": 96,
                        "text_layers": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clip", type=Path, default=None, help="CLIP file to load (read only); default: a stand-in "
                   "with the conditioner's architecture, built in a temporary folder")
    p.add_argument("--manifest", type=Path, default=None, help="image manifest to embed (read only); default: "
                   "the train split of a small faces world built in a temporary folder")
    p.add_argument("--images", type=int, default=1000, help="training images of the built world")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (embed_images' default)")
    p.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each; medians reported")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    args = p.parse_args(argv)
    if args.images < 1 or args.batch_size < 1 or args.repeats < 1:
        p.error("--images, --batch-size and --repeats must be >= 1")
    return args


def build_world(out: Path, images: int, seed: int) -> Path:
    from clipvqd.worlds.generate import generate_world

    generate_world("faces", out, seed=seed, resolution=32,
                   sizes={"clip_pairs": 8, "train": images, "reference": 4, "oracle": 8}, heldout=HELD_OUT,
                   prompt_count=4, attributes_per_prompt=3, ood_prompts_per_combination=1,
                   oracle_test_fraction=0.25, clip_holdout_fraction=0.5, progress=False)
    return out / "train.csv"


def conditioner_standin_settings() -> tuple[dict, str]:
    try:
        import yaml

        config = yaml.safe_load((benchlib.REPO / "config.yaml").read_text())
        settings = dict(config["clip"]["conditioner"]["standin"])
        return settings, "config.yaml clip.conditioner.standin"
    except Exception:  # noqa: BLE001 - fall back to the copy above
        return dict(CONDITIONER_FALLBACK), "built-in copy of the default conditioner"


def build_standin(out: Path, seed: int) -> tuple[Path, dict]:
    import open_clip

    from clipvqd.clip.encoder import register_model_config, save_clip
    from clipvqd.clip.standin import STANDIN_MEAN, STANDIN_STD, StandinClipConfig

    settings, source = conditioner_standin_settings()
    known = {f.name for f in fields(StandinClipConfig)}
    settings = {k: v for k, v in settings.items() if k in known}
    settings["model_name"] = "clipvqd-bench-standin"  # its own name: never clashes with a registered model
    cfg = StandinClipConfig(**settings)
    register_model_config(cfg.model_name, cfg.model_cfg())
    torch.manual_seed(seed)
    model = open_clip.create_model(cfg.model_name, pretrained=None)
    path = out / "clip.safetensors"
    save_clip(path, model, model_name=cfg.model_name, model_cfg=cfg.model_cfg(), mean=STANDIN_MEAN, std=STANDIN_STD,
              source={"kind": "benchmark stand-in (untrained)", "seed": seed})
    return path, {"architecture_from": source, "settings": settings, "weights": "untrained"}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    benchlib.check_out(args.out)
    threads = benchlib.set_threads(args.threads)
    env = benchlib.environment(args.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-clip-embed-") as tmp:
        tmp = Path(tmp)
        built: dict = {}
        manifest = args.manifest
        if manifest is None:
            t0 = time.perf_counter()
            manifest = build_world(tmp / "world", args.images, args.seed)
            built["world_s"] = round(time.perf_counter() - t0, 2)
        clip_path, clip_info = args.clip, {"path": str(args.clip)} if args.clip else {}
        if clip_path is None:
            clip_path, clip_info = build_standin(tmp, args.seed)
        encoder = ClipEncoder.load(clip_path, device=args.device)
        count = len(read_manifest(manifest, verify=False))
        print(f"clip_embed_cpu: {count} images of {manifest}, batch {args.batch_size}, CLIP "
              f"{clip_info.get('path') or clip_info.get('architecture_from')}, {threads} thread(s), "
              f"load average {env['loadavg_start']}", flush=True)

        # The bare encoder's input: the same images, the same uint8 batches embed_images builds.
        dataset = ManifestImages(manifest, verify=False)
        batches = [to_uint8(torch.stack([dataset[i] for i in range(s, min(s + args.batch_size, count))]))
                   for s in range(0, count, args.batch_size)]
        sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else None

        def bare():
            return torch.cat([encoder.encode_images(batch) for batch in batches])

        def cache():
            return embed_images(encoder, manifest, tmp / "embeddings.safetensors", batch_size=args.batch_size,
                                progress=False)

        def verify():
            return read_manifest(manifest, verify=True, exist_only=True)

        def decode():
            images = ManifestImages(manifest, verify_on_read=True)
            return [images.uint8(i) for i in range(len(images))]

        bare()  # warm-up
        times: dict[str, list[float]] = {"cache": [], "bare": [], "verify": [], "decode": []}
        outputs = {}
        for _ in range(args.repeats):
            for name, fn in (("cache", cache), ("bare", bare), ("verify", verify), ("decode", decode)):
                seconds, value = benchlib.timed(fn, sync)
                times[name].append(seconds)
                if name in ("cache", "bare"):
                    outputs[name] = value
        identical = bool(torch.equal(outputs["cache"], outputs["bare"]))
        max_diff = float((outputs["cache"] - outputs["bare"]).abs().max())

    median = {name: benchlib.summary(values)["median_s"] for name, values in times.items()}
    rest = median["cache"] - median["bare"] - median["verify"]
    ratio = benchlib.ratio(median["bare"], median["cache"])
    payload = {
        "benchmark": "clip_embed_cpu", "environment": env,
        "inputs": {"manifest": str(args.manifest) if args.manifest else f"built faces world ({args.images} images)",
                   "images": count, "batch_size": args.batch_size, "repeats": args.repeats,
                   "clip": clip_info, "built": built},
        "timings": {name: benchlib.summary(values) for name, values in times.items()},
        "images_per_s": {"cache": round(count / median["cache"], 1), "bare": round(count / median["bare"], 1)},
        "cache_breakdown_s": {"encode (bare)": median["bare"], "manifest check (files exist)": median["verify"],
                              "other (loader start-up and waits, stacking, save)": round(rest, 6),
                              "read + sha256 + decode, serial (overlaps encoding in the cache)": median["decode"]},
        "ratios": {"cache_over_bare_throughput": ratio, "target": 0.9,
                   "target_met": ratio is not None and ratio >= 0.9},
        "embeddings_identical": identical, "max_abs_difference": max_diff,
        "total_s": round(time.perf_counter() - started, 2),
    }
    benchlib.finish(env, threads)
    print(f"  cache {payload['images_per_s']['cache']:,.0f} images/s, bare encoder {payload['images_per_s']['bare']:,.0f} "
          f"images/s: cache/bare = {ratio} (target >= 0.9); identical embeddings: {identical}", flush=True)
    print(f"  cache time split (median s): {payload['cache_breakdown_s']}", flush=True)
    if env["contended"]:
        print(f"  NOTE: load average {env['loadavg_start']} -> {env['loadavg_end']}: other work shared the CPU; "
              "quote the ratio, not the absolute numbers", flush=True)
    out = benchlib.write_json(args.out, payload)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
