"""Adversarial training (PGD, Fast, Free): steps that must move, perturbations within budget,
checks of every parameter, .keras round trips, and the training command on tiny settings."""

import json

import numpy as np
import pytest

import nnjpeg

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from nnjpeg.models.adversarial import (  # noqa: E402
    AdversarialTrainer, RobustValidation, build_madry_cnn, input_gradient, pgd_examples)

RNG = np.random.default_rng(0)


def tiny_data(n=16, size=12):
    x = RNG.random((n, size, size, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")  # learnable: brightness decides the class
    return x, y


def test_madry_cnn_shapes():
    model = build_madry_cnn((12, 12, 1), 3)
    assert model.output_shape == (None, 3)
    assert [layer.name for layer in model.layers if layer.weights] == ["conv1", "conv2", "fc", "logits"]


def test_pgd_examples_stay_in_the_ball_and_raise_the_loss():
    x, y = tiny_data()
    model = build_madry_cnn((12, 12, 1), 2)
    adv = pgd_examples(model, tf.constant(x), tf.constant(y), 0.05, 5, 0.02, seed=tf.constant([1, 2]))
    adv = adv.numpy()
    assert np.abs(adv - x).max() <= 0.05 + 1e-6 and adv.min() >= 0.0 and adv.max() <= 1.0

    def loss(images):
        return float(keras.losses.sparse_categorical_crossentropy(y, model(images), from_logits=True).numpy().mean())

    assert loss(adv) > loss(x)
    # The gradient used is the loss's: a step along its sign raises the loss.
    g = input_gradient(model, tf.constant(x), tf.constant(y)).numpy()
    assert g.shape == x.shape and np.abs(g).sum() > 0


@pytest.mark.parametrize("method", ["pgd", "fast", "free"])
def test_each_method_trains_the_classifier(method):
    x, y = tiny_data()
    classifier = build_madry_cnn((12, 12, 1), 2)
    trainer = AdversarialTrainer(classifier, method=method, eps=0.05, steps=2, replays=2, batch_size=8)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.build((None, 12, 12, 1))
    before = [w.copy() for w in classifier.get_weights()]
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
    history = trainer.fit(batches, epochs=2, verbose=0, shuffle=False)
    assert all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, classifier.get_weights(), strict=True))
    if method == "free":  # the kept perturbation took its steps and stayed within eps
        delta = trainer.delta.numpy()
        assert delta.shape == (8, 12, 12, 1) and 0 < np.abs(delta).max() <= 0.05 + 1e-6
    # Calling the trainer is calling the classifier; evaluate reports clean accuracy.
    np.testing.assert_allclose(trainer(x).numpy(), classifier(x).numpy(), rtol=1e-6)
    clean = float(np.mean(np.argmax(classifier(x).numpy(), -1) == y))
    assert trainer.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == pytest.approx(clean)


