"""Defense-CycleGAN (He & Singhal, 2022): a CycleGAN between adversarial and clean images, whose
adversarial-to-clean generator is placed in front of the classifier.

Two generators, G: adversarial -> clean and F: clean -> adversarial, and two PatchGAN
discriminators, one per domain, trained as in CycleGAN (Zhu et al., 2017): least-squares GAN
losses, the cycle losses |F(G(a)) - a|_1 and |G(F(c)) - c|_1 weighted by `cycle_weight`, and the
identity losses |G(c) - c|_1 and |F(a) - a|_1 weighted by `identity_weight` (which keeps G close to
the identity on clean images, and so the clean accuracy). No loss pairs an adversarial image with its
own clean original: the two domains are matched as distributions only. Calling the model runs G.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from nnjpeg import _checks

from . import distribute


def _norm():
    return layers.GroupNormalization(groups=-1, epsilon=1e-5)  # instance normalization


def generator(channels: int, width: int, blocks: int, name: str) -> keras.Sequential:
    """A ResNet generator (CycleGAN's, sized for 32x32): 7x7 conv, two stride-2 downsamplings,
    `blocks` residual blocks, two upsamplings, 7x7 conv to `channels` with a sigmoid."""
    inputs = keras.Input((None, None, channels))
    x = layers.ReLU()(_norm()(layers.Conv2D(width, 7, padding="same")(inputs)))
    for w in (2 * width, 4 * width):
        x = layers.ReLU()(_norm()(layers.Conv2D(w, 3, strides=2, padding="same")(x)))
    for _ in range(blocks):
        h = layers.ReLU()(_norm()(layers.Conv2D(4 * width, 3, padding="same")(x)))
        x = layers.Add()([x, _norm()(layers.Conv2D(4 * width, 3, padding="same")(h))])
    for w in (2 * width, width):
        x = layers.ReLU()(_norm()(layers.Conv2DTranspose(w, 3, strides=2, padding="same")(x)))
    return keras.Model(inputs, layers.Conv2D(channels, 7, padding="same", activation="sigmoid")(x), name=name)


def discriminator(channels: int, width: int, name: str) -> keras.Model:
    """A PatchGAN discriminator: one real-or-fake logit per patch."""
    inputs = keras.Input((None, None, channels))
    x = layers.LeakyReLU(0.2)(layers.Conv2D(width, 4, strides=2, padding="same")(inputs))
    x = layers.LeakyReLU(0.2)(_norm()(layers.Conv2D(2 * width, 4, strides=2, padding="same")(x)))
    x = layers.LeakyReLU(0.2)(_norm()(layers.Conv2D(4 * width, 4, padding="same")(x)))
    return keras.Model(inputs, layers.Conv2D(1, 4, padding="same")(x), name=name)


@keras.saving.register_keras_serializable(package="nnjpeg")
class DefenseCycleGAN(keras.Model):
    """CycleGAN denoiser.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], H and W divisible by 4; outputs: same shape, in [0, 1].

    Args:
        channels: C.
        width: channels of the generators' first convolution (and of the discriminators').
        blocks: residual blocks per generator.
        cycle_weight, identity_weight: weights of the cycle and identity L1 losses (the GAN losses
            have weight 1).

    `fit` takes (adversarial, clean) batches; the compiled optimizer steps the generators on the
    generator loss and the discriminators on theirs.
    """

    def __init__(self, channels: int = 1, width: int = 32, blocks: int = 4, cycle_weight: float = 10.0,
                 identity_weight: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = _checks.integer("channels", channels, 1)
        self.width = _checks.integer("width", width, 1)
        self.blocks = _checks.integer("blocks", blocks, 0)
        self.cycle_weight = _checks.real("cycle_weight", cycle_weight, 0)
        self.identity_weight = _checks.real("identity_weight", identity_weight, 0)
        self.to_clean = generator(self.channels, self.width, self.blocks, "to_clean")
        self.to_adversarial = generator(self.channels, self.width, self.blocks, "to_adversarial")
        self.judge_clean = discriminator(self.channels, self.width, "judge_clean")
        self.judge_adversarial = discriminator(self.channels, self.width, "judge_adversarial")
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("generator", "discriminator", "cycle", "identity", "reconstruction")}

    def _check(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[-1] != self.channels or (shape[1] or 0) % 4 or (shape[2] or 0) % 4:
            raise ValueError(f"Expected inputs (N, H, W, {self.channels}) with H and W divisible by 4. "
                             f"Received: shape={shape}")

    def call(self, x, training=False):
        self._check(x)
        return self.to_clean(x, training=training)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _objectives(self, adv, clean, training):
        fake_clean = self.to_clean(adv, training=training)
        fake_adv = self.to_adversarial(clean, training=training)
        cycle = (ops.mean(ops.abs(self.to_adversarial(fake_clean, training=training) - adv))
                 + ops.mean(ops.abs(self.to_clean(fake_adv, training=training) - clean)))
        identity = (ops.mean(ops.abs(self.to_clean(clean, training=training) - clean))
                    + ops.mean(ops.abs(self.to_adversarial(adv, training=training) - adv)))
        fooled = (ops.mean(ops.square(self.judge_clean(fake_clean, training=training) - 1.0))
                  + ops.mean(ops.square(self.judge_adversarial(fake_adv, training=training) - 1.0)))
        gen = fooled + self.cycle_weight * cycle + self.identity_weight * identity
        judged = 0.5 * sum(ops.mean(ops.square(judge(real, training=training) - 1.0))
                           + ops.mean(ops.square(judge(ops.stop_gradient(fake), training=training)))
                           for judge, real, fake in ((self.judge_clean, clean, fake_clean),
                                                     (self.judge_adversarial, adv, fake_adv)))
        return gen, judged, cycle, identity, ops.mean(ops.abs(fake_clean - clean))

    def _track(self, values):
        for tracker, value in zip(self.trackers.values(), values):
            tracker.update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def train_step(self, data):
        import tensorflow as tf

        adv, clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        clean = adv if clean is None else clean
        generators = self.to_clean.trainable_variables + self.to_adversarial.trainable_variables
        judges = self.judge_clean.trainable_variables + self.judge_adversarial.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            values = self._objectives(adv, clean, training=True)
            gen_loss, judge_loss = (distribute.scale_loss(value) for value in values[:2])
        # One Adam for both players (per-variable moments: as two of the same settings), each
        # network stepping on its own player's loss.
        self.optimizer.apply(tape.gradient(gen_loss, generators) + tape.gradient(judge_loss, judges),
                             generators + judges)
        del tape
        return self._track(values)

    def test_step(self, data):
        adv, clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._track(self._objectives(adv, adv if clean is None else clean, training=False))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "width": self.width, "blocks": self.blocks,
                "cycle_weight": self.cycle_weight, "identity_weight": self.identity_weight}
