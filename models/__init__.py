"""Keras models of nnjpeg (installed as `nnjpeg.models`): target classifiers and surrogates.

Builders return uncompiled `keras.Model`s taking float32 images in [0, 1] and returning logits.
Keras is imported on first use, so `nnjpeg` command-line start-up stays fast.
"""

__all__ = ["build_classifier", "build_surrogate"]


def __getattr__(name):
    if name in __all__:
        from . import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
