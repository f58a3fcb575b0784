"""VQUNet (VQUNet paper, Sec. 3): a U-Net denoiser whose encoder features are vector-quantized at
every depth against a learned codebook, and the non-VQ U-Net of its ablation.

Structure (paper Fig. 1): encoder blocks E_d (strided convolution + residual block) halve the
resolution at each depth; their outputs a_d are replaced by the nearest codebook vectors q_d
(each depth has its own `keras.layers.Embedding` codebook, K x G) and q_d feeds E_{d+1}. For a 32x32
input and the default widths the deepest level is 2x2x512. Decoder blocks D_d (a convolution, two
residual blocks, a stride-2 transposed convolution) expand the features, which are concatenated
with the quantized features of the level above. Loss (paper Eq. 5): alpha * L_reconst + beta * L_E
+ L_Q with alpha = beta = 1.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from nnjpeg import _checks

from . import distribute


@keras.saving.register_keras_serializable(package="nnjpeg")
class VectorQuantizer(layers.Layer):
    """Nearest-code lookup against a `keras.layers.Embedding` codebook (paper Eq. 1).

    `call(a)` returns the straight-through quantized features q* = a + stop_gradient(q - a) (paper
    Sec. 3.2), so the encoder receives the reconstruction gradient; `call(a, return_codes=True)`
    returns the codes q themselves (differentiable with respect to the codebook, for L_Q) and
    their indices.

    The layer also keeps `usage`, an exponential moving average of the fraction of lookups each
    code wins during training (non-trainable, updated by `VQUNet.train_step` from the lookups of all
    replicas under `tf.distribute`), from which dead codes are found and restarted.

    Shape:
        inputs: (..., G); outputs: same shape; indices: inputs.shape[:-1], int32.

    Args:
        num_codes: K, codebook size.
        code_dim: G, must equal the last input dimension.
    """

    def __init__(self, num_codes: int, code_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_codes = num_codes
        self.code_dim = code_dim

    def build(self, input_shape):
        if input_shape[-1] != self.code_dim:
            raise ValueError(f"Expected inputs with last dimension code_dim={self.code_dim}. Received: shape={input_shape}")
        self.codebook = layers.Embedding(
            self.num_codes, self.code_dim, embeddings_initializer=keras.initializers.RandomUniform(-1.0 / self.num_codes, 1.0 / self.num_codes),
            name="codebook")
        self.codebook.build((None,))
        self.usage = self.add_weight(shape=(self.num_codes,), initializer=keras.initializers.Constant(1.0 / self.num_codes),
                                     trainable=False, name="usage")
        self.built = True

    def nearest(self, a):
        """Indices of the nearest codes (squared Euclidean distance), shape a.shape[:-1]."""
        flat = ops.reshape(a, (-1, self.code_dim))
        codes = self.codebook.embeddings
        d = (ops.sum(flat * flat, axis=1, keepdims=True) - 2.0 * ops.matmul(flat, ops.transpose(codes))
             + ops.sum(codes * codes, axis=1)[None, :])
        idx = ops.cast(ops.argmin(d, axis=1), "int32")
        return ops.reshape(idx, ops.shape(a)[:-1])

    def call(self, a, return_codes=False):
        idx = self.nearest(a)
        q = self.codebook(idx)
        if return_codes:
            return q, idx
        # Straight-through estimator: forward value q, gradient of the identity back to a.
        return a + ops.stop_gradient(q - a)

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes, "code_dim": self.code_dim}


def _res_block(width: int, name: str) -> keras.Sequential:
    return keras.Sequential([layers.Conv2D(width, 3, padding="same", activation="relu", name=f"{name}_c1"),
                             layers.Conv2D(width, 3, padding="same", name=f"{name}_c2")], name=name)


@keras.saving.register_keras_serializable(package="nnjpeg")
class VQUNet(keras.Model):
    """VQUNet denoiser, or the non-VQ U-Net of the paper's ablation with `vq=False`.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], H and W divisible by 2 ** len(widths);
        outputs: same shape, in [0, 1] (sigmoid).

    Args:
        channels: C of the images.
        widths: encoder widths per depth (default 64, 128, 256, 512: 2x2x512 at the deepest level
            of a 32x32 input).
        num_codes: codebook size K at every depth.
        vq: quantize the encoder features (False: the non-VQ U-Net).
        alpha, beta: weights of L_reconst and L_E in the training loss.
        restart_every: every this many training steps, codes whose usage average has fallen below
            1 / (16 K) are restarted at encoder outputs of the current batch drawn at random, so a
            codebook cannot collapse onto a few codes (0 turns restarts off). Restarts per depth
            are logged as `restarts_d`. Under `tf.distribute`, usage and the draw are over the
            global batch, so every replica restarts the same codes at the same vectors.
        usage_decay: decay of the usage moving average.
    """

    def __init__(self, channels: int = 1, widths=(64, 128, 256, 512), num_codes: int = 256, vq: bool = True,
                 alpha: float = 1.0, beta: float = 1.0, restart_every: int = 50, usage_decay: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.widths = tuple(widths)
        self.num_codes = num_codes
        self.vq = vq
        self.alpha = alpha
        self.beta = beta
        self.restart_every = restart_every
        self.usage_decay = usage_decay
        self._check_params()
        self.enc_down = [layers.Conv2D(w, 3, strides=2, padding="same", activation="relu", name=f"e{d + 1}_down")
                         for d, w in enumerate(self.widths)]
        self.enc_res = [_res_block(w, f"e{d + 1}_res") for d, w in enumerate(self.widths)]
        self.quantizers = ([VectorQuantizer(self.num_codes, w, name=f"vq{d + 1}") for d, w in enumerate(self.widths)]
                           if vq else [])
        out_widths = list(self.widths[:-1][::-1]) + [self.widths[0] // 2]
        self.dec_conv = [layers.Conv2D(w, 3, padding="same", activation="relu", name=f"d{len(self.widths) - i}_conv")
                         for i, w in enumerate(self.widths[::-1])]
        self.dec_res = [[_res_block(w, f"d{len(self.widths) - i}_res{j + 1}") for j in range(2)]
                        for i, w in enumerate(self.widths[::-1])]
        self.dec_up = [layers.Conv2DTranspose(w, 3, strides=2, padding="same", activation="relu",
                                              name=f"d{len(self.widths) - i}_up") for i, w in enumerate(out_widths)]
        self.head = layers.Conv2D(self.channels, 3, padding="same", activation="sigmoid", name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconst_tracker = keras.metrics.Mean(name="reconstruction")
        self.enc_tracker = keras.metrics.Mean(name="encoder_loss")
        self.code_tracker = keras.metrics.Mean(name="codebook_loss")
        self.perplexity_trackers = [keras.metrics.Mean(name=f"perplexity_{d + 1}") for d in range(len(self.widths))] if vq else []
        self.usage_trackers = [keras.metrics.Mean(name=f"codes_used_{d + 1}") for d in range(len(self.widths))] if vq else []
        self.restart_trackers = [keras.metrics.Sum(name=f"restarts_{d + 1}") for d in range(len(self.widths))] if vq else []

    def _check_params(self):
        """Checks the parameters, and stores them as plain ints and floats (for get_config)."""
        self.channels = _checks.integer("channels", self.channels, 1)
        if not self.widths:
            raise ValueError(f"Expected widths, one integer >= 2 per depth. Received: widths={self.widths!r}")
        # >= 2: the last decoder stage has widths[0] // 2 channels.
        self.widths = tuple(_checks.integer("each of widths", w, 2) for w in self.widths)
        self.num_codes = _checks.integer("num_codes", self.num_codes, 1)
        self.restart_every = _checks.integer("restart_every", self.restart_every, 0, meaning=" (0: never)")
        self.alpha = _checks.real("alpha", self.alpha, 0)
        self.beta = _checks.real("beta", self.beta, 0)
        self.usage_decay = _checks.real("usage_decay", self.usage_decay, 0, 1, high_open=True)

    def _check_inputs(self, x):
        shape = tuple(x.shape)
        step = 2 ** len(self.widths)
        if len(shape) != 4 or shape[-1] != self.channels or any(d is not None and d % step for d in shape[1:3]):
            raise ValueError(f"Expected inputs (N, H, W, {self.channels}) with H and W divisible by {step} "
                             f"(2 ** len(widths)). Received: shape={shape}")

    def encode(self, x, training=False):
        """Runs the encoder. Returns per depth: (a_d pre-quantization, q_d codes or None, indices or None)."""
        self._check_inputs(x)
        levels = []
        h = x
        for d in range(len(self.widths)):
            h = self.enc_down[d](h)
            a = ops.relu(h + self.enc_res[d](h, training=training))
            if self.vq:
                q, idx = self.quantizers[d](a, return_codes=True)
                h = a + ops.stop_gradient(q - a)  # straight-through: q forward, identity gradient to a
                levels.append((a, q, idx))
            else:
                h = a
                levels.append((a, None, None))
        return levels

    def init_codebooks(self, x, seed: int = 0) -> None:
        """Data-dependent codebook initialization: depth by depth, each codebook is set to encoder
        outputs of `x` drawn at random (with the codebooks above already set, since their codes feed
        the deeper encoders). A codebook left at its small uniform initialization is far from the
        encoder's ReLU features, and most codes never win a lookup (collapse to a few codes).

        Args:
            x: (N, H, W, C) float32 images; N * (H / 2) * (W / 2) >= num_codes.
        """
        import numpy as np

        if not self.vq:
            return
        rng = np.random.default_rng(seed)
        for d, quantizer in enumerate(self.quantizers):
            a = ops.convert_to_numpy(self.encode(x)[d][0]).reshape(-1, self.widths[d])
            pick = rng.choice(len(a), size=self.num_codes, replace=len(a) < self.num_codes)
            quantizer.codebook.embeddings.assign(a[pick])

    def decode(self, levels, training=False):
        feats = [(a + ops.stop_gradient(q - a)) if q is not None else a for a, q, _ in levels]
        h = feats[-1]
        for i in range(len(self.widths)):
            h = self.dec_conv[i](h)
            for rb in self.dec_res[i]:
                h = ops.relu(h + rb(h, training=training))
            h = self.dec_up[i](h)
            skip = len(self.widths) - 2 - i
            if skip >= 0:
                h = ops.concatenate([h, feats[skip]], axis=-1)
        return self.head(h)

    def call(self, x, training=False):
        return self.decode(self.encode(x, training=training), training=training)

    @staticmethod
    def _codebook_terms(levels):
        l_e = ops.convert_to_tensor(0.0)
        l_q = ops.convert_to_tensor(0.0)
        for a, q, _ in levels:
            if q is not None:
                l_e = l_e + ops.mean(ops.square(ops.stop_gradient(q) - a))  # L_E: encoder towards its codes
                l_q = l_q + ops.mean(ops.square(q - ops.stop_gradient(a)))  # L_Q: codes towards the encoder
        return l_e, l_q

    def _vq_losses(self, x, target, training):
        levels = self.encode(x, training=training)
        recon = self.decode(levels, training=training)
        l_rec = ops.mean(ops.square(target - recon))
        l_e, l_q = self._codebook_terms(levels)
        total = self.alpha * l_rec + self.beta * l_e + l_q
        return total, l_rec, l_e, l_q, levels

    def denoise_with_codebook_loss(self, x, training=False):
        """The denoised images and the codebook part of the loss, beta * L_E + L_Q (0 without VQ),
        for training the VQUNet inside a larger model (models/defenses.py EndToEnd): there the
        codebooks get a gradient from nothing else (the straight-through estimator passes none to
        them), and without L_E the encoder drifts away from its codes."""
        levels = self.encode(x, training=training)
        l_e, l_q = self._codebook_terms(levels)
        return self.decode(levels, training=training), self.beta * l_e + l_q

    def _track_metrics(self, total, l_rec, l_e, l_q, levels):
        self.loss_tracker.update_state(total)
        self.reconst_tracker.update_state(l_rec)
        self.enc_tracker.update_state(l_e)
        self.code_tracker.update_state(l_q)
        for d, (_, _, idx) in enumerate(levels):
            if idx is None:
                continue
            # The global batch's lookups under tf.distribute: every replica logs the same statistics.
            counts = distribute.sum_over_replicas(ops.bincount(ops.reshape(idx, (-1,)), minlength=self.num_codes))
            p = ops.cast(counts, "float32") / ops.cast(ops.sum(counts), "float32")
            entropy = -ops.sum(ops.where(p > 0, p * ops.log(ops.maximum(p, 1e-12)), 0.0))
            self.perplexity_trackers[d].update_state(ops.exp(entropy))
            self.usage_trackers[d].update_state(ops.mean(ops.cast(counts > 0, "float32")))

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconst_tracker, self.enc_tracker, self.code_tracker,
                *self.perplexity_trackers, *self.usage_trackers, *self.restart_trackers]

    @staticmethod
    def _unpack(data):
        """(x, target): the target defaults to x (the paper trains on clean images, Eq. 2)."""
        x, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        return x, (x if target is None else target)

    def train_step(self, data):
        import tensorflow as tf

        x, target = self._unpack(data)
        with tf.GradientTape() as tape:
            total, l_rec, l_e, l_q, levels = self._vq_losses(x, target, training=True)
            scaled = distribute.scale_loss(total)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self._track_metrics(total, l_rec, l_e, l_q, levels)
        self._update_usage(levels)
        return {m.name: m.result() for m in self.metrics}

    def _update_usage(self, levels):
        """Updates each codebook's usage average and, every `restart_every` steps, moves its dead
        codes onto random encoder outputs of the batch (their usage reset to 1 / K).

        Under `tf.distribute` each replica holds its own copy of `usage` and of the codebooks and
        sees its slice of the batch: the lookups are counted over all replicas and the new codes
        drawn from all replicas' encoder outputs, so every copy makes the same update (the draw is
        the one a single device would make on the whole batch)."""
        import tensorflow as tf

        if not self.vq:
            return
        k = self.num_codes
        step = tf.cast(self.optimizer.iterations, "int32")
        for d, (a, _, idx) in enumerate(levels):
            quantizer = self.quantizers[d]
            counts = tf.cast(tf.math.bincount(tf.reshape(idx, (-1,)), minlength=k, maxlength=k), "float32")
            counts = distribute.sum_over_replicas(counts)
            usage = self.usage_decay * quantizer.usage + (1.0 - self.usage_decay) * counts / tf.reduce_sum(counts)
            quantizer.usage.assign(usage)
            if not self.restart_every:
                continue
            flat = tf.reshape(tf.stop_gradient(a), (-1, self.widths[d]))
            pick = tf.random.stateless_uniform((k,), seed=tf.stack([step, d]), minval=0,
                                               maxval=distribute.sum_over_replicas(tf.shape(flat)[0]), dtype="int32")
            # Outside the tf.cond below: every replica takes part in the exchange at every step.
            candidates = distribute.gather_rows_across_replicas(flat, pick)

            def restart(quantizer=quantizer, usage=usage, candidates=candidates):
                dead = usage < 1.0 / (16 * k)
                codes = quantizer.codebook.embeddings
                codes.assign(tf.where(dead[:, None], candidates, codes))
                quantizer.usage.assign(tf.where(dead, 1.0 / k, usage))
                return tf.reduce_sum(tf.cast(dead, "float32"))

            restarted = tf.cond(step % self.restart_every == 0, restart, lambda: tf.constant(0.0))
            # Every replica restarted the same codes: the Sum metric counts them once.
            self.restart_trackers[d].update_state(distribute.on_first_replica(restarted))

    def test_step(self, data):
        x, target = self._unpack(data)
        self._track_metrics(*self._vq_losses(x, target, training=False))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "widths": list(self.widths),
                "num_codes": self.num_codes, "vq": self.vq, "alpha": self.alpha, "beta": self.beta,
                "restart_every": self.restart_every, "usage_decay": self.usage_decay}
