"""The papers' own classifiers as `nnjpeg train` kinds: the VQUNet paper's CIFAR-10 WRN-28-10 target
and DenseNet-BC surrogates, and the NN-JPEG paper's ImageNet backbones from keras.applications. The
full-size networks are built, never trained, and their parameters counted against a count by hand
and the papers' own numbers; tiny ones train on synthetic data in the datasets' on-disk formats and
are attacked by `nnjpeg evaluate`. Nothing is downloaded: the backbones take --backbone-weights none."""

import json
import re
import warnings

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from nnjpeg.cli import main  # noqa: E402
from nnjpeg.models import build_backbone, build_densenet_bc, build_wrn  # noqa: E402
from nnjpeg.models import train as train_module  # noqa: E402
from synthetic import write_cifar  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def wrn_count(depth: int, k: int, channels: int = 3, classes: int = 10) -> int:
    """Trainable parameters of a pre-activation WRN-depth-k, counted layer by layer (biases only in
    the dense layer; BN has a scale and an offset per channel)."""
    total, c = 9 * channels * 16, 16  # the stem
    for group in range(3):
        w = 16 * k * 2**group
        for b in range((depth - 4) // 6):
            total += 2 * c + 9 * c * w + 2 * w + 9 * w * w  # BN, 3x3 conv, BN, 3x3 conv
            if c != w or (group and not b):
                total += c * w  # the 1x1 projection
            c = w
    return total + 2 * c + c * classes + classes


def densenet_bc_count(depth: int, k: int, channels: int = 3, classes: int = 10) -> int:
    """Trainable parameters of DenseNet-BC-depth with growth rate k and compression 0.5."""
    c = 2 * k
    total = 9 * channels * c
    for block in range(3):
        for _ in range((depth - 4) // 6):
            total += 2 * c + c * 4 * k + 2 * 4 * k + 9 * 4 * k * k  # BN, 1x1 conv, BN, 3x3 conv
            c += k
        if block < 2:
            total += 2 * c + c * (c // 2)  # BN, 1x1 conv
            c //= 2
    return total + 2 * c + c * classes + classes


def roundtrip(model, x, tmp_path):
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(again(x, training=False)))


def test_wrn_28_10_is_the_papers_size_and_tiny_ones_round_trip(tmp_path):
    full = build_wrn()
    assert full.input_shape == (None, 32, 32, 3) and full.output_shape == (None, 10)
    # The WRN paper's Table 4 gives WRN-28-10 36.5 M parameters.
    assert trainable(full) == wrn_count(28, 10) == 36_479_194
    tiny = build_wrn((28, 28, 1), 7, depth=10, width=1, dropout=0.3, mean=0.286, std=0.353)
    assert tiny.output_shape == (None, 7) and trainable(tiny) == wrn_count(10, 1, channels=1, classes=7)
    assert tiny.get_layer("g1b1_dropout").rate == 0.3
    x = np.random.default_rng(0).random((2, 28, 28, 1), np.float32)
    roundtrip(tiny, x, tmp_path)


def test_densenet_bc_matches_the_papers_sizes(tmp_path):
    full = build_densenet_bc()
    assert full.output_shape == (None, 10) and trainable(full) == densenet_bc_count(100, 12) == 769_162
    # The DenseNet paper's Table 2 rows that densenet-b and densenet-c build: 15.3 M and 25.6 M.
    assert round(densenet_bc_count(250, 24) / 1e5) == 153 and round(densenet_bc_count(190, 40) / 1e5) == 256
    tiny = build_densenet_bc(depth=16, growth=4)
    assert trainable(tiny) == densenet_bc_count(16, 4)
    roundtrip(tiny, np.random.default_rng(1).random((2, 32, 32, 3), np.float32), tmp_path)


@pytest.mark.parametrize("build, kwargs, message", [
    (build_wrn, {"depth": 12}, "Expected a WRN depth 6 n + 4 with n >= 1 (10, 16, 22, 28, ...). Received: depth=12"),
    (build_wrn, {"width": 0}, "Expected a WRN width (widening factor) >= 1. Received: width=0"),
    (build_wrn, {"dropout": 1.0}, "Expected dropout in [0, 1). Received: dropout=1.0"),
    (build_wrn, {"std": (0.2, 0.2)}, "Expected std as one number or one per channel (3), each > 0. Received: std=[0.2, 0.2]"),
    (build_densenet_bc, {"depth": 8}, "Expected a DenseNet-BC depth 6 n + 4 with n >= 1"),
    (build_densenet_bc, {"growth": 0}, "Expected a growth rate >= 1. Received: growth=0"),
    (build_densenet_bc, {"compression": 0.0}, "Expected compression in (0, 1]. Received: compression=0.0"),
])
def test_cifar_classifier_parameter_errors(build, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build(**kwargs)


def test_resnet50v2_takes_images_in_0_1_with_its_preprocessing_folded_in():
    model = build_backbone("resnet50v2", (64, 64, 3), 5)
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 5)
    net = model.get_layer("resnet50v2")
    assert model.count_params() == net.count_params()  # the preprocessing has no weights
    x = np.random.default_rng(2).random((2, 64, 64, 3), np.float32)
    want = net(keras.applications.resnet_v2.preprocess_input(255.0 * x), training=False)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, count", [("resnet50v2", 25_613_800), ("resnet101v2", 44_675_560),
                                         ("inception-resnet-v2", 55_873_736)])
