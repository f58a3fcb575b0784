"""Defense-VAE (Li & Ji, 2019): a convolutional VAE trained to map adversarial images to their clean
originals, placed in front of the classifier.

Trained on pairs (x_adv, x) made with FGSM/PGD on the target classifier: the encoder sees x_adv,
the decoder's reconstruction is compared with the clean x (binary cross-entropy per pixel, summed),
plus the KL divergence of the latent posterior from N(0, I). At inference the posterior mean is
decoded (no sampling), so the defense is deterministic.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from nnjpeg import _checks


@keras.saving.register_keras_serializable(package="nnjpeg")
class DefenseVAE(keras.Model):
    """Convolutional VAE denoiser.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], H and W divisible by 4; outputs: same shape, in [0, 1].

    Args:
        image_shape: (H, W, C).
        latent_dim: size of the latent code.
        widths: channels of the two strided convolutions.
        kl_weight: weight of the KL term.
    """

    def __init__(self, image_shape=(32, 32, 1), latent_dim: int = 128, widths=(64, 128), kl_weight: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.widths = tuple(widths)
        self.kl_weight = kl_weight
        self._check_params()
        h, w, c = self.image_shape
        self.encoder = keras.Sequential([
            layers.Conv2D(self.widths[0], 4, strides=2, padding="same", activation="relu"),
            layers.Conv2D(self.widths[1], 4, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(2 * self.latent_dim),
        ], name="encoder")
        self.decoder = keras.Sequential([
            layers.Dense((h // 4) * (w // 4) * self.widths[1], activation="relu"),
            layers.Reshape((h // 4, w // 4, self.widths[1])),
            layers.Conv2DTranspose(self.widths[0], 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(c, 4, strides=2, padding="same"),
        ], name="decoder")
        self.seed = keras.random.SeedGenerator(0)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.rec_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def _check_params(self):
        """Checks the parameters, and stores them as plain ints and floats (for get_config)."""
        shape = self.image_shape
        if len(shape) != 3:
            raise ValueError(f"Expected image_shape (H, W, C). Received: image_shape={shape!r}")
        self.image_shape = shape = tuple(_checks.integer(f"image_shape's {name}", value, 1)
                                         for name, value in zip(("H", "W", "C"), shape))
        if shape[0] % 4 or shape[1] % 4:
            raise ValueError(f"Expected image_shape's H and W divisible by 4 (two stride-2 convolutions). "
                             f"Received: image_shape={shape!r}")
        self.latent_dim = _checks.integer("latent_dim", self.latent_dim, 1)
        if len(self.widths) != 2:
            raise ValueError("Expected widths, the two strided convolutions' channels. "
                             f"Received: widths={self.widths!r}")
        self.widths = tuple(_checks.integer("each of widths", w, 1) for w in self.widths)
        self.kl_weight = _checks.real("kl_weight", self.kl_weight, 0)

    def encode(self, x):
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"Expected inputs (N, {', '.join(map(str, self.image_shape))}) (the model's image_shape). "
                             f"Received: shape={tuple(x.shape)}")
        stats = self.encoder(x)
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def call(self, x, training=False):
        mean, log_var = self.encode(x)
        z = mean
        if training:
            z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed)
        return ops.sigmoid(self.decoder(z))

    @property
    def metrics(self):
        return [self.loss_tracker, self.rec_tracker, self.kl_tracker]

    def _vae_losses(self, x_in, x_clean, training):
        mean, log_var = self.encode(x_in)
        z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed) if training else mean
        logits = self.decoder(z)
        rec = ops.mean(ops.sum(ops.binary_crossentropy(x_clean, logits, from_logits=True), axis=(1, 2, 3)))
        kl = ops.mean(-0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1))
        return rec + self.kl_weight * kl, rec, kl

    def _track(self, total, rec, kl):
        self.loss_tracker.update_state(total)
        self.rec_tracker.update_state(rec)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        x_in, x_clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        x_clean = x_in if x_clean is None else x_clean
        with tf.GradientTape() as tape:
            total, rec, kl = self._vae_losses(x_in, x_clean, training=True)
        self.optimizer.apply(tape.gradient(total, self.trainable_variables), self.trainable_variables)
        return self._track(total, rec, kl)

    def test_step(self, data):
        x_in, x_clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._track(*self._vae_losses(x_in, x_clean if x_clean is not None else x_in, training=False))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "widths": list(self.widths), "kl_weight": self.kl_weight}
