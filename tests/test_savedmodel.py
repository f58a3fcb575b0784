"""Defended models as SavedModels: the native codec op exports and loads in a fresh process where
only `import nnjpeg` was done; `with_backend(model, "tf")` exports TensorFlow ops only, which load
without nnjpeg. Outputs equal the Keras model's."""

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import nnjpeg  # noqa: E402
from nnjpeg.keras import JPEG, Compression, with_backend  # noqa: E402
from nnjpeg.tf_ops import native_op_status  # noqa: E402


def defended_model():
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                   keras.layers.Flatten(), keras.layers.Dense(10)], name="classifier")
    inputs = keras.Input((28, 28, 1))
    coded = JPEG(75)(Compression(nnjpeg.nn_table(5).tolist())(inputs))
    return keras.Model(inputs, classifier(coded), name="defended")


@pytest.fixture(scope="module")
def images(photos):
    grey = photos["coffee"].mean(-1).astype(np.float32) / 255.0
    return np.stack([grey[r : r + 28, c : c + 28] for r in (50, 150, 250) for c in (60, 200)])[..., None]


def run_fresh(code: str, cwd) -> str:
    """Runs `code` in a new Python process (outside the source tree, so the installed nnjpeg is the
    one imported); returns its standard output."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


LOAD = """
import sys
import numpy as np
{imports}
m = tf.saved_model.load({path!r})
np.save({out!r}, m.serve(tf.constant(np.load({x!r}))).numpy())
print("nnjpeg" in sys.modules)
"""


@pytest.mark.parametrize("order", ["nnjpeg first", "tensorflow first"])
def test_native_savedmodel_loads_with_only_import_nnjpeg(images, tmp_path, order):
    if native_op_status() != "op":
        pytest.skip(f"the native op is not available here: {native_op_status()}")
    model = defended_model()
    want = model.predict(images, verbose=0)
    model.export(str(tmp_path / "model"), verbose=False)
    np.save(tmp_path / "x.npy", images)
    imports = ("import nnjpeg\nimport tensorflow as tf" if order == "nnjpeg first"
               else "import tensorflow as tf\nimport nnjpeg")
    out = run_fresh(LOAD.format(imports=imports, path=str(tmp_path / "model"), out=str(tmp_path / "y.npy"),
                                x=str(tmp_path / "x.npy")), tmp_path)
    assert out.strip() == "True"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6, atol=1e-6)


def test_native_savedmodel_without_nnjpeg_names_the_missing_op(images, tmp_path):
    if native_op_status() != "op":
        pytest.skip(f"the native op is not available here: {native_op_status()}")
    defended_model().export(str(tmp_path / "model"), verbose=False)
    code = f"import tensorflow as tf\ntf.saved_model.load({str(tmp_path / 'model')!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode != 0 and "Op type not registered 'NnjpegRoundTrip'" in done.stderr


def test_tf_backend_savedmodel_loads_without_nnjpeg(images, tmp_path):
    model = defended_model()
    portable = with_backend(model, "tf")
    want = model.predict(images, verbose=0)
    np.testing.assert_array_equal(portable.predict(images, verbose=0), want)
    portable.export(str(tmp_path / "model"), verbose=False)
    np.save(tmp_path / "x.npy", images)
    out = run_fresh(LOAD.format(imports="import tensorflow as tf", path=str(tmp_path / "model"),
                                out=str(tmp_path / "y.npy"), x=str(tmp_path / "x.npy")), tmp_path)
    assert out.strip() == "False"  # nothing of nnjpeg was needed
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6, atol=1e-6)


def test_with_backend_switches_nested_codec_layers_only(images):
    inner = defended_model()
    inputs = keras.Input((28, 28, 1))
    outer = keras.Model(inputs, inner(Compression(nnjpeg.nn_table(3).tolist(), threads=1)(inputs)))
    switched = with_backend(outer, "tf")
    codecs = [layer for m in (switched, switched.layers[-1]) for layer in m.layers if isinstance(layer, (Compression, JPEG))]
    assert len(codecs) == 3 and {layer.backend for layer in codecs} == {"tf"} and {layer.threads for layer in codecs} == {None}
    assert {layer.backend for m in (outer, inner) for layer in m.layers if hasattr(layer, "backend")} == {"native"}
    np.testing.assert_array_equal(switched.predict(images, verbose=0), outer.predict(images, verbose=0))
    back = with_backend(switched, "native")
    np.testing.assert_array_equal(back.predict(images, verbose=0), outer.predict(images, verbose=0))
    with pytest.raises(ValueError, match=r"Expected backend .*Received: 'xla'"):
        with_backend(outer, "xla")
