"""Preprocessing defenses and the "defense -> classifier" models built from them.

- NN-favored JPEG (NN-JPEG paper, Sec. 3.2): `nnjpeg.keras.Compression` with `nnjpeg.nn_table`.
- Standard JPEG at quality 75: `nnjpeg.keras.JPEG`.
- Feature Distillation (Liu et al., 2019) style: YCbCr JPEG with a data-derived two-band table.
- Total-variation minimization, TVM (Guo et al., 2018): `TVM` below.
- Denoisers (VQUNet, the non-VQ U-Net, Defense-VAE) in front of the classifier: `denoised_classifier`;
  `EndToEnd` fine-tunes the pair together.

Every preprocessing layer's gradient is the identity (straight-through, BPDA) unless stated, so the
composed models can be attacked as a whole (white-box, adaptive).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from nnjpeg.keras import JPEG, Compression
from nnjpeg.tables import nn_table
from nnjpeg.tf_ops import straight_through

from . import distribute


@keras.saving.register_keras_serializable(package="nnjpeg")
class TVM(layers.Layer):
    """Total-variation minimization (Guo et al., 2018): keep each pixel with probability `keep`, then
    reconstruct the image z minimizing sum(mask * (z - x)^2) / 2 + weight * TV(z) by `iterations`
    steps of gradient descent on a smoothed isotropic TV, clipped to [0, 1].

    Random (a new pixel mask per call): evaluate adaptively with `nnjpeg.attacks.EOT`. Gradient:
    the identity (BPDA).

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: same.
    """

    def __init__(self, keep: float = 0.5, weight: float = 0.03, iterations: int = 60, step: float = 0.2,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep <= 1.0 or weight < 0 or iterations < 1 or step <= 0:
            raise ValueError(f"Expected 0 < keep <= 1, weight >= 0, iterations >= 1, step > 0. Received: keep={keep}, "
                             f"weight={weight}, iterations={iterations}, step={step}")
        self.keep = keep
        self.weight = weight
        self.iterations = iterations
        self.step = step
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _tv_grad(self, z):
        dx = z[:, :, 1:, :] - z[:, :, :-1, :]
        dy = z[:, 1:, :, :] - z[:, :-1, :, :]
        dx = ops.pad(dx, [[0, 0], [0, 0], [0, 1], [0, 0]])
        dy = ops.pad(dy, [[0, 0], [0, 1], [0, 0], [0, 0]])
        norm = ops.sqrt(dx * dx + dy * dy + 1e-4)
        px, py = dx / norm, dy / norm
        # Divergence of the normalized gradient field (backward differences), negated.
        div = px - ops.pad(px[:, :, :-1, :], [[0, 0], [0, 0], [1, 0], [0, 0]]) + \
            py - ops.pad(py[:, :-1, :, :], [[0, 0], [1, 0], [0, 0], [0, 0]])
        return -div

    def call(self, x):
        return straight_through(self._reconstruct, x)  # TVM forward, identity backward (BPDA)

    def _reconstruct(self, x):
        mask = ops.cast(keras.random.uniform(ops.shape(x)[:3], seed=self.generator) < self.keep, x.dtype)[..., None]
        z = x
        for _ in range(self.iterations):
            z = ops.clip(z - self.step * (mask * (z - x) + self.weight * self._tv_grad(z)), 0.0, 1.0)
        return z

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep": self.keep, "weight": self.weight, "iterations": self.iterations,
                "step": self.step, "seed": self.seed}


def _compose(preprocess, classifier, input_shape, name: str) -> keras.Model:
    inputs = keras.Input(input_shape, name="image")
    return keras.Model(inputs, classifier(preprocess(inputs)), name=name)


def nnjpeg_classifier(classifier, k: int, of: float = 16.0, af: float = 50.0, *, input_shape=(28, 28, 1),
                      backend: str = "native") -> keras.Model:
    """NN-favored JPEG (RGB domain, table `nn_table(k, of, af)`) -> classifier."""
    return _compose(Compression(nn_table(k, of, af).tolist(), backend=backend, name="nn_jpeg"), classifier, input_shape,
                    f"nnjpeg_k{k}_classifier")


def jpeg_classifier(classifier, quality: int = 75, *, input_shape=(28, 28, 1), backend: str = "native") -> keras.Model:
    """Standard JPEG (YCbCr, Annex K tables at `quality`, 4:2:0) -> classifier."""
    return _compose(JPEG(quality, backend=backend, name=f"jpeg{quality}"), classifier, input_shape, f"jpeg{quality}_classifier")


def fd_classifier(classifier, table, *, input_shape=(28, 28, 1), backend: str = "native") -> keras.Model:
    """Feature-Distillation-style JPEG (YCbCr, 4:4:4, a two-band table such as `nnjpeg.tables.fd_table`) -> classifier."""
    return _compose(Compression(np_table(table), color="ycbcr", subsampling="4:4:4", backend=backend, name="fd_jpeg"),
                    classifier, input_shape, "fd_classifier")


def np_table(table) -> list:
    """A table as nested lists (what the codec layers store in their config)."""
    import numpy as np

    return np.asarray(table, dtype=np.float32).tolist()


def tvm_classifier(classifier, *, input_shape=(28, 28, 1), **tvm_kwargs) -> keras.Model:
    """TVM -> classifier."""
    return _compose(TVM(name="tvm", **tvm_kwargs), classifier, input_shape, "tvm_classifier")


def denoised_classifier(denoiser, classifier, *, input_shape=(28, 28, 1), pad: int = 2,
                        name: str = "denoised_classifier") -> keras.Model:
    """Denoiser (e.g. VQUNet on 32x32) -> classifier (28x28): zero-pads by `pad`, denoises, crops back."""
    inputs = keras.Input(input_shape, name="image")
    h = layers.ZeroPadding2D(pad, name="pad")(inputs) if pad else inputs
    h = denoiser(h)
    h = layers.Cropping2D(pad, name="crop")(h) if pad else h
    return keras.Model(inputs, classifier(h), name=name)


class EndToEnd(keras.Model):
    """Denoiser and classifier fine-tuned together, the end-to-end fine-tuning of Defense-VAE's
    paper (Li & Ji, 2019): the cross-entropy of the pipeline's prediction plus `rec_weight` times
    the mean absolute error of the denoiser's output against the clean image, so that the denoiser
    learns to keep what the classifier needs and stays a denoiser; a VQUNet adds its codebook terms
    (beta * L_E + L_Q), which keep its encoder and codebooks together. For training only: the two
    models are saved apart and composed with `denoised_classifier`.

    Inputs: ((x_in, x_clean), y), images padded to the denoiser's shape, integer labels. Calling the
    model on x_in (or on the pair, as Keras does to build it under a `tf.distribute` strategy)
    returns the pipeline's logits on x_in.
    """

    def __init__(self, denoiser, classifier, *, pad: int = 2, rec_weight: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.denoiser = denoiser
        self.classifier = classifier
        self.pad = pad
        self.rec_weight = rec_weight
        # A denoiser with a codebook (VQUNet) keeps its own codebook terms in the loss.
        self.codebook = hasattr(denoiser, "denoise_with_codebook_loss")
        names = ("loss", "cross_entropy", "reconstruction") + (("codebook",) if self.codebook else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def _crop(self, x):
        return x[:, self.pad : -self.pad, self.pad : -self.pad] if self.pad else x

    def call(self, x, training=False):
        x = x[0] if isinstance(x, (tuple, list)) else x
        return self.classifier(self._crop(self.denoiser(x, training=training)), training=training)

    @property
    def metrics(self):
        return [*self.trackers.values(), self.accuracy]

    def train_step(self, data):
        import tensorflow as tf

        (x_in, x_clean), y = data
        weights = self.denoiser.trainable_variables + self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            if self.codebook:
                denoised, codebook = self.denoiser.denoise_with_codebook_loss(x_in, training=True)
            else:
                denoised, codebook = self.denoiser(x_in, training=True), 0.0
            logits = self.classifier(self._crop(denoised), training=True)
            ce = ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            rec = ops.mean(ops.abs(denoised - x_clean))
            loss = ce + self.rec_weight * rec + codebook
            scaled = distribute.scale_loss(loss)
        # Only what the pipeline runs through gets a gradient (not, e.g., a CycleGAN's other generator
        # and its discriminators, which stay as they are).
        used = [(g, w) for g, w in zip(tape.gradient(scaled, weights), weights) if g is not None]
        self.optimizer.apply([g for g, _ in used], [w for _, w in used])
        for name, value in zip(self.trackers, (loss, ce, rec, codebook)):
            self.trackers[name].update_state(value)
        self.accuracy.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}
