"""The scenes world: the suite's offline analogue of COCO.

Two objects on a plain background, each with a shape and a colour, placed side by side or one above
the other. Captions state the relation, in either direction ("a red circle to the left of a blue square"
is also "a blue square to the right of a red circle"), so a CLIP must learn relations, not bags of words.
`first_*` is the left (horizontal layout) or top (vertical layout) object.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from PIL import Image

from clipvqd.worlds.base import Attribute, Canvas, World, jitter_colour

COLOURS = {"red": (214, 48, 40), "green": (52, 170, 72), "blue": (48, 84, 214), "yellow": (240, 206, 40)}
BACKGROUND = {"white": (236, 236, 232), "gray": (128, 128, 128), "black": (26, 26, 30)}
SHAPES = ("circle", "square", "triangle")
RELATIONS = {
    ("horizontal", False): ["to the left of", "left of"],
    ("horizontal", True): ["to the right of", "right of"],
    ("vertical", False): ["above", "on top of"],
    ("vertical", True): ["below", "under"],
}
SUBJECTS = ["", "a picture of ", "an image showing ", "a drawing of "]
# The judge wording: the prompts' wording (each first option above) plus paraphrases the conditioner never sees.
JUDGE_RELATIONS = {
    ("horizontal", False): ["to the left of", "on the left side of", "beside and left of"],
    ("horizontal", True): ["to the right of", "on the right side of", "beside and right of"],
    ("vertical", False): ["above", "over", "higher than"],
    ("vertical", True): ["below", "beneath", "lower than"],
}
JUDGE_SUBJECTS = ["", "a sketch of ", "a scene with ", "a rendering of "]
# Share of the CLIPs' captions that leave out an object's colour, and as many its shape (each object on its own).
PARTIAL_OBJECT = 0.15
BACKGROUND_PHRASE = " on a {} background"
JUDGE_BACKGROUND_PHRASES = [BACKGROUND_PHRASE, " against a {} backdrop"]


def _draw_shape(canvas: Canvas, shape: str, cx: float, cy: float, radius: float, colour) -> None:
    if shape == "circle":
        canvas.draw.ellipse(canvas.box(cx, cy, radius, radius), fill=colour)
    elif shape == "square":
        side = radius * 0.88
        canvas.draw.rectangle(canvas.box(cx, cy, side, side), fill=colour)
    else:
        canvas.draw.polygon(
            canvas.points([(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)]),
            fill=colour,
        )


class ScenesWorld(World):
    name = "scenes"
    analogue_of = "COCO"
    # Without the layout a prompt says "a red circle and a blue square", which does not say which object is
    # first (left or top), while the oracle checks first_* and second_*: a correct image would count as wrong.
    prompt_anchors = ("layout",)
    attributes = (
        Attribute("first_shape", SHAPES, "shape of the left (or top) object"),
        Attribute("first_color", tuple(COLOURS), "colour of the left (or top) object"),
        Attribute("second_shape", SHAPES, "shape of the right (or bottom) object"),
        Attribute("second_color", tuple(COLOURS), "colour of the right (or bottom) object"),
        Attribute("layout", ("horizontal", "vertical"), "objects side by side, or one above the other"),
        Attribute("background", tuple(BACKGROUND), "colour of the plain background"),
    )

    def render(self, attributes: Mapping[str, str], rng: np.random.Generator, resolution: int) -> Image.Image:
        canvas = Canvas(resolution, jitter_colour(BACKGROUND[attributes["background"]], rng, 10))
        offset = 0.24 + rng.uniform(-0.03, 0.03)
        along = 0.5 + rng.uniform(-0.06, 0.06)
        across = [rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)]
        for index, prefix in enumerate(("first", "second")):
            main = 0.5 + (offset if index else -offset)
            cx, cy = (main, along + across[index]) if attributes["layout"] == "horizontal" else (along + across[index], main)
            radius = 0.15 + rng.uniform(-0.03, 0.03)
            colour = jitter_colour(COLOURS[attributes[f"{prefix}_color"]], rng, 14)
            _draw_shape(canvas, attributes[f"{prefix}_shape"], cx, cy, radius, colour)
        return canvas.finish()

    @staticmethod
    def _object(attributes: Mapping[str, str], prefix: str) -> str:
        colour = attributes.get(f"{prefix}_color")
        shape = attributes.get(f"{prefix}_shape", "shape")
        return f"a {colour} {shape}" if colour else f"a {shape}"

    def _sentence(self, attributes: Mapping[str, str], swapped: bool, relation_choice, subject: str,
                  relations=RELATIONS, background: str = BACKGROUND_PHRASE) -> str:
        first, second = self._object(attributes, "first"), self._object(attributes, "second")
        if "layout" in attributes:
            relation = relation_choice(relations[(attributes["layout"], swapped)])
            text = f"{second} {relation} {first}" if swapped else f"{first} {relation} {second}"
        else:
            text = f"{first} and {second}"
        if "background" in attributes:
            text += background.format(attributes["background"])
        return subject + text

    def caption(self, attributes: Mapping[str, str], rng: np.random.Generator, wording: str = "conditioner",
                min_attributes: int | None = None) -> str:
        # A scene caption always names both objects and their relation. The dataset style (min_attributes None:
        # the train and reference captions) names every colour and shape, as COCO captions name their objects;
        # the CLIPs' pairs (min_attributes below 4) sometimes leave out one object's colour or shape ("a red
        # shape", "a circle"), the words of the evaluation prompts that ask for fewer attributes.
        self.check_wording(wording)
        shown = dict(attributes)
        if rng.random() < 0.4:
            shown.pop("background")
        swapped = bool(rng.random() < 0.5)
        if min_attributes is not None and min_attributes < 4:
            for prefix in ("first", "second"):
                draw = rng.random()  # one draw per object, whatever it shows: hard negatives keep the same words
                if draw < PARTIAL_OBJECT:
                    shown.pop(f"{prefix}_color")
                elif draw < 2 * PARTIAL_OBJECT:
                    shown.pop(f"{prefix}_shape")
        pick = lambda options: str(rng.choice(options))  # noqa: E731
        if wording == "judge":
            return self._sentence(shown, swapped, pick, pick(JUDGE_SUBJECTS), JUDGE_RELATIONS,
                                  pick(JUDGE_BACKGROUND_PHRASES))
        return self._sentence(shown, swapped, pick, pick(SUBJECTS))

    def wording_tables(self) -> dict:
        def relations(table):
            return {f"{layout}{'-swapped' if swapped else ''}": options for (layout, swapped), options in table.items()}

        return {"conditioner": {"subjects": SUBJECTS, "relations": relations(RELATIONS), "background": [BACKGROUND_PHRASE]},
                "judge": {"subjects": JUDGE_SUBJECTS, "relations": relations(JUDGE_RELATIONS),
                          "background": JUDGE_BACKGROUND_PHRASES}}

    def prompt(self, specified: Mapping[str, str]) -> str:
        return self._sentence(specified, False, lambda options: options[0], "")

    def caption_with_negative(self, attributes: Mapping[str, str], rng: np.random.Generator,
                              negative_rng: np.random.Generator, wording: str = "conditioner",
                              min_attributes: int | None = None) -> tuple[str, str | None]:
        """A caption and its hard negative, drawn from the same random state with the scene changed in one of
        four ways, chosen uniformly among those that change the caption: the layout flipped ("above" for "to
        the left of"), the two objects swapped (the relation reversed), the two colours swapped (the binding of
        colours to shapes), or one other attribute changed. NegCLIP's negatives (Yuksekgonul et al., ICLR
        2023) swap words in the same way; the world's default (World.caption_with_negative) would flip the
        layout every time, its only two-valued attribute, and never contrast a binding."""
        state = rng.bit_generator.state
        caption = self.caption(attributes, rng, wording, min_attributes)
        after = rng.bit_generator.state

        def recaptioned(changes: Mapping[str, str]) -> str:
            rng.bit_generator.state = state
            return self.caption({**attributes, **changes}, rng, wording, min_attributes)

        def other(name: str) -> str:
            values = [v for v in self.attribute(name).values if v != attributes[name]]
            return values[int(negative_rng.integers(len(values)))]

        single = [name for name in self.attribute_names if name != "layout"]
        changed = single[int(negative_rng.integers(len(single)))]
        candidates = [
            recaptioned({"layout": other("layout")}),
            recaptioned({f"{p}_{part}": attributes[f"{q}_{part}"] for p, q in (("first", "second"), ("second", "first"))
                         for part in ("shape", "color")}),
            recaptioned({"first_color": attributes["second_color"], "second_color": attributes["first_color"]}),
            recaptioned({changed: other(changed)}),
        ]
        rng.bit_generator.state = after
        negatives = [text for text in candidates if text != caption]
        if not negatives:
            return caption, None
        return caption, negatives[int(negative_rng.integers(len(negatives)))]

    def caption_with_negatives(self, attributes: Mapping[str, str], rng: np.random.Generator,
                               negative_rng: np.random.Generator, wording: str = "conditioner",
                               min_attributes: int | None = None) -> tuple[str, str | None, dict[str, str]]:
        """This world's caption and chosen negative (`caption_with_negative`, the same draws), then one negative
        per attribute whose change alters the caption (`World.caption_with_negatives`), drawn after them."""
        state = rng.bit_generator.state
        caption, negative = self.caption_with_negative(attributes, rng, negative_rng, wording, min_attributes)
        after = rng.bit_generator.state
        named = self._each_attribute_negative(attributes, caption, state, rng, negative_rng, wording, min_attributes)
        rng.bit_generator.state = after
        return caption, negative, named
