"""A user's own copy of the papers' datasets, end to end through the command line, on small synthetic
data in each dataset's real on-disk format: CIFAR-10's python batches (given with --data, or found
in either Keras cache layout alone) and an ImageNet-style folder of JPEG and PNG files."""

import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from nnjpeg.cli import main  # noqa: E402
from synthetic import write_cifar  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """Synthetic CIFAR-10 batches and a classifier trained one epoch on them by `nnjpeg train`."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "cifar-10-batches-py")
    model = root / "m.keras"
    assert main(["train", "classifier", "--dataset", "cifar10", "--data", str(root / "cifar-10-batches-py"),
                 "--epochs", "1", "--batch-size", "8", "--width", "4", "--blocks", "1", "--verbose", "0",
                 "--out", str(root / "run"), "--export", str(model)]) == 0
    return root, model


@pytest.mark.parametrize("scenario", ["gray-box", "white-box"])
def test_cifar10_from_data_folder(cifar, scenario, tmp_path):
    root, model = cifar
    assert keras.saving.load_model(model).input_shape == (None, 32, 32, 3)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(root), "--target", str(model), "--defense",
                 str(model), "--attack", "fgsm", "--attack", "pgd", "--steps", "3", "--scenario", scenario, "--n", "4",
                 "--json", str(out), "--out", str(tmp_path / "o")]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["n"] == 4 and result["config"]["dataset"] == "cifar10"
    assert {(r["attack"], r["scenario"]) for r in result["records"]} == {("fgsm", scenario), ("pgd", scenario)}
    assert all(r["max_linf"] <= 0.1 + 1e-6 for r in result["records"])


def test_cifar10_found_in_the_keras_cache_alone(cifar, tmp_path, monkeypatch):
    root, model = cifar
    layout = tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target"
    write_cifar(layout / "cifar-10-batches-py")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("NNJPEG_CIFAR10", raising=False)
    assert main(["evaluate", "--dataset", "cifar10", "--target", str(model), "--defense", str(model), "--attack",
                 "fgsm", "--n", "5", "--json", str(tmp_path / "e.json"), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["config"]["n"] == 5


def test_a_model_that_does_not_fit_the_data_is_refused(cifar, capsys):
    root, model = cifar
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(root), "--target", str(model), "--defense",
                 "fmnist/classifier", "--attack", "fgsm", "--n", "4"]) == 2
    err = capsys.readouterr().err
    assert ("Expected a model taking images of shape (H, W, C) = (32, 32, 3) for dataset cifar10 (test); Received: "
            "fmnist/classifier, a model taking (28, 28, 1)") in err and "Traceback" not in err
    # No target or surrogates ship for CIFAR-10: the defaults are refused, naming what to give instead.
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(root), "--defense", str(model), "--attack",
                 "fgsm", "--scenario", "black-box", "--n", "4"]) == 2
    assert ("Expected surrogates for the black-box scenario: none ship for dataset 'cifar10'. Received: none; give "
            ".keras paths (--surrogates A.keras,B.keras)") in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(root), "--defense", str(model), "--attack",
                 "fgsm", "--n", "4"]) == 2
    assert ("Expected a dataset with a shipped target classifier, one of ['fashion-mnist'], or a target given as a "
            ".keras path (--target). Received: dataset 'cifar10'") in capsys.readouterr().err
    # A model given by path for black-box transfers, the surrogates' shapes checked like the defenses'.
    assert main(["evaluate", "--dataset", "cifar10", "--data", str(root), "--surrogates", str(model), "--defense",
                 str(model), "--attack", "fgsm", "--scenario", "black-box", "--n", "4", "--json", str(root / "b.json"),
                 "--out", str(root / "b")]) == 0


def test_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label, (name, size) in enumerate([("cat", (40, 60)), ("dog", (73, 31)), ("fox", (64, 64))]):
        (tmp_path / "data" / "val" / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / "val" / name / f"{i}.{'png' if i else 'jpg'}")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((224, 224, 3))
    h = keras.layers.Conv2D(2, 8, strides=8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))
    model.save(tmp_path / "folder.keras")
    # Without a test/ folder the evaluation reads val/ (ImageNet's labelled evaluation split).
    args = ["evaluate", "--dataset", f"folder:{tmp_path / 'data'}", "--target", str(tmp_path / "folder.keras"),
            "--defense", str(tmp_path / "folder.keras"), "--attack", "fgsm", "--n", "6"]
    for scenario in ("gray-box", "white-box"):
        assert main([*args, "--scenario", scenario, "--json", str(tmp_path / f"{scenario}.json"),
                     "--out", str(tmp_path / scenario)]) == 0
        result = json.loads((tmp_path / f"{scenario}.json").read_text())
        assert result["config"]["n"] == 6 and len(result["records"]) == 1


def test_search_table_frequency_and_ablation_on_cifar10(cifar, tmp_path, capsys):
    root, model = cifar
    data = ["--dataset", "cifar10", "--data", str(root), "--classifier", str(model)]
    assert main(["search-table", *data, "--n-benign", "5", "--n-adv", "5", "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "table_search.json").read_text())["classifier"] == str(model)
    assert main(["frequency", *data, "--n", "5", "--out", str(tmp_path / "f")]) == 0
    freq = json.loads((tmp_path / "f" / "cifar10_rgb.json").read_text())
    assert set(freq["channels"]) == {"R", "G", "B", "Y", "Cb", "Cr"} and freq["label"].startswith("cifar10 (RGB)")
    assert main(["ablation", *data, "--n", "5", "--attack", "fgsm", "--eps", "0.1", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "ablation.json").read_text())["dataset"] == "cifar10"
    capsys.readouterr()
    assert main(["ablation", "--dataset", "cifar10", "--data", str(root), "--n", "5"]) == 2
    assert "Received: fmnist/classifier, a model taking (28, 28, 1)" in capsys.readouterr().err


def _write_folder(root, rng, per_class, sizes=((40, 60), (73, 31), (64, 64))):
    for label, (name, size) in enumerate(zip(("cat", "dog", "fox"), sizes)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * label, 30, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'JPEG'}")


def test_train_on_an_image_folder_then_attack_it(tmp_path, capsys):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path / "data" / "train", rng, 6)
    _write_folder(tmp_path / "data" / "val", rng, 3, sizes=((50, 50), (31, 80), (90, 45)))
    data, model = f"folder:{tmp_path / 'data'}", tmp_path / "m.keras"
    assert main(["train", "classifier", "--dataset", data, "--image-size", "32,32", "--epochs", "1", "--batch-size", "4",
                 "--width", "4", "--blocks", "1", "--verbose", "0", "--out", str(tmp_path / "run"),
                 "--export", str(model)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["test_images"], metrics["test_split"]) == (18, 9, "val")
    assert metrics["image_shape"] == [32, 32, 3] and metrics["data_source"].endswith("train")
    assert keras.saving.load_model(model).input_shape == (None, 32, 32, 3)
    # The evaluation reads the folder at the model's size: refused at the default 224 x 224, named.
    args = ["evaluate", "--dataset", data, "--target", str(model), "--defense", str(model), "--attack", "fgsm",
            "--attack", "pgd", "--steps", "2", "--n", "6"]
    assert main(args) == 2
    assert "a model taking (32, 32, 3)" in capsys.readouterr().err
    for scenario in ("gray-box", "white-box"):
        assert main([*args, "--image-size", "32,32", "--scenario", scenario, "--json", str(tmp_path / f"{scenario}.json"),
                     "--out", str(tmp_path / scenario)]) == 0
        result = json.loads((tmp_path / f"{scenario}.json").read_text())
        assert result["config"]["n"] == 6 and {r["attack"] for r in result["records"]} == {"fgsm", "pgd"}
    assert main(["evaluate", "--dataset", data, "--image-size", "32,32", "--target", str(model), "--defense",
                 "fmnist/classifier", "--attack", "fgsm", "--n", "4"]) == 2
    err = capsys.readouterr().err
    assert "Received: fmnist/classifier, a model taking (28, 28, 1)" in err and "Traceback" not in err
    # A recipe that holds its images in memory reads a folder only with --limit; --image-size only resizes
    # what is resized.
    small = ["--epochs", "1", "--batch-size", "4", "--verbose", "0", "--out", str(tmp_path / "v")]
    assert main(["train", "vqunet", "--dataset", data, *small]) == 2
    assert ("Expected --limit N with --dataset folder:" in capsys.readouterr().err)
    assert main(["train", "classifier", "--image-size", "32,32", *small]) == 2
    assert ("Expected --image-size only with --dataset folder:DIR or tfds:NAME, whose images it resizes. Received: "
            "--image-size 32,32 with --dataset fashion-mnist") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "classifier", "--dataset", "folders:x", *small])
    assert "expected one of fashion-mnist, cifar10, folder:DIR or tfds:NAME. Received: 'folders:x'" in (
        capsys.readouterr().err)


def test_train_and_attack_through_tfds(tmp_path, monkeypatch, capsys):
    """TFDS' ImageNet layout (train and validation splits, images of varying sizes), through the
    command line, with a stand-in for the optional tensorflow_datasets."""
    import sys

    from test_datasets import _fake_tfds

    rng = np.random.default_rng(3)
    images = [np.clip(rng.normal(80 + 80 * (i % 2), 30, (30 + 7 * i, 50 - 3 * i, 3)), 0, 255).astype(np.uint8)
              for i in range(12)]
    module, calls = _fake_tfds(images, np.arange(12, dtype=np.int64) % 2, shape=(None, None, 3), names=["a", "b"],
                               splits=("train", "validation"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    model = tmp_path / "m.keras"
    assert main(["train", "classifier", "--dataset", "tfds:imagenet2012", "--data", str(tmp_path), "--image-size",
                 "24,24", "--epochs", "1", "--batch-size", "4", "--width", "4", "--blocks", "1", "--verbose", "0",
                 "--out", str(tmp_path / "run"), "--export", str(model)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["test_split"], metrics["image_shape"]) == (12, "val", [24, 24, 3])
    assert ("as_dataset", "train", True) in calls and ("as_dataset", "validation", True) in calls
    assert main(["evaluate", "--dataset", "tfds:imagenet2012", "--data", str(tmp_path), "--image-size", "24,24",
                 "--target", str(model), "--defense", str(model), "--attack", "fgsm", "--scenario", "white-box",
                 "--n", "6", "--json", str(tmp_path / "e.json"), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["config"]["n"] == 6
