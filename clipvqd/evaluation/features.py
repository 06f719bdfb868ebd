"""The feature extractors FID/KID/precision-recall are measured with, and their feature cache (the image sets
they read are in `clipvqd.evaluation.image_set`).

Two kinds of extractor, both run through torch-fidelity's own registry and extraction loop so that the
numbers are torch-fidelity's:

* the real InceptionV3 (torch-fidelity's `inception-v3-compat`), only from a local weights file whose
  sha256 is given and checked: offline, torch-fidelity's default would try to download it and fail;
* any image encoder (in practice the judge CLIP's image tower), wrapped in a `FeatureExtractorBase`
  subclass and registered under a name derived from its weights' identity. Numbers measured with it are
  not comparable to published (Inception) FIDs; `FeatureExtractorSpec.approximation` says so and the
  protocol and report carry that sentence next to the number.

Features are cached on disk keyed by the image set's *content* (the sha256 of its files' sha256s) and the
extractor's identity (weights sha256, layer, preprocessing, code version), never by a name: renaming a
folder reuses the cache, changing one pixel of one image misses it. The reference set's features are thus
computed once and reused by every method's FID job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from clipvqd.evaluation.image_set import FeatureError, ImageSet
from clipvqd.hashing import sha256_bytes, verify_sha256

log = logging.getLogger(__name__)

# Bump when the way features are computed here changes (preprocessing, dtype), so old caches miss.
FEATURE_CODE_VERSION = 1

# torch-fidelity's name for its TF-1.x-compatible InceptionV3, and the layer FID/KID/PR use by default.
INCEPTION_REGISTRY_NAME = "inception-v3-compat"
INCEPTION_FEATURE_LAYER = "2048"
ENCODER_FEATURE_LAYER = "embedding"

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------------


def _make_encoder_extractor_class(encoder: ImageEncoder, identity: str, input_resolution: int | None):
    """A torch-fidelity extractor class bound to one encoder.

    torch-fidelity instantiates registered classes itself (`cls(name, features_list, **kwargs)`), so the
    encoder cannot be passed to a constructor: each registration gets its own subclass that carries its
    encoder, identity and input resolution as class attributes.
    """
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class _EncoderExtractor(FeatureExtractorBase):
        encoder_identity = identity
        resolution = input_resolution

        def __init__(self, name, features_list, **kwargs):
            # kwargs are every calculate_metrics() option; none of them concerns this extractor.
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return (ENCODER_FEATURE_LAYER,)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return ENCODER_FEATURE_LAYER

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

        def forward(self, images):
            if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4
                    and images.shape[1] == 3):
                raise FeatureError(
                    f"extractor {self.name} expects uint8 images (B, 3, H, W), got "
                    f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
                )
            resolution = type(self).resolution
            if resolution is not None and tuple(images.shape[-2:]) != (resolution, resolution):
                # Antialiased bicubic, then back to uint8: the encoder sees what a PNG at its own
                # resolution would hold.
                resized = F.interpolate(images.float(), size=(resolution, resolution), mode="bicubic",
                                        antialias=True, align_corners=False)
                images = resized.round().clamp(0, 255).to(torch.uint8)
            features = type(self).encode(images)
            if not torch.is_tensor(features) or features.dim() != 2 or features.shape[0] != images.shape[0]:
                raise FeatureError(
                    f"encoder of extractor {self.name} returned {tuple(getattr(features, 'shape', ()))} "
                    f"for {images.shape[0]} images; expected (B, D)"
                )
            # float32 whatever the encoder's dtype, so statistics match torch-fidelity's on CPU.
            return (features.detach().to(torch.float32),)

    _EncoderExtractor.encode = staticmethod(encoder)
    return _EncoderExtractor


_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class FeatureExtractorSpec:
    """Everything needed to build an extractor through torch-fidelity and to name it in the protocol."""

    registry_name: str
    feature_layer: str
    weights_sha256: str
    description: str
    is_inception: bool
    preprocessing: str
    weights_path: str | None = None
    approximation: str | None = None
    extra_identity: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """What the features depend on; the cache key is a hash of this (never of a name alone)."""
        import torch_fidelity

        return {
            "registry_name": self.registry_name,
            "feature_layer": self.feature_layer,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "torch_fidelity": torch_fidelity.__version__,
            "feature_code_version": FEATURE_CODE_VERSION,
            **self.extra_identity,
        }

    def identity_sha256(self) -> str:
        return sha256_bytes(json.dumps(self.identity(), sort_keys=True).encode())

    def fidelity_kwargs(self) -> dict:
        """The torch-fidelity options that select this extractor (for calculate_metrics and friends)."""
        kwargs = {
            "feature_extractor": self.registry_name,
            "feature_layer_fid": self.feature_layer,
            "feature_layer_kid": self.feature_layer,
            "feature_layer_prc": self.feature_layer,
        }
        if self.weights_path is not None:
            kwargs["feature_extractor_weights_path"] = self.weights_path
        return kwargs

    def create(self, device: str = "cpu"):
        """Instantiate through torch-fidelity's registry (the same code path calculate_metrics uses)."""
        from torch_fidelity.utils import create_feature_extractor

        return create_feature_extractor(
            self.registry_name, [self.feature_layer], cuda=str(device).startswith("cuda"), verbose=False,
            **({"feature_extractor_weights_path": self.weights_path} if self.weights_path else {}),
        )

    def describe(self) -> dict:
        return {
            "name": self.registry_name,
            "description": self.description,
            "feature_layer": self.feature_layer,
            "weights_sha256": self.weights_sha256,
            "is_inception": self.is_inception,
            "preprocessing": self.preprocessing,
            "approximation": self.approximation,
            "identity_sha256": self.identity_sha256(),
        }