def test_backbones_at_their_smallest_input_have_the_keras_sizes(name, count):
    # Keras' table of applications: 25.6 M, 44.7 M and 55.9 M parameters with the 1000-class top.
    smallest = train_module._backbones.BACKBONES[name].min_size
    model = build_backbone(name, (smallest, smallest, 3), 1000)
    assert model.output_shape == (None, 1000) and model.count_params() == count


@pytest.mark.parametrize("args, error, message", [
    (("vgg16",), ValueError, "Expected a backbone in ['inception-resnet-v2', 'resnet101v2', 'resnet50v2']. "
                             "Received: 'vgg16'"),
    (("inception-resnet-v2", (64, 64, 3)), ValueError,
     "Expected an input shape (H, W, C) with H, W >= 75 and C in {1, 3} for inception-resnet-v2. Received: (64, 64, 3)"),
    (("resnet50v2", (64, 64, 1), 10, "imagenet"), ValueError,
     "Expected 3-channel images for resnet50v2 with weights 'imagenet' (trained on RGB). Received: input shape (64, 64, 1)"),
    (("resnet50v2", (64, 64, 3), 1000, "imagenet"), ValueError,
     "Expected input shape (224, 224, 3) for resnet50v2 with ImageNet weights and its 1000-class top (Keras ships "
     "that top for this size only). Received: (64, 64, 3)"),
    (("resnet50v2", None, 1000, "nowhere.h5"), ValueError,
     "Expected weights None, 'imagenet' or an existing .keras or .h5 (.weights.h5) file of the backbone's weights. "
     "Received: 'nowhere.h5', which is not a file"),
    (("resnet50v2", None, 1000, 3), TypeError,
     "Expected weights None, 'imagenet' or the path of a .keras or .h5 file. Received: int"),
])
def test_backbone_errors_come_before_any_download(args, error, message):
    with pytest.raises(error) as info:
        build_backbone(*args[:3], weights=args[3]) if len(args) > 3 else build_backbone(*args)
    assert str(info.value) == message


def test_a_weights_file_is_loaded_into_the_backbone(tmp_path):
    source = build_backbone("resnet50v2", (32, 32, 3), 1000)
    path = tmp_path / "r50.weights.h5"
    source.get_layer("resnet50v2").save_weights(path)
    loaded = build_backbone("resnet50v2", (32, 32, 3), 1000, weights=path)
    x = np.random.default_rng(3).random((1, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(source(x, training=False)), np.asarray(loaded(x, training=False)))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "cifar-10-batches-py")
    return root


@pytest.mark.parametrize("kind, shape, name", [
    ("wrn", ["--wrn-depth", "10", "--wrn-width", "1"], "WRN-10-1 (pre-activation)"),
    ("densenet-a", ["--densenet-depth", "10", "--densenet-growth", "4"], "DenseNet-BC-10 (k = 4)"),
])
def test_train_a_tiny_cifar_classifier_then_attack_it(cifar, kind, shape, name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pytest.importorskip("cleverhans")
    model = tmp_path / f"{kind}.keras"
    assert main(["train", kind, "--dataset", "cifar10", "--data", str(cifar / "cifar-10-batches-py"), *shape,
                 "--epochs", "1", "--limit", "32", "--batch-size", "8", "--verbose", "0", "--out", str(tmp_path / "run"),
                 "--export", str(model)]) == 0
    metrics = json.loads(model.with_suffix(".json").read_text())
    architecture = metrics["architecture"]
    assert architecture["name"] == name and architecture["normalization_mean"] == [0.4914, 0.4822, 0.4465]
    assert metrics["parameters"] == keras.saving.load_model(model).count_params()
    assert f"- Architecture: {name}; depth 10;" in model.with_suffix(".md").read_text()
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(cifar), "--target", str(model), "--defense",
                 str(model), "--attack", "fgsm", "--n", "5", "--json", str(out), "--out", str(tmp_path / "e")]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["n"] == 5 and [r["attack"] for r in result["records"]] == ["fgsm"]


