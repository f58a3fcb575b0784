"""Defense-VAE (Li & Ji, 2019) and HFL-VAE (He & Singhal, 2021): convolutional VAEs trained to map
adversarial images to their clean originals, placed in front of the classifier.

Trained on pairs (x_adv, x) made with FGSM/PGD on the target classifier: the encoder sees x_adv,
the decoder's reconstruction is compared with the clean x (binary cross-entropy per pixel, summed),
plus the KL divergence of the latent posterior from N(0, I) times `kl_weight`. HFL-VAE adds a
spatial-frequency loss (`hf_weight` > 0): the squared error of the reconstruction's 2-D spectrum in
the band above `hf_cutoff` cycles per pixel, so that the denoiser keeps the edges and textures a
plain VAE blurs away. At inference the posterior mean is decoded (no sampling), so the defense is
deterministic.

With `stem` > 0 and `batch_norm` the layout is Defense-VAE's published network: a 5x5 stride-1
convolution, then stride-2 4x4 convolutions (64, 128, 256 channels on 32x32 inputs: a 4x4x256 map),
batch normalization and ReLU after each, a 128-d latent, and the mirror image in the decoder ending
in a 5x5 convolution. Without them, the strided convolutions alone.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from nnjpeg import _checks

from . import distribute


@keras.saving.register_keras_serializable(package="nnjpeg")
class DefenseVAE(keras.Model):
    """Convolutional VAE denoiser.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], H and W divisible by 2 ** len(widths); outputs: same
        shape, in [0, 1].

    Args:
        image_shape: (H, W, C).
        latent_dim: size of the latent code.
        widths: channels of the stride-2 convolutions, one per halving of the image.
        kl_weight: weight of the KL term.
        stem: channels of a 5x5 stride-1 convolution before them (the decoder then ends with a
            transposed convolution to `stem` channels and a 5x5 convolution); 0 for none.
        batch_norm: batch normalization between every convolution but the output's and its ReLU.
        hf_weight: weight of the high-frequency loss (0: Defense-VAE; > 0: HFL-VAE).
        hf_cutoff: the lowest radial spatial frequency, in cycles per pixel (at most 0.707), of the
            band that loss covers.
    """

    def __init__(self, image_shape=(32, 32, 1), latent_dim: int = 128, widths=(64, 128), kl_weight: float = 1.0,
                 stem: int = 0, batch_norm: bool = False, hf_weight: float = 0.0, hf_cutoff: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.widths = tuple(widths)
        self.kl_weight = kl_weight
        self.stem = stem
        self.batch_norm = batch_norm
        self.hf_weight = hf_weight
        self.hf_cutoff = hf_cutoff
        self._check_params()
        h, w, c = self.image_shape
        down = 2 ** len(self.widths)
        self.encoder = keras.Sequential(
            (self._conv(layers.Conv2D, self.stem, 5, 1) if self.stem else [])
            + [layer for width in self.widths for layer in self._conv(layers.Conv2D, width, 4, 2)]
            + [layers.Flatten(), layers.Dense(2 * self.latent_dim)], name="encoder")
        up = [*reversed(self.widths[:-1])] + ([self.stem] if self.stem else [])
        self.decoder = keras.Sequential(
            [layers.Dense((h // down) * (w // down) * self.widths[-1], activation="relu"),
             layers.Reshape((h // down, w // down, self.widths[-1]))]
            + [layer for width in up for layer in self._conv(layers.Conv2DTranspose, width, 4, 2)]
            + [layers.Conv2D(c, 5, padding="same") if self.stem
               else layers.Conv2DTranspose(c, 4, strides=2, padding="same")], name="decoder")
        fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
        self._high = (np.hypot(fy, fx) >= self.hf_cutoff).astype("float32")  # (H, W): the loss's band
        self.seed = keras.random.SeedGenerator(0)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.rec_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.hf_tracker = keras.metrics.Mean(name="high_frequency")

    def _conv(self, kind, width: int, size: int, stride: int) -> list:
        """A convolution and its ReLU, batch-normalized in between under `batch_norm`."""
        if not self.batch_norm:
            return [kind(width, size, strides=stride, padding="same", activation="relu")]
        return [kind(width, size, strides=stride, padding="same", use_bias=False), layers.BatchNormalization(),
                layers.ReLU()]

    def _check_params(self):
        """Checks the parameters, and stores them as plain ints, floats and bools (for get_config)."""
        shape = self.image_shape
        if len(shape) != 3:
            raise ValueError(f"Expected image_shape (H, W, C). Received: image_shape={shape!r}")
        self.image_shape = shape = tuple(_checks.integer(f"image_shape's {name}", value, 1)
                                         for name, value in zip(("H", "W", "C"), shape))
        if not self.widths:
            raise ValueError("Expected widths, the channels of one or more strided convolutions. "
                             f"Received: widths={self.widths!r}")
        self.widths = tuple(_checks.integer("each of widths", w, 1) for w in self.widths)
        down = 2 ** len(self.widths)
        if shape[0] % down or shape[1] % down:
            raise ValueError(f"Expected image_shape's H and W divisible by {down} ({len(self.widths)} stride-2 "
                             f"convolutions). Received: image_shape={shape!r}")
        self.latent_dim = _checks.integer("latent_dim", self.latent_dim, 1)
        self.kl_weight = _checks.real("kl_weight", self.kl_weight, 0)
        self.stem = _checks.integer("stem", self.stem, 0)
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise TypeError(f"Expected batch_norm to be a bool. Received: batch_norm={self.batch_norm!r}")
        self.batch_norm = bool(self.batch_norm)
        self.hf_weight = _checks.real("hf_weight", self.hf_weight, 0)
        self.hf_cutoff = _checks.real("hf_cutoff", self.hf_cutoff, 0)
        if self.hf_cutoff > 0.5 * 2**0.5:
            raise ValueError("Expected hf_cutoff <= 0.707 cycles per pixel (the highest radial frequency). "
                             f"Received: hf_cutoff={self.hf_cutoff!r}")

    def encode(self, x, training=False):
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"Expected inputs (N, {', '.join(map(str, self.image_shape))}) (the model's image_shape). "
                             f"Received: shape={tuple(x.shape)}")
        stats = self.encoder(x, training=training)
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def call(self, x, training=False):
        mean, log_var = self.encode(x, training=training)
        z = mean
        if training:
            z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed)
        return ops.sigmoid(self.decoder(z, training=training))

    @property
    def metrics(self):
        return [self.loss_tracker, self.rec_tracker, self.kl_tracker, self.hf_tracker]

    def high_frequency_error(self, x, target):
        """The squared error of x's 2-D spectrum (per channel) in the band >= hf_cutoff, divided by
        H * W (by Parseval, the squared error of the high-pass-filtered images), summed over each
        image and averaged over the batch."""
        h, w, _ = self.image_shape
        diff = ops.transpose(x - target, (0, 3, 1, 2))  # fft2 transforms the last two axes
        real, imag = ops.fft2((diff, ops.zeros_like(diff)))
        power = (ops.square(real) + ops.square(imag)) * ops.convert_to_tensor(self._high)
        return ops.mean(ops.sum(power, axis=(1, 2, 3))) / (h * w)

    def _vae_losses(self, x_in, x_clean, training):
        mean, log_var = self.encode(x_in, training=training)
        z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed) if training else mean
        logits = self.decoder(z, training=training)
        rec = ops.mean(ops.sum(ops.binary_crossentropy(x_clean, logits, from_logits=True), axis=(1, 2, 3)))
        kl = ops.mean(-0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1))
        hf = self.high_frequency_error(ops.sigmoid(logits), ops.cast(x_clean, logits.dtype))
        return rec + self.kl_weight * kl + self.hf_weight * hf, rec, kl, hf

    def _track(self, total, rec, kl, hf):
        for tracker, value in zip(self.metrics, (total, rec, kl, hf)):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        x_in, x_clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        x_clean = x_in if x_clean is None else x_clean
        with tf.GradientTape() as tape:
            losses = self._vae_losses(x_in, x_clean, training=True)
            scaled = distribute.scale_loss(losses[0])
        self.optimizer.apply(tape.gradient(scaled, self.trainable_variables), self.trainable_variables)
        return self._track(*losses)

    def test_step(self, data):
        x_in, x_clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._track(*self._vae_losses(x_in, x_clean if x_clean is not None else x_in, training=False))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "widths": list(self.widths), "kl_weight": self.kl_weight, "stem": self.stem,
                "batch_norm": self.batch_norm, "hf_weight": self.hf_weight, "hf_cutoff": self.hf_cutoff}
