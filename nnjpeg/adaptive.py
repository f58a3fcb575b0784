"""The two wrappers that make a defense attackable by gradients (Athalye, Carlini and Wagner, 2018,
"Obfuscated Gradients Give a False Sense of Security"): BPDA, a preprocessing run forward with the
identity as its gradient, and EOT, a randomized model's logits averaged over draws.

They live apart from the attacks so that the attacks and the ART bridge (`nnjpeg.art`) can both use
them without importing each other; `nnjpeg.attacks` re-exports them.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .tf_ops import straight_through

__all__ = ["BPDA", "EOT", "bpda_layer"]


@keras.saving.register_keras_serializable(package="nnjpeg")
class BPDA(keras.layers.Layer):
    """A NumPy preprocessing f (float32 (N, H, W, C) -> same shape) as a layer: f forward, the identity
    backward (BPDA, Athalye et al., 2018). Not serializable with an arbitrary f: rebuild it in code."""

    def __init__(self, preprocess: Callable[[np.ndarray], np.ndarray], **kwargs):
        super().__init__(**kwargs)
        self.preprocess = preprocess

    def call(self, x):
        return straight_through(self._forward, x)

    def _forward(self, x):
        y = tf.numpy_function(lambda a: np.asarray(self.preprocess(a), np.float32), [x], tf.float32)
        return tf.ensure_shape(y, x.shape)


def bpda_layer(preprocess: Callable[[np.ndarray], np.ndarray], name: str = "bpda") -> BPDA:
    """Wraps `preprocess` as a `BPDA` layer."""
    return BPDA(preprocess, name=name)


class EOT(keras.Model):
    """Expectation over Transformation: averages a randomized model's logits over `samples` draws, so
    gradients through it are averaged too (Athalye et al., 2018)."""

    def __init__(self, model, samples: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.samples = samples

    def call(self, x, training=False):
        return tf.add_n([self.model(x, training=training) for _ in range(self.samples)]) / float(self.samples)
