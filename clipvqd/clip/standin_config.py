"""The stand-in CLIP's architecture and training settings (`StandinClipConfig`), without torch or open_clip:
the workflow builds it from clip.<role>.standin to check a run's settings before any job starts. The
trainer is in `standin.py`."""

from __future__ import annotations

from dataclasses import asdict, dataclass


TEXT_NEGATIVES = ("chosen", "every")
VOCABULARY_ROWS = ("used", "all")


@dataclass
class StandinClipConfig:
    model_name: str = "clipvqd-standin"  # name registered with open_clip; conditioner and judge need different names
    embed_dim: int = 128  # joint embedding size (CLIP ViT-B/32 has 512)
    image_size: int = 32  # input resolution; world images are resized to it
    vision_tower: str = "vit"  # "vit" (patches) or "resnet" (open_clip's ModifiedResNet; convolutions see fine detail sooner)
    patch_size: int = 4  # ViT patch size: (image_size / patch_size)^2 image tokens
    vision_width: int = 128  # ViT width
    vision_layers: int = 4  # ViT depth
    text_width: int = 128  # text transformer width
    text_layers: int = 4  # text transformer depth
    text_heads: int = 4  # text transformer heads (the ViT uses width / 64 heads, open_clip's default)
    context_length: int = 32  # tokens per caption; world captions are shorter
    epochs: int = 12  # passes over the captioned training pairs
    batch_size: int = 128  # contrastive batch: more negatives per step
    learning_rate: float = 1e-3  # AdamW peak, after a linear warm-up
    warmup_fraction: float = 0.1  # share of steps spent warming up, then cosine decay to zero
    weight_decay: float = 0.1  # AdamW weight decay (CLIP's value)
    # Share of batches built around images that agree on every coarse attribute. Web-scale CLIP batches
    # (32k pairs) are full of near-duplicates that only fine details tell apart; a 128-pair batch of a
    # small world is not, and without such batches the model learns colours and ignores glasses or smiles.
    hard_negative_fraction: float = 0.5
    # Hard batches hold fixed the attributes with at least this many values (faces: 4 keeps hair colour and
    # background fixed, so skin tone, hair style and the fine attributes tell their pairs apart; with 3, skin
    # tone was fixed too and the stand-ins' zero-shot skin accuracy fell to 0.5-0.75).
    hard_negative_min_values: int = 4
    # Share of each batch's images whose caption's hard negative (the pairs manifest's negative_caption: the
    # same caption with one attribute changed) joins the texts that image is contrasted with, NegCLIP's loss.
    # It teaches the text tower the phrases a whole-caption batch never contrasts ("no hat" against "a hat").
    text_negative_fraction: float = 1.0
    # Which hard negatives those are. "chosen": the manifest's negative_caption, one per caption, a two-valued
    # attribute flipped whenever the caption names one, so colours almost never get one. "every": every
    # attribute the caption names, changed one at a time (the manifest's negative_captions; both pair splits
    # carry it): "red hair" meets "black hair" and "a blue background" meets "a gray background", and
    # each caption's phrase meets its own negation in every caption, not in one of its attributes.
    text_negatives: str = "chosen"
    snapshot_every: int = 50  # steps between resume snapshots
    # Rows of the 49408-token embedding table the optimiser holds while training. "used": only the tokens the
    # captions and negatives contain (a few hundred), copied back into the full table before the CLIP is saved.
    # The other rows get no gradient and no weight decay (embeddings are not decayed), so AdamW never moves
    # them: the saved weights are those of "all" (benchmarks/trainer_steps.py checks it bit for bit), without a
    # dense 49408-row gradient, zero-fill and AdamW update every step.
    vocabulary_rows: str = "used"
    # The image tower's weights and the image batches in channels-last memory format while training (the layout
    # oneDNN's CPU convolutions prefer): the same arithmetic up to float rounding, less CPU for a ResNet tower
    # (benchmarks/README.md). The saved weights are written in the usual layout either way. Off: in the default run
    # remeasured with it on (benchmarks/README.md, "The default run side by side") it moved the judge's scores of
    # an unchanged sample set by seed-sized amounts, for about 50 CPU-s (projected from the step benchmarks); the
    # judge is a measuring instrument.
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.vision_tower not in ("vit", "resnet"):
            raise ValueError(f"standin.vision_tower must be 'vit' or 'resnet', got '{self.vision_tower}'")
        if self.vision_tower == "vit" and self.vision_width % 64:
            raise ValueError(f"standin.vision_width={self.vision_width}: a ViT tower needs a multiple of 64 (64 per head)")
        if self.vision_tower == "resnet" and self.image_size % 32:
            raise ValueError(f"standin.image_size={self.image_size}: a ResNet tower needs a multiple of 32")
        if self.vocabulary_rows not in VOCABULARY_ROWS:
            raise ValueError(f"standin.vocabulary_rows must be one of {list(VOCABULARY_ROWS)}, "
                             f"got '{self.vocabulary_rows}'")
        if self.text_negatives not in TEXT_NEGATIVES:
            raise ValueError(f"standin.text_negatives must be one of {list(TEXT_NEGATIVES)}, got '{self.text_negatives}'")
        if self.text_width % self.text_heads:
            raise ValueError(f"standin.text_width={self.text_width} is not divisible by standin.text_heads={self.text_heads}")
        if self.vision_tower == "vit" and self.image_size % self.patch_size:
            raise ValueError(f"standin.image_size={self.image_size} is not divisible by standin.patch_size={self.patch_size}")

    def recorded(self) -> dict:
        """The settings as the fingerprint and the sidecar record them: text_negatives only where it is not
        "chosen", the one scheme before the option existed, so such runs keep their fingerprint (and resume);
        vocabulary_rows only where it is not "all", likewise ("used" snapshots hold the smaller table, so
        they must not be mixed with "all" ones); channels_last only where it is on."""
        settings = asdict(self)
        if self.text_negatives == "chosen":
            del settings["text_negatives"]
        if self.vocabulary_rows == "all":
            del settings["vocabulary_rows"]
        if not self.channels_last:
            del settings["channels_last"]
        return settings

    def model_cfg(self) -> dict:
        vision = {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width,
                  "patch_size": self.patch_size}
        if self.vision_tower == "resnet":
            # open_clip's ModifiedResNet: one bottleneck block per stage, final map image_size / 32.
            vision = {"image_size": self.image_size, "layers": [self.vision_layers] * 4,
                      "width": self.vision_width, "head_width": self.vision_width}
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision,
            "text_cfg": {"context_length": self.context_length, "vocab_size": 49408,
                         "width": self.text_width, "heads": self.text_heads, "layers": self.text_layers},
        }
