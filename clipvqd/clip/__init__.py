"""CLIP for the suite: one file format, three sources (pretrained tag, local file, the worlds' stand-in).

The names below are imported on first use (PEP 562), so a job that only reads an embedding cache
(`clipvqd.clip.embed`) does not import open_clip.
"""

from importlib import import_module
from typing import Any

__all__ = ["ClipEncoder", "register_model_config", "save_clip"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.encoder"), name)
    globals()[name] = value
    return value
