"""Local inputs of the paper-shape rehearsal (configs/rehearsal.yaml): everything the FFHQ or COCO overlay
would download, made here at the real formats and shapes but with random content, plus the config overlay
that points the workflow at them.

- data: a folder of FFHQ-format PNGs (data.ffhq.path, with a prompts file) or an extracted COCO 2014 copy
  (train2014/, val2014/, annotations/captions_*2014.json; data.coco.path);
- CLIP: randomly initialised open_clip models of the overlay's architectures (ViT-B-32 conditioner, ViT-L-14
  judge) saved as safetensors, declared with `source: file` and their sha256;
- the weights the overlays fetch (weights.inception, weights.lpips): torch-fidelity's InceptionV3, VGG16's
  feature layers and the LPIPS linear heads, randomly initialised, pickled as the official files are, and
  served through file:// URLs with their sha256 and size, so that weights_download and weights_convert run.

Usage: python tests/rehearsal_inputs.py {ffhq,coco} OUT  (writes OUT/inputs.yaml and the files beside it).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

FFHQ_IMAGES = 6  # PNGs in the FFHQ-format folder
FFHQ_SIDE = 320  # larger than the 256 px training resolution, so preparation resizes as with the 1024 px copy
COCO_IMAGES = {"train2014": 5, "val2014": 5}
PROMPTS = ["a photograph of a smiling woman with red hair", "a photograph of an old man with glasses"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _noise_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth random colour fields (not white noise, which no codec or tokenizer resembles)."""
    small = rng.integers(0, 256, (max(height // 32, 2), max(width // 32, 2), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BICUBIC)


def write_ffhq(root: Path, seed: int = 0) -> dict:
    images = root / "ffhq" / "images1024x1024" / "00000"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(FFHQ_IMAGES):
        _noise_image(rng, FFHQ_SIDE, FFHQ_SIDE).save(images / f"{index:05d}.png")
    prompts = root / "ffhq-prompts.txt"
    prompts.write_text("".join(f"{p.removeprefix('a photograph of ')}\n" for p in PROMPTS))
    return {"ffhq": {"path": str(root / "ffhq" / "images1024x1024"), "expected_count": FFHQ_IMAGES,
                     "image_size": FFHQ_SIDE, "prompts_file": str(prompts)}}


def write_coco(root: Path, seed: int = 0) -> dict:
    coco = root / "coco2014"
    rng = np.random.default_rng(seed)
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count in COCO_IMAGES.items():
        (coco / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for k in range(count):
            image_id = (100 if split == "train2014" else 500) + 7 * k
            width, height = 300 + 16 * k, 280 + 8 * k  # not square: preparation centre-crops
            name = f"COCO_{split}_{image_id:012d}.jpg"
            _noise_image(rng, width, height).save(coco / split / name, quality=90)
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            for c in range(5):
                annotations.append({"id": image_id * 10 + c, "image_id": image_id,
                                    "caption": f"A photo of object {k} in scene {c} of {split}."})
        (coco / "annotations" / f"captions_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations}))
    return {"coco": {"path": str(coco)}}


def write_clip(root: Path, model_name: str, seed: int) -> dict:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    path = root / f"clip-{model_name}-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return {"source": "file", "model": model_name, "weights": str(path), "sha256": _sha256(path)}


def _served(path: Path) -> dict:
    return {"url": path.resolve().as_uri(), "sha256": _sha256(path), "size": path.stat().st_size}


def write_weights(root: Path, seed: int = 0) -> dict:
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception
    from torchvision.models import vgg16

    torch.manual_seed(seed)
    folder = root / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    # torch-fidelity's InceptionV3 reads its weights in the constructor; build it around an empty state
    # dict (loading skipped) and pickle the random initialisation under the official file's keys.
    placeholder = folder / "empty.pth"
    torch.save({}, placeholder)
    cls = fidelity_inception.FeatureExtractorInceptionV3
    original = cls.load_state_dict
    cls.load_state_dict = lambda self, state_dict, *args, **kwargs: None
    try:
        inception = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(placeholder))
    finally:
        cls.load_state_dict = original
    placeholder.unlink()
    torch.save(inception.state_dict(), folder / "inception.pth")
    # LPIPS reads only VGG16's feature layers (classifier.* is ignored), so the random file holds only those.
    features = {f"features.{k}": v for k, v in vgg16(weights=None).features.state_dict().items()}
    torch.save(features, folder / "vgg16.pth")
    linear = {f"lin{i}.model.1.weight": torch.rand(1, width, 1, 1) * 0.1
              for i, width in enumerate((64, 128, 256, 512, 512))}
    torch.save(linear, folder / "lpips-vgg.pth")
    return {"inception": {"fetch": True, **_served(folder / "inception.pth")},
            "lpips": {"fetch": True, "vgg": _served(folder / "vgg16.pth"),
                      "linear": _served(folder / "lpips-vgg.pth")}}


def write_inputs(source: str, out: str | Path) -> Path:
    """Write every local input of the rehearsal of `source` (ffhq or coco) and OUT/inputs.yaml; return it."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = write_ffhq(out) if source == "ffhq" else write_coco(out)
    overlay = {
        "run": f"{source}-rehearsal",
        "data": {**data, "downloads": str(out / "downloads")},
        "clip": {"conditioner": write_clip(out, "ViT-B-32", seed=0), "judge": write_clip(out, "ViT-L-14", seed=1)},
        "weights": write_weights(out),
    }
    path = out / "inputs.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=True))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("ffhq", "coco"):
        sys.exit("usage: python tests/rehearsal_inputs.py {ffhq,coco} OUT")
    print(write_inputs(sys.argv[1], sys.argv[2]))
