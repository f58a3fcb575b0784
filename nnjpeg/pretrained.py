"""Pretrained models shipped in the wheel (trained by `nnjpeg train` on this project's machines).

    >>> import nnjpeg.pretrained
    >>> nnjpeg.pretrained.names()
    ['fmnist/classifier', ...]
    >>> model = nnjpeg.pretrained.load("fmnist/classifier")   # float32 (N, 28, 28, 1) in [0, 1] -> logits

Each model sits under `nnjpeg/models/weights/<name>.keras` beside its model card (`.md`: exact
command, epochs, wall time) and metrics (`.json`).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["card", "load", "metrics", "names"]

WEIGHTS = Path(__file__).resolve().parent / "models" / "weights"


def names() -> list[str]:
    """Names of the shipped models, e.g. "fmnist/classifier"."""
    if not WEIGHTS.is_dir():
        return []
    return sorted(p.relative_to(WEIGHTS).with_suffix("").as_posix() for p in WEIGHTS.rglob("*.keras"))


def _path(name: str, suffix: str) -> Path:
    known = names()  # one walk of the weights folder
    if not known:
        raise ValueError(f"Expected a pretrained model name, but this nnjpeg was installed without its weights "
                         f"(built with -DNNJPEG_SHIP_WEIGHTS=OFF; {WEIGHTS} holds none). Received: {name!r}")
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"Expected a pretrained model name in {known}. Received: {name!r}")
    return WEIGHTS / f"{name}{suffix}"


def load(name: str, *, compile: bool = False):
    """Loads a shipped model by name.

    Args:
        name: one of `names()`.
        compile: also restore the compile state (loss, optimizer) where the file holds one; files
            exported by `nnjpeg train --export` hold none.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: unknown name, or an install without the weights.
    """
    path = _path(name, ".keras")  # checked first: a bad name is said without Keras at hand
    import keras

    register_serializables()
    return keras.saving.load_model(path, compile=compile)


def register_serializables() -> None:
    """Imports every module whose layers and models are registered with Keras, so that any
    nnjpeg `.keras` file loads with a plain `keras.saving.load_model`."""
    import importlib

    for module in ("attacks", "keras", "models.adversarial", "models.defense_vae", "models.defenses", "models.ensemble",
                   "models.vqunet"):
        importlib.import_module(f"nnjpeg.{module}")


def metrics(name: str) -> dict:
    """The metrics JSON written when the model was trained."""
    return json.loads(_path(name, ".json").read_text())


def card(name: str) -> str:
    """The model card (Markdown)."""
    return _path(name, ".md").read_text()
