"""The README's Python examples run as written, so the usage they show stays the package's."""

import re
from pathlib import Path

import numpy as np
import pytest

import nnjpeg
import nnjpeg.pretrained

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def block(first_line: str) -> str:
    found = [b for b in blocks() if b.startswith(first_line)]
    assert len(found) == 1, f"expected one README example starting with {first_line!r}, found {len(found)}"
    return found[0]


def test_every_example_is_run_here():
    # A new example must be added to the tests below.
    assert [b.splitlines()[0] for b in blocks()] == [
        "import numpy as np", "import keras, tensorflow as tf", "import nnjpeg.pretrained"]


def test_codec_example(photos):
    scope = {}
    exec(block("import numpy as np"), scope)
    img = photos["astronaut"]
    assert scope["defended"].dtype == np.uint8 and scope["defended"].shape == img.shape
    assert np.array_equal(scope["defended"], nnjpeg.compress(img, nnjpeg.nn_table(5)))
    # Coded in place, the batch ends as the reused buffer holds: one round trip of the original.
    assert np.array_equal(scope["batch"], scope["result"])
    assert not np.array_equal(scope["batch"], np.stack([img, img[::-1]]).astype(np.float32) / 255.0)


def test_keras_example(photos):
    tf = pytest.importorskip("tensorflow")
    grey = photos["coffee"][None, :28, :28, :1].repeat(4, axis=0)
    # What the example leaves to its reader: a dataset of (images, labels) batches, and images.
    scope = {"ds": tf.data.Dataset.from_tensor_slices((grey, np.arange(4))).batch(2),
             "images": tf.constant(grey)}
    exec(block("import keras, tensorflow as tf"), scope)
    assert scope["defended"].predict(grey.astype(np.float32) / 255.0, verbose=0).shape == (4, 10)
    got = np.concatenate([x.numpy() for x, _ in scope["ds"]])
    want = nnjpeg.jpeg(nnjpeg.compress(grey, nnjpeg.nn_table(5)), quality=75)
    assert np.array_equal(got, want)
    assert scope["y"].shape == grey.shape


def test_pretrained_example(capsys):
    if not nnjpeg.pretrained.names():
        pytest.skip("installed without the pretrained weights")
    scope = {}
    exec(block("import nnjpeg.pretrained"), scope)
    assert scope["model"].output_shape == (None, 10)
    assert "fmnist/ensemble" in capsys.readouterr().out
