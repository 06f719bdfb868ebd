"""Configuration blocks as frozen dataclasses: built from the workflow's JSON, checked, and named in errors.

Pure Python (no torch), so the command-line parser can import it cheaply. The LAFITE and clip2latent
configurations build on it; a typo in a key or a value out of range fails before any compute, naming the
block, the key and the value.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any, Mapping


def from_mapping(cls, values: Mapping[str, Any], source: str):
    """`cls(**values)`, refusing keys `cls` does not declare (named with `source`, the config path), and
    turning lists into tuples where the field's default is a tuple (JSON has no tuples)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} keys {unknown} (known: {sorted(known)})")
    values = dict(values)
    for f in fields(cls):
        if f.name in values and isinstance(f.default, tuple):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def check_fields(name: str, checks: dict[str, bool], obj) -> None:
    """Raise one ValueError naming every field of `obj` whose check is False, with its value."""
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{name}: invalid {', '.join(f'{k}={getattr(obj, k)!r}' for k in bad)}")


def json_object(text: str) -> dict[str, Any]:
    """argparse type for a `--params`-style argument: a JSON object, or a usage error saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value
