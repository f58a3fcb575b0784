"""The pure-TensorFlow backend (`compress_tf`, `jpeg_tf`) and the `tf.data` map function `tf_compress`.

Reference: the native codec (`nnjpeg.compress` / `nnjpeg.jpeg`), itself tested against a float64
NumPy/SciPy reference in test_codec.py.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import nnjpeg  # noqa: E402
from nnjpeg import codec  # noqa: E402
from nnjpeg.tables import nn_table, standard_tables  # noqa: E402
from nnjpeg.tf_ops import compress_tf, jpeg_tf, tf_compress  # noqa: E402

pytestmark = pytest.mark.tf

# The agreed contract with the native codec: within one grey level on at least 99.9 % of pixels.
# The TF pipeline copies the native code's arithmetic (operation order, exact ties, one rounding per
# product), so on CPU it is in fact bit-identical to the scalar kernel; SIMD kernels and GPUs may
# round a product or quotient that is not on a tie differently, which the contract allows.
MIN_WITHIN_1 = 0.999

LUMA, CHROMA = standard_tables(50)
MODES = {
    "rgb": dict(table=nn_table(5), color="rgb", subsampling="4:4:4"),
    "ycbcr-444": dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:4:4"),
    "ycbcr-422": dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:2"),
    "ycbcr-420": dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:0"),
}


def level_diff(a, b):
    scale = 255.0 if np.asarray(a).dtype == np.float32 else 1.0
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) * scale


def closure(fn, **kw):
    # A tf.function traces its arguments as tensors; tables must stay NumPy, so close over them.
    def run(images):
        return fn(images, **kw)

    return run


def as_inputs(img):
    return [img, img.astype(np.float32) / 255]


@pytest.mark.parametrize("mode", MODES)
def test_agrees_with_native(mode, photos, crops):
    kw = MODES[mode]
    # Whole photos as uint8; float32 (same pipeline after the input scaling) on one photo and the crops.
    inputs = [*photos.values(), photos["chelsea"].astype(np.float32) / 255]
    for crop in (crops["1x1"], crops["7x9"], crops["17x33"]):
        inputs += as_inputs(crop)
    diffs = []
    for x in inputs:
        out = compress_tf(x, **kw)
        assert out.dtype == x.dtype and tuple(out.shape) == x.shape
        diffs.append(level_diff(out.numpy(), nnjpeg.compress(x, **kw)).ravel())
    diffs = np.concatenate(diffs)
    within = np.mean(diffs <= 1.0 + 1e-4)
    assert within >= MIN_WITHIN_1, f"{mode}: {within:.5%} within 1 level, max diff {diffs.max()}"


@pytest.mark.parametrize("mode", ["rgb", "ycbcr-420"])
def test_bit_identical_to_scalar_kernel_on_cpu(mode, photos, crops):
    kw = MODES[mode]
    tables = codec.check_table(kw["table"], 3, kw["color"])
    native_mode = codec.check_mode(kw["color"], kw["subsampling"])
    batch = np.stack([crops["61x75"], photos["coffee"][200:261, 300:375]])
    for x in as_inputs(batch):
        with tf.device("/CPU:0"):
            out = compress_tf(x, **kw).numpy()
        np.testing.assert_array_equal(out, codec.run(x, tables, native_mode, 1, "cpu", kernel="scalar"))


def test_jpeg_tf_matches_native(photos):
    colour = photos["chelsea"][:67, :93]
    grey = colour[..., :1]
    for x in [colour, colour.astype(np.float32) / 255, grey]:
        np.testing.assert_array_equal(jpeg_tf(x, 75).numpy(), nnjpeg.jpeg(x, 75))
    np.testing.assert_array_equal(jpeg_tf(colour, 30, subsampling="4:2:2").numpy(),
                                  nnjpeg.jpeg(colour, 30, subsampling="4:2:2"))


def test_grey_and_per_channel_tables(crops):
    x = crops["17x33"]
    grey = x[..., 1:2]
    np.testing.assert_array_equal(compress_tf(grey, LUMA, color="ycbcr").numpy(),
                                  nnjpeg.compress(grey, LUMA, color="ycbcr"))
    per_channel = np.stack([nn_table(3), nn_table(6), nn_table(9, 8.0, 30.0)])
    np.testing.assert_array_equal(compress_tf(x, per_channel).numpy(), nnjpeg.compress(x, per_channel))


def test_empty_batch():
    out = compress_tf(np.zeros((0, 5, 6, 3), np.uint8), nn_table(5))
    assert out.shape == (0, 5, 6, 3) and out.dtype == tf.uint8


def test_xla_equals_eager(crops):
    # Bit-identical: the pipeline keeps XLA from fusing products into FMAs and from turning
    # divisions into reciprocal products (one compile: the YCbCr 4:2:0 path runs every stage).
    kw = MODES["ycbcr-420"]
    x = np.stack([crops["17x33"], crops["17x33"][::-1, ::-1]]).astype(np.float32) / 255
    compiled = tf.function(closure(compress_tf, **kw), jit_compile=True)
    out = compiled(tf.constant(x))
    assert out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), compress_tf(x, **kw).numpy())
    np.testing.assert_array_equal(out.numpy(), nnjpeg.compress(x, **kw))


def test_dynamic_shapes_in_tf_function(crops):
    run = tf.function(closure(compress_tf, **MODES["ycbcr-422"]),
                      input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    for x in (crops["7x9"], crops["17x33"]):
        np.testing.assert_array_equal(run(x).numpy(), nnjpeg.compress(x, **MODES["ycbcr-422"]))


def test_gradient_is_straight_through(crops):
    # rgb: every rounding is the identity backwards, and F -> quantize -> C^T is the identity, so
    # the gradient of sum(w * out) is w wherever the output is not clamped (mid-grey inputs).
    x = tf.constant(crops["61x75"].astype(np.float32) / 255 * 0.5 + 0.25)
    w = tf.random.stateless_uniform(x.shape, seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(w * compress_tf(x, nn_table(3)))
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), w.numpy(), atol=1e-4)
    # ycbcr 4:2:0: the gradient of the linear pipeline (colour transform, box down, triangle up).
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(w * jpeg_tf(x, 50))
    grad = tape.gradient(loss, x).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).mean() > 0.1


def test_out_of_range_floats_fail_in_a_graph():
    run = tf.function(closure(compress_tf, table=nn_table(5)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]"):
        run(tf.fill([8, 8, 3], 1.5))


@pytest.mark.parametrize("backend", ["native", "tf"])
def test_tf_data_pipeline_matches_native(backend, crops):
    images = np.stack([crops["17x33"], crops["17x33"][::-1], crops["17x33"][:, ::-1]])
    labels = np.arange(3, dtype=np.int64)
    kw = MODES["ycbcr-420"]
    fn = tf_compress(kw["table"], color="ycbcr", subsampling="4:2:0", backend=backend)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    assert ds.element_spec[0].shape == (17, 33, 3) and ds.element_spec[0].dtype == tf.uint8
    got = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), nnjpeg.compress(images, **kw))
    assert [g[1] for g in got] == [0, 1, 2]

    floats = images.astype(np.float32) / 255
    batched = tf.data.Dataset.from_tensor_slices(floats).batch(2).map(tf_compress(quality=60, backend=backend))
    assert batched.element_spec.shape.as_list() == [None, 17, 33, 3]
    np.testing.assert_array_equal(np.concatenate(list(batched.as_numpy_iterator())), nnjpeg.jpeg(floats, 60))


@pytest.mark.parametrize("backend", ["native", "tf"])
def test_tf_data_dict_elements(backend, crops):
    # As TensorFlow Datasets yields them: only the images' entry is coded, the rest passes through.
    images = np.stack([crops["17x33"], crops["17x33"][::-1]])
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.array([3, 5])})
    got = list(ds.map(tf_compress(quality=40, backend=backend)).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([g["image"] for g in got]), nnjpeg.jpeg(images, 40))
    assert [g["label"] for g in got] == [3, 5]
    renamed = tf.data.Dataset.from_tensor_slices({"pixels": images, "label": np.array([3, 5])})
    got = next(renamed.map(tf_compress(nn_table(5), key="pixels", backend=backend)).as_numpy_iterator())
    np.testing.assert_array_equal(got["pixels"], nnjpeg.compress(images[0], nn_table(5)))
    with pytest.raises(ValueError,
                       match=r"dict elements holding the images under key='image'. Received: keys \['label', 'pixels'\]"):
        renamed.map(tf_compress(nn_table(5), backend=backend))


def test_tf_compress_direct_calls(crops):
    x = crops["7x9"]
    fn = tf_compress(nn_table(4), backend="tf")
    np.testing.assert_array_equal(fn(x).numpy(), nnjpeg.compress(x, nn_table(4)))
    out, label, extra = fn(x, 7, "a")
    assert (label, extra) == (7, "a")
    pair = fn((x, 7))
    assert isinstance(pair, tuple) and pair[1] == 7
    np.testing.assert_array_equal(pair[0].numpy(), out.numpy())
    grey = x[..., :1]
    np.testing.assert_array_equal(tf_compress(nn_table(4), threads=1)(grey).numpy(), nnjpeg.compress(grey, nn_table(4)))


def test_image_errors():
    table = nn_table(5)
    with pytest.raises(TypeError, match=r"dtype uint8 or float32 .* Received: dtype=float64"):
        compress_tf(np.zeros((8, 8, 3)), table)
    with pytest.raises(TypeError, match=r"as a tf.Tensor or NumPy array. Received: list"):
        compress_tf([[[0, 0, 0]]], table)
    with pytest.raises(ValueError, match=r"C in \{1, 3\}.*Received: dtype=uint8, shape=\(8, 8, 4\)"):
        compress_tf(np.zeros((8, 8, 4), np.uint8), table)
    with pytest.raises(ValueError, match=r"H >= 1 and W >= 1"):
        compress_tf(np.zeros((0, 8, 3), np.uint8), table)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]. Received: min=-0.5"):
        compress_tf(np.full((8, 8, 3), -0.5, np.float32), table)
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]. Received: 1 NaN/Inf"):
        compress_tf(np.array([[[0.5, np.nan, 0.5]]], np.float32), table)
    run = tf.function(closure(compress_tf, table=table), input_signature=[tf.TensorSpec(None, tf.uint8)])
    with pytest.raises(ValueError, match=r"static rank and channels.*shape=None"):
        run.get_concrete_function()


def test_argument_errors(crops):
    x = crops["7x9"]
    with pytest.raises(ValueError, match=r"color to be one of 'rgb', 'ycbcr'. Received: 'yuv'"):
        compress_tf(x, nn_table(5), color="yuv")
    with pytest.raises(ValueError, match=r"subsampling='4:4:4' with color='rgb'"):
        compress_tf(x, nn_table(5), subsampling="4:2:0")
    with pytest.raises(ValueError, match=r"table of shape \(8, 8\) or \(3, 8, 8\) .* Received: shape=\(2, 8, 8\)"):
        compress_tf(x, np.stack([LUMA, CHROMA]))
    with pytest.raises(ValueError, match=r"finite and > 0"):
        compress_tf(x, np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"quality to be an integer in 1...100. Received: quality=0"):
        jpeg_tf(x, 0)
    with pytest.raises(TypeError, match=r"quality to be an integer"):
        jpeg_tf(x, 7.5)


def test_tf_compress_errors():
    with pytest.raises(ValueError, match=r"table or a quality. Received: table=None, quality=None"):
        tf_compress()
    with pytest.raises(ValueError, match=r"either table or quality, not both"):
        tf_compress(LUMA, quality=50)
    with pytest.raises(ValueError, match=r"color='ycbcr' or None with quality.*Received: color='rgb'"):
        tf_compress(quality=50, color="rgb")
    with pytest.raises(ValueError, match=r"backend to be one of 'native', 'tf'. Received: 'cuda'"):
        tf_compress(LUMA, backend="cuda")
    with pytest.raises(ValueError, match=r"threads=None with backend='tf'"):
        tf_compress(LUMA, backend="tf", threads=2)
    with pytest.raises(TypeError, match=r"threads to be None or an integer"):
        tf_compress(LUMA, threads=1.5)
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 4\)"):
        tf_compress(np.ones((4, 4)))
    with pytest.raises(TypeError, match=r"key to be a string \(a dict element's key\). Received: 0"):
        tf_compress(LUMA, key=0)
    with pytest.raises(ValueError, match=r"for 1-channel images .* Received: shape=\(3, 8, 8\)"):
        tf_compress(np.stack([LUMA] * 3))(np.zeros((8, 8, 1), np.uint8))
