"""Predictions of Keras models on NumPy images without retracing."""

from __future__ import annotations

import weakref

import numpy as np

_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def logits(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The model's logits on float32 images, batch by batch, through one traced function per model
    and image shape. `model.predict` traced the model again for each new number of images (the
    last, partial batch of every subset), and TensorFlow warned about the retracing."""
    import tensorflow as tf

    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"Expected float images in [0, 1]. Received: dtype={x.dtype}")
    shape = tuple(x.shape[1:])
    per_model = _LOGITS.setdefault(model, {})
    fn = per_model.get(shape)
    if fn is None:
        ref = weakref.ref(model)
        fn = per_model[shape] = tf.function(lambda t: ref()(t, training=False),
                                            input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
    out = [fn(tf.constant(x[s : s + batch_size], tf.float32)).numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Share of `x` that `model` classifies as `y`."""
    return float(np.mean(logits(model, x, batch_size).argmax(-1) == y))
