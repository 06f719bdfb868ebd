"""`python -m clipvqd data ...`: the commands the data and weights rules call."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipvqd.cli_args import add_command, commands, output_arguments

FFHQ_HOWTO = """\
FFHQ is not downloaded automatically. Its official files (NVlabs/ffhq-dataset: ffhq-dataset-v2.json and
70000 PNGs) are served from Google Drive, which rate-limits bulk downloads ("quota exceeded") and answers
large files with an interactive confirmation page, so an unattended rule cannot fetch it reliably.
Get a copy once, then point the config at it:
  1. git clone https://github.com/NVlabs/ffhq-dataset && cd ffhq-dataset
     python download_ffhq.py --images        # images1024x1024/: 70 folders of 1000 PNGs
     (it checks every file against the md5 in ffhq-dataset-v2.json; or ask your cluster admins, many
     sites keep a copy)
  2. set data.ffhq.path to that images1024x1024 folder in your config overlay (a copy of configs/ffhq.yaml).
The workflow then validates the copy (count, readability, sizes, sha256 per file) instead of downloading it.
Its licence terms are in the ffhq-dataset README."""


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "null", ""):
        return None
    return int(text)


def cmd_download(args) -> None:
    from clipvqd.datasets.download import download

    path = download(args.url, args.out, args.sha256, expected_size=args.size, retries=args.retries,
                    timeout=args.timeout)
    print(f"{args.url} -> {path} (sha256 {args.sha256.lower()})")


def cmd_ffhq_download(args) -> None:
    raise SystemExit(f"cannot produce {args.out}: data.ffhq.path is not set.\n{FFHQ_HOWTO}")


def cmd_ffhq_validate(args) -> None:
    from clipvqd.datasets.ffhq import validate_ffhq

    summary = validate_ffhq(args.root, args.manifest, expected_count=args.expected_count, min_side=args.min_side,
                            image_size=args.image_size, workers=args.workers)
    print(f"FFHQ copy {summary['path']}: {summary['count']} files, sides {summary['sizes']}, manifest {args.manifest}")


def cmd_ffhq_prepare(args) -> None:
    from clipvqd.datasets.ffhq import prepare_ffhq

    summary = prepare_ffhq(args.source_manifest, args.out, resolution=args.resolution, prompts_file=args.prompts_file,
                           seed=args.seed, train_count=args.train_count, reference_count=args.reference_count,
                           workers=args.workers)
    print(f"FFHQ prepared in {args.out}: {summary['sizes']}")


def cmd_coco_prepare(args) -> None:
    from clipvqd.datasets.coco import CocoSource, prepare_coco
    if args.root:
        source = CocoSource.from_folder(args.root)
    else:
        if not (args.train_zip and args.val_zip and args.annotations_zip):
            raise SystemExit("coco-prepare needs --root, or all of --train-zip, --val-zip, --annotations-zip")
        source = CocoSource.from_zips(args.train_zip, args.val_zip, args.annotations_zip)
    # The declared hashes, checked again here: an archive copied into the downloads folder by hand never
    # went through the download rule. Recorded in dataset.json.
    inputs = json.loads(args.inputs_sha256) if args.inputs_sha256 else {}
    if inputs:
        from clipvqd.hashing import verify_sha256

        for path in (args.train_zip, args.val_zip, args.annotations_zip):
            name = Path(path).name
            if name not in inputs:
                raise SystemExit(f"--inputs-sha256 has no hash for {name} (keys: {sorted(inputs)})")
            print(f"checking sha256 of {path}")
            verify_sha256(path, inputs[name], what=f"COCO archive (data.coco.archives, {name})")
    summary = prepare_coco(source, args.out, resolution=args.resolution, train_on=args.train_on, seed=args.seed,
                           train_count=args.train_count, reference_count=args.reference_count,
                           prompt_count=args.prompt_count, workers=args.workers, inputs=inputs)
    print(f"COCO 2014 prepared in {args.out}: {summary['sizes']}, trained on {summary['train_on']}")


def cmd_convert_weights(args) -> None:
    from clipvqd.datasets.weights import to_safetensors

    digest = to_safetensors(args.source, args.sha256, args.out, what=args.what)
    print(f"{args.source} -> {args.out} (sha256 {digest})")


def register(group: argparse.ArgumentParser) -> None:
    data = commands(group)
    dl = add_command(data, "download", cmd_download, "checked, resumable download of one file")
    dl.add_argument("--url", required=True)
    dl.add_argument("--sha256", required=True, help="the file is moved into place only with this hash")
    dl.add_argument("--out", required=True)
    dl.add_argument("--size", type=_optional_int, default=None, help="expected size in bytes (optional)")
    dl.add_argument("--retries", type=int, default=3, help="resumed retries after a dropped connection")
    dl.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")

    fd = add_command(data, "ffhq-download", cmd_ffhq_download, "explain how to obtain FFHQ (not automated)")
    fd.add_argument("--out", required=True)

    fv = add_command(data, "ffhq-validate", cmd_ffhq_validate, "validate a local FFHQ copy, write its manifest")
    fv.add_argument("--root", required=True, help="folder of PNGs (searched recursively)")
    fv.add_argument("--manifest", required=True, help="source manifest to write (path, sha256, width, height)")
    fv.add_argument("--expected-count", type=_optional_int, default=70000)
    fv.add_argument("--image-size", type=_optional_int, default=None, help="required side in pixels (optional)")
    fv.add_argument("--min-side", type=int, required=True, help="smallest usable side (the training resolution)")
    fv.add_argument("--workers", type=int, default=1)
    output_arguments(fv, "manifest")

    fp = add_command(data, "ffhq-prepare", cmd_ffhq_prepare, "resize a validated FFHQ copy into the run's data folder")
    fp.add_argument("--source-manifest", required=True)
    fp.add_argument("--out", required=True)
    fp.add_argument("--resolution", type=int, required=True)
    fp.add_argument("--prompts-file", required=True)
    fp.add_argument("--seed", type=int, default=0)
    fp.add_argument("--train-count", type=_optional_int, default=None)
    fp.add_argument("--reference-count", type=_optional_int, default=None)
    fp.add_argument("--workers", type=int, default=1)

    cp = add_command(data, "coco-prepare", cmd_coco_prepare, "COCO 2014 splits, prompts and manifests")
    cp.add_argument("--root", default=None, help="extracted copy (train2014/, val2014/, annotations/)")
    cp.add_argument("--train-zip", default=None)
    cp.add_argument("--val-zip", default=None)
    cp.add_argument("--annotations-zip", default=None)
    cp.add_argument("--inputs-sha256", default=None, help="JSON {archive: sha256} recorded in dataset.json")
    cp.add_argument("--out", required=True)
    cp.add_argument("--resolution", type=int, required=True)
    cp.add_argument("--train-on", choices=("train", "train+val"), default="train")
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--train-count", type=_optional_int, default=None)
    cp.add_argument("--reference-count", type=_optional_int, default=None)
    cp.add_argument("--prompt-count", type=_optional_int, default=None)
    cp.add_argument("--workers", type=int, default=1)

    cw = add_command(data, "convert-weights", cmd_convert_weights, "checked .pth -> safetensors (weights_only load)")
    cw.add_argument("--source", required=True)
    cw.add_argument("--sha256", required=True)
    cw.add_argument("--out", required=True)
    cw.add_argument("--what", default="weights", help="name of the file in messages")
