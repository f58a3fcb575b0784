"""The NN-JPEG ensemble: the combined output against a manual average, voting, save/load, and the
noisy fine-tuning step and pipeline (tiny shapes)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import nnjpeg  # noqa: E402
from nnjpeg.models import ensemble  # noqa: E402

RNG = np.random.default_rng(0)


def tiny_member(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name=f"m{seed}")


@pytest.fixture(scope="module")
def images():
    from skimage import data

    cam = data.camera()[100:164:4, 200:264:4].astype(np.float32) / 255.0  # a real 16x16 grey crop
    return np.stack([cam, cam[::-1], cam[:, ::-1]])[..., None]


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_output_is_log_of_the_mean_softmax_of_members_on_their_own_compression(images):
    qualities = (None, 90, 50)
    members = [tiny_member(s) for s in range(3)]
    model = ensemble.build_ensemble(members, qualities, input_shape=(16, 16, 1))
    probs = []
    for m, q in zip(members, qualities):
        x = images if q is None else nnjpeg.compress(images, ensemble.quality_table(q))
        probs.append(softmax(m.predict(x, verbose=0)))
    expected = np.log(np.mean(probs, axis=0))
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-5)
    # Each member really sees a different input: compression at q50 changes the image.
    assert not np.allclose(nnjpeg.compress(images, ensemble.quality_table(50)), images)


def test_vote_mode_follows_the_majority(images):
    members = [tiny_member(s) for s in range(3)]
    model = ensemble.build_ensemble(members, (None, None, None), mode="vote", input_shape=(16, 16, 1))
    votes = np.stack([m.predict(images, verbose=0).argmax(-1) for m in members])
    out = model.predict(images, verbose=0).argmax(-1)
    for i in range(len(images)):
        counts = np.bincount(votes[:, i], minlength=5)
        assert counts[out[i]] == counts.max()


def test_save_load_same_outputs(images, tmp_path):
    model = ensemble.build_ensemble([tiny_member(0), tiny_member(1)], (None, 70), input_shape=(16, 16, 1))
    model.save(tmp_path / "ens.keras")
    loaded = keras.saving.load_model(tmp_path / "ens.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match=r"one quality per member. Received: 1 members, 2 qualities"):
        ensemble.build_ensemble([tiny_member(0)], (None, 90), input_shape=(16, 16, 1))
    with pytest.raises(ValueError, match=r"mode 'mean' or 'vote'. Received: 'max'"):
        ensemble.CombineMembers("max")


def test_noisy_pipeline_and_fine_tuning_step(images):
    y = np.array([0, 1, 2], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, y)).batch(3)
    noisy = ensemble.noisy_pipeline(ds, quality=30, sigma=0.05, seed=0)
    (x, xn), yy = next(iter(noisy))
    assert xn.shape == x.shape and float(tf.reduce_min(xn)) >= 0.0 and float(tf.reduce_max(xn)) <= 1.0
    compressed = nnjpeg.compress(images, ensemble.quality_table(30))
    residual = xn.numpy() - compressed
    assert 0.02 < residual.std() < 0.06  # the Gaussian noise rides on the compressed image
    member = tiny_member(3)
    tuner = ensemble.NoisyFineTuner(member)
    tuner.compile(optimizer=keras.optimizers.SGD(0.005))
    before = [w.copy() for w in member.get_weights()]
    logs = tuner.fit(noisy, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(logs["loss"][0]) and "accuracy_noisy" in logs
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, member.get_weights()))


def test_train_ensemble_cli_end_to_end_and_resumes(tmp_path):
    import json

    from nnjpeg import datasets
    from nnjpeg.models import build_classifier, train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp_path / "base.keras")
    argv = ["train", "ensemble", "--base", str(tmp_path / "base.keras"), "--limit", "32", "--batch-size", "16",
            "--epochs", "1", "--steps-per-epoch", "1", "--matrix-n", "16", "--matrix-adv-n", "8", "--verbose", "0",
            "--out", str(tmp_path / "run"), "--export", str(tmp_path / "w" / "ensemble.keras")]
    assert train.main(argv) == 0
    metrics = json.loads((tmp_path / "w" / "ensemble.json").read_text())
    assert set(metrics["members_training_s"]) == {f"M{q}" for q in ensemble.CHAIN_QUALITIES}
    benign = json.loads((tmp_path / "w" / "ensemble.fig6_benign.json").read_text())
    adv = json.loads((tmp_path / "w" / "ensemble.fig6_adversarial.json").read_text())
    assert benign["images"] == 16 and adv["images"] == 8 and adv["attack"] == "bim"
    assert [r["member"] for r in adv["rows"]] == ["M"] + [f"M{q}" for q in ensemble.CHAIN_QUALITIES]
    assert (tmp_path / "w" / "ensemble.fig6_adversarial.png").stat().st_size > 0
    stamp = (tmp_path / "run" / "member_q30.keras").stat().st_mtime_ns
    assert train.main(argv) == 0  # resumed: no member is trained again
    assert (tmp_path / "run" / "member_q30.keras").stat().st_mtime_ns == stamp
    model = keras.saving.load_model(tmp_path / "w" / "ensemble.keras")
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
