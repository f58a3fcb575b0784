"""Preprocessing defenses composed with a classifier: behaviour, gradients and .keras round trips."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import nnjpeg  # noqa: E402
from nnjpeg.models import defenses  # noqa: E402
from nnjpeg.models.vqunet import VQUNet  # noqa: E402


def small_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, strides=2)(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(h))


@pytest.fixture(scope="module")
def images():
    from skimage import data

    cam = data.camera()[::18, ::18][:28, :28].astype(np.float32) / 255.0
    return np.stack([cam, cam.T])[..., None]


def test_tvm_smooths_and_keeps_range(images):
    rng = np.random.default_rng(0)
    noisy = np.clip(images + rng.normal(0, 0.1, images.shape).astype(np.float32), 0, 1)
    out = defenses.TVM(keep=0.5, weight=0.05, seed=1)(noisy).numpy()
    assert out.min() >= 0 and out.max() <= 1
    tv = lambda a: np.abs(np.diff(a, axis=1)).sum() + np.abs(np.diff(a, axis=2)).sum()  # noqa: E731
    assert tv(out) < 0.7 * tv(noisy)
    assert np.abs(out - images).mean() < np.abs(noisy - images).mean()


def test_tvm_gradient_is_identity(images):
    layer = defenses.TVM(seed=0, iterations=5)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) * 2.0)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), 2.0)


def test_tvm_errors():
    with pytest.raises(ValueError, match=r"0 < keep <= 1.*Received: keep=0"):
        defenses.TVM(keep=0)


def test_composed_models_run_and_round_trip(images, tmp_path):
    clf = small_classifier()
    unet = VQUNet(channels=1, widths=(8, 16), num_codes=8)
    unet(np.zeros((1, 32, 32, 1), np.float32))
    models = [defenses.nnjpeg_classifier(clf, 4), defenses.jpeg_classifier(clf, 75),
              defenses.denoised_classifier(unet, clf, name="vq_classifier")]
    expected = clf.predict(nnjpeg.compress(images, nnjpeg.nn_table(4)), verbose=0)
    np.testing.assert_allclose(models[0].predict(images, verbose=0), expected, atol=1e-5)
    for m in models:
        assert m.predict(images, verbose=0).shape == (2, 10)
        m.save(tmp_path / f"{m.name}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{m.name}.keras")
        np.testing.assert_allclose(loaded.predict(images, verbose=0), m.predict(images, verbose=0), atol=1e-5)
    tvm = defenses.tvm_classifier(clf, seed=3)
    tvm.save(tmp_path / "tvm.keras")
    assert keras.saving.load_model(tmp_path / "tvm.keras").predict(images, verbose=0).shape == (2, 10)


def test_demo_shows_what_the_classifier_sees(images):
    from nnjpeg import demo

    clf = small_classifier()
    # The layer returns x + (f(x) - x) (straight-through), equal to f(x) up to float rounding.
    np.testing.assert_allclose(demo.defended_view(defenses.jpeg_classifier(clf, 75), images), nnjpeg.jpeg(images, 75), atol=1e-6)
    unet = VQUNet(channels=1, widths=(8, 16), num_codes=8)
    unet(np.zeros((1, 32, 32, 1), np.float32))
    view = demo.defended_view(defenses.denoised_classifier(unet, clf), images)
    np.testing.assert_allclose(view, np.asarray(unet(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))))[:, 2:-2, 2:-2], atol=1e-6)
    assert demo.defended_view(clf, images) is None
