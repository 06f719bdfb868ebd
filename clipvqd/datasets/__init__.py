"""Real data sets and pretrained weights: checked downloads, COCO 2014 and FFHQ preparation.

- `download`: resumable HTTP(S) fetch into `<dest>.part`, sha256-checked before the atomic move.
- `images`: the one image transform every prepared split goes through (centre crop, resize, PNG).
- `tables`: the manifests and summary a prepared data set writes (the same files a world writes).
- `coco`: COCO 2014 from the official zips or an extracted copy.
- `ffhq`: FFHQ from a local folder of PNGs, validated and hashed.
- `weights`: pretrained weights fetched as pickles, turned into safetensors after their check.
- `parallel`: worker processes for per-image work.
- `cli`: the `python -m clipvqd data ...` commands the data rules call.
"""
