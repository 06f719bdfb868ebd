"""CLIP for the suite: one file format, three sources (pretrained tag, local file, the worlds' stand-in)."""

from clipvqd.clip.encoder import ClipEncoder, register_model_config, save_clip

__all__ = ["ClipEncoder", "register_model_config", "save_clip"]
