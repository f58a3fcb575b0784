"""The NN-JPEG noisy-training ensemble (NN-JPEG paper, Sec. 3.4).

Members M, M90, M80, ..., M30 share one architecture; M_q is fine-tuned from M_{q+10} (M90 from M)
with J' = xi * CE(x) + (1 - xi) * CE(x_q + N(0, sigma^2)), xi = 0.9 (paper Eq. 9), where x_q is x
compressed at quality q. The defended model is {M, M90, M70, M50, M30}: each member sees the input
compressed at its own quality (M sees it as is), and the output is log(mean softmax) over members,
so the ensemble is attacked and evaluated like any classifier.

Quality q means the RGB-domain codec of the paper (no colour transform) with the IJG-scaled
Annex K luminance table at quality q on every channel: `nnjpeg.compress(x, standard_tables(q)[0])`.
On grey images this is exactly standard JPEG at quality q.
"""

from __future__ import annotations

import keras
from keras import ops

from nnjpeg.keras import Compression
from nnjpeg.tables import standard_tables

from . import distribute

ENSEMBLE_QUALITIES = (None, 90, 70, 50, 30)
CHAIN_QUALITIES = (90, 80, 70, 60, 50, 40, 30)


def quality_table(quality: int):
    """The table used for "quality q" (see the module docstring), (8, 8) float32."""
    return standard_tables(quality)[0]


def compression_layer(quality: int, *, backend: str = "native", name=None) -> Compression:
    """The codec at quality q as a layer (straight-through gradient)."""
    return Compression(quality_table(quality).tolist(), backend=backend, name=name or f"jpeg_q{quality}")


@keras.saving.register_keras_serializable(package="nnjpeg")
class CombineMembers(keras.layers.Layer):
    """Combines member logits: "mean" gives log(mean softmax); "vote" gives log of the vote share
    (ties broken by the mean softmax), which has no useful gradient.

    Shape:
        inputs: a list of (N, K) logits; outputs: (N, K).
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "vote"):
            raise ValueError(f"Expected mode 'mean' or 'vote'. Received: {mode!r}")
        self.mode = mode

    def call(self, logits):
        probs = ops.stack([ops.softmax(z, axis=-1) for z in logits], axis=0)
        mean = ops.mean(probs, axis=0)
        if self.mode == "mean":
            return ops.log(ops.maximum(mean, 1e-12))
        k = ops.shape(mean)[-1]
        votes = ops.sum(ops.one_hot(ops.argmax(probs, axis=-1), k), axis=0) / len(logits)
        return ops.log(votes + 1e-3 * mean)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def build_ensemble(members, qualities=ENSEMBLE_QUALITIES, *, mode: str = "mean", backend: str = "native",
                   input_shape=(28, 28, 1), name: str = "nnjpeg_ensemble") -> keras.Model:
    """One Keras model: raw image in, each member on the image compressed at its quality, combined.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, K) log-probabilities (usable as logits).

    Args:
        members: Keras classifiers returning logits, one per quality.
        qualities: per member, an IJG quality or None (the raw image).
        mode: "mean" (log of mean softmax) or "vote" (majority vote).
        backend: codec backend of the compression layers, "native" or "tf".

    Raises:
        ValueError: members and qualities differ in length.
    """
    if len(members) != len(qualities):
        raise ValueError(f"Expected one quality per member. Received: {len(members)} members, {len(qualities)} qualities")
    inputs = keras.Input(input_shape, name="image")
    logits = []
    for i, (member, q) in enumerate(zip(members, qualities)):
        x = inputs if q is None else compression_layer(q, backend=backend, name=f"member{i}_q{q}")(inputs)
        member.name = f"member{i}_{'raw' if q is None else f'q{q}'}" if member.name in {m.name for m in members[:i]} else member.name
        logits.append(member(x))
    return keras.Model(inputs, CombineMembers(mode, name="combine")(logits), name=name)


def _cross_entropy(y, logits):
    """Mean cross-entropy over the batch (this replica's slice under `tf.distribute`, unscaled: a
    `keras.losses.Loss` would already divide it by the replicas in sync)."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


@keras.saving.register_keras_serializable(package="nnjpeg")
class NoisyFineTuner(keras.Model):
    """Fine-tunes `member` with J' = xi * CE(x) + (1 - xi) * CE(x_noisy) (paper Eq. 9).

    Trains on elements `((x, x_noisy), y)` where x_noisy = clip(x_q + N(0, sigma^2), 0, 1) comes from
    the input pipeline (see `noisy_pipeline`). Calling the model returns the member's logits on x.
    """

    def __init__(self, member: keras.Model, xi: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.member = member
        self.xi = xi
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc_clean = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.acc_noisy = keras.metrics.SparseCategoricalAccuracy(name="accuracy_noisy")

    def call(self, inputs, training=False):
        x = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        return self.member(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.acc_clean, self.acc_noisy]

    def train_step(self, data):
        import tensorflow as tf

        (x, x_noisy), y = data
        with tf.GradientTape() as tape:
            z = self.member(x, training=True)
            zn = self.member(x_noisy, training=True)
            loss = self.xi * _cross_entropy(y, z) + (1.0 - self.xi) * _cross_entropy(y, zn)
            loss = loss + ops.sum(self.member.losses) if self.member.losses else loss
            scaled = distribute.scale_loss(loss)
        grads = tape.gradient(scaled, self.member.trainable_variables)
        self.optimizer.apply(grads, self.member.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.acc_clean.update_state(y, z)
        self.acc_noisy.update_state(y, zn)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        x = x[0] if isinstance(x, (tuple, list)) else x
        z = self.member(x, training=False)
        self.loss_tracker.update_state(_cross_entropy(y, z))
        self.acc_clean.update_state(y, z)
        return {m.name: m.result() for m in self.metrics[:2]}

    def get_config(self):
        return {**super().get_config(), "member": keras.saving.serialize_keras_object(self.member), "xi": self.xi}

    @classmethod
    def from_config(cls, config):
        config["member"] = keras.saving.deserialize_keras_object(config["member"])
        return cls(**config)


def noisy_pipeline(ds, quality: int, sigma: float, seed: int):
    """Maps a float32 `(x, y)` dataset (batched) to `((x, x_noisy), y)` with x_noisy =
    clip(compress(x, quality q) + N(0, sigma^2), 0, 1); the native codec runs inside the pipeline."""
    import tensorflow as tf

    import nnjpeg

    compress = nnjpeg.tf_compress(quality_table(quality))
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def add_noise(example, s):
        x, y = example
        xq = compress(x)
        noisy = tf.clip_by_value(xq + sigma * tf.random.stateless_normal(tf.shape(xq), s), 0.0, 1.0)
        return (x, noisy), y

    return tf.data.Dataset.zip((ds, seeds)).map(add_noise, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
