"""Attacks on toy models: each raises the loss within its eps-ball and [0, 1]; BPDA gradients flow
through the codec; DeepFool crosses a linear model's boundary; C&W finds smaller L2 than PGD."""

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # cleverhans imports deprecated modules
    pytest.importorskip("cleverhans")

import nnjpeg  # noqa: E402
from nnjpeg import attacks  # noqa: E402
from nnjpeg.keras import Compression  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def linear_model(seed=0, classes=3, shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(0, 0.3))(x))


def conv_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (16, 8, 8, 1)).astype(np.float32)
    model = conv_model()
    y = model.predict(x, verbose=0).argmax(-1)  # attack the model's own decisions
    return model, x, y


def ce(model, x, y):
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model.predict(x, verbose=0), from_logits=True)))


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "cw-linf", "mifgsm", "ti-fgsm", "di-fgsm", "bpda"])
def test_linf_attacks_raise_the_loss_within_the_ball(data, name):
    model, x, y = data
    eps = 0.05
    adv = attacks.attack(name, model, x, y, eps)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert np.abs(adv - x).max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert ce(model, adv, y) > ce(model, x, y) + 1e-3


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "cw-linf", "mifgsm"])
def test_cleverhans_attacks_trace_the_model_once_per_batch_shape(data, name):
    # cleverhans' gradient step is a tf.function taking the model function as an argument: one
    # function per model, or it traces the model again for each batch and each call.
    from cleverhans.tf2.utils import compute_gradient

    model, x, y = data
    attacks.attack(name, model, x, y, 0.05, batch_size=4)  # traced for this model and batch shape
    before = compute_gradient.experimental_get_tracing_count()
    attacks.attack(name, model, x, y, 0.03, batch_size=4)  # four batches of the same shape
    assert compute_gradient.experimental_get_tracing_count() == before


def margin(model, x, y):
    z = model.predict(x, verbose=0)
    true = z[np.arange(len(y)), y]
    z[np.arange(len(y)), y] = -np.inf
    return z.max(-1) - true


def test_cw_linf_ascends_the_cw_margin_within_the_ball(data):
    model, x, y = data
    np.testing.assert_allclose(attacks._margin(tf.constant(y), tf.constant(model.predict(x, verbose=0))).numpy(),
                               margin(model, x, y), rtol=1e-5, atol=1e-5)
    adv = attacks.cw_linf(model, x, y, 0.05, nb_iter=10)
    assert np.abs(adv - x).max() <= 0.05 + 1e-6
    assert (margin(model, adv, y) > margin(model, x, y)).all()


@pytest.mark.parametrize("name", ["deepfool", "cw"])
def test_l2_attacks_raise_the_loss_and_stay_in_range(data, name):
    model, x, y = data
    adv = attacks.attack(name, model, x, y, max_iter=30) if name == "cw" else attacks.attack(name, model, x, y)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert ce(model, adv, y) > ce(model, x, y)


def test_deepfool_crosses_a_linear_boundary_at_about_the_analytic_distance():
    model = linear_model(1)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.4, 0.6, (12, 8, 8, 1)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    y = logits.argmax(-1)
    adv = attacks.deepfool(model, x, y, num_classes=3, overshoot=0.02)
    assert (model.predict(adv, verbose=0).argmax(-1) != y).all()
    w = model.layers[-1].kernel.numpy()  # (64, 3)
    dist = np.array([min(abs(logits[i, y[i]] - logits[i, k]) / np.linalg.norm(w[:, y[i]] - w[:, k])
                         for k in range(3) if k != y[i]) for i in range(len(x))])
    l2 = np.sqrt(((adv - x) ** 2).reshape(len(x), -1).sum(1))
    np.testing.assert_allclose(l2, dist * 1.02, rtol=0.05, atol=1e-3)


def test_cw_finds_smaller_l2_than_pgd_at_equal_success():
    model = linear_model(2)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.3, 0.7, (12, 8, 8, 1)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(-1)
    pgd = attacks.pgd(model, x, y, 0.2, nb_iter=20)
    cw = attacks.cw_l2(model, x, y, binary_steps=5, max_iter=60)
    both = (model.predict(pgd, verbose=0).argmax(-1) != y) & (model.predict(cw, verbose=0).argmax(-1) != y)
    assert both.mean() >= 0.9
    l2 = lambda a: np.sqrt(((a - x) ** 2).reshape(len(x), -1).sum(1))[both]  # noqa: E731
    assert l2(cw).mean() < 0.8 * l2(pgd).mean()


