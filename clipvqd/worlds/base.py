"""What every embedded world shares: an attribute space, renderable scenes, captions and splits.

A world is a small, fully known data distribution. Because every image is drawn from known attributes,
captions can be written from templates (the way Multi-Modal CelebA-HQ captions are built), held-out
attribute combinations can be kept out of training, and an attribute oracle can check generated images
without trusting CLIP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

Attributes = dict[str, str]

# Shapes are drawn this many times larger than the output and downsampled, so edges are anti-aliased.
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    description: str


class Canvas:
    """A supersampled drawing surface addressed in unit coordinates (0..1 on both axes)."""

    def __init__(self, resolution: int, background: tuple[int, int, int]):
        self.resolution = resolution
        self.size = resolution * SUPERSAMPLE
        self.image = Image.new("RGB", (self.size, self.size), background)
        self.draw = ImageDraw.Draw(self.image)

    def box(self, cx: float, cy: float, rx: float, ry: float) -> list[float]:
        s = self.size
        return [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]

    def width(self, fraction: float) -> int:
        return max(1, round(fraction * self.size))

    def points(self, pairs: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * self.size, y * self.size) for x, y in pairs]

    def finish(self) -> Image.Image:
        return self.image.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)


def jitter_colour(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    shifted = np.asarray(rgb) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(shifted, 0, 255))


class World(ABC):
    """An attribute space with a renderer, a captioner and a prompt writer."""

    name: str
    analogue_of: str  # the real data set the world stands in for (reports name it)
    attributes: tuple[Attribute, ...]
    # Caption phrase tables. "conditioner" captions the conditioner CLIP's pairs and the generators' train
    # split; "judge" captions the judge CLIP's pairs: the prompts' wording plus paraphrases the conditioner
    # never sees.
    wordings: tuple[str, ...] = ("conditioner", "judge")
    # Attributes every evaluation prompt names, whatever else it asks for: those without which the prompt's
    # text would not say what the oracle checks (scenes: the layout, which says which object is "first").
    prompt_anchors: tuple[str, ...] = ()

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(f"world '{self.name}' has no attribute '{name}' (it has {self.attribute_names})")

    def validate_combination(self, combination: Mapping[str, str], where: str) -> None:
        for key, value in combination.items():
            if key not in self.attribute_names:
                raise ValueError(f"{where}: world '{self.name}' has no attribute '{key}' (it has {self.attribute_names})")
            attribute = self.attribute(key)
            if value not in attribute.values:
                raise ValueError(
                    f"{where}: '{value}' is not a value of attribute '{key}' in world '{self.name}' "
                    f"(allowed: {list(attribute.values)})"
                )

    def check_wording(self, wording: str) -> None:
        if wording not in self.wordings:
            raise ValueError(f"world '{self.name}' has no caption wording '{wording}' (it has {list(self.wordings)})")

    def sample_attributes(self, rng: np.random.Generator) -> Attributes:
        return {a.name: str(rng.choice(a.values)) for a in self.attributes}

    @abstractmethod
    def render(self, attributes: Mapping[str, str], rng: np.random.Generator, resolution: int) -> Image.Image:
        """Draw one image showing exactly `attributes`; `rng` varies everything else (pose, shade)."""

    @abstractmethod
    def caption(self, attributes: Mapping[str, str], rng: np.random.Generator, wording: str = "conditioner",
                min_attributes: int | None = None) -> str:
        """A free-form caption of a rendered image, from randomly chosen templates and phrasings of `wording`,
        naming at least `min_attributes` attributes (None: the world's own minimum)."""

    def caption_with_negative(self, attributes: Mapping[str, str], rng: np.random.Generator,
                              negative_rng: np.random.Generator, wording: str = "conditioner",
                              min_attributes: int | None = None) -> tuple[str, str | None]:
        """A caption and its hard negative: the same caption, drawn from the same random state, of the image
        with one named attribute changed (NegCLIP's swapped-caption negatives, Yuksekgonul et al., ICLR 2023).
        Two-valued attributes ("glasses" / "no glasses") are flipped first, whenever the caption names one:
        a contrastive batch of whole captions rarely pits a phrase against its negation, and a bag-of-words
        text tower then reads both alike. None when the caption names no attribute."""
        caption, negative, _ = self.caption_with_negatives(attributes, rng, negative_rng, wording, min_attributes)
        return caption, negative

    def caption_with_negatives(self, attributes: Mapping[str, str], rng: np.random.Generator,
                               negative_rng: np.random.Generator, wording: str = "conditioner",
                               min_attributes: int | None = None) -> tuple[str, str | None, dict[str, str]]:
        """`caption_with_negative`'s caption and negative (the same random draws), plus every named
        attribute's negative: {attribute: the caption with that attribute changed to a random other value},
        in the world's attribute order. Colours and other many-valued attributes get theirs too, which the
        one chosen negative almost never is (a caption nearly always names a two-valued attribute)."""
        state = rng.bit_generator.state
        caption = self.caption(attributes, rng, wording, min_attributes)
        after = rng.bit_generator.state
        named = self._each_attribute_negative(attributes, caption, state, rng, negative_rng, wording, min_attributes)
        rng.bit_generator.state = after
        if not named:
            return caption, None, named
        binary = [name for name in named if len(self.attribute(name).values) == 2]
        candidates = binary or list(named)
        return caption, named[candidates[int(negative_rng.integers(len(candidates)))]], named

    def _each_attribute_negative(self, attributes: Mapping[str, str], caption: str, state: dict,
                                 rng: np.random.Generator, negative_rng: np.random.Generator, wording: str,
                                 min_attributes: int | None) -> dict[str, str]:
        """{attribute: `caption` redrawn from the caption stream's `state` with that attribute changed to a random
        other value}, for each attribute whose change alters the caption, in the world's attribute order (one
        draw of `negative_rng` per attribute). Leaves `rng` wherever the last redraw ended: callers restore it."""
        named = {}
        for attribute in self.attributes:
            other = [v for v in attribute.values if v != attributes[attribute.name]]
            value = other[int(negative_rng.integers(len(other)))]
            rng.bit_generator.state = state
            text = self.caption({**attributes, attribute.name: value}, rng, wording, min_attributes)
            if text != caption:
                named[attribute.name] = text
        return named

    @abstractmethod
    def wording_tables(self) -> dict:
        """Every phrase table of every wording, as plain JSON (recorded in the world's metadata)."""

    @abstractmethod
    def prompt(self, specified: Mapping[str, str]) -> str:
        """A fixed evaluation prompt asking for exactly the `specified` attributes (a subset)."""

    def zero_shot_prompt(self, attribute: str, value: str, context: Mapping[str, str] | None = None) -> str:
        """The evaluation prompt naming one attribute value, used to probe a CLIP per attribute: the words the
        generators are prompted with. `context` holds the image's true values of the world's `prompt_anchors`
        (scenes: "a red shape above a shape" probes the top object's colour), which every prompt names too."""
        return self.prompt({**(context or {}), attribute: value})


def matches(attributes: Mapping[str, str], combination: Mapping[str, str]) -> bool:
    return all(attributes.get(key) == value for key, value in combination.items())


def matches_any(attributes: Mapping[str, str], combinations: Sequence[Mapping[str, str]]) -> bool:
    return any(matches(attributes, combination) for combination in combinations)


def join_phrases(phrases: Sequence[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]
