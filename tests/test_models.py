"""Keras models: VQ mechanics, training steps that must move, and .keras round trips (tiny shapes)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from nnjpeg.models import build_classifier, build_surrogate  # noqa: E402
from nnjpeg.models.vqunet import VectorQuantizer, VQUNet  # noqa: E402

RNG = np.random.default_rng(0)


def tiny_images(n=4, size=8, c=1):
    return RNG.random((n, size, size, c)).astype("float32")


def test_nearest_code_equals_brute_force():
    vq = VectorQuantizer(num_codes=12, code_dim=5)
    a = RNG.normal(size=(3, 4, 4, 5)).astype("float32")
    q, idx = vq(a, return_codes=True)
    codes = vq.codebook.embeddings.numpy()
    brute = np.argmin(((a[..., None, :] - codes) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(idx.numpy(), brute)
    np.testing.assert_allclose(q.numpy(), codes[brute], rtol=0, atol=0)


def test_straight_through_gradient_is_identity():
    vq = VectorQuantizer(num_codes=8, code_dim=3)
    a = tf.Variable(RNG.normal(size=(2, 5, 3)).astype("float32"))
    w = tf.constant(RNG.normal(size=(2, 5, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        out = vq(a)
        loss = tf.reduce_sum(out * w)
    np.testing.assert_allclose(tape.gradient(loss, a).numpy(), w.numpy(), rtol=1e-6)
    # Forward value is the code itself.
    q, _ = vq(a, return_codes=True)
    np.testing.assert_allclose(out.numpy(), q.numpy(), atol=1e-6)


def test_reconstruction_gradient_reaches_the_encoder():
    model = VQUNet(channels=1, widths=(8, 16), num_codes=16)
    x = tiny_images()
    model(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - x))
    grads = tape.gradient(loss, model.enc_down[0].kernel)
    assert grads is not None and float(tf.reduce_max(tf.abs(grads))) > 0


def test_codebook_is_updated_by_the_codebook_loss_only_where_used():
    model = VQUNet(channels=1, widths=(8, 16), num_codes=32)
    x = tiny_images()
    model(x)
    emb = model.quantizers[0].codebook.embeddings
    with tf.GradientTape() as tape:
        _, _, _, l_q, levels = model._vq_losses(x, x, training=True)
    g = tf.convert_to_tensor(tape.gradient(l_q, emb)).numpy()
    used = np.unique(levels[0][2].numpy())
    assert np.abs(g[used]).sum() > 0
    unused = np.setdiff1d(np.arange(32), used)
    assert np.abs(g[unused]).sum() == 0
    before = emb.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.train_on_batch(x, x)
    assert np.abs(emb.numpy() - before).max() > 0


@pytest.mark.parametrize("vq", [True, False])
def test_training_lowers_the_loss_and_logs_codebook_usage(vq):
    model = VQUNet(channels=1, widths=(8, 16), num_codes=16, vq=vq)
    x = tiny_images(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = model.fit(x, x, epochs=6, batch_size=8, verbose=0).history
    assert hist["reconstruction"][-1] < hist["reconstruction"][0]
    assert ("perplexity_1" in hist and "codes_used_2" in hist) == vq
    if vq:
        assert 1.0 <= hist["perplexity_1"][-1] <= 16.0


def _roundtrip(model, x, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_vqunet_and_non_vq_save_load(tmp_path):
    x = tiny_images()
    for vq in (True, False):
        model = VQUNet(channels=1, widths=(8, 16), num_codes=16, vq=vq, name=f"unet_{vq}")
        model(x)
        _roundtrip(model, x, tmp_path)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"channels": 0}, ValueError, r"channels to be an integer >= 1. Received: channels=0"),
    ({"channels": 1.0}, TypeError, r"channels to be an integer >= 1. Received: channels=1.0"),
    ({"widths": ()}, ValueError, r"widths, one integer >= 2 per depth. Received: widths=\(\)"),
    ({"widths": (8, 1)}, ValueError, r"each of widths to be an integer >= 2. Received: each of widths=1"),
    ({"num_codes": 0}, ValueError, r"num_codes to be an integer >= 1. Received: num_codes=0"),
    ({"restart_every": -1}, ValueError,
     r"restart_every \(0: never\) to be an integer >= 0. Received: restart_every=-1"),
    ({"alpha": float("nan")}, ValueError, r"alpha to be a finite number >= 0. Received: alpha=nan"),
    ({"beta": "1"}, TypeError, r"beta to be a finite number >= 0. Received: beta='1'"),
    ({"usage_decay": 1.0}, ValueError, r"usage_decay to be a finite number in \[0, 1\). Received: usage_decay=1.0"),
])
def test_vqunet_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        VQUNet(**{"channels": 1, "widths": (8, 16), "num_codes": 16, **kwargs})


def test_vqunet_input_errors():
    model = VQUNet(channels=1, widths=(8, 16), num_codes=16)
    with pytest.raises(ValueError, match=r"inputs \(N, H, W, 1\) with H and W divisible by 4 \(2 \*\* len\(widths\)\). "
                                         r"Received: shape=\(1, 32, 32, 3\)"):
        model(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 30, 32, 1\)"):
        model(np.zeros((1, 30, 32, 1), np.float32))
    assert model(np.zeros((1, 28, 32, 1), np.float32)).shape == (1, 28, 32, 1)


def test_defense_vae_parameter_and_input_errors():
    from nnjpeg.models.defense_vae import DefenseVAE

    with pytest.raises(ValueError, match=r"image_shape's H and W divisible by 4 \(2 stride-2 convolutions\). "
                                         r"Received: image_shape=\(30, 32, 1\)"):
        DefenseVAE(image_shape=(30, 32, 1))
    with pytest.raises(ValueError, match=r"divisible by 8 \(3 stride-2 convolutions\). Received: image_shape=\(28, 28, 1\)"):
        DefenseVAE(image_shape=(28, 28, 1), widths=(4, 8, 16))
    with pytest.raises(TypeError, match=r"image_shape's C to be an integer >= 1. Received: image_shape's C=1.5"):
        DefenseVAE(image_shape=(32, 32, 1.5))
    with pytest.raises(ValueError, match=r"latent_dim to be an integer >= 1. Received: latent_dim=0"):
        DefenseVAE(latent_dim=0)
    with pytest.raises(ValueError, match=r"widths, the channels of one or more strided convolutions. Received: widths=\(\)"):
        DefenseVAE(widths=())
    with pytest.raises(ValueError, match=r"kl_weight to be a finite number >= 0. Received: kl_weight=-1"):
        DefenseVAE(kl_weight=-1)
    with pytest.raises(ValueError, match=r"hf_weight to be a finite number >= 0. Received: hf_weight=-0.5"):
        DefenseVAE(hf_weight=-0.5)
    with pytest.raises(ValueError, match=r"hf_cutoff <= 0.707 cycles per pixel .* Received: hf_cutoff=0.8"):
        DefenseVAE(hf_cutoff=0.8)
    with pytest.raises(TypeError, match=r"batch_norm to be a bool. Received: batch_norm='yes'"):
        DefenseVAE(batch_norm="yes")
    vae = DefenseVAE(image_shape=(16, 16, 1), latent_dim=4, widths=(4, 8))
    with pytest.raises(ValueError,
                       match=r"inputs \(N, 16, 16, 1\) \(the model's image_shape\). Received: shape=\(1, 16, 16, 3\)"):
        vae(np.zeros((1, 16, 16, 3), np.float32))
    assert vae(np.zeros((2, 16, 16, 1), np.float32)).shape == (2, 16, 16, 1)


@pytest.mark.parametrize("which", ["classifier", "a", "b", "c"])
def test_classifiers_save_load(which, tmp_path):
    x = tiny_images(2, 28)
    model = build_classifier(base_width=8) if which == "classifier" else build_surrogate(which)
    assert model(x).shape == (2, 10)
    _roundtrip(model, x, tmp_path)


def test_unknown_surrogate():
    with pytest.raises(ValueError, match=r"surrogate in \['a', 'b', 'c'\]. Received: 'z'"):
        build_surrogate("z")


@pytest.mark.parametrize("layout", [{"widths": (4, 8)},
                                    {"widths": (4, 8), "stem": 4, "batch_norm": True, "hf_weight": 10.0}])
def test_defense_vae_learns_to_map_noisy_to_clean_and_round_trips(tmp_path, layout):
    from nnjpeg.models.defense_vae import DefenseVAE

    keras.utils.set_random_seed(1)  # weights and the VAE's sampling: the same run whatever ran before
    rng = np.random.default_rng(1)
    clean = (rng.random((16, 8, 8, 1)) > 0.5).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype("float32")
    vae = DefenseVAE(image_shape=(8, 8, 1), latent_dim=8, **layout)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = vae.fit(noisy, clean, epochs=8, batch_size=16, verbose=0).history
    assert hist["reconstruction"][-1] < hist["reconstruction"][0] and "kl" in hist
    if layout.get("hf_weight"):
        assert hist["high_frequency"][-1] < hist["high_frequency"][0]
    out = vae(noisy)
    assert out.shape == noisy.shape and float(np.min(out)) >= 0.0
    np.testing.assert_allclose(vae(noisy).numpy(), out.numpy())  # deterministic at inference
    vae.save(tmp_path / "vae.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "vae.keras")(noisy).numpy(), out.numpy(), atol=1e-6)


def test_train_under_mirrored_strategy_with_two_logical_cpus(tmp_path):
    import os
    import subprocess
    import sys

    import nnjpeg

    # A fresh process: logical devices must be configured before TensorFlow initializes.
    script = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from nnjpeg.models import train\n"
        "s = train.get_strategy('mirrored')\n"
        "print('replicas', s.num_replicas_in_sync)\n"
        "train.main(['train', 'classifier', '--width', '4', '--epochs', '1', '--limit', '64', '--batch-size', '16',\n"
        "            '--steps-per-epoch', '2', '--strategy', 'mirrored', '--verbose', '0', '--out', sys.argv[1]])\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nnjpeg.__file__)), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replicas 2" in proc.stdout
    assert (tmp_path / "run" / "final.keras").is_file() and (tmp_path / "run" / "metrics.json").is_file()


def test_data_dependent_codebook_init_uses_encoder_outputs_and_more_codes():
    x = tiny_images(8, 16)
    keras.utils.set_random_seed(1)
    plain = VQUNet(channels=1, widths=(8, 8), num_codes=16)
    plain(x[:1])
    keras.utils.set_random_seed(1)
    init = VQUNet(channels=1, widths=(8, 8), num_codes=16)
    init(x[:1])
    init.init_codebooks(x, seed=0)
    levels = init.encode(x)
    for d, (a, _, idx) in enumerate(levels):
        a = np.asarray(a).reshape(-1, 8)
        codes = np.asarray(init.quantizers[d].codebook.embeddings)
        # Every code is one of the encoder's output vectors at its depth.
        assert all(np.isclose(a, c, atol=1e-6).all(axis=1).any() for c in codes)
        used = len(np.unique(np.asarray(idx)))
        used_plain = len(np.unique(np.asarray(plain.encode(x)[d][2])))
        assert used > used_plain and used >= 8


def test_dead_codes_are_restarted_at_encoder_outputs():
    x = tiny_images(8, 16)
    keras.utils.set_random_seed(2)
    model = VQUNet(channels=1, widths=(8, 8), num_codes=16, restart_every=1)
    model(x[:1])
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # restarts alone move the codebooks
    q = model.quantizers[0]
    # A collapsed codebook: every code far from the ReLU features, usage at zero but for code 0.
    q.codebook.embeddings.assign(np.full((16, 8), -5.0, np.float32))
    q.usage.assign(np.eye(16, dtype=np.float32)[0])
    second = np.asarray(model.quantizers[1].codebook.embeddings).copy()  # usage still at its 1 / K start
    logs = model.train_on_batch(x, x, return_dict=True)
    codes = np.asarray(q.codebook.embeddings)
    a = np.asarray(model.encode(x)[0][0]).reshape(-1, 8)
    assert logs["restarts_1"] == 15 and logs["restarts_2"] == 0
    assert np.array_equal(codes[0], np.full(8, -5.0))
    assert all(np.isclose(a, c, atol=1e-5).all(axis=1).any() for c in codes[1:])
    np.testing.assert_allclose(np.asarray(q.usage)[1:], 1 / 16)
    np.testing.assert_array_equal(np.asarray(model.quantizers[1].codebook.embeddings), second)


def test_train_cli_exports_denoiser_pipeline_and_preprocessing_defenses(tmp_path):
    import csv
    import io
    import json
    import zipfile

    import h5py

    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    clf = build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1)
    clf.save(tmp_path / "base.keras")
    small = ["--limit", "64", "--batch-size", "16", "--epochs", "1", "--steps-per-epoch", "1", "--verbose", "0",
             "--base", str(tmp_path / "base.keras")]
    w = tmp_path / "weights"
    # Two epochs of each fit: arrays with steps_per_epoch would run out of data in the second one (a
    # UserWarning, an error under this suite's filterwarnings).
    assert train.main(["train", "vqunet", "--unet-widths", "4,8", "--num-codes", "8", "--classifier-epochs", "2",
                       "--out", str(tmp_path / "vq"), "--export", str(w / "vqunet-classifier.keras"), *small,
                       "--epochs", "2", "--steps-per-epoch", "0", "--limit", "72"]) == 0
    assert len((tmp_path / "vq" / "log.csv").read_text().strip().splitlines()) == 3
    for name in ("vqunet-classifier", "vqunet"):
        assert (w / f"{name}.md").read_text().startswith(f"# {name} (fashion-mnist)")
        assert json.loads((w / f"{name}.json").read_text())["dataset"] == "fashion-mnist"
    pipeline = keras.saving.load_model(w / "vqunet-classifier.keras")
    denoiser = keras.saving.load_model(w / "vqunet.keras")
    assert pipeline(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
    assert denoiser(np.zeros((2, 32, 32, 1), np.float32)).shape == (2, 32, 32, 1)
    # Exports hold the trained weights and no optimizer state, not even the nested denoiser's.
    trained = keras.saving.load_model(tmp_path / "vq" / "final.keras", compile=False)
    for a, b in zip(trained.get_weights(), pipeline.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with zipfile.ZipFile(w / "vqunet-classifier.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h5:
        names = []
        h5.visit(names.append)
    assert names and not [n for n in names if "optimizer" in n]
    # --denoiser: that denoiser as it is (not retrained, its export and card left alone), only the
    # classifier fine-tuned on its outputs, here augmented and on a cosine schedule.
    card = (w / "vqunet.md").read_text()
    assert train.main(["train", "vqunet", "--denoiser", str(w / "vqunet.keras"), "--classifier-epochs", "2",
                       "--classifier-schedule", "cosine", "--classifier-augment", "--out", str(tmp_path / "ft"),
                       "--export", str(w / "ft-classifier.keras"), *small]) == 0
    assert (w / "vqunet.md").read_text() == card and not (tmp_path / "ft" / "log.csv").exists()
    tuned = keras.saving.load_model(w / "ft-classifier.keras")
    kept = tuned.get_layer(denoiser.name)
    for a, b in zip(denoiser.get_weights(), kept.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    start = keras.saving.load_model(tmp_path / "base.keras").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(start, tuned.layers[-1].get_weights(), strict=True))
    ft = json.loads((w / "ft-classifier.json").read_text())
    assert ft["epochs"] == 2 and ft["classifier_augment"] and ft["classifier_schedule"] == "cosine"
    card = (w / "ft-classifier.md").read_text()
    assert "as trained before" in card
    assert f"- Epochs: 2 of the classifier's fine-tuning, on the saved denoiser {w / 'vqunet.keras'}\n" in card
    with pytest.raises(ValueError, match=r"Expected --denoiser to be a saved non-vq-unet denoiser. Received: VQUNet with vq=True"):
        train.main(["train", "non-vq-unet", "--denoiser", str(w / "vqunet.keras"), "--out", str(tmp_path / "bad"), *small])
    # --restore-best keeps the epoch with the lowest reconstruction error on held-out training images. A
    # learning rate far too high makes a later epoch worse than the first, so keeping the last would show.
    assert train.main(["train", "non-vq-unet", "--unet-widths", "4,8", "--classifier-epochs", "0", "--restore-best",
                       "--out", str(tmp_path / "best"), *small, "--epochs", "3", "--steps-per-epoch", "0",
                       "--limit", "80", "--lr", "0.3"]) == 0
    with open(tmp_path / "best" / "log.csv") as f:
        val = [float(row["val_reconstruction"]) for row in csv.DictReader(f)]
    kept = json.loads((tmp_path / "best" / "metrics.json").read_text())["denoiser_epoch_kept"]
    assert len(val) == 3 and kept == int(np.argmin(val)) + 1 and kept < 3
    # The saved denoiser is that epoch's: its error on the held-out images (the last 8 of 80) is the lowest logged.
    held = np.pad(train.load_dataset("fashion-mnist")[0][0][72:80] / np.float32(255), ((0, 0), (2, 2), (2, 2), (0, 0)))
    kept_model = keras.saving.load_model(tmp_path / "best" / "denoiser.keras")
    mse = float(np.mean((np.asarray(kept_model(held.astype(np.float32))) - held) ** 2))
    assert mse == pytest.approx(min(val), rel=1e-4)
    for name in ("jpeg75-classifier", "fd-classifier"):
        assert train.main(["train", name, "--out", str(tmp_path / name), "--export", str(w / f"{name}.keras"), *small]) == 0
        metrics = json.loads((w / f"{name}.json").read_text())
        assert metrics["accuracy_drop"] == pytest.approx(metrics["target_test_accuracy"] - metrics["test_accuracy"])
        assert "nothing trained" in (w / f"{name}.md").read_text()
    table = np.asarray(json.loads((w / "fd-classifier.json").read_text())["fd_table"])
    layer = keras.saving.load_model(w / "fd-classifier.keras").get_layer("fd_jpeg")
    assert table.shape == (8, 8) and layer.color == "ycbcr" and np.allclose(layer.table, table)
    with pytest.raises(ValueError, match=r"Expected --base PATH"):
        train.main(["train", "tvm-classifier", "--out", str(tmp_path / "tvm"), "--limit", "8"])


def test_vq_analysis_depth_changes(tmp_path):
    from nnjpeg import vq_analysis

    x = tiny_images(4)
    vq = VQUNet(channels=1, widths=(8, 16), num_codes=4)
    plain = VQUNet(channels=1, widths=(8, 16), vq=False)
    vq(x), plain(x)
    same = vq_analysis.depth_changes(vq, x, x)
    assert same["index_change"] == [0.0, 0.0] and same["pre_vq_l1"] == [0.0, 0.0]
    moved = np.clip(x + 0.3, 0, 1).astype("float32")
    res = vq_analysis.sweep({"vqunet": vq, "non-vq": plain}, x, {0.1: moved, 0.0: x})
    assert res["vqunet"]["0.1"]["pre_vq_l1"][0] > 0 and res["non-vq"]["0.1"]["index_change"] == [None, None]
    assert 0.0 <= res["vqunet"]["0.1"]["index_change"][0] <= 1.0
    a = np.asarray(vq.encode(x)[0][0])  # depth 1 features of the clean images
    rel = res["vqunet"]["0.1"]
    assert rel["pre_vq_rel"][0] == pytest.approx(rel["pre_vq_l1"][0] / np.abs(a).mean(), rel=1e-5)
    assert res["non-vq"]["0.1"]["post_vq_rel"] == [None, None]
    vq_analysis.plot(res, tmp_path / "vq.png")
    assert (tmp_path / "vq.png").stat().st_size > 0


@pytest.mark.parametrize("inputs", ["adversarial", "noisy"])
def test_denoiser_variants_learn_from_perturbed_inputs(inputs, tmp_path):
    import json

    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    clf = build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1)
    clf.save(tmp_path / "base.keras")
    out, w = tmp_path / "run", tmp_path / "weights"
    assert train.main(["train", "vqunet", "--inputs", inputs, "--adv-n", "16", "--sigma", "0.1", "--unet-widths", "4,8",
                       "--num-codes", "8", "--classifier-epochs", "0", "--limit", "40", "--batch-size", "8",
                       "--epochs", "1", "--verbose", "0", "--base", str(tmp_path / "base.keras"), "--out", str(out),
                       "--export", str(w / f"vqunet-{inputs}-classifier.keras")]) == 0
    # The denoiser alone is named after the pipeline, beside it: the paper recipe's "vqunet" is left alone.
    assert sorted(p.name for p in w.glob("*.keras")) == [f"vqunet-{inputs}-classifier.keras", f"vqunet-{inputs}.keras"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"] == inputs
    assert (metrics["eps"], metrics["sigma"]) == ((0.1, None) if inputs == "adversarial" else (None, 0.1))
    # The adversarial pairs are made once, on the base classifier, and kept for a resumed run.
    assert (out / "adversarial_eps0.1_n16.npy").is_file() == (inputs == "adversarial")


def test_adversarial_inputs_made_on_several_models(tmp_path):
    # --adv-models: the --adv-n images split evenly among the models, each share attacked on its own
    # model (FGSM for the first half of a share, PGD for the second), cached under the models' names.
    import json

    from nnjpeg import attacks, datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    paths = []
    for seed, name in enumerate(("first", "second")):
        keras.utils.set_random_seed(seed)
        build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp_path / f"{name}.keras")
        paths.append(str(tmp_path / f"{name}.keras"))
    out = tmp_path / "run"

    def run(adv_n, models, out):
        return train.main(["train", "vqunet", "--inputs", "adversarial", "--adv-n", str(adv_n), "--adv-models",
                           ",".join(models), "--unet-widths", "4,8", "--num-codes", "8", "--classifier-epochs", "0",
                           "--limit", "40", "--batch-size", "8", "--epochs", "1", "--verbose", "0", "--base", paths[0],
                           "--out", str(out)])

    assert run(16, paths, out) == 0
    assert json.loads((out / "metrics.json").read_text())["adv_models"] == paths
    adv = np.load(out / "adversarial_eps0.1_n16_on-first-second.npy")
    (x, y), _ = train.load_dataset("fashion-mnist")
    x, y = x[:16].astype(np.float32) / 255.0, y[:16]
    on = {name: keras.saving.load_model(path) for name, path in zip(("first", "second"), paths, strict=True)}
    np.testing.assert_allclose(adv[:4], attacks.fgsm(on["first"], x[:4], y[:4], 0.1), atol=1e-6)
    np.testing.assert_allclose(adv[8:12], attacks.fgsm(on["second"], x[8:12], y[8:12], 0.1), atol=1e-6)
    assert not np.allclose(adv[8:12], attacks.fgsm(on["first"], x[8:12], y[8:12], 0.1))
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    # Too few images for an FGSM and a PGD share per budget and model, or a model that is not there.
    with pytest.raises(ValueError, match=r"Expected --adv-n of at least 4 .* Received: 3"):
        run(3, paths, tmp_path / "small")
    with pytest.raises(ValueError, match=r"Received: '.*missing.keras', which is not a file"):
        run(16, [paths[0], str(tmp_path / "missing.keras")], tmp_path / "missing")


def test_vqunet_on_several_budgets_fine_tuned_end_to_end_exports_the_tuned_pair(tmp_path):
    # The recipe of fmnist/vqunet-mix: adversarial inputs at several budgets, then the denoiser and
    # the target fine-tuned together; the shipped denoiser is the fine-tuned one.
    import json

    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp_path / "base.keras")
    out, w = tmp_path / "run", tmp_path / "weights"
    assert train.main(["train", "vqunet", "--inputs", "adversarial", "--adv-eps", "0.05,0.1", "--adv-n", "16",
                       "--unet-widths", "4,8", "--num-codes", "8", "--classifier-epochs", "0", "--end-to-end-epochs", "1",
                       "--limit", "40", "--batch-size", "8", "--epochs", "1", "--verbose", "0",
                       "--base", str(tmp_path / "base.keras"), "--out", str(out),
                       "--export", str(w / "vqunet-mix-classifier.keras")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["adv_eps"] == [0.05, 0.1] and metrics["end_to_end_epochs"] == 1 and metrics["classifier_epochs"] == 0
    assert (out / "adversarial_eps0.05-0.1_n16.npy").is_file()
    first = keras.saving.load_model(out / "denoiser.keras").get_weights()
    tuned = keras.saving.load_model(out / "denoiser_end_to_end.keras").get_weights()
    shipped = keras.saving.load_model(w / "vqunet-mix.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(first, tuned, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(tuned, shipped, strict=True))
    card = (w / "vqunet-mix-classifier.md").read_text()
    assert "then 1 of the denoiser and classifier fine-tuned end to end" in card
    assert "Per-epoch log (`log_end_to_end.csv`):" in card and "Per-epoch log (`log.csv`):" in (w / "vqunet-mix.md").read_text()
    pipeline = keras.saving.load_model(w / "vqunet-mix-classifier.keras")
    assert pipeline.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0).shape == (2, 10)
    # A saved denoiser fine-tuned again (--denoiser with --end-to-end-epochs), end to end with a fresh
    # copy of the target, on new budgets and augmented: the saved denoiser and its card stay as they
    # are, and only the pipeline is exported.
    card = (w / "vqunet-mix.md").read_text()
    assert train.main(["train", "vqunet", "--denoiser", str(w / "vqunet-mix.keras"), "--inputs", "adversarial",
                       "--adv-eps", "0.1,0.15", "--adv-n", "16", "--classifier-epochs", "0", "--end-to-end-epochs", "1",
                       "--end-to-end-augment", "--limit", "40", "--batch-size", "8", "--verbose", "0",
                       "--base", str(tmp_path / "base.keras"), "--out", str(tmp_path / "again"),
                       "--export", str(w / "again-classifier.keras")]) == 0
    assert (w / "vqunet-mix.md").read_text() == card and not (w / "again.keras").exists()
    saved = keras.saving.load_model(w / "vqunet-mix.keras")
    assert all(np.array_equal(a, b) for a, b in zip(shipped, saved.get_weights(), strict=True))
    again = keras.saving.load_model(w / "again-classifier.keras").get_layer(saved.name)
    assert any(not np.allclose(a, b) for a, b in zip(shipped, again.get_weights(), strict=True))
    metrics = json.loads((w / "again-classifier.json").read_text())
    assert metrics["end_to_end_augment"] and metrics["adv_eps"] == [0.1, 0.15] and metrics["denoiser_training_s"] is None
    card = (w / "again-classifier.md").read_text()
    assert (f"- Epochs: 1 of the denoiser and classifier fine-tuned end to end, on the saved denoiser "
            f"{w / 'vqunet-mix.keras'}\n") in card
    assert "fine-tuned together for 1 epochs (end to end, Adam 0.0001, L1 weight 10.0, flipped and shifted)" in card


@pytest.mark.parametrize("model", ["defense-vae", "hfl-vae", "cyclegan"])
def test_adversarial_pair_denoisers_with_several_budgets_and_clean_pairs(tmp_path, model):
    import json

    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    clf = build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1)
    clf.save(tmp_path / "base.keras")
    out = tmp_path / "run"
    small = ["--gan-width", "4", "--gan-blocks", "1"] if model == "cyclegan" else []
    assert train.main(["train", model, "--adv-eps", "0.05,0.1", "--clean-pairs", "--adv-n", "16",
                       "--classifier-epochs", "0", "--limit", "40", "--batch-size", "8", "--epochs", "1",
                       "--verbose", "0", "--base", str(tmp_path / "base.keras"), "--out", str(out), *small]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["adv_eps"] == [0.05, 0.1] and metrics["clean_pairs"] and metrics["inputs"] == "adversarial"
    denoiser = keras.saving.load_model(out / "denoiser.keras")
    if model == "cyclegan":
        assert type(denoiser).__name__ == "DefenseCycleGAN" and "vae_layout" not in metrics
        assert (denoiser.width, denoiser.blocks, metrics["gan_width"], metrics["gan_blocks"]) == (4, 1, 4, 1)
    else:
        assert (metrics["vae_layout"], metrics["hf_weight"] > 0) == ("published", model == "hfl-vae")
        assert ((denoiser.stem, denoiser.widths, denoiser.batch_norm, denoiser.hf_weight)
                == (64, (64, 128, 256), True, metrics["hf_weight"]))
    adv = np.load(out / "adversarial_eps0.05-0.1_n16.npy")
    raw = train.load_dataset("fashion-mnist")[0][0][:16] / np.float32(255)
    # Four shares of four images: FGSM and PGD at 0.05, then at 0.1; FGSM moves every pixel by eps.
    linf = np.abs(adv - raw).reshape(16, -1).max(1)
    assert np.all(linf[:8] <= 0.05 + 1e-6) and np.all(linf[8:] <= 0.1 + 1e-6) and np.all(linf[8:12] > 0.05)


def test_a_finished_denoiser_is_resumed_at_the_classifier_fine_tuning(tmp_path, capsys):
    import json
    import os
    import subprocess
    import sys

    import nnjpeg
    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp_path / "base.keras")
    out = tmp_path / "run"
    command = lambda model, classifier_epochs, *more: train.main([  # noqa: E731
        "train", model, "--adv-eps", "0.1", "--adv-n", "16", "--classifier-epochs", str(classifier_epochs),
        "--limit", "40", "--batch-size", "8", "--epochs", "1", "--verbose", "0", "--base", str(tmp_path / "base.keras"),
        "--out", str(out), "--export", str(tmp_path / "w" / f"{model}-classifier.keras"), *more])
    assert command("defense-vae", 1) == 0
    weights = keras.saving.load_model(out / "denoiser.keras").get_weights()
    log = (out / "log.csv").read_text()
    (out / "adversarial_eps0.1_n16.npy").unlink()  # not needed again: the denoiser is not retrained
    capsys.readouterr()
    assert command("defense-vae", 2) == 0
    assert "the denoiser's 1 epochs are done (" + str(out / "denoiser.keras") + "); resuming at the classifier step" in (
        capsys.readouterr().out)
    assert (out / "log.csv").read_text() == log and not (out / "adversarial_eps0.1_n16.npy").exists()
    resumed = keras.saving.load_model(out / "denoiser.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, resumed, strict=True))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classifier_epochs"] == 2 and metrics["denoiser_resumed"] and metrics["denoiser_training_s"] > 0
    assert "trained by an earlier invocation of this command" in (tmp_path / "w" / "defense-vae.md").read_text()
    card = (tmp_path / "w" / "defense-vae-classifier.md").read_text()
    assert "- Epochs: 1 of 1 (the denoiser's), then 2 of the classifier's fine-tuning\n" in card
    # The classifier's fine-tuning starts over, and so does its log (the first run's epoch is not kept).
    assert len((out / "log_classifier.csv").read_text().splitlines()) == 1 + 2
    assert (tmp_path / "w" / "defense-vae.keras").is_file() and (tmp_path / "w" / "defense-vae.md").is_file()
    # Another model in the same folder is refused, not mixed with the saved denoiser.
    with pytest.raises(ValueError, match=r"run; use another --out\) to be a saved hfl-vae denoiser. Received: DefenseVAE"):
        command("hfl-vae", 0)
    # End-to-end fine-tuning after the resumed denoiser: the pair is trained together, the exported
    # denoiser is the fine-tuned one, and out/denoiser.keras stays the one a resumed run starts from.
    assert command("defense-vae", 0, "--end-to-end-epochs", "1", "--end-to-end-augment") == 0
    assert "resuming at the end-to-end step" in capsys.readouterr().out
    tuned = keras.saving.load_model(out / "denoiser_end_to_end.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, keras.saving.load_model(out / "denoiser.keras").get_weights(),
                                                    strict=True))
    assert any(not np.allclose(a, b) for a, b in zip(weights, tuned, strict=True))
    shipped = keras.saving.load_model(tmp_path / "w" / "defense-vae.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(tuned, shipped, strict=True))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["end_to_end_epochs"] == 1 and metrics["end_to_end_rec_weight"] == 10.0 and metrics["end_to_end_augment"]
    assert metrics["note"].endswith("this one resumed at the end-to-end fine-tuning")
    assert len((out / "log_end_to_end.csv").read_text().splitlines()) == 1 + 1
    for card in ("defense-vae-classifier.md", "defense-vae.md"):
        assert ("- Epochs: 1 of 1 (the denoiser's), then 1 of the denoiser and classifier fine-tuned end to end\n"
                in (tmp_path / "w" / card).read_text())
    # A fresh process loads a saved VAE given as --denoiser (its class registered before loading).
    script = ("import sys\nfrom nnjpeg.models import train\n"
              "sys.exit(train.main(['train', 'defense-vae', '--denoiser', sys.argv[1], '--classifier-epochs', '0', "
              "'--limit', '40', '--batch-size', '8', '--verbose', '0', '--base', sys.argv[2], '--out', sys.argv[3]]))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nnjpeg.__file__)), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, str(out / "denoiser.keras"), str(tmp_path / "base.keras"),
                           str(tmp_path / "again")], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["denoiser_from"] == str(out / "denoiser.keras")


def test_init_trains_a_saved_denoiser_further(tmp_path):
    import json

    from nnjpeg import datasets
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp_path / "base.keras")
    command = lambda model, out, *more: train.main([  # noqa: E731
        "train", model, "--adv-eps", "0.1", "--adv-n", "16", "--clean-pairs", "--classifier-epochs", "0", "--limit",
        "40", "--batch-size", "8", "--epochs", "1", "--verbose", "0", "--base", str(tmp_path / "base.keras"), "--out",
        str(tmp_path / out), *more])
    assert command("cyclegan", "first", "--gan-width", "4", "--gan-blocks", "1") == 0
    first = tmp_path / "first" / "denoiser.keras"
    # At a rate of 1e-6 the few steps move every weight a little: trained further, not initialized anew.
    assert command("cyclegan", "second", "--init", str(first), "--lr", "1e-6",
                   "--export", str(tmp_path / "w" / "cyclegan-classifier.keras")) == 0
    before = keras.saving.load_model(first).get_weights()
    after = keras.saving.load_model(tmp_path / "second" / "denoiser.keras").get_weights()
    assert [a.shape for a in before] == [b.shape for b in after]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(before, after, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    metrics = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert metrics["denoiser_init"] == str(first) and metrics["note"] == (
        f"the denoiser started from {first} (its own card holds its command) and trained 1 epochs more")
    for card in ("cyclegan-classifier.md", "cyclegan.md"):
        assert f"the denoiser started from {first}" in (tmp_path / "w" / card).read_text()
    # A denoiser of another kind, a U-Net, or --init beside --denoiser: refused, naming what was given.
    with pytest.raises(ValueError, match=r"Expected --init to be a saved hfl-vae denoiser. Received: DefenseCycleGAN"):
        command("hfl-vae", "third", "--init", str(first))
    with pytest.raises(ValueError, match=r"Expected --init PATH .* Received: vqunet with --init "):
        command("vqunet", "third", "--init", str(first))
    with pytest.raises(ValueError, match=r"without --denoiser PATH. Received: cyclegan with --init .* and --denoiser "):
        command("cyclegan", "third", "--init", str(first), "--denoiser", str(first))


def test_end_to_end_fine_tuning_trains_denoiser_and_classifier_together():
    from nnjpeg.models.defenses import EndToEnd

    rng = np.random.default_rng(3)
    # Two classes: a faint square in the middle, or none; noisy inputs, clean targets.
    y = np.arange(64) % 2
    clean = np.zeros((64, 12, 12, 1), np.float32)
    clean[y == 1, 4:8, 4:8] = 0.5
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    keras.utils.set_random_seed(0)
    # No ReLU to die: the denoised image always depends on the input.
    denoiser = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    before = [w.copy() for w in denoiser.get_weights()], [w.copy() for w in classifier.get_weights()]
    pipeline = EndToEnd(denoiser, classifier, pad=2, rec_weight=1.0)
    pipeline.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = pipeline.fit((noisy, clean), y, batch_size=16, epochs=30, verbose=0, shuffle=True).history
    assert history["cross_entropy"][-1] < 0.5 * history["cross_entropy"][0]
    assert history["accuracy"][-1] > 0.9 and history["reconstruction"][-1] > 0
    # Both models moved, and the pipeline's output is the classifier's on the cropped denoised image.
    for old, new in zip(before, (denoiser.get_weights(), classifier.get_weights()), strict=True):
        assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
    np.testing.assert_allclose(np.asarray(pipeline(noisy[:3])),
                               np.asarray(classifier(np.asarray(denoiser(noisy[:3]))[:, 2:-2, 2:-2])), rtol=1e-5, atol=1e-6)


def test_end_to_end_keeps_a_vqunets_codebook_terms():
    from nnjpeg.models.defenses import EndToEnd
    from nnjpeg.models.vqunet import VQUNet

    keras.utils.set_random_seed(2)
    x = np.random.default_rng(2).random((16, 16, 16, 1)).astype(np.float32)
    vq = VQUNet(channels=1, widths=(4, 8), num_codes=8, restart_every=0)
    vq(x[:1])
    vq.init_codebooks(x, seed=0)
    codes = [q.codebook.embeddings.numpy().copy() for q in vq.quantizers]
    classifier = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    pipeline = EndToEnd(vq, classifier, pad=2, rec_weight=1.0)
    pipeline.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = pipeline.fit((x, x), np.arange(16) % 2, batch_size=16, epochs=2, verbose=0).history
    # One step per epoch: the loss logged is the sum of its terms, the codebook's (beta * L_E + L_Q) among them.
    assert history["codebook"][0] > 0
    for loss, ce, rec, codebook in zip(*(history[k] for k in ("loss", "cross_entropy", "reconstruction", "codebook"))):
        assert loss == pytest.approx(ce + rec + codebook, rel=1e-5)
    # The straight-through estimator gives the codebooks no gradient: they move by L_Q alone.
    for before, quantizer in zip(codes, vq.quantizers, strict=True):
        assert not np.allclose(before, quantizer.codebook.embeddings.numpy())


def test_end_to_end_trains_only_what_the_pipeline_runs_through():
    from nnjpeg.models.cyclegan import DefenseCycleGAN
    from nnjpeg.models.defenses import EndToEnd

    keras.utils.set_random_seed(1)
    x = np.random.default_rng(1).random((16, 16, 16, 1)).astype(np.float32)
    gan = DefenseCycleGAN(channels=1, width=4, blocks=1)
    for part in (gan.to_clean, gan.to_adversarial, gan.judge_clean, gan.judge_adversarial):
        part(x[:1])
    classifier = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    parts = {name: [w.copy() for w in getattr(gan, name).get_weights()]
             for name in ("to_clean", "to_adversarial", "judge_clean", "judge_adversarial")}
    pipeline = EndToEnd(gan, classifier, pad=2, rec_weight=1.0)
    pipeline.compile(optimizer=keras.optimizers.Adam(1e-2))
    pipeline.fit((x, x), np.arange(16) % 2, batch_size=8, epochs=1, verbose=0)
    for name, before in parts.items():
        moved = any(not np.array_equal(a, b) for a, b in zip(before, getattr(gan, name).get_weights(), strict=True))
        assert moved == (name == "to_clean"), name


def test_paired_augmentation_moves_input_and_target_alike():
    from nnjpeg.models.train import _repeated

    rng = np.random.default_rng(0)
    inputs = rng.random((20, 12, 12, 1)).astype(np.float32)
    targets = np.concatenate([inputs, 1 - inputs], axis=-1)  # another channel count: split back right
    labels = np.arange(20)
    moved = 0
    for (a, b), y in _repeated((inputs, targets), labels, 5, seed=0, paired_augment=True).take(8):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_array_equal(a, b[..., :1])  # the pair stays aligned
        for image, k in zip(a[..., 0], y.numpy(), strict=True):
            source = inputs[k, :, :, 0]
            padded = [np.pad(s, 2) for s in (source, source[:, ::-1])]
            found = [(f, dy, dx) for f in (0, 1) for dy in range(5) for dx in range(5)
                     if np.array_equal(padded[f][dy : dy + 12, dx : dx + 12], image)]
            assert found, k  # a flip and a shift of its own image, zero-filled
            moved += (0, 2, 2) not in found
    assert moved > 20  # most of the 40 images are flipped or shifted
    # Without it, the images come as they are.
    (a, _), y = next(iter(_repeated((inputs, targets), labels, 5, seed=0)))
    np.testing.assert_array_equal(a.numpy(), inputs[y.numpy()])


def test_composition_of_two_saved_models_loads_as_one(tmp_path, monkeypatch):
    import json

    from nnjpeg import datasets, pretrained
    from nnjpeg.models import train

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    w = tmp_path / "weights" / "fmnist"
    w.mkdir(parents=True)
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(w / "clf.keras")
    vq = VQUNet(channels=1, widths=(4, 8), num_codes=8)
    vq(np.zeros((1, 32, 32, 1), np.float32))
    vq.save(w / "den.keras")
    args = ["train", "vqunet", "--denoiser", str(w / "den.keras"), "--base", str(w / "clf.keras"), "--limit", "16",
            "--verbose", "0", "--out", str(tmp_path / "run")]
    assert train.main([*args, "--classifier-epochs", "0", "--compose", "--export", str(w / "pair.keras")]) == 0
    assert sorted(p.name for p in w.iterdir()) == ["clf.keras", "den.keras", "pair.compose.json", "pair.json", "pair.md"]
    assert set(json.loads((w / "pair.compose.json").read_text())["parts"].values()) == {"den.keras", "clf.keras"}
    assert "a composition of `den` and `clf`" in (w / "pair.md").read_text()
    for name in ("clf", "den"):  # a model card makes a saved model a pretrained name
        (w / f"{name}.md").write_text(f"# {name}\n")
    pretrained.write_manifest(tmp_path / "weights", "http://127.0.0.1:9/")
    monkeypatch.setattr(pretrained, "WEIGHTS", tmp_path / "weights")
    assert pretrained.names() == ["fmnist/clf", "fmnist/den", "fmnist/pair"]
    model = pretrained.load("fmnist/pair", path=tmp_path / "weights")
    x = np.random.default_rng(2).random((3, 28, 28, 1)).astype(np.float32)
    clf, den = keras.saving.load_model(w / "clf.keras"), keras.saving.load_model(w / "den.keras")
    want = clf(np.asarray(den(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))))[:, 2:-2, 2:-2])
    np.testing.assert_allclose(model(x).numpy(), np.asarray(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Expected --compose with --denoiser PATH, --classifier-epochs 0 and "
                       r"--end-to-end-epochs 0 .* Received: .*--classifier-epochs 1, --end-to-end-epochs 0"):
        train.main([*args, "--classifier-epochs", "1", "--compose", "--export", str(w / "bad.keras")])
    with pytest.raises(ValueError, match=r"Received: .*--classifier-epochs 0, --end-to-end-epochs 2"):
        train.main([*args, "--classifier-epochs", "0", "--end-to-end-epochs", "2", "--compose", "--export",
                    str(w / "bad.keras")])
    with pytest.raises(ValueError, match=r"Expected the composed models as .keras files in the folder of --export"):
        train.main([*args, "--classifier-epochs", "0", "--compose", "--export", str(tmp_path / "elsewhere.keras")])


def test_high_frequency_error_is_the_high_passed_images_squared_error():
    from nnjpeg.models.defense_vae import DefenseVAE

    vae = DefenseVAE(image_shape=(8, 8, 2), latent_dim=4, widths=(4,), hf_cutoff=0.3)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 3, 8, 8, 2)).astype("float32")
    fy, fx = np.meshgrid(np.fft.fftfreq(8), np.fft.fftfreq(8), indexing="ij")
    band = np.hypot(fy, fx) >= 0.3
    high = np.fft.ifft2(np.fft.fft2(np.moveaxis(a - b, -1, 1)) * band).real  # (N, C, H, W)
    want = np.mean(np.sum(high**2, axis=(1, 2, 3)))
    np.testing.assert_allclose(float(vae.high_frequency_error(a, b)), want, rtol=1e-4)
    # Smooth differences (the lowest frequencies only) cost nothing.
    assert float(vae.high_frequency_error(a, a + np.float32(0.1))) < 1e-6


def test_cyclegan_learns_both_directions_and_round_trips(tmp_path):
    from nnjpeg.models.cyclegan import DefenseCycleGAN

    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    clean = (rng.random((16, 8, 8, 1)) > 0.5).astype("float32")
    adv = np.clip(clean + rng.choice([-0.2, 0.2], clean.shape), 0, 1).astype("float32")
    gan = DefenseCycleGAN(channels=1, width=4, blocks=1)
    gan.compile(optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5))
    hist = gan.fit(adv, clean, epochs=10, batch_size=8, verbose=0).history
    assert hist["cycle"][-1] < hist["cycle"][0] and hist["identity"][-1] < hist["identity"][0]
    assert {"generator", "discriminator", "reconstruction"} <= set(hist)
    out = gan(adv)
    assert out.shape == adv.shape and 0.0 <= float(np.min(out)) and float(np.max(out)) <= 1.0
    gan.save(tmp_path / "gan.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "gan.keras")(adv).numpy(), out.numpy(), atol=1e-5)


def test_cyclegan_parameter_and_input_errors():
    from nnjpeg.models.cyclegan import DefenseCycleGAN

    with pytest.raises(ValueError, match=r"width to be an integer >= 1. Received: width=0"):
        DefenseCycleGAN(width=0)
    with pytest.raises(ValueError, match=r"cycle_weight to be a finite number >= 0. Received: cycle_weight=-1"):
        DefenseCycleGAN(cycle_weight=-1)
    gan = DefenseCycleGAN(channels=1, width=2, blocks=0)
    with pytest.raises(ValueError, match=r"inputs \(N, H, W, 1\) with H and W divisible by 4. Received: shape=\(1, 8, 8, 3\)"):
        gan(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 6, 8, 1\)"):
        gan(np.zeros((1, 6, 8, 1), np.float32))
