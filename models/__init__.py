"""Keras models of nnjpeg (installed as `nnjpeg.models`): target classifiers and surrogates.

Builders return uncompiled `keras.Model`s taking float32 images in [0, 1] and returning logits.
Keras is imported on first use, so `nnjpeg` command-line start-up stays fast.
"""

_HOME = {"build_classifier": "classifier", "build_surrogate": "classifier", "build_wrn": "classifier",
         "build_densenet_bc": "classifier", "build_backbone": "backbones"}
__all__ = list(_HOME)


def __getattr__(name):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