def test_free_perturbation_is_not_stuck_past_the_image_range():
    # A kept perturbation of -eps on black pixels is cut to 0 before the replay, so those pixels
    # still get a gradient and can step up; clipping x + delta instead would zero their gradient
    # and keep them at -eps for good.
    x, y = tiny_data(4)
    x[:, :, :6] = 0.0  # a black left half
    trainer = AdversarialTrainer(build_madry_cnn((12, 12, 1), 2), method="free", eps=0.1, replays=1, batch_size=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    trainer.build((None, 12, 12, 1))
    trainer.delta.assign(np.full((4, 12, 12, 1), -0.1, np.float32))
    trainer.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    delta = trainer.delta.numpy()
    black = delta[:, :, :6]
    assert np.mean(black > 0) > 0.2 and set(np.round(black.astype(np.float64), 6).ravel()) <= {-0.1, 0.0, 0.1}


def test_default_step_sizes_follow_the_papers():
    clf = build_madry_cnn((12, 12, 1), 2)
    assert AdversarialTrainer(clf, "pgd", eps=0.1).step_size == pytest.approx(0.025)
    assert AdversarialTrainer(clf, "fast", eps=0.1).step_size == pytest.approx(0.125)
    assert AdversarialTrainer(clf, "free", eps=0.1, batch_size=4).step_size == pytest.approx(0.1)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"method": "trades"}, ValueError, r"Expected method in \('pgd', 'fast', 'free'\). Received: method='trades'"),
    ({"eps": 0.0}, ValueError, r"Expected eps > 0. Received: eps=0.0"),
    ({"eps": -0.1}, ValueError, r"Expected eps to be a finite number >= 0. Received: eps=-0.1"),
    ({"eps": "0.1"}, TypeError, r"Expected eps to be a finite number >= 0. Received: eps='0.1'"),
    ({"steps": 0}, ValueError, r"Expected steps to be an integer >= 1. Received: steps=0"),
    ({"replays": 0}, ValueError, r"Expected replays to be an integer >= 1. Received: replays=0"),
    ({"step_size": float("nan")}, ValueError, r"Expected step_size to be a finite number >= 0. Received: step_size=nan"),
    ({"method": "free"}, ValueError, r"Expected batch_size \(the training batch size\) for method 'free'. Received: None"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        AdversarialTrainer(build_madry_cnn((12, 12, 1), 2), **kwargs)


def test_trainer_save_load(tmp_path):
    x, _ = tiny_data(4)
    trainer = AdversarialTrainer(build_madry_cnn((12, 12, 1), 2), method="free", eps=0.03, replays=3, batch_size=4)
    trainer.build((None, 12, 12, 1))
    trainer.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    assert (loaded.method, loaded.eps, loaded.replays, loaded.batch_size) == ("free", 0.03, 3, 4)
    np.testing.assert_allclose(loaded(x).numpy(), trainer(x).numpy(), rtol=1e-6)


def test_robust_validation_logs_and_keeps_the_best_epoch(tmp_path):
    x, y = tiny_data()
    trainer = AdversarialTrainer(build_madry_cnn((12, 12, 1), 2), method="fast", eps=0.05)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    best = tmp_path / "best.keras"
    check = RobustValidation(x, y, 0.05, steps=2, best_path=best, batch_size=8)
    history = trainer.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[check])
    robust = history.history["val_pgd_accuracy"]
    assert len(robust) == 2 and all(0.0 <= r <= 1.0 for r in robust)
    kept = json.loads((tmp_path / "best.keras.json").read_text())
    assert kept["val_pgd_accuracy"] == max(robust) and kept["epoch"] == int(np.argmax(robust)) + 1
    assert keras.saving.load_model(best).output_shape == (None, 2)


def test_train_cli_pgd_at_exports_a_card(tmp_path):
    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    w = tmp_path / "weights"
    args = ["--limit", "96", "--val-n", "32", "--batch-size", "16", "--epochs", "2", "--steps-per-epoch", "2",
            "--verbose", "0", "--no-augment"]
    assert train.main(["train", "free-at", "--replays", "2", "--out", str(tmp_path / "run"),
                       "--export", str(w / "free-at.keras"), *args]) == 0
    metrics = json.loads((w / "free-at.json").read_text())
    assert metrics["method"] == "free" and metrics["replays"] == 2 and metrics["eps"] == 0.1
    assert 0.0 <= metrics["test_pgd20_accuracy"] <= metrics["test_accuracy"] + 0.2
    assert "Adversarial training (free, eps 0.1)" in (w / "free-at.md").read_text()
    model = keras.saving.load_model(w / "free-at.keras")
    assert model.output_shape == (None, 10)
    # NN-favored JPEG in front of a classifier trained before, attacked through during training.
    assert train.main(["train", "pgd-at", "--front-k", "5", "--init", str(w / "free-at.keras"), "--at-steps", "1",
                       "--out", str(tmp_path / "front"), "--export", str(w / "nnjpeg-pgd-at.keras"), *args]) == 0
    from nnjpeg.keras import Compression

    front = keras.saving.load_model(w / "nnjpeg-pgd-at.keras")
    codecs = [layer for layer in front.layers if isinstance(layer, Compression)]
    assert len(codecs) == 1 and np.allclose(codecs[0].table, nnjpeg.nn_table(5))
    assert json.loads((w / "nnjpeg-pgd-at.json").read_text())["front_k"] == 5
    assert "NN-favored JPEG (k = 5, steps 16/50) in front; fine-tuned from" in (w / "nnjpeg-pgd-at.md").read_text()
    with pytest.raises(ValueError, match=r"Expected --val-n in 1...95 \(held out of 96 training images\). Received: 96"):
        train.main(["train", "pgd-at", "--out", str(tmp_path / "bad"), *args, "--val-n", "96"])
