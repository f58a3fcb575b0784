"""Adversarial training: the reference defenses every preprocessing defense is set beside.

Three recipes, each one `AdversarialTrainer` around a classifier that returns logits:

- "pgd": Madry et al. (2018), "Towards deep learning models resistant to adversarial attacks",
  Sec. 4: each minibatch is replaced by PGD examples (random start in the eps-ball, `steps` signed
  gradient steps of `step_size`, projection) made on the current model.
- "fast": Wong, Rice and Kolter (2020), "Fast is better than free", Alg. 3: one FGSM step of
  `step_size` (1.25 eps in the paper) from a uniform random start, projected back to the eps-ball.
- "free": Shafahi et al. (2019), "Adversarial training for free!", Alg. 1: each minibatch is
  replayed `replays` times; one backward pass per replay gives both the weights' gradient and the
  input's, and the perturbation, kept from one minibatch to the next, takes an FGSM step of eps.

The classifier of the shipped models is the convolutional network of Madry et al.'s MNIST
experiments (`build_madry_cnn`): the architecture the adversarial-training literature uses on
28x28 grey images, and about four times cheaper per PGD step than the WRN target on two cores.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from . import distribute

METHODS = ("pgd", "fast", "free")


def build_madry_cnn(input_shape=(28, 28, 1), num_classes: int = 10, *, name: str = "madry_cnn") -> keras.Model:
    """The MNIST network of Madry et al. (2018): conv 5x5x32, max-pool, conv 5x5x64, max-pool,
    dense 1024, logits.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.
    """
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, activation="relu", name="fc")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _cross_entropy(y, logits):
    return ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


def input_gradient(model, x, y):
    """Gradient of the mean cross-entropy of `model(x)` (inference mode) with respect to x."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _cross_entropy(y, model(x, training=False))
    return tape.gradient(loss, x)


def pgd_examples(model, x, y, eps: float, steps: int, step_size: float, seed=None):
    """L-inf PGD with a uniform random start (Madry et al., 2018), in TensorFlow: usable inside a
    `tf.function` (training and validation), unlike the NumPy attacks of `nnjpeg.attacks`.

    Shape:
        x: (N, H, W, C) float32 in [0, 1]; y: (N,) integer labels; returns x's shape.
    """
    import tensorflow as tf

    noise = (tf.random.uniform(tf.shape(x), -eps, eps) if seed is None
             else tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps))
    adv = tf.clip_by_value(x + noise, 0.0, 1.0)
    for _ in range(steps):
        adv = adv + step_size * tf.sign(input_gradient(model, adv, y))
        adv = tf.clip_by_value(tf.clip_by_value(adv, x - eps, x + eps), 0.0, 1.0)
    return tf.stop_gradient(adv)


