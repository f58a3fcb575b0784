"""nnjpeg in IBM's Adversarial Robustness Toolbox: the codec as a preprocessing defence with the BPDA
gradient, Keras models as ART classifiers (EOT for randomized ones), and AutoAttack."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("art")

import nnjpeg  # noqa: E402
import nnjpeg.art  # noqa: E402
from nnjpeg.attacks import EOT, attack  # noqa: E402
from nnjpeg.models.defenses import tvm_classifier  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def patches(photos):
    """16 grey 16x16 patches of a photograph, float32 in [0, 1], and 4 labels by brightness quartile."""
    grey = photos["astronaut"].mean(-1).astype(np.float32) / 255.0
    x = np.stack([grey[r : r + 16, c : c + 16] for r in range(100, 420, 80) for c in range(100, 420, 80)])[..., None]
    brightness = x.mean(axis=(1, 2, 3))
    return x, np.searchsorted(np.quantile(brightness, [0.25, 0.5, 0.75]), brightness).astype(np.int64)


@pytest.fixture(scope="module")
def small_model(patches):
    """A small classifier trained to fit the patches' labels."""
    x, y = patches
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=60, verbose=0)
    return model


def test_preprocessor_is_the_codec_forward_and_identity_backward(patches, photos):
    x, y = patches
    pre = nnjpeg.art.Compression(nnjpeg.nn_table(5))
    out, labels = pre(x, y)
    assert labels is y
    np.testing.assert_array_equal(out, nnjpeg.compress(x, nnjpeg.nn_table(5)))
    grad = RNG.normal(size=x.shape).astype(np.float32)
    assert pre.estimate_gradient(x, grad) is grad
    rgb = photos["coffee"][None, :64, :64].astype(np.float32) / 255.0
    std = nnjpeg.art.Compression(quality=50, subsampling="4:2:0")
    np.testing.assert_array_equal(std(rgb)[0], nnjpeg.jpeg(rgb, 50, subsampling="4:2:0"))
    # Grey images get standard JPEG's luma table, without a colour transform (as nnjpeg.jpeg).
    np.testing.assert_array_equal(std(x)[0], nnjpeg.jpeg(x, 50))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, r"Expected exactly one of table and quality. Received: table=None, quality=None"),
    ({"table": np.ones((8, 8)), "quality": 50}, r"Expected exactly one of table and quality"),
    ({"quality": 0}, r"quality"),
    ({"table": np.zeros((8, 8))}, r"table"),
    ({"table": np.ones((4, 4))}, r"table"),
    ({"table": np.ones((8, 8)), "color": "lab"}, r"Expected color"),
    ({"table": np.ones((8, 8)), "subsampling": "4:2:0"}, r"subsampling"),
    ({"table": np.ones((8, 8)), "threads": 0}, r"Expected threads to be None or an integer in 1"),
])
def test_preprocessor_parameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nnjpeg.art.Compression(**kwargs)


def test_set_params_checks_again_and_refuses_unknown_names(patches):
    pre = nnjpeg.art.Compression(nnjpeg.nn_table(5))
    with pytest.raises(ValueError, match=r"Expected parameters among \['table', 'quality', 'color', 'subsampling', "
                                         r"'threads'\]. Received: \['eps'\]"):
        pre.set_params(eps=0.1)
    with pytest.raises(ValueError, match=r"table"):
        pre.set_params(table=-np.ones((8, 8)))
    pre.set_params(table=nnjpeg.nn_table(3))
    np.testing.assert_array_equal(pre(patches[0])[0], nnjpeg.compress(patches[0], nnjpeg.nn_table(3)))


def test_preprocessor_refuses_bad_images():
    pre = nnjpeg.art.Compression(nnjpeg.nn_table(5))
    with pytest.raises(TypeError, match=r"Expected x float32 \(N, H, W, C\) in \[0, 1\]"):
        pre(np.zeros((1, 8, 8, 1), np.float64))
    with pytest.raises(ValueError, match=r"Expected x with values in \[0, 1\]. Received: min=2.0, max=2.0"):
        pre(np.full((1, 8, 8, 1), 2.0, np.float32))


def test_classifier_predicts_as_the_model_and_takes_bpda_gradients(small_model, patches):
    x, y = patches
    clf = nnjpeg.art.classifier(small_model)
    np.testing.assert_allclose(clf.predict(x, batch_size=5), small_model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    defended = nnjpeg.art.classifier(small_model, preprocessing_defences=[nnjpeg.art.Compression(nnjpeg.nn_table(3))])
    xq = nnjpeg.compress(x, nnjpeg.nn_table(3))
    np.testing.assert_allclose(defended.predict(x), small_model.predict(xq, verbose=0), rtol=1e-5, atol=1e-6)
    # BPDA: the defended gradient at x is the model's gradient at the compressed x.
    xt = tf.constant(xq)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, small_model(xt))
    np.testing.assert_allclose(defended.loss_gradient(x, np.eye(4)[y]), tape.gradient(loss, xt).numpy(),
                               rtol=1e-4, atol=1e-7)


def test_randomized_models_are_attacked_through_eot(small_model):
    randomized = tvm_classifier(small_model, input_shape=(16, 16, 1), iterations=2)
    assert isinstance(nnjpeg.art.classifier(randomized).model, EOT)
    assert nnjpeg.art.classifier(randomized).model.samples == 4
    assert nnjpeg.art.classifier(randomized, eot=0).model is randomized
    assert nnjpeg.art.classifier(small_model).model is small_model
    # A model already averaged over draws (as nnjpeg evaluate hands randomized defenses over) is taken as it is.
    averaged = EOT(randomized, 2)
    clf = nnjpeg.art.classifier(averaged)
    assert clf.model is averaged and clf.nb_classes == 4 and clf.input_shape == (16, 16, 1)


