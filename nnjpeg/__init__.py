"""nnjpeg: compression and denoising defenses for image classifiers.

The native codec (`compress`, `jpeg`) runs 8x8 block DCT round trips with arbitrary quantization
tables; `nnjpeg.keras` wraps it as a Keras layer and `tf_compress` as a `tf.data` map function.
"""

import importlib.abc
import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version

from .codec import build_info, compress, jpeg
from .tables import nn_table, standard_tables

try:
    __version__ = version("nnjpeg")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "build_info", "compress", "jpeg", "nn_table", "standard_tables", "tf_compress"]


def __getattr__(name):
    # TensorFlow is optional and slow to import: load it on first use only.
    if name == "tf_compress":
        from .tf_ops import tf_compress

        return tf_compress
    raise AttributeError(f"module 'nnjpeg' has no attribute {name!r}")


def _register_tf_op() -> None:
    """Registers the codec's TensorFlow op (`NnjpegRoundTrip`, nnjpeg/_tf_op.so) with TensorFlow, so
    that a SavedModel holding it loads (`tf.saved_model.load`). Where it cannot load, the layers
    fall back to `tf.numpy_function` and say why (`nnjpeg.tf_ops.native_op_status`)."""
    try:
        from .tf_ops import load_op

        load_op()
    except Exception:  # noqa: BLE001 - never break `import tensorflow`; native_op_status() says why later
        return


class _AfterTensorFlowImport(importlib.abc.MetaPathFinder):
    """Registers the op as soon as `import tensorflow` finishes, so that `import nnjpeg` before
    TensorFlow is enough for a SavedModel with the op to load; TensorFlow is not imported for it."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and the finders below find TensorFlow itself
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _register_tf_op()

            spec.loader.exec_module = exec_module
        return spec


if "tensorflow" in sys.modules:
    _register_tf_op()
else:
    sys.meta_path.insert(0, _AfterTensorFlowImport())