@keras.saving.register_keras_serializable(package="nnjpeg")
class AdversarialTrainer(keras.Model):
    """Trains `classifier` on adversarial examples made on itself (see the module docstring).

    Calling the trainer returns the classifier's logits; `fit` takes `(x, y)` batches of float32
    images in [0, 1] and integer labels; with "free", every batch must have `batch_size` images
    (batch the data with `drop_remainder=True`). The reported `accuracy` is on the adversarial
    training batch; `evaluate` reports clean accuracy.

    Under a `tf.distribute` strategy, "pgd" and "fast" train as on one device on the global batch
    (each replica attacks its slice; see `nnjpeg.models.distribute`); "free" refuses more than one
    replica, since its kept perturbation is one tensor of the global batch's shape.

    Args:
        classifier: a Keras model returning logits.
        method: "pgd", "fast" or "free".
        eps: L-inf budget on images in [0, 1].
        steps: PGD steps ("pgd" only).
        step_size: PGD step ("pgd"; default eps / 4), FGSM step ("fast"; default 1.25 eps), or the
            perturbation's step per replay ("free"; default eps, as in its paper).
        replays: times each minibatch is replayed ("free" only).
        batch_size: the training batch size ("free" only: the kept perturbation has its shape).
    """

    def __init__(self, classifier: keras.Model, method: str = "pgd", eps: float = 0.1, steps: int = 10,
                 step_size: float | None = None, replays: int = 4, batch_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        from nnjpeg import _checks

        if method not in METHODS:
            raise ValueError(f"Expected method in {METHODS}. Received: method={method!r}")
        self.classifier = classifier
        self.method = method
        self.eps = _checks.real("eps", eps, 0.0)
        if self.eps == 0.0:
            raise ValueError(f"Expected eps > 0. Received: eps={eps!r}")
        self.steps = _checks.integer("steps", steps, 1)
        default_step = {"pgd": self.eps / 4.0, "fast": 1.25 * self.eps, "free": self.eps}[method]
        self.step_size = default_step if step_size is None else _checks.real("step_size", step_size, 0.0)
        self.replays = _checks.integer("replays", replays, 1)
        if method == "free" and batch_size is None:
            raise ValueError("Expected batch_size (the training batch size) for method 'free'. Received: None")
        self.batch_size = None if batch_size is None else _checks.integer("batch_size", batch_size, 1)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def build(self, input_shape):
        if self.method == "free" and (replicas := distribute.replicas_in_sync()) > 1:
            raise ValueError("Expected one replica for method 'free' (its perturbation, kept from one minibatch to the "
                             f"next, has the global batch's shape). Received: {replicas} replicas in sync")
        if self.method == "free":
            # Free AT's perturbation carries over from one minibatch to the next (its Alg. 1).
            self.delta = self.add_weight(shape=(self.batch_size, *input_shape[1:]), initializer="zeros",
                                         trainable=False, name="delta")
        if not self.classifier.built:
            self.classifier.build(input_shape)
        super().build(input_shape)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def _loss(self, y, logits):
        loss = _cross_entropy(y, logits)
        return loss + ops.sum(self.classifier.losses) if self.classifier.losses else loss

    def _fit_batch(self, x, y):
        import tensorflow as tf

        weights = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            loss = self._loss(y, logits)
            scaled = distribute.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        return loss, logits

    def train_step(self, data):
        import tensorflow as tf

        x, y = data
        if self.method == "free":
            weights = self.classifier.trainable_variables
            for _ in range(self.replays):
                # The kept perturbation, cut to this minibatch's image range: x + delta is a valid image
                # with no clipping in the graph, so that every pixel gets a gradient. Clipping x + delta
                # instead would leave a pixel whose delta pushes it past 0 or 1 with a zero gradient,
                # and so stuck there for the next minibatches too: on Fashion-MNIST, whose pixels are
                # about half black, a delta of -eps on those.
                delta = tf.clip_by_value(x + self.delta, 0.0, 1.0) - x
                with tf.GradientTape() as tape:
                    tape.watch(delta)
                    adv = x + delta
                    logits = self.classifier(adv, training=True)
                    loss = self._loss(y, logits)
                    scaled = distribute.scale_loss(loss)
                grad_delta, *grads = tape.gradient(scaled, [delta, *weights])
                self.optimizer.apply(grads, weights)
                self.delta.assign(tf.clip_by_value(delta + self.step_size * tf.sign(grad_delta), -self.eps, self.eps))
        else:
            if self.method == "pgd":
                adv = pgd_examples(self.classifier, x, y, self.eps, self.steps, self.step_size)
            else:
                start = x + tf.random.uniform(tf.shape(x), -self.eps, self.eps)
                grad = input_gradient(self.classifier, tf.clip_by_value(start, 0.0, 1.0), y)
                delta = tf.clip_by_value(start - x + self.step_size * tf.sign(grad), -self.eps, self.eps)
                adv = tf.stop_gradient(tf.clip_by_value(x + delta, 0.0, 1.0))
            loss, logits = self._fit_batch(adv, y)
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        logits = self.classifier(x, training=False)
        self.loss_tracker.update_state(_cross_entropy(y, logits))
        self.accuracy.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "classifier": keras.saving.serialize_keras_object(self.classifier),
                "method": self.method, "eps": self.eps, "steps": self.steps, "step_size": self.step_size,
                "replays": self.replays, "batch_size": self.batch_size}

    @classmethod
    def from_config(cls, config):
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


class RobustValidation(keras.callbacks.Callback):
    """After each epoch: clean and PGD accuracy of the classifier on held-out images, added to the
    epoch's logs (`val_clean_accuracy`, `val_pgd_accuracy`, so a CSVLogger placed after this callback
    records them), and the classifier saved to `best_path` when its PGD accuracy is the best so far:
    early stopping on robust accuracy (Rice, Wong and Kolter, 2020, "Overfitting in adversarially
    robust deep learning"), which also catches the Fast method's catastrophic overfitting. The best
    score is kept in `best_path` + ".json", so a resumed run goes on comparing against it.
    """

    def __init__(self, x, y, eps: float, steps: int = 10, step_size: float | None = None, best_path=None,
                 batch_size: int = 500, seed: int = 0):
        super().__init__()
        self.x, self.y = x, y
        self.eps, self.steps = eps, steps
        self.step_size = eps / 4.0 if step_size is None else step_size
        self.best_path = best_path
        self.batch_size = batch_size
        self.seed = seed
        self._attack = None

    def _accuracies(self, classifier):
        import numpy as np
        import tensorflow as tf

        if self._attack is None:
            @tf.function(reduce_retracing=True)
            def attack(xb, yb, seed):
                adv = pgd_examples(classifier, xb, yb, self.eps, self.steps, self.step_size, seed=seed)
                return (tf.argmax(classifier(xb, training=False), -1, output_type=tf.int32),
                        tf.argmax(classifier(adv, training=False), -1, output_type=tf.int32))

            self._attack = attack
        clean = robust = 0
        for i, s in enumerate(range(0, len(self.x), self.batch_size)):
            yb = self.y[s : s + self.batch_size]
            pc, pa = self._attack(tf.constant(self.x[s : s + self.batch_size]), tf.constant(yb),
                                  tf.constant([self.seed, i], tf.int32))
            clean += int(np.sum(pc.numpy() == yb))
            robust += int(np.sum(pa.numpy() == yb))
        return clean / len(self.x), robust / len(self.x)

    def on_epoch_end(self, epoch, logs=None):
        import json
        from pathlib import Path

        classifier = self.model.classifier
        clean, robust = self._accuracies(classifier)
        if logs is not None:
            logs["val_clean_accuracy"] = clean
            logs["val_pgd_accuracy"] = robust
        if self.best_path is None:
            return
        record = Path(str(self.best_path) + ".json")
        best = json.loads(record.read_text())["val_pgd_accuracy"] if record.is_file() else -1.0
        if robust > best:
            classifier.save(self.best_path)
            record.write_text(json.dumps({"epoch": epoch + 1, "val_pgd_accuracy": robust, "val_clean_accuracy": clean}))
