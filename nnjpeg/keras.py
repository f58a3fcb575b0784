"""Keras 3 layers that put the codec in front of a model, as a defense that can be attacked adaptively.

`Compression` runs the NN-favored JPEG round trip with any table (NN-JPEG paper, Sec. 3.2) and
`JPEG` standard baseline JPEG. Both are thin wrappers of `nnjpeg.compress` (backend="native") or
`nnjpeg.tf_ops.compress_tf` (backend="tf") with a documented gradient estimate.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .codec import check_choice, check_mode, check_table, jpeg_table
from .tables import check_quality
from .tf_ops import BACKENDS, check_backend_threads, check_values, compress_tensor, native_op, straight_through

__all__ = ["JPEG", "Compression", "with_backend"]

_GRADIENTS = ("identity", "none")


class _CodecLayer(keras.layers.Layer):
    """What `Compression` and `JPEG` share: backend, gradient estimate, the call itself."""

    def __init__(self, *, color, subsampling, backend, gradient, threads=None, **kwargs):
        # The codec takes float32 (or uint8) as it comes: under a mixed-precision policy Keras would
        # otherwise cast float32 inputs to float16 before `call`.
        super().__init__(**{"autocast": False, **kwargs})
        self.color = color
        self.subsampling = subsampling
        self.backend = backend
        self.gradient = gradient
        self.threads = threads
        self._check_params()
        # The native codec is a custom op (CPU, or GPU in a CUDA build) or a tf.numpy_function: XLA can
        # compile neither.
        self.supports_jit = backend == "tf"

    def _check_params(self):
        check_choice("backend", self.backend, BACKENDS)
        check_choice("gradient", self.gradient, _GRADIENTS)
        self._mode = check_mode(self.color, self.subsampling)
        check_backend_threads(self.backend, self.threads)

    def _table_for(self, channels: int):
        raise NotImplementedError

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4 or shape[-1] not in (1, 3):
            raise ValueError(f"Expected inputs of shape (N, H, W, C), C in {{1, 3}}, float32 in [0, 1]. "
                             f"Received: input_shape={shape}")
        self._tables = check_table(self._table_for(shape[-1]), shape[-1], self.color)

    def call(self, inputs):
        if inputs.dtype not in (tf.float32, tf.uint8):
            raise TypeError(f"Expected float32 inputs in [0, 1] (or uint8 in a preprocessing pipeline). "
                            f"Received: dtype={inputs.dtype.name}")
        if inputs.dtype == tf.uint8:
            return self._round_trip(inputs)  # integers carry no gradient: preprocessing only
        if self.gradient == "none":
            return ops.stop_gradient(self._round_trip(inputs))
        return straight_through(self._round_trip, inputs)

    def _round_trip(self, inputs):
        if self.backend == "tf":
            checked = inputs if inputs.dtype == tf.uint8 else check_values(inputs)
            return compress_tensor(checked, self._tables, self.color, self._mode)
        # nnjpeg.compress checks the value range itself (one NumPy pass), with the same message.
        return native_op(inputs, self._tables, self._mode, self.threads)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs):
        # The inputs' dtype, as `call` returns it (Keras would say the policy's compute dtype).
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self):
        base = super().get_config()
        return {**base, "subsampling": self.subsampling, "backend": self.backend, "gradient": self.gradient,
                "threads": self.threads}


@keras.saving.register_keras_serializable(package="nnjpeg")
class Compression(_CodecLayer):
    """JPEG-like 8x8 block DCT round trip with an arbitrary quantization table, as a layer.

    The NN-favored JPEG defense of the NN-JPEG paper (Sec. 3.2) with `color="rgb"` and a table from
    `nnjpeg.nn_table`; see `nnjpeg.compress` for the pipeline. Outputs lie on the 1/255 grid up to
    float32 rounding of the straight-through sum.

    Gradient: `gradient="identity"` (the default) passes the incoming gradient through unchanged,
    the BPDA estimate (Athalye et al., 2018, Sec. 4.1) of a round trip that is close to the
    identity, so a defended model can be attacked adaptively rather than only through gradient
    masking. `gradient="none"` stops the gradient (the layer is a constant to the optimizer), which
    is what an attacker unaware of the defense would see.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], C in {1, 3}; or uint8 in a preprocessing pipeline
            (`ds.map(layer)`), where no gradient is needed and no float conversion is paid. Under a
            mixed-precision policy the layer does not autocast: float32 inputs stay float32, and
            float16 ones are refused (put the layer where its inputs are float32, e.g. first).
        outputs: same shape (static shape kept) and dtype.

    Args:
        table: (8, 8), (C, 8, 8), or with `color="ycbcr"` and C = 3 also (2, 8, 8) as (luma, chroma);
            finite values > 0. Stored in the config as nested lists.
        color: "rgb" (every channel on its own, no colour transform) or "ycbcr".
        subsampling: "4:4:4", "4:2:2" or "4:2:0"; anything but "4:4:4" needs `color="ycbcr"`.
        backend: "native" (the C++ codec as a TensorFlow op: CPU, no XLA, so compile models
            with `jit_compile=False` or "auto") or "tf" (`compress_tf`: pure TensorFlow, GPU, XLA).
            Both give the same outputs.
        gradient: "identity" or "none", see above.
        threads: native backend: worker threads per call; None uses every core (best for a model's
            own batches). In `ds.map(layer, num_parallel_calls=tf.data.AUTOTUNE)` tf.data already runs
            calls in parallel: `threads=1` avoids oversubscribing the cores.
        **kwargs: `keras.layers.Layer` arguments (name, ...).

    Raises:
        TypeError: non-numeric table; inputs that are neither float32 nor uint8; non-integer threads.
        ValueError: bad table shape or values, unknown color/subsampling/backend/gradient, inputs
            not of shape (N, H, W, C) with C in {1, 3}, threads < 1 or threads with backend="tf".
    """

    def __init__(self, table, color="rgb", subsampling="4:4:4", backend="native", gradient="identity", threads=None,
                 **kwargs):
        self.table = np.asarray(table, dtype=np.float64).tolist() if _is_numeric(table) else table
        super().__init__(color=color, subsampling=subsampling, backend=backend, gradient=gradient, threads=threads,
                         **kwargs)

    def _check_params(self):
        super()._check_params()
        # Which shapes are valid depends on the channels, known in build; one of them must fit.
        errors = []
        for channels in (3, 1):
            try:
                check_table(self.table, channels, self.color)
                return
            except ValueError as e:
                errors.append(e)
        raise errors[0]

    def _table_for(self, channels: int):
        return self.table

    def get_config(self):
        return {**super().get_config(), "table": self.table, "color": self.color}


@keras.saving.register_keras_serializable(package="nnjpeg")
class JPEG(_CodecLayer):
    """Standard baseline JPEG round trip as a layer (`nnjpeg.jpeg`): YCbCr, Annex K tables at an IJG quality.

    Gradient: as `Compression`; "identity" (the default) is the BPDA straight-through estimate,
    "none" stops the gradient.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1], C in {1, 3}; grey images use the luma table only.
            uint8 and mixed precision as for `Compression`.
        outputs: same shape (static shape kept) and dtype.

    Args:
        quality: IJG quality, integer in 1...100.
        subsampling: "4:4:4", "4:2:2" or "4:2:0".
        backend: "native" or "tf", as for `Compression`.
        gradient: "identity" or "none".
        threads: native backend: worker threads per call, as for `Compression`.
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        TypeError: non-integer quality or threads; inputs that are not float32.
        ValueError: quality outside 1...100, unknown subsampling/backend/gradient, bad input shape,
            threads < 1 or threads with backend="tf".
    """

    def __init__(self, quality=75, subsampling="4:2:0", backend="native", gradient="identity", threads=None, **kwargs):
        self.quality = quality
        super().__init__(color="ycbcr", subsampling=subsampling, backend=backend, gradient=gradient, threads=threads,
                         **kwargs)

    def _check_params(self):
        check_quality(self.quality)
        super()._check_params()

    def _table_for(self, channels: int):
        return jpeg_table(self.quality, channels)

    def get_config(self):
        return {**super().get_config(), "quality": self.quality}


def _is_numeric(table) -> bool:
    try:
        return np.asarray(table).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def with_backend(model: keras.Model, backend: str) -> keras.Model:
    """A copy of `model` (same weights) whose codec layers, `Compression` and `JPEG` at any depth,
    run on `backend`.

    For a SavedModel: the native layers export as the `NnjpegRoundTrip` op, which loads wherever
    nnjpeg is installed and imported (`import nnjpeg` registers it with TensorFlow); TF Serving and
    processes without nnjpeg cannot run it. `with_backend(model, "tf")` exports TensorFlow ops only,
    with the same outputs (the TF backend reproduces the native codec exactly), more slowly on CPU.

        portable = nnjpeg.keras.with_backend(defended, "tf")
        portable.export("serving/defended")        # tf.saved_model.load needs no nnjpeg

    Args:
        model: a Keras model.
        backend: "native" or "tf".

    Returns:
        A new `keras.Model`; `model` is left as it is.

    Raises:
        ValueError: unknown backend.
    """
    check_choice("backend", backend, BACKENDS)

    def switch(node):
        if isinstance(node, dict):
            node = {k: switch(v) for k, v in node.items()}
            if node.get("registered_name") in ("nnjpeg>Compression", "nnjpeg>JPEG") and "config" in node:
                node["config"] = {**node["config"], "backend": backend,
                                  "threads": None if backend == "tf" else node["config"].get("threads")}
            return node
        if isinstance(node, list):
            return [switch(v) for v in node]
        return node

    copy = keras.saving.deserialize_keras_object(switch(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy
