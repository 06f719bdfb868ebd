"""The worlds' stand-in CLIP: an open_clip model trained in the DAG on the captioned split only.

It plays the part of CLIP's web pretraining. The architecture is a custom open_clip model config
(registered with open_clip, so its own tokenizer applies unchanged); only the sizes are
small enough for a CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

from clipvqd.clip.encoder import register_model_config, save_clip
from clipvqd.clip.standin_config import StandinClipConfig
from clipvqd.hashing import sha256_file
from clipvqd.manifest import ManifestImages
from clipvqd.training import (TrainingRun, generator_for, seeded_global_rng, tensor_sha256, warmup_cosine,
                              without_bookkeeping)

_STREAM_INIT, _STREAM_BATCH = 81, 82

# The stand-in sees images in [-1, 1]: mean 0.5 and std 0.5 on [0, 1] pixels.
STANDIN_MEAN = (0.5, 0.5, 0.5)
STANDIN_STD = (0.5, 0.5, 0.5)


def _learning_rate(step: int, total: int, cfg: StandinClipConfig) -> float:
    """A linear warm-up over warmup_fraction of the steps (at least one), then cosine decay to zero."""
    return cfg.learning_rate * warmup_cosine(step, total, max(1, int(cfg.warmup_fraction * total)))


def _draw_batch(attributes, shared: list[str], batch_size: int, hard: bool, generator: torch.Generator) -> torch.Tensor:
    """Indices of one batch: uniform, or (hard) first every image agreeing with a random anchor on `shared`."""
    count = len(attributes)
    if not hard or not shared:
        return torch.randperm(count, generator=generator)[:batch_size]
    anchor = attributes.iloc[int(torch.randint(count, (1,), generator=generator))]
    agree = (attributes[shared] == anchor[shared]).all(axis=1)
    pool = torch.tensor(agree.to_numpy()).nonzero().flatten()
    chosen = pool[torch.randperm(len(pool), generator=generator)[:batch_size]]
    rest = torch.randperm(count, generator=generator)
    rest = rest[~torch.isin(rest, chosen)][: batch_size - len(chosen)]
    return torch.cat([chosen, rest])


def _negative_captions(rows, cfg: StandinClipConfig, pairs_manifest) -> list[list[str]]:
    """Each caption's hard negatives: none when text_negative_fraction is 0; "chosen", the negative_caption
    column's one (none where empty or absent); "every", the negative_captions column's, one per attribute
    the caption names."""
    if cfg.text_negative_fraction <= 0:
        return [[] for _ in range(len(rows))]
    if cfg.text_negatives == "every":
        if "negative_captions" not in rows:
            raise ValueError(f"{pairs_manifest} has no negative_captions column, which standin.text_negatives: "
                             "every reads (both pair splits have it; regenerate the world)")
        return [list(json.loads(text).values()) if text else [] for text in rows["negative_captions"].fillna("")]
    if "negative_caption" not in rows:
        return [[] for _ in range(len(rows))]
    return [[text] if text else [] for text in rows["negative_caption"].fillna("").astype(str)]


def _negatives_sha256(negative_tokens: torch.Tensor, counts: torch.Tensor, tokens: torch.Tensor) -> str:
    """The fingerprint of the hard negatives. One or none per caption: the hash of one token row per caption
    (the caption's own where it has none, zeroed), as before "every" existed, so such runs keep their
    fingerprint. Several: the hash of every negative's tokens and each caption's count."""
    if int(counts.max()) <= 1:
        rows = tokens.clone()
        rows[counts == 1] = negative_tokens
        return tensor_sha256(rows * (counts == 1)[:, None])
    return tensor_sha256(torch.cat([counts, negative_tokens.flatten()]))


class UsedTokenRows:
    """Training with only the token-embedding rows the data use (StandinClipConfig.vocabulary_rows "used").

    Swaps the model's token embedding for one holding the rows of `used` token ids (sorted, so the end-of-text
    token, the largest id, stays the largest and open_clip's argmax pooling still finds it), and maps token ids
    to rows with `remap`. `restore` writes the trained rows back into the full table and puts it back. The
    rows left out would get no gradient; with no weight decay on embeddings AdamW leaves them unchanged, so
    the restored table is what training the whole table gives."""

    def __init__(self, model: torch.nn.Module, *token_tensors: torch.Tensor):
        self.model = model
        self.full = model.token_embedding
        self.used = torch.unique(torch.cat([t.flatten() for t in token_tensors]))
        self.lookup = torch.full((self.full.num_embeddings,), -1, dtype=torch.long)
        self.lookup[self.used] = torch.arange(len(self.used))
        small = torch.nn.Embedding(len(self.used), self.full.embedding_dim, device=self.full.weight.device,
                                   dtype=self.full.weight.dtype)
        with torch.no_grad():
            small.weight.copy_(self.full.weight[self.used.to(self.full.weight.device)])
        model.token_embedding = small

    def remap(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lookup[tokens]

    def restore(self) -> None:
        with torch.no_grad():
            self.full.weight[self.used.to(self.full.weight.device)] = self.model.token_embedding.weight
        self.model.token_embedding = self.full


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the batch's n image/caption pairs (open_clip's ClipLoss on one process),
    with NegCLIP's extension: text rows past the n-th are hard negative captions, extra wrong answers for
    every image's choice among texts; the texts still choose among the n images only."""
    count = len(image_features)
    labels = torch.arange(count, device=image_features.device)
    per_image = logit_scale * image_features @ text_features.T
    per_text = logit_scale * text_features[:count] @ image_features.T
    return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2


def train_standin_clip(pairs_manifest: str | Path, cfg: StandinClipConfig, work_dir: str | Path, out: str | Path,
                       curve_csv: str | Path, seed: int = 0, device: str = "cpu", progress: bool = True,
                       final_snapshot: bool = True) -> str:
    """Train on the `fold == train` rows of the captioned split; write the CLIP file; return its sha256.
    Resumable from the snapshots in `work_dir` (every `snapshot_every` steps). final_snapshot: False skips the
    snapshot of the last step (TrainingRun), where the caller removes `work_dir` once the CLIP file exists."""
    dataset = ManifestImages(pairs_manifest, resolution=None)
    train_rows = [i for i, fold in enumerate(dataset.frame["fold"]) if fold == "train"]
    if not train_rows:
        raise ValueError(f"manifest {pairs_manifest} has no rows with fold == 'train'")
    images = torch.stack([dataset[i] for i in train_rows])
    captions = [dataset.frame["caption"].iloc[i] for i in train_rows]
    # What this CLIP was trained on, for its sidecar: the judge's independence from the conditioner is checkable.
    pairs_record = {"manifest_sha256": sha256_file(pairs_manifest), "split": Path(pairs_manifest).stem,
                    "train_pairs": len(train_rows),
                    "wordings": sorted(set(dataset.frame["wording"].iloc[train_rows])) if "wording" in dataset.frame else None}

    model_cfg = cfg.model_cfg()
    register_model_config(cfg.model_name, model_cfg)
    with seeded_global_rng(seed, _STREAM_INIT):
        model = open_clip.create_model(cfg.model_name, pretrained=None).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.visual.to(memory_format=memory_format)  # a layout only: StandinClipConfig.channels_last
    tokenizer = open_clip.get_tokenizer(cfg.model_name)
    tokens = tokenizer(captions)
    # Hard negative captions (NegCLIP): rows whose caption names no attribute have none. Caption i's are
    # rows first_negative[i] to first_negative[i + 1] of negative_tokens.
    negatives = _negative_captions(dataset.frame.iloc[train_rows], cfg, pairs_manifest)
    counts = torch.tensor([len(n) for n in negatives])
    first_negative = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    has_negative = counts > 0
    negative_tokens = tokenizer([text for texts in negatives for text in texts] or [""])[: int(counts.sum())]
    fingerprinted = {"tokens": tensor_sha256(tokens),
                     "negative_tokens": _negatives_sha256(negative_tokens, counts, tokens)}
    vocabulary = None
    if cfg.vocabulary_rows == "used":
        vocabulary = UsedTokenRows(model, tokens, negative_tokens)
        tokens, negative_tokens = vocabulary.remap(tokens), vocabulary.remap(negative_tokens)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate,
                                  fused=torch.device(device).type in ("cpu", "cuda"))  # one kernel per step
    bookkeeping = ("path", "sha256", "caption", "negative_caption", "negative_captions", "wording", "fold")
    attribute_columns = [c for c in dataset.frame.columns if c not in bookkeeping]
    attributes = dataset.frame.iloc[train_rows][attribute_columns].reset_index(drop=True)
    # Hard batches hold the coarsest attributes fixed (hard_negative_min_values or more values), so the
    # others tell their pairs apart.
    shared = [c for c in attribute_columns if attributes[c].nunique() >= cfg.hard_negative_min_values]
    total = cfg.epochs * max(1, len(images) // cfg.batch_size)

    run = TrainingRun(
        "stand-in CLIP", work_dir=work_dir, curve_csv=curve_csv,
        curve_fields=["step", "loss", "lr", "logit_scale", "hard_batch"], total_steps=total,
        snapshot_every=cfg.snapshot_every, progress=progress, final_snapshot=final_snapshot,
        settings={"config": without_bookkeeping(cfg.recorded()), "seed": seed, "images": tensor_sha256(images),
                  **fingerprinted, "attributes": attributes.to_json()},
        state={"model": model, "optimizer": optimizer})
    model.train()
    for step in range(run.start(), total):
        draws = generator_for(seed, _STREAM_BATCH, step)
        hard = bool(torch.rand(1, generator=draws) < cfg.hard_negative_fraction)
        batch = _draw_batch(attributes, shared, cfg.batch_size, hard, draws)
        lr = _learning_rate(step, total, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        chosen = torch.rand(len(batch), generator=draws) < cfg.text_negative_fraction
        with_negative = batch[has_negative[batch] & chosen]
        rows = [torch.arange(first_negative[i], first_negative[i + 1]) for i in with_negative.tolist()]
        texts = torch.cat([tokens[batch], negative_tokens[torch.cat(rows)] if rows else tokens[:0]])
        pixels = images[batch].to(device).contiguous(memory_format=memory_format)
        image_features, all_text_features, logit_scale = model(pixels, texts.to(device))
        loss = contrastive_loss(image_features, all_text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        run.log({"step": step + 1, "loss": f"{loss.item():.5f}", "lr": f"{lr:.6g}",
                 "logit_scale": f"{logit_scale.item():.4f}", "hard_batch": int(hard)})
        run.step_done(step + 1, loss=loss)
    model.eval()

    def save():
        if vocabulary is not None:  # after finish's last snapshot, which holds the table the run trained
            vocabulary.restore()
        return save_clip(out, model, model_name=cfg.model_name, model_cfg=model_cfg, mean=STANDIN_MEAN,
                         std=STANDIN_STD, source={"kind": "standin", "manifest": str(pairs_manifest), "seed": seed,
                                                  "config": cfg.recorded(), "steps": total, "pairs": pairs_record},
                         extra={**run.provenance(), **run.cost()})

    return run.finish(save)
