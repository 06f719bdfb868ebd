"""Embedded offline worlds: procedurally rendered data sets whose ground truth is known."""

from clipvqd.worlds.base import Attribute, World


def get_world(name: str) -> World:
    from clipvqd.worlds.faces import FacesWorld
    from clipvqd.worlds.scenes import ScenesWorld

    worlds = {"faces": FacesWorld, "scenes": ScenesWorld}
    if name not in worlds:
        raise ValueError(f"unknown world '{name}' (known: {sorted(worlds)})")
    return worlds[name]()


__all__ = ["Attribute", "World", "get_world"]
