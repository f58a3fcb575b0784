"""`nnjpeg compress`: the round trip of image files from the command line."""

import json

import numpy as np
import pytest
from PIL import Image

import nnjpeg
from nnjpeg.cli import main

pytest.importorskip("matplotlib")


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_compress_image_files(crops, tmp_path):
    rgb = crops["61x75"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a" / "photo.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "b" / "photo.png")  # grey, and the same file name
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(tmp_path / "alpha.png")
    paths = [str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.png"), str(tmp_path / "alpha.png"),
             str(tmp_path / "alpha.png")]
    out = tmp_path / "out"
    assert main(["compress", *paths, "--table", "nn:4", "--quality", "60", "--out", str(out)]) == 0
    rows = json.loads((out / "psnr.json").read_text())["rows"]
    assert [r["image"] for r in rows] == [*paths[:3], f"{paths[3]} (2)"]  # every file its row
    grey = np.repeat(rgb[..., :1], 3, axis=2)
    for row, img in zip(rows, (rgb, grey, rgb, rgb), strict=True):
        assert row["shape"] == [61, 75, 3]
        assert row["psnr_nn:4_rgb"] == pytest.approx(psnr(nnjpeg.compress(img, nnjpeg.nn_table(4)), img))
        assert row["psnr_jpeg_q60_420"] == pytest.approx(psnr(nnjpeg.jpeg(img, 60), img))
    assert (out / "psnr.md").read_text().count("\n") == 2 + len(paths)
    with Image.open(out / "comparison.png") as figure:
        four = figure.size
    assert main(["compress", paths[0], "--out", str(tmp_path / "one")]) == 0
    with Image.open(tmp_path / "one" / "comparison.png") as figure:
        one = figure.size
    assert four[0] == one[0] and four[1] > 3 * one[1]  # a row of panels per image


def test_compress_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"expected an image file. Received: '.*missing.png' \(not found\)"):
        main(["compress", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(SystemExit, match=r"expected an image file Pillow can read. Received: '.*notes.png' \(cannot "):
        main(["compress", str(tmp_path / "notes.png"), "--out", str(tmp_path)])
    assert main(["compress", "--quality", "0", "--out", str(tmp_path)]) == 2
    assert "Expected quality to be an integer in 1...100. Received: quality=0" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "--defense", "fmnist/ensemble", "--attack", "fgsm", "--n", "0"],
     "argument --n: expected an integer >= 1. Received: '0'"),
    (["evaluate", "--defense", "fmnist/ensemble", "--attack", "fgsm", "--n", "-3"],
     "argument --n: expected an integer >= 1. Received: '-3'"),
    (["evaluate", "--defense", "fmnist/ensemble", "--attack", "fgsm", "--eps", "nan"],
     "argument --eps: expected a finite number > 0. Received: 'nan'"),
    (["report", "--eot", "2.5"], "argument --eot: expected an integer >= 1. Received: '2.5'"),
    (["demo", "--seed", "-1"], "argument --seed: expected an integer >= 0. Received: '-1'"),
    (["search-table", "--max-drop", "1.5"],
     "argument --max-drop: expected a finite number >= 0 and <= 1. Received: '1.5'"),
    (["search-table", "--of", "0"], "argument --of: expected a finite number > 0. Received: '0'"),
    (["frequency", "--eps", "-0.1"], "argument --eps: expected a finite number > 0. Received: '-0.1'"),
    (["ablation", "--n", "many"], "argument --n: expected an integer >= 1. Received: 'many'"),
    (["compress", "--threads", "0"], "argument --threads: expected an integer >= 1. Received: '0'"),
    (["train", "classifier", "--epochs", "0"], "argument --epochs: expected an integer >= 1. Received: '0'"),
    (["train", "ensemble", "--xi", "1.1"], "argument --xi: expected a finite number >= 0 and <= 1. Received: '1.1'"),
    (["train", "classifier", "--lr", "inf"], "argument --lr: expected a finite number > 0. Received: 'inf'"),
    (["train", "classifier", "--verbose", "3"], "argument --verbose: expected an integer in 0...2. Received: '3'"),
    (["evaluate", "--defense", "fmnist/ensemble", "--attack", "pgd", "--steps", "0"],
     "argument --steps: expected an integer >= 1. Received: '0'"),
    (["evaluate", "--defense", "fmnist/ensemble", "--attack", "pgd", "--eps", "-0.1"],
     "argument --eps: expected a finite number > 0. Received: '-0.1'"),
    (["report", "--restarts", "0"], "argument --restarts: expected an integer >= 1. Received: '0'"),
    (["report", "--robust-steps", "-5"], "argument --robust-steps: expected an integer >= 1. Received: '-5'"),
    (["train", "pgd-at", "--at-steps", "0"], "argument --at-steps: expected an integer >= 1. Received: '0'"),
    (["train", "free-at", "--replays", "0"], "argument --replays: expected an integer >= 1. Received: '0'"),
    (["train", "defense-vae", "--adv-eps", "0.1,-0.2"],
     "argument --adv-eps: expected comma-separated finite numbers > 0, e.g. 0.03,0.1,0.2. Received: '0.1,-0.2'"),
    (["train", "defense-vae", "--adv-models", "a.keras,,b.keras"],
     "argument --adv-models: expected distinct comma-separated pretrained names or .keras paths, e.g. "
     "fmnist/classifier,fmnist/surrogate-c. Received: 'a.keras,,b.keras'"),
])
def test_numbers_out_of_range_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"nnjpeg {nnjpeg.__version__}\n"