def test_autoattack_through_an_averaged_randomized_model(small_model, patches):
    x, y = patches
    averaged = EOT(tvm_classifier(small_model, input_shape=(16, 16, 1), iterations=2), 2)
    adv = attack("autoattack", averaged, x[:6], y[:6], 1.0, batch_size=8, square_queries=5)
    assert adv.shape == x[:6].shape and np.abs(adv - x[:6]).max() <= 1.0
    with pytest.raises(ValueError, match=r"Expected eot to be an integer >= 0. Received: eot=-1"):
        nnjpeg.art.classifier(small_model, eot=-1)
    with pytest.raises(TypeError, match=r"Expected a pretrained model name or a keras.Model. Received: ndarray"):
        nnjpeg.art.classifier(np.zeros(3))


def test_autoattack_stays_in_budget_and_breaks_everything_unbounded(small_model, patches):
    x, y = patches
    clf = nnjpeg.art.classifier(small_model)
    clean = np.argmax(clf.predict(x), 1) == y
    adv = nnjpeg.art.autoattack(clf, x, y, 0.02, batch_size=8, square_queries=20)
    assert adv.dtype == np.float32 and np.abs(adv - x).max() <= 0.02 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    robust = np.argmax(clf.predict(adv), 1) == y
    assert not np.any(robust & ~clean)  # an image the model got wrong is never counted robust
    # Unbounded budget: every image falls (a gradient-masking check that can fail).
    wide = nnjpeg.art.autoattack(clf, x, y, 1.0, batch_size=8, square_queries=20)
    assert not np.any(np.argmax(clf.predict(wide), 1) == y)
    # Through nnjpeg.attacks, as `nnjpeg evaluate --attack autoattack` runs it.
    via = attack("autoattack", small_model, x, y, 1.0, batch_size=8, square_queries=20)
    assert not np.any(np.argmax(small_model.predict(via, verbose=0), 1) == y)


def test_apgd_answered_in_one_pass_equals_arts_own_classifier(small_model, patches):
    # ART's APGD asks its classifier for the loss at each new point, then for the gradient at the
    # same point, and runs the model eagerly for each; the one-pass classifier answers both from one
    # traced forward+backward. The same float32 operations: equal to the last bit on this model.
    x, y = patches
    clf = nnjpeg.art.classifier(small_model)
    onehot = np.eye(4, dtype=np.float32)
    one_pass = nnjpeg.art.autoattack_attacks(clf, 0.05, batch_size=8)[:2]
    own = nnjpeg.art.autoattack_attacks(clf, 0.05, batch_size=8, one_pass=False)[:2]
    for fast, slow, labels in zip(one_pass, own, (onehot[y], onehot[(y + 1) % 4])):
        assert type(fast.estimator).__name__ == "OnePassClassifier"
        assert type(slow.estimator).__name__ == "TensorFlowV2Classifier"
        np.testing.assert_array_equal(fast.estimator.compute_loss(x, labels), slow.estimator.compute_loss(x, labels))
        np.testing.assert_array_equal(fast.estimator.loss_gradient(x, labels), slow.estimator.loss_gradient(x, labels))
        passes = []
        traced = fast.estimator._pass
        fast.estimator._pass = lambda *a, f=traced: passes.append(1) or f(*a)  # noqa: B023
        for attack_ in (fast, slow):
            attack_.set_params(max_iter=10)
        np.random.seed(0)
        adv = fast.generate(x, y=labels)
        np.random.seed(0)
        np.testing.assert_array_equal(adv, slow.generate(x, y=labels))
        # Per batch (2 of 8 images): one pass a step, one more for the first step's two points, and one
        # after each of the 6 checkpoints of 10 iterations that moves images back to their best point;
        # ART's own classifier makes 21 model calls a batch, two a step.
        assert len(passes) <= 2 * (10 + 1 + 6)
    # Preprocessing (here a standardisation) keeps ART's own classifier, which takes its gradient.
    from art.estimators.classification import TensorFlowV2Classifier

    standardised = TensorFlowV2Classifier(small_model, nb_classes=4, input_shape=(16, 16, 1), clip_values=(0.0, 1.0),
                                          loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                          preprocessing=(0.1, 0.9))
    assert {type(a.estimator).__name__ for a in nnjpeg.art.autoattack_attacks(standardised, 0.05)[:2]} == {
        "TensorFlowV2Classifier"}


@pytest.mark.parametrize(("args", "error", "message"), [
    ({"eps": 0.0}, ValueError, r"Expected eps > 0. Received: eps=0.0"),
    ({"eps": -1.0}, ValueError, r"Expected eps to be a finite number >= 0. Received: eps=-1.0"),
    ({"batch_size": 0}, ValueError, r"Expected batch_size to be an integer >= 1. Received: batch_size=0"),
    ({"square_queries": 0}, ValueError, r"Expected square_queries to be an integer >= 1. Received: square_queries=0"),
    ({"y": np.full(16, 5)}, ValueError, r"Expected labels in 0...3. Received: min=5, max=5"),
    ({"y": np.zeros(3, np.int64)}, ValueError, r"Expected integer labels of shape \(16,\). Received: dtype=int64, shape=\(3,\)"),
])
def test_autoattack_errors(small_model, patches, args, error, message):
    x, y = patches
    kwargs = {"eps": 0.1, **args}
    labels = kwargs.pop("y", y)
    with pytest.raises(error, match=message):
        nnjpeg.art.autoattack(small_model, x, labels, **kwargs)


def test_autoattack_needs_three_classes(patches):
    x, y = patches
    two = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Expected a classifier of 3 classes or more .* Received: 2 classes"):
        nnjpeg.art.autoattack(two, x, y % 2, 0.1)