def register_encoder(encoder: ImageEncoder, identity: str, label: str = "encoder",
                     input_resolution: int | None = None, description: str | None = None) -> FeatureExtractorSpec:
    """Register `encoder` (uint8 (B,3,H,W) -> (B,D) float) with torch-fidelity and describe it.

    `identity` must pin the encoder's weights (e.g. the sha256 of its weights file): it names the
    registration and keys the feature cache. Registering the same label and identity again reuses the
    existing registration; a different identity gets its own name, so two encoders never share a cache.
    """
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if not isinstance(identity, str) or len(identity) < 16:
        raise FeatureError(
            f"encoder {label!r}: identity must be a hash of its weights (>= 16 characters), got {identity!r}"
        )
    if not _LABEL_PATTERN.match(label):
        raise FeatureError(f"encoder label {label!r} must be letters, digits, '.', '_' or '-'")
    name = f"clipvqd-{label}-{identity[:16]}"
    existing = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if existing is not None:
        if getattr(existing, "encoder_identity", None) != identity or getattr(existing, "resolution", None) != input_resolution:
            raise FeatureError(
                f"feature extractor name {name} is already registered for another encoder "
                f"(identity {getattr(existing, 'encoder_identity', '?')}, resolution "
                f"{getattr(existing, 'resolution', '?')})"
            )
    else:
        register_feature_extractor(name, _make_encoder_extractor_class(encoder, identity, input_resolution))
    preprocessing = (f"uint8 RGB, bicubic-antialiased resize to {input_resolution}x{input_resolution} when the size differs"
                     if input_resolution else "uint8 RGB at the images' own resolution")
    description = description or f"image encoder '{label}'"
    return FeatureExtractorSpec(
        registry_name=name,
        feature_layer=ENCODER_FEATURE_LAYER,
        weights_sha256=identity,
        description=description,
        is_inception=False,
        preprocessing=preprocessing,
        approximation=(
            f"measured on {description} embeddings, not InceptionV3 features (no Inception weights offline): "
            "comparable between the methods of this report only, not with published FIDs"
        ),
    )


def clip_feature_extractor(clip, label: str = "judge-clip") -> FeatureExtractorSpec:
    """The image tower of a CLIP object (`encode_images`, `identity`, `input_resolution`) as an extractor.

    Use the *judge* CLIP, which did not condition any generator, so no method is scored by its own
    conditioning network.
    """
    return register_encoder(
        clip.encode_images, identity=clip.identity, label=label,
        input_resolution=getattr(clip, "input_resolution", None),
        description=f"CLIP image tower '{label}' (weights sha256 {clip.identity[:12]}…)",
    )


def inception_feature_extractor(weights_path: str | Path, weights_sha256: str) -> FeatureExtractorSpec:
    """torch-fidelity's InceptionV3 from a local weights file, checked against its sha256 first.

    torch-fidelity loads that file with `torch.load(weights_only=False)` (a pickle), which docs/design.md §7
    allows only for declared inputs with checksums: hence the sha256 is required, not optional.
    """
    if not weights_sha256:
        raise FeatureError(f"Inception weights {weights_path}: a sha256 is required before the file is unpickled")
    actual = verify_sha256(weights_path, weights_sha256, what="Inception weights")
    return FeatureExtractorSpec(
        registry_name=INCEPTION_REGISTRY_NAME,
        feature_layer=INCEPTION_FEATURE_LAYER,
        weights_sha256=actual,
        description="InceptionV3 (torch-fidelity inception-v3-compat, pool3 2048-d)",
        is_inception=True,
        preprocessing="uint8 RGB, resized inside the network to 299x299 (TF-1.x-compatible bilinear)",
        weights_path=str(Path(weights_path).resolve()),
    )


