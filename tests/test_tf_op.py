"""The native codec as a TensorFlow op (nnjpeg/_tf_op.so, behind backend="native" in TensorFlow).

Reference: `nnjpeg.compress` on the same arrays (itself tested against the float64 reference in
test_codec.py). The op and the `tf.numpy_function` fallback run the same C++ round trip, so results
are compared for equality. The op's GPU kernel (builds with CUDA) runs here only in the build with
-DNNJPEG_CUDA_EMULATION=ON that scripts/check_native.sh makes, where it is also a CPU kernel under
a label; it is compared with the scalar CPU kernel bit for bit, as tests/test_cuda.py compares the
device.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import nnjpeg  # noqa: E402
from nnjpeg import codec, tf_ops  # noqa: E402
from nnjpeg.keras import Compression  # noqa: E402
from nnjpeg.tables import nn_table, standard_tables  # noqa: E402
from nnjpeg.tf_ops import tf_compress  # noqa: E402

pytestmark = pytest.mark.tf

LUMA, CHROMA = standard_tables(50)
INFO = nnjpeg.build_info()
EMULATED_GPU = "nnjpeg_emulated_gpu"  # the label of the emulated GPU kernel's CPU registration (csrc/tf_op.cpp)
requires_emulated_gpu_kernel = pytest.mark.skipif(
    not INFO["cuda_emulated"],
    reason="the op's GPU kernel runs without a GPU only in a build with -DNNJPEG_CUDA_EMULATION=ON")


@pytest.fixture
def fallback(monkeypatch):
    """backend="native" through tf.numpy_function, as where the op library does not load."""
    monkeypatch.setattr(tf_ops, "_op", False)
    monkeypatch.setattr(tf_ops, "_op_error", "NotFoundError: (test)")


def test_the_installed_op_loads():
    # The wheel always builds the op; a package where it does not load is a broken build.
    assert tf_ops.native_op_status() == "op"


@pytest.mark.parametrize("mode", [dict(table=nn_table(5)),
                                  dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:0"),
                                  dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:2")])
@pytest.mark.parametrize("size", ["17x33", "1x1", "61x75"])
def test_op_equals_compress(mode, size, crops):
    img = crops[size]
    fn = tf_compress(**mode)
    for x in (img, img.astype(np.float32) / 255, np.stack([img, img[::-1]])):
        got = fn(tf.constant(x))
        assert got.dtype == tf.as_dtype(x.dtype) and got.shape == x.shape
        np.testing.assert_array_equal(got.numpy(), nnjpeg.compress(x, **mode))
    grey = img[..., :1]
    np.testing.assert_array_equal(tf_compress(LUMA)(grey).numpy(), nnjpeg.compress(grey, LUMA))


def test_op_in_a_graph_with_unknown_shapes(crops):
    run = tf.function(tf_compress(nn_table(4)), input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    assert run.get_concrete_function().structured_outputs.shape.as_list() == [None, None, None, 3]
    for x in (crops["7x9"][None], np.stack([crops["17x33"]] * 3), np.zeros((0, 5, 5, 3), np.uint8)):
        np.testing.assert_array_equal(run(x).numpy(), nnjpeg.compress(x, nn_table(4)))


def test_environment_variable_selects_numpy_function(monkeypatch, crops):
    monkeypatch.setattr(tf_ops, "_op", None)  # as before the first call
    monkeypatch.setenv("NNJPEG_TF_OP", "0")
    assert tf_ops.native_op_status() == "numpy_function: disabled by NNJPEG_TF_OP=0"
    x = crops["17x33"]
    np.testing.assert_array_equal(tf_compress(nn_table(3))(x).numpy(), nnjpeg.compress(x, nn_table(3)))


def test_op_and_fallback_agree(crops, fallback):
    x = np.stack([crops["61x75"], crops["61x75"][:, ::-1]])
    fn = tf_compress(nn_table(6), threads=1)
    assert tf_ops.native_op_status() == "numpy_function: NotFoundError: (test)"
    np.testing.assert_array_equal(fn(tf.constant(x)).numpy(), nnjpeg.compress(x, nn_table(6)))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]. Received: min=-1.0"):
        Compression(nn_table(5))(-tf.ones((1, 8, 8, 3)))


def test_bad_values_raise_value_error_eagerly_and_fail_in_a_graph():
    fn = tf_compress(nn_table(5))
    with pytest.raises(ValueError, match=r"^Expected float32 images with values in \[0, 1\]. Received: min=-1.0, max=1.5$"):
        fn(tf.constant(np.array([[[-1.0, 0.5, 1.5]]], np.float32)))
    with pytest.raises(ValueError, match=r"^Expected float32 images with finite values in \[0, 1\]. Received: 2 NaN/Inf values$"):
        fn(tf.constant(np.array([[[np.nan, 0.5, np.inf]]], np.float32)))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]. Received: min=-1.0"):
        Compression(nn_table(5))(-tf.ones((1, 8, 8, 3)))
    run = tf.function(fn)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]. Received: min=0.0, max=2.0"):
        run(tf.constant(np.array([[[0.0, 2.0, 0.5]]], np.float32)))


def test_shapes_known_only_at_run_time_are_checked():
    # Static shapes are checked when the graph is built; these pass that (unknown rank or sizes)
    # and reach the op.
    op = tf_ops.load_op()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"C in \{1, 3\}. Received: shape=\(8, 8, 2\)"):
        op(tf.zeros((8, 8, 2), tf.uint8), tables=[16.0] * 64, mode=0, threads=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"shape \(H, W, C\) or \(N, H, W, C\).*Received: shape=\(3,\)"):
        op(tf.zeros((3,), tf.uint8), tables=[16.0] * 192, mode=0, threads=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"H >= 1 and W >= 1. Received: shape=\(2, 0, 4, 3\)"):
        op(tf.zeros((2, 0, 4, 3), tf.uint8), tables=[16.0] * 192, mode=0, threads=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected 192 table entries for 3-channel images. Received: 64"):
        op(tf.zeros((8, 8, 3), tf.uint8), tables=[16.0] * 64, mode=0, threads=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"tables of 64 or 192 floats.*Received: 65"):
        op(tf.zeros((8, 8, 1), tf.uint8), tables=[16.0] * 65, mode=0, threads=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mode in 0...3.*Received: 7"):
        op(tf.zeros((8, 8, 1), tf.uint8), tables=[16.0] * 64, mode=7, threads=1)
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError), match=r"int32|uint8"):
        op(tf.zeros((8, 8, 1), tf.int32), tables=[16.0] * 64, mode=0, threads=1)


def test_parallel_map_and_model_fit(crops):
    # Many op calls at once from tf.data's threads, then the op inside a compiled Keras model.
    batches = np.stack([crops["17x33"], crops["17x33"][::-1], crops["17x33"][:, ::-1]] * 4).reshape(4, 3, 17, 33, 3)
    ds = tf.data.Dataset.from_tensor_slices(batches).map(Compression(nn_table(5), threads=1),
                                                         num_parallel_calls=4, deterministic=True)
    for got, want in zip(ds, batches, strict=True):
        np.testing.assert_array_equal(got.numpy(), nnjpeg.compress(want, nn_table(5)))

    import keras

    x = batches.reshape(-1, 17, 33, 3).astype(np.float32) / 255
    model = keras.Sequential([keras.Input((17, 33, 3)), Compression(nn_table(5)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(x, np.arange(len(x)) % 2, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    front = keras.Model(model.inputs, model.layers[0].output)
    np.testing.assert_array_equal(front.predict(x, verbose=0), nnjpeg.compress(x, nn_table(5)))


def test_kernels_registered_for_the_build():
    # The CPU kernel always; a GPU kernel for both dtypes in builds with CUDA (TensorFlow then places
    # the op on a GPU with the model); the emulation's GPU kernel also on the CPU under a label.
    from tensorflow.python.framework import kernels

    tf_ops.load_op()
    registered = {(k.device_type, k.label, tf.as_dtype(k.constraint[0].allowed_values.list.type[0]).name)
                  for k in kernels.get_registered_kernels_for_op("NnjpegRoundTrip").kernel}
    devices = [("CPU", "")]
    if INFO["cuda_compiled"]:
        devices.append(("GPU", ""))
    if INFO["cuda_emulated"]:
        devices.append(("CPU", EMULATED_GPU))
    assert registered == {(device, label, dtype) for device, label in devices for dtype in ("uint8", "float32")}


def _with_kernel(label):
    """The op in a graph whose NnjpegRoundTrip nodes take the kernel registered under `label`."""
    op = tf_ops.load_op()

    @tf.function
    def run(images, tables, mode):
        with tf.compat.v1.get_default_graph()._kernel_label_map({"NnjpegRoundTrip": label}):
            return op(images, tables=tables, mode=mode, threads=1)

    return run


@requires_emulated_gpu_kernel
@pytest.mark.parametrize("mode", [dict(table=LUMA, channels=1), dict(table=nn_table(5)),
                                  dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:4:4"),
                                  dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:2"),
                                  dict(table=np.stack([LUMA, CHROMA]), color="ycbcr", subsampling="4:2:0")])
def test_gpu_kernel_bit_identical_to_the_scalar_cpu_kernel(crops, mode):
    # The GPU kernel inside TensorFlow: its input, output and scratch come from TensorFlow's
    # allocator, the tables from the attributes. It repeats the scalar CPU kernel operation for
    # operation, so not one sample may differ.
    channels, color = mode.get("channels", 3), mode.get("color", "rgb")
    tables = codec.check_table(mode["table"], channels, color)
    mode_id = codec.check_mode(color, mode.get("subsampling", "4:4:4"))
    run = _with_kernel(EMULATED_GPU)
    pair = np.stack([crops["61x75"], crops["61x75"][::-1]])[..., :channels]
    for x in (crops["17x33"][..., :channels], crops["1x1"][..., :channels], pair, pair.astype(np.float32) / 255):
        got = run(tf.constant(x), [float(v) for v in tables.ravel()], mode_id)
        assert got.dtype == tf.as_dtype(x.dtype) and got.shape == x.shape
        np.testing.assert_array_equal(got.numpy(), codec.run(x, tables, mode_id, 1, "cpu", kernel="scalar"))


@requires_emulated_gpu_kernel
def test_gpu_kernel_errors_are_the_cpu_kernels():
    run, tables = _with_kernel(EMULATED_GPU), [16.0] * 192
    assert run(tf.zeros((0, 5, 5, 3), tf.uint8), tables, 3).shape == (0, 5, 5, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]. Received: min=-1.0, max=2.0"):
        run(tf.constant(np.array([[[[0.5, -1.0, 0.5]], [[2.0, 0.0, 1.0]]]], np.float32)), tables, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"finite values in \[0, 1\]. Received: 1 NaN/Inf values"):
        run(tf.constant(np.array([[[0.5, np.nan, 0.5]]], np.float32)), tables, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"C in \{1, 3\}. Received: shape=\(8, 8, 2\)"):
        run(tf.zeros((8, 8, 2), tf.uint8), tables, 0)
    # The label selects the kernel (an unknown one finds none), so the calls above ran the GPU kernel.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"No OpKernel.*_kernel=\"nnjpeg_no_such_kernel\""):
        _with_kernel("nnjpeg_no_such_kernel")(tf.zeros((8, 8, 3), tf.uint8), tables, 0)
