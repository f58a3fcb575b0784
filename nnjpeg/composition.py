"""Models stored as compositions of their parts, each part's weights once.

A model whose weights all sit in nested models (a preprocessing layer in front of a classifier, a
denoiser in front of a classifier, an ensemble of members) is stored as `<name>.compose.json`: its
Keras config (the architecture, no compile state) and, per nested model, the `.keras` file that holds
that model's weights. A part that is already stored (the target classifier behind a JPEG layer, a
denoiser that ships on its own) is referred to, not copied; the others are written once under
`parts/`.

    >>> from nnjpeg import composition
    >>> composition.write(tvm_model, Path("weights/fmnist/tvm-classifier.compose.json"),
    ...                   candidates=[Path("weights/fmnist/classifier.keras")])
    {'wrn_classifier': 'classifier.keras'}
    >>> model = composition.load(Path("weights/fmnist/tvm-classifier.compose.json"))

Part paths are relative to the composition's folder and never leave it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

__all__ = ["FORMAT", "SUFFIX", "composable", "load", "match", "parts", "save_for_inference", "without_compile_config",
           "write"]

SUFFIX = ".compose.json"
FORMAT = "nnjpeg.composition/1"


def without_compile_config(config):
    """A serialized Keras config with every `compile_config` removed, nested models' included, so
    that a model rebuilt from it has no optimizer (whose slots would double a file's size)."""
    if isinstance(config, dict):
        return {k: without_compile_config(v) for k, v in config.items() if k != "compile_config"}
    if isinstance(config, list):
        return [without_compile_config(v) for v in config]
    return config


def _rebuilt(model):
    """`model` rebuilt from its config without compile state, holding the same weights."""
    import keras

    config = without_compile_config(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def save_for_inference(model, dest: Path) -> None:
    """Saves `model` to `dest` (.keras) without optimizer state, its nested models' included.

    Args:
        model: a `keras.Model`.
        dest: the file to write; its folder is created.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    _rebuilt(model).save(dest)


def composable(model) -> bool:
    """Whether every weight of `model` sits in nested models with distinct names (what `write` stores)."""
    import keras

    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    loose = [layer for layer in model.layers if layer.weights and not isinstance(layer, keras.Model)]
    return bool(nested) and not loose and len(set(nested)) == len(nested)


def _same_weights(a: list, b: list) -> bool:
    import numpy as np

    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def _relative(path: Path, folder: Path) -> str | None:
    """`path` relative to `folder` as POSIX, or None where it is not below it."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def match(model, candidates: Iterable[Path], folder: Path) -> dict[str, str | None]:
    """Per nested model of `model`, the first of `candidates` below `folder` whose weights are bit
    for bit its own, as a path relative to `folder`; None where there is none."""
    import keras

    below = [(rel, path) for path in candidates if (rel := _relative(path, folder)) is not None]
    saved = {rel: keras.saving.load_model(path, compile=False).get_weights() for rel, path in below}
    return {layer.name: next((rel for rel, theirs in saved.items() if _same_weights(layer.get_weights(), theirs)), None)
            for layer in model.layers if isinstance(layer, keras.Model)}


def write(model, dest: Path, candidates: Iterable[Path] = (), *, new_parts: bool = True) -> dict[str, str]:
    """Stores `model` as a composition at `dest` (`<name>.compose.json`).

    Each nested model refers to the first of `candidates` (`.keras` files below `dest`'s folder)
    whose weights are bit for bit its own; a nested model with none is written to
    `parts/<name>.<layer>.keras` beside `dest`, without optimizer state.

    Args:
        model: a `keras.Model` whose weights all sit in nested models (`composable`).
        dest: the composition's path; it must end in ".compose.json".
        candidates: saved models that may already hold a part.
        new_parts: write the parts that no candidate holds; False: refuse them, writing nothing.

    Returns:
        Per nested model's layer name, its part's path relative to `dest`'s folder.

    Raises:
        ValueError: `dest` not ending in ".compose.json", a model that is not `composable`, or a part
            that no candidate holds where `new_parts` is False.
    """
    import keras

    if not dest.name.endswith(SUFFIX) or dest.name == SUFFIX:
        raise ValueError(f"Expected the path of a composition, ending in {SUFFIX!r}. Received: {str(dest)!r}")
    if not composable(model):
        raise ValueError("Expected a model whose weights all sit in nested models with distinct names (a composition "
                         f"stores only those). Received: {model.name!r} with layers "
                         f"{[(layer.name, type(layer).__name__, len(layer.weights)) for layer in model.layers]}")
    folder, stem = dest.parent, dest.name[: -len(SUFFIX)]
    folder.mkdir(parents=True, exist_ok=True)
    candidates = list(candidates)
    layout = match(model, candidates, folder)
    missing = [name for name, rel in layout.items() if rel is None]
    if missing and not new_parts:
        raise ValueError(f"Expected every nested model of {model.name!r} to be one of {[str(p) for p in candidates]}, "
                         f"bit for bit. Received: {missing} held by none of them")
    for name, rel in layout.items():
        if rel is None:
            layout[name] = f"parts/{stem}.{name}.keras"
            save_for_inference(model.get_layer(name), folder / layout[name])
    config = without_compile_config(keras.saving.serialize_keras_object(model))
    spec = {"format": FORMAT, "parts": layout, "config": config}
    dest.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return layout


def _read(path: Path) -> dict:
    spec = json.loads(path.read_text())
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"Expected a composition of format {FORMAT!r} in {str(path)!r}. "
                         f"Received: format {spec.get('format') if isinstance(spec, dict) else type(spec).__name__!r}")
    for rel in spec["parts"].values():
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not rel.endswith(".keras"):
            raise ValueError(f"Expected part paths of .keras files below the composition's folder in {str(path)!r}. "
                             f"Received: {rel!r}")
    return spec


def parts(path: Path) -> dict[str, str]:
    """The parts of the composition at `path`: per nested model's layer name, its `.keras` file
    relative to the composition's folder."""
    return dict(_read(path)["parts"])


def load(path: Path, part_path: Callable[[str], Path] | None = None):
    """Rebuilds the model stored as the composition at `path`.

    Args:
        path: a `.compose.json` written by `write`.
        part_path: where a part's file is, given its relative path (default: beside `path`);
            `nnjpeg.pretrained` passes its resolver (a folder, the cache or a download).

    Returns:
        A `keras.Model`, without compile state.

    Raises:
        ValueError: not a composition, or a part that does not fit its nested model.
    """
    import keras

    spec = _read(path)
    where = part_path or (lambda rel: path.parent / rel)
    model = keras.saving.deserialize_keras_object(spec["config"])
    for name, rel in spec["parts"].items():
        layer = model.get_layer(name)
        weights = keras.saving.load_model(where(rel), compile=False).get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"Expected the part {rel!r} to hold the weights of {name!r} in {str(path)!r}. Received: "
                             f"{len(weights)} tensors where {name!r} has {len(layer.weights)}, or shapes that differ")
        layer.set_weights(weights)
    return model