def _write_folder(root, rng, per_class):
    for label, name in enumerate(("n01440764", "n01443537", "n01484850")):
        for split, n in (("train", per_class), ("val", 1)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 70 * label, 30, (48 + 9 * i, 80, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.JPEG")


def test_resnet50v2_trains_a_step_on_an_image_folder(tmp_path):
    _write_folder(tmp_path / "data", np.random.default_rng(4), 2)
    assert main(["train", "resnet50v2", "--dataset", f"folder:{tmp_path / 'data'}", "--image-size", "64,64",
                 "--backbone-weights", "none", "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1",
                 "--verbose", "0", "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["image_shape"] == [64, 64, 3] and metrics["train_images"] == 6 and metrics["test_split"] == "val"
    assert metrics["architecture"]["weights"] == "none (random initialization)"
    assert metrics["architecture"]["input_shape"] == [64, 64, 3] and metrics["lr"] == 0.1
    assert metrics["parameters"] == 25_613_800 - 2049 * (1000 - 3)  # its dense top has 3 classes, not 1000
    assert metrics["epochs_run"] == 1 and np.isfinite(metrics["test_loss"])
    saved = keras.saving.load_model(tmp_path / "run" / "final.keras")
    assert saved.input_shape == (None, 64, 64, 3) and saved.output_shape == (None, 3)
    assert saved.count_params() == metrics["parameters"]


@pytest.mark.parametrize("argv, size, lr", [
    (["resnet50v2", "--dataset", "folder:/data/imagenet"], (224, 224), 0.005),
    (["inception-resnet-v2", "--dataset", "folder:/data/imagenet", "--backbone-weights", "none"], (299, 299), 0.1),
    (["resnet101v2", "--dataset", "tfds:imagenet2012", "--image-size", "128,128"], (128, 128), 0.005),
    (["resnet50v2", "--dataset", "cifar10", "--backbone-weights", "none"], None, 0.1),
])
def test_backbones_default_to_their_input_size_and_fine_tuning_rate(argv, size, lr, monkeypatch):
    seen = {}
    monkeypatch.setattr(train_module, "train", lambda args: seen.update(vars(args)))
    assert main(["train", *argv, "--out", "unused"]) == 0
    assert seen["image_size"] == size and seen["lr"] == lr


@pytest.mark.parametrize("argv, message", [
    (["wrn", "--width", "4"], "Expected --width only with classifier, the models they shape. Received: --width with wrn"),
    (["classifier", "--wrn-depth", "10"], "Expected --wrn-depth only with wrn, the models they shape. Received: "
                                          "--wrn-depth with classifier"),
    (["densenet-b", "--wrn-width=2"], "Expected --wrn-width only with wrn, the models they shape."),
    (["wrn", "--densenet-growth", "4"], "Expected --densenet-growth only with densenet-a or densenet-b or densenet-c"),
    (["densenet-a", "--backbone-weights", "none"], "Expected --backbone-weights only with resnet50v2 or resnet101v2 "
                                                   "or inception-resnet-v2, the models they shape. Received: "
                                                   "--backbone-weights with densenet-a"),
    (["resnet50v2", "--dataset", "folder:/nowhere", "--backbone-weights", "r50.h5"],
     "Expected weights None, 'imagenet' or an existing .keras or .h5 (.weights.h5) file of the backbone's weights. "
     "Received: 'r50.h5', which is not a file"),
])
def test_options_of_another_kind_are_refused(argv, message, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_depth_that_is_not_6n_plus_4_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["train", "wrn", "--wrn-depth", "12"])
    assert "argument --wrn-depth: expected a depth 6n+4 with n >= 1 (10, 16, 22, 28, ..., 100). Received: '12'" in (
        capsys.readouterr().err)
