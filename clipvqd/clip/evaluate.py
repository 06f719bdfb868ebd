"""How good is a CLIP? Zero-shot retrieval and per-attribute accuracy on held-out captioned pairs.

A CLIP too weak to tell the world's attributes apart cannot condition a generator, and every later
number would be meaningless; these metrics make that visible next to the results.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipvqd.clip.encoder import ClipEncoder
from clipvqd.manifest import ManifestImages, to_uint8
from clipvqd.worlds import get_world


def retrieval_recall(text_embeddings: torch.Tensor, image_embeddings: torch.Tensor, gallery: int,
                     ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Text->image recall@k, where each caption's own image competes with `gallery - 1` others."""
    hits = {k: 0 for k in ks}
    total = 0
    for start in range(0, len(text_embeddings) - gallery + 1, gallery):
        texts = text_embeddings[start:start + gallery]
        images = image_embeddings[start:start + gallery]
        similarity = texts @ images.T
        own = similarity.diagonal().unsqueeze(1)
        rank = (similarity > own).sum(dim=1)
        for k in ks:
            hits[k] += int((rank < k).sum())
        total += len(texts)
    if total == 0:
        raise ValueError(f"need at least {gallery} held-out pairs for retrieval, got {len(text_embeddings)}")
    return {f"recall@{k}": hits[k] / total for k in ks} | {f"recall@{k}_chance": k / gallery for k in ks}


def zero_shot_attribute_accuracy(encoder: ClipEncoder, world_name: str, images_uint8: torch.Tensor,
                                 labels: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per attribute: classify each image among the attribute's values by text similarity, each value named
    by the world's evaluation prompt for it alone, plus the image's true values of the world's prompt anchors
    (which every evaluation prompt names: scenes probes "a red shape above a shape" against "a blue shape above
    a shape" on an image whose objects are one above the other)."""
    world = get_world(world_name)
    image_embeddings = encoder.encode_images(images_uint8)
    result = {}
    for attribute in world.attributes:
        anchors = [name for name in world.prompt_anchors if name != attribute.name]
        contexts = [tuple((name, labels[name][index]) for name in anchors) for index in range(len(image_embeddings))]
        predicted = torch.empty(len(image_embeddings), dtype=torch.long)
        for context in sorted(set(contexts)):
            rows = torch.tensor([index for index, own in enumerate(contexts) if own == context])
            prompts = [world.zero_shot_prompt(attribute.name, value, dict(context)) for value in attribute.values]
            text_embeddings = encoder.encode_texts(prompts)
            predicted[rows] = (image_embeddings[rows] @ text_embeddings.T).argmax(dim=1)
        truth = torch.tensor([attribute.values.index(v) for v in labels[attribute.name]])
        result[attribute.name] = {"accuracy": float((predicted == truth).float().mean()),
                                  "chance": 1.0 / len(attribute.values)}
    return result


def evaluate_clip(clip_path: str | Path, pairs_manifest: str | Path, world_name: str, gallery: int = 100) -> dict:
    encoder = ClipEncoder.load(clip_path)
    dataset = ManifestImages(pairs_manifest)
    held_out = [i for i, fold in enumerate(dataset.frame["fold"]) if fold == "test"]
    if len(held_out) < gallery:
        raise ValueError(f"{pairs_manifest}: {len(held_out)} held-out pairs, fewer than the gallery size {gallery}")
    images = to_uint8(torch.stack([dataset[i] for i in held_out]))
    captions = [dataset.frame["caption"].iloc[i] for i in held_out]
    rows = dataset.frame.iloc[held_out]
    world = get_world(world_name)
    labels = {name: rows[name].tolist() for name in world.attribute_names}
    retrieval = retrieval_recall(encoder.encode_texts(captions), encoder.encode_images(images), gallery)
    attributes = zero_shot_attribute_accuracy(encoder, world_name, images, labels)
    return {
        "clip_sha256": encoder.identity,
        "held_out_pairs": len(held_out),
        "retrieval_gallery": gallery,
        "text_to_image": retrieval,
        "zero_shot_attributes": attributes,
        "zero_shot_mean_accuracy": sum(a["accuracy"] for a in attributes.values()) / len(attributes),
    }
