"""Dataset loaders returning uint8 arrays, like `keras.datasets`.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/*-ubyte.gz`), else an explicit path, else the Keras cache, else
(on a machine that can reach it) Keras' own download. CIFAR-10 reads the standard python batches
from a path or the Keras cache.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "load_cifar10", "load_fashion_mnist", "read_idx"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (LeCun's MNIST format), gzip-compressed or not.

    Args:
        path: file path; a `.gz` suffix means gzip.

    Returns:
        The array with its stored dtype and shape.

    Raises:
        ValueError: the header is not a valid IDX header or the payload has the wrong size.
    """
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"Expected an IDX file (magic 0x0000TTNN). Received: {path} starting with {raw[:4].hex()}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    payload = raw[4 + 4 * ndim :]
    if len(payload) != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"Expected {int(np.prod(dims)) * dtype.itemsize} bytes of data for shape {dims} in {path}. "
                         f"Received: {len(payload)}")
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _fashion_mnist_dirs(path):
    if path is not None:
        yield Path(path)
        return
    if os.environ.get("NNJPEG_FASHION_MNIST"):
        yield Path(os.environ["NNJPEG_FASHION_MNIST"])
    yield DEBIAN_FASHION_MNIST
    yield Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "fashion-mnist"


def load_fashion_mnist(path=None, *, download: bool = True):
    """Fashion-MNIST (Xiao et al., 2017): 60 000 training and 10 000 test images, 28x28 grey, 10 classes.

    Looks in `path` if given; else `$NNJPEG_FASHION_MNIST`, Debian's package directory, the Keras
    cache; else downloads through `keras.datasets.fashion_mnist` when `download` is true.

    Args:
        path: directory holding the four `*-ubyte.gz` files.
        download: allow Keras' download as a last resort.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 28, 28) and uint8 labels (N,).

    Raises:
        FileNotFoundError: no copy found (and downloading not allowed), or `path` lacks a file.
    """
    tried = []
    for d in _fashion_mnist_dirs(path):
        files = [d / f for f in FASHION_MNIST_FILES]
        if all(f.is_file() for f in files):
            xtr, ytr, xte, yte = (read_idx(f) for f in files)
            return (xtr, ytr), (xte, yte)
        tried.append(str(d))
    if path is not None or not download:
        raise FileNotFoundError(f"Expected the Fashion-MNIST files {', '.join(FASHION_MNIST_FILES)} in "
                                f"{' or '.join(tried)}. Install Debian's dataset-fashion-mnist or pass path=.")
    import keras

    return keras.datasets.fashion_mnist.load_data()


def load_cifar10(path=None):
    """CIFAR-10 (Krizhevsky, 2009) from the standard python batches.

    Args:
        path: the `cifar-10-batches-py` directory; default: the Keras cache.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 32, 32, 3), uint8 labels (N,).

    Raises:
        FileNotFoundError: a batch file is missing.
    """
    d = Path(path) if path is not None else Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"Expected CIFAR-10 python batches {', '.join(names)} in {d}. Missing: {', '.join(missing)}")

    def batch(name):
        with open(d / name, "rb") as f:
            b = pickle.load(f, encoding="bytes")
        x = np.asarray(b[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x), np.asarray(b[b"labels"], np.uint8)

    parts = [batch(n) for n in names[:5]]
    test = batch(names[5])
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])), test


def checksum(*arrays: np.ndarray) -> str:
    """SHA-256 over the arrays' bytes (for model cards)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