def test_unknown_attack_or_defense_is_named(capsys):
    pytest.importorskip("tensorflow")
    assert main(["evaluate", "--defense", "fmnist/ensemble", "--attack", "bogus", "--n", "2"]) == 2
    assert "Received: defenses=['fmnist/ensemble'], attacks=['bogus']" in capsys.readouterr().err
    assert main(["evaluate", "--defense", "fmnist/nothing", "--attack", "fgsm", "--n", "2"]) == 2
    assert "Received: 'fmnist/nothing'" in capsys.readouterr().err
    assert main(["evaluate", "--defense", "runs/none/final.keras", "--attack", "fgsm", "--n", "2"]) == 2
    assert "Received: 'runs/none/final.keras', which is not a file" in capsys.readouterr().err
    # EOT averages a defense's randomness for an attack run on it: only the white-box scenario does.
    assert main(["evaluate", "--defense", "fmnist/ensemble", "--attack", "fgsm", "--scenario", "mixed", "--eot", "4"]) == 2
    assert "Received: --eot 4 with --scenario mixed" in capsys.readouterr().err


def test_tensorflow_starts_quietly(tmp_path):
    """The long commands import TensorFlow through _console.quiet_tensorflow: nothing reaches standard
    error (TensorFlow's C++ start-up lines went there), and the process's stderr works afterwards."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    code = ("from nnjpeg import _console; _console.quiet_tensorflow(); import tensorflow as tf; "
            "tf.config.list_physical_devices(); print(int(tf.constant(2) + 1)); import sys; print('after', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3\n" and done.stderr == "after\n"


def test_text_table_aligns_columns():
    from nnjpeg._console import text_table

    lines = text_table(["defense", "clean", "pgd 0.1"], [["none", "93.8", "0.0"], ["NN-JPEG ensemble", "93.3", "12.5"]],
                       title="t").splitlines()
    assert lines == ["t", "defense           clean  pgd 0.1", "----------------  -----  -------",
                     "none               93.8      0.0", "NN-JPEG ensemble   93.3     12.5"]


def test_train_refuses_an_option_of_another_model(capsys):
    assert main(["train", "cyclegan", "--kl-weight", "0.1", "--hf-cutoff=0.3"]) == 2
    assert ("Expected --hf-cutoff, --kl-weight only with defense-vae or hfl-vae, the models they shape. "
            "Received: --hf-cutoff --kl-weight with cyclegan") in capsys.readouterr().err


def test_train_refuses_adv_models_where_no_adversarial_input_is_made(capsys):
    assert main(["train", "vqunet", "--adv-models", "fmnist/surrogate-c"]) == 2
    assert ("Expected --adv-models only where adversarial inputs are made (defense-vae, hfl-vae, cyclegan, or vqunet / "
            "non-vq-unet with --inputs adversarial). Received: --adv-models with vqunet --inputs clean"
            ) in capsys.readouterr().err


def test_train_refuses_end_to_end_options_without_its_epochs(capsys):
    assert main(["train", "defense-vae", "--end-to-end-augment", "--end-to-end-lr=0.001"]) == 2
    assert ("Expected --end-to-end-augment, --end-to-end-lr only with --end-to-end-epochs N > 0, the fine-tuning "
            "they shape. Received: --end-to-end-augment --end-to-end-lr with --end-to-end-epochs 0") in capsys.readouterr().err
