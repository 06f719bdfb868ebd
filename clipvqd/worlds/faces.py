"""The faces world: the suite's offline analogue of FFHQ.

Eight attributes, each visible at 32 px: hair colour and style, skin tone, glasses, expression, beard,
hat and background colour. Captions follow Multi-Modal CelebA-HQ's recipe: a random subset of the
attributes, phrased through templates.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from PIL import Image

from clipvqd.worlds.base import Attribute, Canvas, World, jitter_colour, join_phrases

HAIR = {"black": (28, 26, 26), "brown": (139, 78, 32), "blonde": (236, 204, 104), "red": (206, 62, 30)}
SKIN = {"light": (247, 212, 182), "tan": (206, 152, 108), "dark": (96, 62, 44)}
BACKGROUND = {"blue": (72, 112, 206), "green": (84, 176, 92), "purple": (150, 88, 182), "gray": (158, 158, 158)}
HAT_COLOURS = [(36, 46, 112), (58, 58, 58), (236, 236, 230)]
BEARD_SHADE = 0.55  # beard colour = hair colour times this
BEARD_GROWTH = 0.025  # how far the beard reaches past the jaw line (unit coordinates)

# Two caption wordings. The first option of every conditioner entry is also the evaluation prompts'
# wording. The conditioner wording captions `clip_pairs` (the conditioner CLIP's pairs) and the generators'
# `train` captions; the judge wording captions `judge_pairs`: the prompts' wording plus paraphrases the
# conditioner never sees, so the judge CLIP does not reward the conditioner's exact vocabulary. The judge's
# paraphrases of an absent attribute do not negate one of its words for the present one ("a bare head",
# not "no headwear" beside "headwear"): a small CLIP learns negation slowly.
PHRASES = {
    ("glasses", "yes"): ["glasses", "eyeglasses"],
    ("glasses", "no"): ["no glasses"],
    ("expression", "smiling"): ["a smile", "a big smile"],
    ("expression", "neutral"): ["a neutral expression", "a straight face"],
    ("beard", "yes"): ["a beard", "a full beard"],
    ("beard", "no"): ["no beard", "a clean-shaven face"],
    ("hat", "yes"): ["a hat", "a cap"],
    ("hat", "no"): ["no hat"],
}
SUBJECTS = ["a person", "a face", "a portrait of a person", "someone", "a photo of a person"]

JUDGE_PHRASES = {
    ("glasses", "yes"): ["glasses", "spectacles", "dark-rimmed glasses"],
    ("glasses", "no"): ["no glasses", "uncovered eyes", "bare eyes"],
    ("expression", "smiling"): ["a smile", "a grin", "an open-mouthed smile"],
    ("expression", "neutral"): ["a neutral expression", "a serious look", "a closed mouth"],
    ("beard", "yes"): ["a beard", "facial hair", "a thick beard"],
    ("beard", "no"): ["no beard", "a shaved chin", "a smooth chin"],
    ("hat", "yes"): ["a hat", "a brimmed hat", "headwear"],
    ("hat", "no"): ["no hat", "a bare head", "an uncovered head"],
}
JUDGE_SUBJECTS = ["a person", "a headshot", "somebody", "a cartoon face", "an avatar"]
# Synonyms of attribute values (the value itself first) and frames of the colour phrases, judge wording only.
JUDGE_WORDS = {
    "hair_color": {"black": ["black", "jet-black"], "brown": ["brown", "chestnut"], "blonde": ["blonde", "golden"],
                   "red": ["red", "ginger"]},
    "hair_style": {"short": ["short", "cropped"], "long": ["long", "shoulder-length"]},
    "skin_tone": {"light": ["light", "pale"], "tan": ["tan", "tanned"], "dark": ["dark", "deep brown"]},
    "background": {"blue": ["blue"], "green": ["green"], "purple": ["purple", "violet"], "gray": ["gray", "grey"]},
}
JUDGE_SKIN = ["{} skin", "a {} complexion"]
JUDGE_BACKGROUND = ["in front of a {} background", "against a {} backdrop", "on a plain {} wall"]
JUDGE_LINKS = ["with", "that has"]


class FacesWorld(World):
    name = "faces"
    analogue_of = "FFHQ"
    attributes = (
        Attribute("hair_color", tuple(HAIR), "colour of the hair (and, darker, of the beard)"),
        Attribute("hair_style", ("short", "long"), "short cap of hair or long hair down to the shoulders"),
        Attribute("skin_tone", tuple(SKIN), "skin colour of the face"),
        Attribute("glasses", ("no", "yes"), "dark-framed glasses over the eyes"),
        Attribute("expression", ("neutral", "smiling"), "a straight mouth or a wide open smile"),
        Attribute("beard", ("no", "yes"), "a beard covering the jaw"),
        Attribute("hat", ("no", "yes"), "a hat with a brim on top of the head"),
        Attribute("background", tuple(BACKGROUND), "colour of the plain background"),
    )

    def render(self, attributes: Mapping[str, str], rng: np.random.Generator, resolution: int) -> Image.Image:
        canvas = Canvas(resolution, jitter_colour(BACKGROUND[attributes["background"]], rng, 12))
        draw = canvas.draw
        cx = 0.5 + rng.uniform(-0.04, 0.04)
        cy = 0.56 + rng.uniform(-0.03, 0.03)
        rx = 0.25 + rng.uniform(-0.02, 0.02)
        ry = 0.31 + rng.uniform(-0.02, 0.02)
        hair = jitter_colour(HAIR[attributes["hair_color"]], rng, 10)
        skin = jitter_colour(SKIN[attributes["skin_tone"]], rng, 8)

        if attributes["hair_style"] == "long":
            draw.rounded_rectangle(
                canvas.box(cx, cy + 0.12, rx + 0.1, ry + 0.1), radius=canvas.width(0.12), fill=hair
            )
        draw.ellipse(canvas.box(cx, cy - 0.06, rx + 0.035, ry + 0.015), fill=hair)
        # A beard is darker than the hair and juts out past the jaw, so its outline shows even where its
        # colour is close to the skin's (brown hair on dark skin).
        beard = tuple(int(c * BEARD_SHADE) for c in hair)
        if attributes["beard"] == "yes":
            grow = BEARD_GROWTH
            draw.chord(canvas.box(cx, cy + 0.02 + grow, rx + grow, ry - 0.02 + grow), 10, 170, fill=beard)
        draw.ellipse(canvas.box(cx, cy + 0.02, rx, ry - 0.02), fill=skin)
        # The hairline: the top of the head stays hair-coloured above the forehead.
        draw.chord(canvas.box(cx, cy - 0.06, rx + 0.035, ry + 0.015), 180, 360, fill=hair)

        eye_y = cy - 0.005
        eye_dx = 0.095
        if attributes["beard"] == "yes":
            draw.chord(canvas.box(cx, cy + 0.02, rx, ry - 0.02), 15, 165, fill=beard)
        mouth_y = cy + 0.14
        if attributes["expression"] == "smiling":
            # Wide open, with a band of teeth: at 32 px a smaller smile is a few pixels.
            draw.pieslice(canvas.box(cx, mouth_y - 0.03, 0.13, 0.1), 0, 180, fill=(150, 20, 30))
            draw.rectangle(canvas.box(cx, mouth_y - 0.02, 0.09, 0.02), fill=(250, 250, 250))
        else:
            draw.line(canvas.points([(cx - 0.07, mouth_y), (cx + 0.07, mouth_y)]), fill=(90, 30, 30),
                      width=canvas.width(0.025))
        for side in (-1, 1):
            draw.ellipse(canvas.box(cx + side * eye_dx, eye_y, 0.03, 0.025), fill=(250, 250, 250))
            draw.ellipse(canvas.box(cx + side * eye_dx, eye_y, 0.017, 0.02), fill=(20, 20, 30))
        if attributes["glasses"] == "yes":
            # Large round lenses with frames about 1.3 px thick at 32 px: thinner ones vanish in downsampling.
            frame = canvas.width(0.04)
            for side in (-1, 1):
                draw.ellipse(canvas.box(cx + side * eye_dx, eye_y, 0.09, 0.07), outline=(10, 10, 10), width=frame)
            draw.line(canvas.points([(cx - 0.02, eye_y), (cx + 0.02, eye_y)]), fill=(10, 10, 10), width=frame)
        if attributes["hat"] == "yes":
            hat = HAT_COLOURS[int(rng.integers(len(HAT_COLOURS)))]
            top = cy - ry - 0.03
            draw.rectangle(canvas.box(cx, top + 0.02, rx + 0.11, 0.028), fill=hat)
            draw.chord(canvas.box(cx, top + 0.03, rx - 0.02, 0.16), 180, 360, fill=hat)
        return canvas.finish()

    wordings = ("conditioner", "judge")

    def _hair_phrase(self, attributes: Mapping[str, str], keys: set[str], word) -> str | None:
        colour = word("hair_color") if "hair_color" in keys else None
        style = word("hair_style") if "hair_style" in keys else None
        if colour and style:
            return f"{style} {colour} hair"
        if colour or style:
            return f"{colour or style} hair"
        return None

    def _phrases(self, attributes: Mapping[str, str], keys: set[str], pick,
                 judge: bool = False) -> tuple[list[str], str | None]:
        if judge:
            def word(name: str) -> str:
                return pick(JUDGE_WORDS[name][attributes[name]])
            skin, background, table = pick(JUDGE_SKIN), pick(JUDGE_BACKGROUND), JUDGE_PHRASES
        else:
            def word(name: str) -> str:
                return attributes[name]
            skin, background, table = "{} skin", "in front of a {} background", PHRASES
        phrases = []
        hair = self._hair_phrase(attributes, keys, word)
        if hair:
            phrases.append(hair)
        if "skin_tone" in keys:
            phrases.append(skin.format(word("skin_tone")))
        for key in ("glasses", "expression", "beard", "hat"):
            if key in keys:
                phrases.append(pick(table[(key, attributes[key])]))
        return phrases, background.format(word("background")) if "background" in keys else None

    def caption(self, attributes: Mapping[str, str], rng: np.random.Generator, wording: str = "conditioner",
                min_attributes: int | None = None) -> str:
        self.check_wording(wording)
        judge = wording == "judge"
        names = self.attribute_names
        # Multi-Modal CelebA-HQ-style captions name several attributes (3 or more by default).
        count = int(rng.integers(3 if min_attributes is None else min_attributes, len(names) + 1))
        keys = set(rng.choice(names, size=count, replace=False).tolist())
        # One uniform draw per choice, whatever the number of options: a caption of the same image with one
        # attribute changed, drawn from the same random state, differs in that attribute's phrase only (its
        # hard negative, see World.caption_with_negative).
        def pick(options):
            return str(options[int(rng.random() * len(options))])

        phrases, background = self._phrases(attributes, keys, pick, judge)
        order = rng.permutation(len(phrases)).tolist()
        phrases = [phrases[i] for i in order]
        subject = pick(JUDGE_SUBJECTS if judge else SUBJECTS)
        link = pick(JUDGE_LINKS) if judge else "with"
        text = f"{subject} {link} {join_phrases(phrases)}" if phrases else subject
        if background:
            text = f"{text} {background}"
        return text

    def prompt(self, specified: Mapping[str, str]) -> str:
        phrases, background = self._phrases(specified, set(specified), lambda options: options[0])
        text = f"a person with {join_phrases(phrases)}" if phrases else "a person"
        return f"{text} {background}" if background else text

    def wording_tables(self) -> dict:
        return {
            "conditioner": {"subjects": SUBJECTS, "links": ["with"], "skin": ["{} skin"],
                            "background": ["in front of a {} background"],
                            "words": {name: {value: [value] for value in JUDGE_WORDS[name]} for name in JUDGE_WORDS},
                            "phrases": {f"{k}={v}": options for (k, v), options in PHRASES.items()}},
            "judge": {"subjects": JUDGE_SUBJECTS, "links": JUDGE_LINKS, "skin": JUDGE_SKIN,
                      "background": JUDGE_BACKGROUND, "words": JUDGE_WORDS,
                      "phrases": {f"{k}={v}": options for (k, v), options in JUDGE_PHRASES.items()}},
        }
