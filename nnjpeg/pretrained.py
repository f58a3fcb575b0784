"""Pretrained models shipped in the wheel (trained by `nnjpeg train` on this project's machines).

    >>> import nnjpeg.pretrained
    >>> nnjpeg.pretrained.names()
    ['fmnist/classifier', ...]
    >>> model = nnjpeg.pretrained.load("fmnist/classifier")   # float32 (N, 28, 28, 1) in [0, 1] -> logits

Each model sits under `nnjpeg/models/weights/<name>.keras` beside its model card (`.md`: exact
command, epochs, wall time) and metrics (`.json`); a model made of two shipped ones (a denoiser in
front of a classifier) is `<name>.compose.json` instead, assembled on loading.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["card", "load", "metrics", "names"]

WEIGHTS = Path(__file__).resolve().parent / "models" / "weights"


COMPOSED = ".compose.json"


def names() -> list[str]:
    """Names of the shipped models, e.g. "fmnist/classifier"."""
    if not WEIGHTS.is_dir():
        return []
    files = [p.relative_to(WEIGHTS).with_suffix("").as_posix() for p in WEIGHTS.rglob("*.keras")]
    composed = [p.relative_to(WEIGHTS).as_posix()[: -len(COMPOSED)] for p in WEIGHTS.rglob(f"*{COMPOSED}")]
    return sorted(files + composed)


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
    _path(name, ".json")  # checked first: a bad name is said without Keras at hand
    import keras

    register_serializables()
    spec = WEIGHTS / f"{name}{COMPOSED}"
    if spec.is_file():
        return _compose(json.loads(spec.read_text()), spec.parent, compile)
    return keras.saving.load_model(WEIGHTS / f"{name}.keras", compile=compile)


def _compose(spec: dict, folder: Path, compile: bool):
    """A model assembled from shipped models (a `.compose.json` written by `nnjpeg train ... --compose`)."""
    import keras

    from .models.defenses import denoised_classifier

    if spec.get("kind") != "denoised":
        raise ValueError(f"Expected a composition of kind 'denoised'. Received: {spec.get('kind')!r}")
    load = lambda key: keras.saving.load_model(folder / spec[key], compile=compile)  # noqa: E731
    return denoised_classifier(load("denoiser"), load("classifier"), input_shape=tuple(spec["input_shape"]),
                               pad=spec["pad"], name=spec["name"])


def register_serializables() -> None:
    """Imports every module whose layers and models are registered with Keras, so that any
    nnjpeg `.keras` file loads with a plain `keras.saving.load_model`."""
    import importlib

    for module in ("attacks", "keras", "models.adversarial", "models.cyclegan", "models.defense_vae", "models.defenses",
                   "models.ensemble", "models.vqunet"):
        importlib.import_module(f"nnjpeg.{module}")


def metrics(name: str) -> dict:
    """The metrics JSON written when the model was trained."""
    return json.loads(_path(name, ".json").read_text())


def card(name: str) -> str:
    """The model card (Markdown)."""
    return _path(name, ".md").read_text()
