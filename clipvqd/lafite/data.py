"""What the LAFITE trainer reads: the training split's cached CLIP image embeddings, checked to embed that
split with the CLIP that will score the generator's images (the itc loss)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor


class TrainingDataError(ValueError):
    """The embeddings, the training split and the CLIP of a LAFITE job do not belong together."""


def training_embeddings(embeddings_path: str | Path, train_manifest: str | Path, clip_identity: str,
                        clip_path: str | Path, image_count: int | None = None) -> Tensor:
    """The embeddings of `embeddings_path`, refused unless they embed `train_manifest` (its sha256), were
    made by the CLIP whose identity is `clip_identity` (the file `clip_path`), and, when `image_count` is
    given, hold one row per training image."""
    from clipvqd.clip.embed import read_embedding_cache
    from clipvqd.hashing import sha256_file

    embeddings, meta = read_embedding_cache(embeddings_path)
    manifest_sha = sha256_file(train_manifest)
    if meta.get("source_sha256") and meta["source_sha256"] != manifest_sha:
        raise TrainingDataError(f"{embeddings_path} embeds {meta.get('source')} (sha256 {meta.get('source_sha256')}), "
                                f"not {train_manifest} (sha256 {manifest_sha}); rerun clip_embed")
    if meta.get("clip_sha256") and meta["clip_sha256"] != clip_identity:
        raise TrainingDataError(f"{embeddings_path} was made by CLIP {meta['clip_sha256']}, not by {clip_path} "
                                f"({clip_identity}); rerun clip_embed")
    if image_count is not None and image_count != len(embeddings):
        raise TrainingDataError(f"{embeddings_path} holds {len(embeddings)} embeddings but {train_manifest} lists "
                                f"{image_count} images")
    return embeddings