def test_bpda_gradient_through_the_codec_layer_is_nonzero():
    inputs = keras.Input((16, 16, 1))
    h = Compression(nnjpeg.nn_table(3).tolist())(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    x = tf.constant(np.random.default_rng(3).random((2, 16, 16, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x))
    g = tape.gradient(loss, x)
    assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0
    # Attacking the defended model as a whole (BPDA) moves the input and raises the loss.
    y = model.predict(x.numpy(), verbose=0).argmax(-1)
    adv = attacks.pgd(model, x.numpy(), y, 0.1, nb_iter=5)
    assert ce(model, adv, y) > ce(model, x.numpy(), y)


def test_bpda_layer_and_eot():
    layer = attacks.bpda_layer(lambda a: np.round(a * 4) / 4)
    x = tf.constant(np.random.default_rng(4).random((2, 4, 4, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        loss = tf.reduce_sum(out * 3.0)
    np.testing.assert_allclose(out.numpy(), np.round(x.numpy() * 4) / 4, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), 3.0)
    model = linear_model(5, shape=(4, 4, 1))
    eot = attacks.EOT(model, samples=3)
    np.testing.assert_allclose(eot(x).numpy(), model(x).numpy(), atol=1e-5)


def test_errors(data):
    model, x, y = data
    with pytest.raises(ValueError, match=r"attack in .* Received: 'nope'"):
        attacks.attack("nope", model, x, y, 0.1)
    with pytest.raises(ValueError, match=r"eps > 0 for attack 'pgd'. Received: eps=None"):
        attacks.attack("pgd", model, x, y)
    with pytest.raises(TypeError, match=r"Expected images float32 \(N, H, W, C\) in \[0, 1\]. Received: dtype=float64"):
        attacks.fgsm(model, x.astype(np.float64), y, 0.1)
    with pytest.raises(ValueError, match=r"Expected images float32 .* Received: dtype=float32, shape=\(2, 3\)"):
        attacks.fgsm(model, x[:2, 0, :3, 0], y[:2], 0.1)
    with pytest.raises(ValueError, match=r"Expected images with values in \[0, 1\]. Received: min="):
        attacks.fgsm(model, x + 1, y, 0.1)
    bad = x.copy()
    bad[0, 0, 0, 0], bad[1, 1, 1, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"Expected images with finite values in \[0, 1\]. Received: 2 NaN/Inf values"):
        attacks.fgsm(model, bad, y, 0.1)
    with pytest.raises(ValueError, match=r"integer labels of shape \(16,\)"):
        attacks.fgsm(model, x, y[:3], 0.1)


@pytest.mark.parametrize(("name", "kwargs", "error", "message"), [
    ("bim", {"nb_iter": 0}, ValueError, r"nb_iter to be an integer >= 1. Received: nb_iter=0"),
    ("pgd", {"restarts": 0}, ValueError, r"restarts to be an integer >= 1. Received: restarts=0"),
    ("mifgsm", {"nb_iter": 2.5}, TypeError, r"nb_iter to be an integer >= 1. Received: nb_iter=2.5"),
    ("ti-fgsm", {"kernel_size": 0}, ValueError, r"kernel_size to be an integer >= 1. Received: kernel_size=0"),
    ("di-fgsm", {"nb_iter": -1}, ValueError, r"nb_iter to be an integer >= 1. Received: nb_iter=-1"),
    ("deepfool", {"max_iter": 0}, ValueError, r"max_iter to be an integer >= 1. Received: max_iter=0"),
    ("cw", {"binary_steps": True}, TypeError, r"binary_steps to be an integer >= 1. Received: binary_steps=True"),
    ("fgsm", {"batch_size": 0}, ValueError, r"batch_size to be an integer >= 1. Received: batch_size=0"),
    ("bpda", {"nb_iter": 0}, ValueError, r"nb_iter to be an integer >= 1. Received: nb_iter=0"),
    ("bpda", {"lr": -0.1}, ValueError, r"lr to be a finite number >= 0. Received: lr=-0.1"),
])
def test_counts_below_one_are_refused(data, name, kwargs, error, message):
    model, x, y = data
    with pytest.raises(error, match=message):
        attacks.attack(name, model, x, y, 0.1, **kwargs)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "deepfool", "cw"])
def test_labels_outside_the_models_classes_are_refused(data, name):
    model, x, y = data
    with pytest.raises(ValueError,
                       match=r"labels in 0...2 \(3 classes in the model's output\). Received: min=0, max=12"):
        attacks.attack(name, model, x, np.where(np.arange(len(y)) == 3, 12, 0), 0.1)
    with pytest.raises(ValueError, match=r"Received: min=-1, max=0"):
        attacks.attack(name, model, x, -np.eye(1, len(y), 5, dtype=np.int64)[0], 0.1)


def test_bpda_through_the_codec_keeps_the_first_fooling_iterate_and_breaks_everything_unbounded():
    inputs = keras.Input((8, 8, 1))
    inner = conv_model(7)
    model = keras.Model(inputs, inner(Compression(nnjpeg.nn_table(3).tolist())(inputs)))
    x = np.random.default_rng(8).uniform(0.2, 0.8, (12, 8, 8, 1)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(-1)
    adv = attacks.bpda(model, x, y, 0.05, nb_iter=30, batch_size=5)
    assert np.abs(adv - x).max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert ce(model, adv, y) > ce(model, x, y)
    fooled = model.predict(adv, verbose=0).argmax(-1) != y
    # Stopping at the first fooling iterate: more iterations fool no fewer images.
    more = attacks.bpda(model, x, y, 0.05, nb_iter=60, batch_size=5)
    assert (model.predict(more, verbose=0).argmax(-1) != y).sum() >= fooled.sum()
    wide = attacks.bpda(model, x, y, 1.0, nb_iter=200)
    assert np.all(model.predict(wide, verbose=0).argmax(-1) != y)
