"""Predictions of Keras models on NumPy images without retracing."""

from __future__ import annotations

import weakref

import numpy as np

_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ModelCall:
    """`model(x, training=False)` as a callable object, holding the model weakly, for `tf.function`.

    TensorFlow counts traces per Python code object to warn about retracing, so functions made
    from one `def` or lambda for several models (as Keras' predict functions are) add up to a
    "retracing" warning after five models, although each is traced once. An object has no code of
    its own: each function made from one is counted apart."""

    def __init__(self, model):
        self._model = weakref.ref(model)

    def __call__(self, x):
        return self._model()(x, training=False)


def logits(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The model's logits on float32 images, batch by batch, through one traced function per model
    and image shape (batches of any size share it)."""
    import tensorflow as tf

    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"Expected float images in [0, 1]. Received: dtype={x.dtype}")
    shape = tuple(x.shape[1:])
    per_model = _LOGITS.setdefault(model, {})
    fn = per_model.get(shape)
    if fn is None:
        fn = per_model[shape] = tf.function(ModelCall(model), input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
    out = [fn(tf.constant(x[s : s + batch_size], tf.float32)).numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Share of `x` that `model` classifies as `y`."""
    return float(np.mean(logits(model, x, batch_size).argmax(-1) == y))


def correct(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> int:
    """How many of `x` `model` classifies as `y` (counts add up across shards; shares do not)."""
    return int(np.sum(right(model, x, y, batch_size)))


def right(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Per image of `x`, whether `model` classifies it as `y`: bool (N,)."""
    return logits(model, x, batch_size).argmax(-1) == np.asarray(y)
