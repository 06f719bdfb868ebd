"""CLIP for the suite: one file format, three sources (pretrained tag, local file, the worlds' stand-in).

The names below are imported on first use (`clipvqd.lazy_exports`): `standin_config` imports without
torch and open_clip.
"""

from typing import TYPE_CHECKING

from clipvqd.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from clipvqd.clip.encoder import ClipEncoder, register_model_config, save_clip

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
