"""Keras 3 layers `nnjpeg.keras.Compression` and `nnjpeg.keras.JPEG`, on both backends."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import nnjpeg  # noqa: E402
from nnjpeg.keras import JPEG, Compression  # noqa: E402
from nnjpeg.tables import nn_table, standard_tables  # noqa: E402

pytestmark = pytest.mark.tf

BACKENDS = ("native", "tf")


def make(kind, backend, gradient="identity"):
    if kind == "compression":
        return Compression(nn_table(5), backend=backend, gradient=gradient)
    return JPEG(50, subsampling="4:2:0", backend=backend, gradient=gradient)


def reference(kind, x):
    return nnjpeg.compress(x, nn_table(5)) if kind == "compression" else nnjpeg.jpeg(x, 50)


@pytest.fixture(scope="module")
def images(crops):
    batch = np.stack([crops["17x33"], crops["17x33"][::-1], crops["17x33"][:, ::-1]])
    return batch.astype(np.float32) / 255


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["compression", "jpeg"])
def test_matches_native_codec(kind, backend, images):
    out = make(kind, backend)(images)
    assert out.shape == images.shape and out.dtype == "float32"
    # The straight-through gradient leaves the forward value alone: exactly the codec's, on the 1/255 grid.
    np.testing.assert_array_equal(out.numpy(), reference(kind, images))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ycbcr_tables_and_grey_images(backend, images):
    luma, chroma = standard_tables(40)
    layer = Compression(np.stack([luma, chroma]), color="ycbcr", subsampling="4:2:2", backend=backend)
    np.testing.assert_array_equal(layer(images).numpy(),
                                  nnjpeg.compress(images, np.stack([luma, chroma]), color="ycbcr", subsampling="4:2:2"))
    grey = images[..., :1]
    np.testing.assert_array_equal(JPEG(40, backend=backend)(grey).numpy(), nnjpeg.jpeg(grey, 40))


@pytest.mark.parametrize("gradient", ["identity", "none"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["compression", "jpeg"])
def test_gradient(kind, backend, gradient, images):
    layer = make(kind, backend, gradient)
    x = tf.constant(images)
    w = tf.random.stateless_normal(x.shape, seed=(3, 4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(w * layer(x))
    grad = tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()
    if gradient == "identity":
        np.testing.assert_array_equal(grad, w.numpy())  # BPDA: exactly the identity
    else:
        assert not grad.any()


def tiny_model(codec):
    # A trainable layer in front of the codec: with gradient="identity" it learns through the codec.
    inputs = keras.Input((17, 33, 3))
    pre = keras.layers.Conv2D(3, 1, activation="sigmoid", name="pre")(inputs)
    x = codec(pre)
    x = keras.layers.Conv2D(2, 3, name="post")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(("kind", "backend", "gradient"),
                         [("compression", "native", "identity"), ("compression", "native", "none"),
                          ("jpeg", "tf", "identity")])
def test_fit_and_predict(kind, backend, gradient, images):
    keras.utils.set_random_seed(0)
    model = tiny_model(make(kind, backend, gradient))
    assert model.output_shape == (None, 2)
    assert model.layers[2].output.shape == (None, 17, 33, 3)  # static shape through the codec
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse", jit_compile=False)
    pre_before = model.get_layer("pre").get_weights()[0].copy()
    post_before = model.get_layer("post").get_weights()[0].copy()
    targets = np.ones((len(images), 2), np.float32)
    if gradient == "identity":
        history = model.fit(images, targets, batch_size=len(images), epochs=1, verbose=0)
    else:  # Keras says so when the layer in front of the codec gets no gradient
        with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['pre/kernel', 'pre/bias'\]"):
            history = model.fit(images, targets, batch_size=len(images), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(model.get_layer("post").get_weights()[0], post_before)
    pre_moved = not np.array_equal(model.get_layer("pre").get_weights()[0], pre_before)
    assert pre_moved == (gradient == "identity")
    preds = model.predict(images, verbose=0)
    assert preds.shape == (len(images), 2) and np.isfinite(preds).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["compression", "jpeg"])
def test_keras_save_load_round_trip(kind, backend, images, tmp_path):
    inputs = keras.Input((17, 33, 3))
    model = keras.Model(inputs, make(kind, backend)(inputs))
    path = tmp_path / f"{kind}-{backend}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[-1]
    assert type(layer) is type(model.layers[-1]) and layer.get_config() == model.layers[-1].get_config()
    restored = loaded.predict(images, verbose=0)
    np.testing.assert_array_equal(restored, model.predict(images, verbose=0))
    np.testing.assert_array_equal(restored, reference(kind, images))


def test_config_round_trip():
    layer = Compression(nn_table(5), color="rgb", backend="tf", gradient="none", name="nnj")
    config = layer.get_config()
    assert isinstance(config["table"], list) and np.array_equal(config["table"], nn_table(5))
    assert {k: config[k] for k in ("color", "subsampling", "backend", "gradient")} == {
        "color": "rgb", "subsampling": "4:4:4", "backend": "tf", "gradient": "none"}
    assert Compression.from_config(config).get_config() == config
    jpeg = JPEG(33, subsampling="4:4:4", backend="tf")
    assert JPEG.from_config(jpeg.get_config()).get_config() == jpeg.get_config()
    assert jpeg.get_config()["quality"] == 33 and "table" not in jpeg.get_config()
    assert keras.saving.get_registered_name(Compression) == "nnjpeg>Compression"
    assert not Compression(nn_table(5)).supports_jit and JPEG(backend="tf").supports_jit
    threaded = Compression(nn_table(5), threads=1)
    assert threaded.get_config()["threads"] == 1 and Compression.from_config(threaded.get_config()).threads == 1


def test_parameter_errors():
    with pytest.raises(ValueError, match=r"backend to be one of 'native', 'tf'. Received: 'cuda'"):
        Compression(nn_table(5), backend="cuda")
    with pytest.raises(ValueError, match=r"gradient to be one of 'identity', 'none'. Received: 'bpda'"):
        JPEG(gradient="bpda")
    with pytest.raises(ValueError, match=r"color to be one of 'rgb', 'ycbcr'. Received: 'lab'"):
        Compression(nn_table(5), color="lab")
    with pytest.raises(ValueError, match=r"subsampling='4:4:4' with color='rgb'"):
        Compression(nn_table(5), subsampling="4:2:0")
    with pytest.raises(ValueError, match=r"subsampling to be one of .* Received: '4:1:1'"):
        JPEG(subsampling="4:1:1")
    with pytest.raises(ValueError, match=r"quality to be an integer in 1...100. Received: quality=101"):
        JPEG(101)
    with pytest.raises(TypeError, match=r"quality to be an integer"):
        JPEG("high")
    with pytest.raises(ValueError, match=r"quantization table of shape .* Received: shape=\(4, 8, 8\)"):
        Compression(np.ones((4, 8, 8)))
    with pytest.raises(ValueError, match=r"finite and > 0"):
        Compression(-np.ones((8, 8)))
    with pytest.raises(TypeError, match=r"numeric quantization table"):
        Compression("standard")
    with pytest.raises(ValueError, match=r"threads to be None or an integer in 1\.\.\.2147483647. Received: threads=0"):
        Compression(nn_table(5), threads=0)
    with pytest.raises(TypeError, match=r"threads to be None or an integer in 1\.\.\.2147483647. Received: threads=2.0"):
        JPEG(threads=2.0)
    with pytest.raises(ValueError, match=r"threads=None with backend='tf'.*Received: threads=1"):
        JPEG(backend="tf", threads=1)


def test_input_errors(images):
    with pytest.raises(ValueError, match=r"shape \(N, H, W, C\), C in \{1, 3\}.*Received: input_shape=\(17, 33, 3\)"):
        Compression(nn_table(5))(images[0])
    with pytest.raises(ValueError, match=r"Received: input_shape=\(3, 17, 33, 2\)"):
        JPEG(backend="tf")(images[..., :2])
    with pytest.raises(ValueError, match=r"for 1-channel images .* Received: shape=\(3, 8, 8\)"):
        Compression(np.ones((3, 8, 8)))(images[..., :1])
    with pytest.raises(TypeError, match=r"float32 inputs in \[0, 1\] \(or uint8 .*\). Received: dtype=int32"):
        Compression(nn_table(5), backend="tf", dtype="int32", autocast=False)(tf.zeros((1, 8, 8, 3), tf.int32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]. Received: min=-1.0"):
        JPEG(backend="tf")(-tf.ones((1, 8, 8, 3)))
    # Inputs reach the codec as they come: float64 is refused, not cast to float32.
    with pytest.raises(TypeError, match=r"float32 inputs in \[0, 1\] \(or uint8 .*\). Received: dtype=float64"):
        Compression(nn_table(5))(tf.zeros((1, 8, 8, 3), tf.float64))


@pytest.fixture
def mixed_float16():
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_precision_policy(backend, images, mixed_float16):
    # Keras casts a float16-computing layer's float32 inputs to float16; the codec layers keep them.
    layer = make("compression", backend)
    np.testing.assert_array_equal(layer(images).numpy(), reference("compression", images))
    inputs = keras.Input((17, 33, 3))
    x = keras.layers.Conv2D(2, 3, name="post")(make("jpeg", backend)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse", jit_compile=False)
    history = model.fit(images, np.ones((len(images), 2), np.float32), batch_size=len(images), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.layers[1].output.dtype == "float32" and model.get_layer("post").compute_dtype == "float16"
    np.testing.assert_array_equal(keras.Model(inputs, model.layers[1].output).predict(images, verbose=0),
                                  reference("jpeg", images))
    with pytest.raises(TypeError, match=r"Received: dtype=float16"):  # after a float16 layer: said, not cast
        layer(tf.cast(images, tf.float16))


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint8_inputs_in_a_model(backend):
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    model = keras.Model(inputs, JPEG(60, backend=backend)(inputs))
    assert model.output.dtype == "uint8"
    batch = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    out = model.predict(batch, verbose=0)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, nnjpeg.jpeg(batch, 60))


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint8_preprocessing_in_tf_data(backend):
    from skimage import data

    img = data.astronaut()[::8, ::8]
    batch = np.stack([img, img[::-1]])
    layer = Compression(nn_table(5), backend=backend)
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(2).map(layer)
    assert ds.element_spec.shape.as_list() == [None, 64, 64, 3] and ds.element_spec.dtype == tf.uint8
    out = next(iter(ds)).numpy()
    np.testing.assert_array_equal(out, nnjpeg.compress(batch, nn_table(5)))


def test_threads_per_call_in_a_parallel_tf_data_map(images):
    # tf.data runs map calls in parallel; one worker per call gives the same images as all cores.
    batches = np.stack([images, images[:, ::-1], images[:, :, ::-1], images[::-1]])
    ds = tf.data.Dataset.from_tensor_slices(batches).map(Compression(nn_table(5), threads=1),
                                                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for got, want in zip(ds, batches, strict=True):
        np.testing.assert_array_equal(got.numpy(), nnjpeg.compress(want, nn_table(5)))