def select_feature_extractor(inception_weights_path: str | Path | None = None,
                             inception_weights_sha256: str | None = None,
                             offline_clip=None, offline_label: str = "judge-clip") -> FeatureExtractorSpec:
    """Inception when its weights file is supplied, else the offline CLIP image tower (said so in the spec)."""
    if inception_weights_path:
        return inception_feature_extractor(inception_weights_path, inception_weights_sha256 or "")
    if offline_clip is None:
        raise FeatureError(
            "no feature extractor for FID: give an Inception weights file with its sha256, or an offline CLIP"
        )
    return clip_feature_extractor(offline_clip, label=offline_label)


# --------------------------------------------------------------------------------------------------
# Extraction and the cache
# --------------------------------------------------------------------------------------------------


def extract_features(images: ImageSet, extractor: FeatureExtractorSpec, device: str = "cpu",
                     batch_size: int = 64, verbose: bool = False) -> torch.Tensor:
    """Features (N, D) float32 of every image, in the set's canonical order, via torch-fidelity's loop."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    images.image_size()  # a mixed-size set is refused naming a file, not by a collate error deep in torch
    module = extractor.create(device)
    # save_cpu_ram=True makes torch-fidelity load images in-process (no DataLoader workers): on a
    # 2-core box forking workers costs more than it saves.
    features = get_featuresdict_from_dataset(
        images.dataset(), module, batch_size, str(device).startswith("cuda"), True, verbose
    )[extractor.feature_layer]
    return features.to(torch.float32).cpu().contiguous()


class FeatureCache:
    """Features on disk (safetensors), one file per (image-set content, extractor identity).

    Writes are atomic (temp file + rename) so parallel Snakemake jobs that compute the same reference set
    at once cannot leave a torn file. `hits` and `misses` count lookups, for tests and logs.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def key(self, images: ImageSet, extractor: FeatureExtractorSpec) -> str:
        return sha256_bytes(
            json.dumps({"images": images.content_sha256, "extractor": extractor.identity_sha256()}).encode()
        )

    def path(self, images: ImageSet, extractor: FeatureExtractorSpec) -> Path:
        return self.root / f"{self.key(images, extractor)}.safetensors"

    def load(self, images: ImageSet, extractor: FeatureExtractorSpec) -> torch.Tensor | None:
        from safetensors import safe_open

        path = self.path(images, extractor)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                features = handle.get_tensor("features")
        except Exception as error:  # a torn or foreign file: recompute rather than trust it
            log.warning("feature cache file %s is unreadable (%s); recomputing", path, error)
            return None
        # The key is a hash; also compare what it hashes, so a collision or a hand-copied file is caught.
        if (metadata.get("images_content_sha256") != images.content_sha256
                or metadata.get("image_sha256s") != ",".join(images.sha256s)
                or metadata.get("extractor_identity_sha256") != extractor.identity_sha256()
                or features.shape[0] != len(images)):
            log.warning("feature cache file %s does not match %s; recomputing", path, images.label)
            return None
        return features

    def store(self, images: ImageSet, extractor: FeatureExtractorSpec, features: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        path = self.path(images, extractor)
        self.root.mkdir(parents=True, exist_ok=True)
        metadata = {
            "images_content_sha256": images.content_sha256,
            "image_sha256s": ",".join(images.sha256s),
            "images_label": images.label,
            "extractor_identity_sha256": extractor.identity_sha256(),
            "extractor_identity": json.dumps(extractor.identity(), sort_keys=True),
        }
        handle, temporary = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"features": features.contiguous()}, temporary, metadata=metadata)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path

    def features(self, images: ImageSet, extractor: FeatureExtractorSpec, device: str = "cpu",
                 batch_size: int = 64) -> torch.Tensor:
        cached = self.load(images, extractor)
        if cached is not None:
            self.hits += 1
            log.info("feature cache hit for %s (%s)", images.label, self.path(images, extractor).name)
            return cached
        self.misses += 1
        log.info("feature cache miss for %s: extracting %d images", images.label, len(images))
        features = extract_features(images, extractor, device=device, batch_size=batch_size)
        self.store(images, extractor, features)
        return features


def features_for(images: ImageSet, extractor: FeatureExtractorSpec, cache: FeatureCache | None = None,
                 device: str = "cpu", batch_size: int = 64) -> torch.Tensor:
    if cache is None:
        return extract_features(images, extractor, device=device, batch_size=batch_size)
    return cache.features(images, extractor, device=device, batch_size=batch_size)
