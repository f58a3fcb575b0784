"""nnjpeg: compression and denoising defenses for image classifiers.

The native codec (`compress`, `jpeg`) runs 8x8 block DCT round trips with arbitrary quantization
tables; `nnjpeg.keras` wraps it as a Keras layer and `tf_compress` as a `tf.data` map function.
"""

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
