"""Dataset loaders returning uint8 arrays, like `keras.datasets`, and one entry point, `load`.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/*-ubyte.gz`), else an explicit path, else the Keras cache, else
(on a machine that can reach it) Keras' own download. CIFAR-10 reads the standard python batches
from a path, `$NNJPEG_CIFAR10` or the Keras cache (both of its layouts).

`load(name, split)` returns a `Dataset`: a description (name, split, image shape, classes, size,
source) with two ways to read it, `as_tf()` (a `tf.data.Dataset` of `(uint8 image, int64 label)`)
and `arrays()` (NumPy). Besides the two in-memory sets it reads TensorFlow Datasets that are already
prepared (`"tfds:NAME"`) and ImageNet-style folders of JPEG/PNG files (`"folder:DIR"`), which are
streamed through `tf.data`, never loaded whole.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import numbers
import os
import pickle
import threading
from pathlib import Path

import numpy as np

from . import _checks

__all__ = ["CIFAR10_CLASSES", "FASHION_MNIST_CLASSES", "Dataset", "checksum", "fits", "load", "load_cifar10",
           "load_fashion_mnist", "read_idx"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"
ENV_CIFAR10 = "NNJPEG_CIFAR10"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # compared case-insensitively: ImageNet's files are .JPEG
DEFAULT_IMAGE_SIZE = (224, 224)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NAMES = "'fashion-mnist', 'cifar10', 'tfds:NAME' or 'folder:DIR' (or 'folder' with data_dir=DIR)"
_ALIASES = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar10": "cifar10",
            "cifar-10": "cifar10"}
_SPLITS = ("train", "test")
_FOLDER_SPLITS = ("train", "test", "val")
_TFDS_SPLITS = {"train": "train", "test": "test", "val": "validation"}


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


def _keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _fashion_mnist_dirs(path):
    if path is not None:
        yield Path(path)
        return
    if os.environ.get("NNJPEG_FASHION_MNIST"):
        yield Path(os.environ["NNJPEG_FASHION_MNIST"])
    yield DEBIAN_FASHION_MNIST
    yield _keras_datasets_dir() / "fashion-mnist"


def _find_fashion_mnist(path) -> tuple[Path | None, list[str]]:
    """The first folder holding the four Fashion-MNIST files (None if none does), and those tried."""
    tried = []
    for d in _fashion_mnist_dirs(path):
        if all((d / f).is_file() for f in FASHION_MNIST_FILES):
            return d, tried
        tried.append(str(d))
    return None, tried


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
    found, tried = _find_fashion_mnist(path)
    if found is not None:
        xtr, ytr, xte, yte = (read_idx(found / f) for f in FASHION_MNIST_FILES)
        return (xtr, ytr), (xte, yte)
    if path is not None or not download:
        raise FileNotFoundError(f"Expected the Fashion-MNIST files {', '.join(FASHION_MNIST_FILES)} in "
                                f"{' or '.join(tried)}. Install Debian's dataset-fashion-mnist or pass path=.")
    import keras

    return keras.datasets.fashion_mnist.load_data()


def _cifar10_candidates(path) -> list[Path]:
    """Folders that may hold the CIFAR-10 batches, in search order: `path` (or `$NNJPEG_CIFAR10`, else
    both Keras cache layouts), each also as the parent of a `cifar-10-batches-py` folder."""
    if path is not None:
        roots = [Path(path)]
    elif os.environ.get(ENV_CIFAR10):
        roots = [Path(os.environ[ENV_CIFAR10])]
    else:
        cache = _keras_datasets_dir()
        # Keras 3 extracts into `cifar-10-batches-py-target/`; older versions straight into the cache.
        return [cache / CIFAR10_DIR, cache / f"{CIFAR10_DIR}-target" / CIFAR10_DIR]
    return [d for root in roots for d in (root, root / CIFAR10_DIR)]


def _find_cifar10(path, names) -> Path:
    """The first candidate folder holding every file in `names`.

    Raises:
        FileNotFoundError: none does; the message names every folder tried and what it lacked.
    """
    tried = []
    for d in _cifar10_candidates(path):
        if not d.is_dir():
            tried.append(f"{d} (Missing: the folder)")
            continue
        missing = [n for n in names if not (d / n).is_file()]
        if not missing:
            return d
        tried.append(f"{d} (Missing: {', '.join(missing)})")
    raise FileNotFoundError(f"Expected the CIFAR-10 python batches {', '.join(names)} in one folder. Received: "
                            f"{'; '.join(tried)}. Pass the `{CIFAR10_DIR}` folder (or its parent) as path/data_dir "
                            f"or set ${ENV_CIFAR10}.")


class _ArraysOnly(pickle.Unpickler):
    """Unpickles containers, bytes, numbers and NumPy arrays, and nothing else: a data file found in
    a folder must not be able to run code (a pickle can call any importable function)."""

    _ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 pickle (arrays and lists only)")


def _unpickle(path: Path):
    """One CIFAR-10 pickle, read as the format requires (bytes keys), arrays and lists only; only
    ever called on the batch and meta files of a folder the caller chose."""
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError) as e:
        raise ValueError(f"Expected a CIFAR-10 python pickle. Received: {path}, which fails to unpickle "
                         f"({type(e).__name__}: {e})") from e


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as uint8 images (N, 32, 32, 3) and uint8 labels (N,).

    Raises:
        ValueError: the file is not a dict with b"data" uint8 (N, 3072) and b"labels" in 0..9 (N,).
    """
    b = _unpickle(path)
    if not isinstance(b, dict) or b"data" not in b or b"labels" not in b:
        keys = sorted(map(repr, b)) if isinstance(b, dict) else type(b).__name__
        raise ValueError(f"Expected a CIFAR-10 batch: a dict with keys b'data' and b'labels'. Received: {path} "
                         f"holding {keys}")
    data = b[b"data"]
    try:
        labels = np.asarray(b[b"labels"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"Expected b'labels', a list of integers, in {path}. Received: {e}") from e
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"dtype={data.dtype}, shape={data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"Expected b'data' of dtype uint8 and shape (N, 3072) in {path}. Received: {desc}")
    if (labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer)
            or (labels.size and (labels.min() < 0 or labels.max() > 9))):
        raise ValueError(f"Expected b'labels' of {len(data)} integers in 0...9 in {path}. Received: "
                         f"dtype={labels.dtype}, shape={labels.shape}"
                         + (f", range {labels.min()}...{labels.max()}" if labels.size and labels.dtype.kind in "iu"
                            else ""))
    # Rows are channel-planar (1024 R, 1024 G, 1024 B values, each row-major): CHW, made HWC here.
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, labels.astype(np.uint8)


def _read_cifar10_split(d: Path, names) -> tuple[np.ndarray, np.ndarray]:
    parts = [_read_cifar10_batch(d / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_cifar10_classes(d: Path) -> tuple[str, ...]:
    """The class names in `batches.meta`, or the standard ones where the file is absent.

    Raises:
        ValueError: the file is there but does not hold 10 names under b"label_names".
    """
    path = d / CIFAR10_META
    if not path.is_file():
        return CIFAR10_CLASSES
    meta = _unpickle(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, bytes) for n in names):
        raise ValueError(f"Expected b'label_names', a list of 10 byte strings, in {path}. Received: {names!r:.200}")
    return tuple(n.decode("utf-8", "replace") for n in names)


def load_cifar10(path=None):
    """CIFAR-10 (Krizhevsky, 2009) from the standard python batches.

    Looks in `path` if given (the `cifar-10-batches-py` folder or its parent); else in
    `$NNJPEG_CIFAR10` (likewise); else in the Keras cache, `$KERAS_HOME/datasets/cifar-10-batches-py`
    or `$KERAS_HOME/datasets/cifar-10-batches-py-target/cifar-10-batches-py` (`KERAS_HOME` defaults
    to `~/.keras`). Never downloads.

    Args:
        path: the folder of the batches, or its parent; default: the search above.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 32, 32, 3), uint8 labels (N,).

    Raises:
        FileNotFoundError: no folder holds all six batches; the message names each folder tried and
            the files it lacks.
        ValueError: a batch is not a valid CIFAR-10 pickle (the message names the file).
    """
    d = _find_cifar10(path, CIFAR10_TRAIN + CIFAR10_TEST)
    return _read_cifar10_split(d, CIFAR10_TRAIN), _read_cifar10_split(d, CIFAR10_TEST)


def checksum(*arrays: np.ndarray) -> str:
    """SHA-256 over the arrays' bytes (for model cards)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# Readers: one per kind of source, each with `as_tf()`, `arrays(limit)` and the skipped files.


class _ArrayReader:
    """Images already in memory: (N, H, W, C) uint8 and (N,) int64, both read-only."""

    skipped = None
    skipped_files = ()

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.x.flags.writeable = False
        self.y.flags.writeable = False

    def as_tf(self):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((self.x, self.y))

    def arrays(self, limit):
        return (self.x, self.y) if limit is None else (self.x[:limit], self.y[:limit])


def _resize_and_crop(image, size: tuple[int, int]):
    """The usual evaluation transform: scales the image (bilinear, antialiased) so that it covers
    `size` with its aspect ratio kept (for a square `size`: its shorter side becomes the size), crops
    the centre, then rounds, clips and casts to uint8.

    Shape:
        image: (h, w, C) uint8, any h, w >= 1; returns (H, W, C) uint8 with (H, W) = size.
    """
    import tensorflow as tf

    height, width = size
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    scale = tf.maximum(height / h, width / w)
    new_h = tf.maximum(height, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(width, tf.cast(tf.round(w * scale), tf.int32))
    x = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    x = tf.image.crop_to_bounding_box(x, (new_h - height) // 2, (new_w - width) // 2, height, width)
    x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
    x.set_shape([height, width, image.shape[-1]])
    return x


class _SkipLog:
    """The files of a folder dropped as corrupt: those refused by the signature pre-scan, and those
    that passed it but failed to decode while `as_tf()` was iterated (recorded by element index, so
    a second pass counts nothing twice)."""

    def __init__(self, files: tuple[str, ...], prescan: tuple[str, ...]):
        self.files, self.prescan = files, prescan
        self.failed: set[int] = set()
        self._lock = threading.Lock()

    def record(self, previous, index):
        """Notes the indices between two consecutive elements that came through (the ones dropped);
        runs in `tf.py_function`, so it gets and returns eager tensors."""
        lo, hi = int(previous) + 1, int(index)
        if hi > lo:
            with self._lock:
                self.failed.update(range(lo, hi))
        return index

    @property
    def paths(self) -> tuple[str, ...]:
        with self._lock:
            return self.prescan + tuple(self.files[i] for i in sorted(self.failed))


class _FolderReader:
    """JPEG/PNG files with their labels, decoded, resized and cropped inside `tf.data`."""

    def __init__(self, files: tuple[str, ...], labels: np.ndarray, image_size: tuple[int, int], corrupt: str,
                 prescan: tuple[str, ...]):
        self.files, self.labels, self.image_size, self.corrupt = files, labels, image_size, corrupt
        self.log = _SkipLog(files, prescan)

    @property
    def skipped(self) -> int:
        return len(self.log.paths)

    @property
    def skipped_files(self) -> tuple[str, ...]:
        return self.log.paths

    def pipeline(self):
        """(image, label, index) elements in file order; under corrupt="skip" undecodable files are
        dropped and logged."""
        import tensorflow as tf

        n = len(self.files)

        def decode(path, label, index):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            return _resize_and_crop(image, self.image_size), label, index

        ds = tf.data.Dataset.from_tensor_slices((list(self.files), self.labels, np.arange(n, dtype=np.int64)))
        # Deterministic order: the skip log finds dropped files by the gaps in the indices.
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.corrupt == "error":
            return ds
        ds = ds.ignore_errors()
        # A sentinel after the last file reveals the files dropped at the end, too.
        sentinel = (tf.zeros((*self.image_size, 3), tf.uint8), tf.constant(-1, tf.int64), tf.constant(n, tf.int64))
        ds = ds.concatenate(tf.data.Dataset.from_tensors(sentinel))
        ds = ds.scan(tf.constant(-1, tf.int64), lambda prev, element: (element[2], (*element, prev)))

        def log(x, y, i, prev):
            i = tf.py_function(self.log.record, [prev, i], tf.int64)
            i.set_shape([])
            return x, y, i

        return ds.map(log).filter(lambda x, y, i: i < n)

    def as_tf(self):
        return self.pipeline().map(lambda x, y, i: (x, y))

    def arrays(self, limit):
        import tensorflow as tf

        ds = self.pipeline()
        if limit is not None:
            ds = ds.take(limit)
        xs, ys = [], []
        it = iter(ds)
        while True:
            try:
                x, y, _ = next(it)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                # Only under corrupt="error" (else the pipeline drops the file); no element was
                # dropped before, so the failing file is the next one.
                raise ValueError(f"Expected a decodable JPEG or PNG image. Received: {self.files[len(xs)]} "
                                 f"({e.message.splitlines()[0] if e.message else type(e).__name__})") from e
            xs.append(x.numpy())
            ys.append(y.numpy())
        x = np.stack(xs) if xs else np.zeros((0, *self.image_size, 3), np.uint8)
        return x, np.asarray(ys, np.int64).reshape(-1)


class _TfdsReader:
    """A prepared TensorFlow Datasets split read with `as_supervised=True`."""

    skipped = None
    skipped_files = ()

    def __init__(self, builder, split: str, image_size: tuple[int, int] | None, image_shape: tuple[int, int, int]):
        self.builder, self.split, self.image_size, self.image_shape = builder, split, image_size, image_shape

    def as_tf(self):
        import tensorflow as tf

        size = self.image_size

        def convert(x, y):
            if size is not None:
                x = _resize_and_crop(x, size)
            return x, tf.cast(y, tf.int64)

        return self.builder.as_dataset(split=self.split, as_supervised=True).map(convert)

    def arrays(self, limit):
        ds = self.as_tf()
        if limit is not None:
            ds = ds.take(limit)
        xs, ys = [], []
        for x, y in ds.as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        x = np.stack(xs) if xs else np.zeros((0, *self.image_shape), np.uint8)
        return x, np.asarray(ys, np.int64).reshape(-1)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset: what it holds and where it comes from, and two ways to read it.

    Made by `load`. Equality is identity (two loads are two datasets).

    Attributes:
        name: the canonical name: "fashion-mnist", "cifar10", "tfds:NAME" or "folder:DIR" (DIR
            resolved to an absolute path).
        split: "train", "test" or (tfds and folders) "val".
        image_shape: (H, W, C) of every image that `as_tf()` and `arrays()` yield.
        num_classes: the number of classes (labels are in 0...num_classes - 1).
        class_names: the class names in label order, or None where the source has none.
        size: the number of examples, or None where unknown before reading. For a folder it counts
            the files that passed the signature pre-scan; files that then fail to decode under
            corrupt="skip" are left out of what is read (see `skipped`).
        source: where the data is read from (a folder, or a description).
    """

    name: str
    split: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None
    size: int | None
    source: str
    _reader: object = dataclasses.field(repr=False)

    @property
    def skipped(self) -> int | None:
        """The number of corrupt files dropped (folders only; None elsewhere): those refused by the
        pre-scan of their first bytes at `load`, plus those that failed to decode in the passes over
        `as_tf()` or `arrays()` so far (exact after one full pass)."""
        return self._reader.skipped

    @property
    def skipped_files(self) -> tuple[str, ...]:
        """The paths counted by `skipped`, pre-scan refusals first."""
        return self._reader.skipped_files

    def as_tf(self):
        """The examples as a `tf.data.Dataset`, unbatched, in a fixed order (imports TensorFlow).

        For a folder, files are read, decoded (`tf.io.decode_image`) and resized in parallel inside
        the pipeline; under corrupt="error" an undecodable file stops iteration with TensorFlow's
        `InvalidArgumentError` (use `arrays()` for a message naming the file).

        Returns:
            A `tf.data.Dataset` of `(image, label)`.

        Shape:
            image: (H, W, C) uint8 with (H, W, C) = `image_shape`; label: () int64.
        """
        return self._reader.as_tf()

    def arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The examples as NumPy arrays: direct for in-memory sets (read-only views, no copy); for a
        folder or TFDS it iterates `as_tf()` one example at a time, the slow path, meant for small
        folders only.

        Args:
            limit: at most this many examples (the first ones); None for all.

        Returns:
            `(x, y)`.

        Shape:
            x: (N, H, W, C) uint8; y: (N,) int64.

        Raises:
            TypeError: `limit` is not None or an integer.
            ValueError: `limit` < 0; or, for a folder under corrupt="error", a file fails to decode
                (the message names it).
        """
        if limit is not None:
            limit = _checks.integer("limit", limit, 0, or_none=True)
        return self._reader.arrays(limit)


# ------------------------------------------------------------------------------------------------
# Argument checks and the loaders behind `load`.


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    expected = "Expected image_size to be None or a tuple (height, width) of two integers >= 1"
    if (not isinstance(image_size, tuple) or len(image_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in image_size)):
        raise TypeError(f"{expected}. Received: image_size={image_size!r}")
    if min(image_size) < 1:
        raise ValueError(f"{expected}. Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _check_split(name: str, split, accepted) -> str:
    if not isinstance(split, str):
        raise TypeError(f"Expected split to be a string, one of {', '.join(map(repr, accepted))} for {name}. "
                        f"Received: split={split!r}")
    if split not in accepted:
        raise ValueError(f"Expected split to be one of {', '.join(map(repr, accepted))} for {name}. "
                         f"Received: split={split!r}")
    return split


def _native_size(name: str, image_size, native: tuple[int, int]) -> None:
    if image_size is not None and image_size != native:
        raise ValueError(f"Expected image_size=None or {native} for {name}, whose images are stored at that size "
                         f"(resize them in the model). Received: image_size={image_size}")


def _load_fashion_mnist(split, data_dir, image_size) -> Dataset:
    from nnjpeg import hub

    _native_size("fashion-mnist", image_size, (28, 28))
    found, _ = _find_fashion_mnist(data_dir)
    # Keras' download is the last resort, never under NNJPEG_OFFLINE (asked only when it would be used).
    train, test = load_fashion_mnist(data_dir, download=found is None and not hub.offline())
    x, y = train if split == "train" else test
    source = str(found) if found is not None else "keras.datasets.fashion_mnist (the Keras cache or its download)"
    return Dataset("fashion-mnist", split, (28, 28, 1), 10, FASHION_MNIST_CLASSES, len(x), source,
                   _ArrayReader(x[..., np.newaxis], y.astype(np.int64)))


def _load_cifar10(split, data_dir, image_size) -> Dataset:
    _native_size("cifar10", image_size, (32, 32))
    names = CIFAR10_TRAIN if split == "train" else CIFAR10_TEST
    d = _find_cifar10(data_dir, names)
    x, y = _read_cifar10_split(d, names)
    return Dataset("cifar10", split, (32, 32, 3), 10, _read_cifar10_classes(d), len(x), str(d),
                   _ArrayReader(x, y.astype(np.int64)))


def _import_tfds(name: str):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            f"Expected the optional package tensorflow_datasets for name={name!r}. Received: {type(e).__name__}: {e}. "
            "Install it with `pip install tensorflow-datasets`; nnjpeg never downloads through it, so the data "
            "must already be prepared in data_dir (e.g. `tfds build NAME --data_dir DIR` on a machine that can "
            "download it).") from e
    return tfds


def _load_tfds(dataset: str, split, data_dir, image_size) -> Dataset:
    name = f"tfds:{dataset}"
    tfds = _import_tfds(name)
    builder = tfds.builder(dataset, data_dir=None if data_dir is None else os.fspath(data_dir))
    info = builder.info
    tfds_split = _TFDS_SPLITS[split]
    splits = info.splits
    if splits and tfds_split not in splits:
        raise ValueError(f"Expected {name} to have a {tfds_split!r} split for split={split!r}. Received: splits "
                         f"{', '.join(sorted(map(str, splits)))}")
    image, label = info.features["image"], info.features["label"]
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(f"Expected {name} images of shape (H, W, C) with a known C. Received: shape={shape}")
    if image_size is None and None in shape[:2]:
        image_size = DEFAULT_IMAGE_SIZE  # images of varying sizes: the same transform as folders
    image_shape = (*(image_size or shape[:2]), shape[2])
    names = tuple(getattr(label, "names", None) or ()) or None
    size = splits[tfds_split].num_examples if splits else None
    where = data_dir if data_dir is not None else "the TFDS default data_dir"
    image_shape = tuple(int(v) for v in image_shape)
    return Dataset(name, split, image_shape, int(label.num_classes), names, size,
                   f"TensorFlow Datasets {dataset!r}, split {tfds_split!r}, in {where}",
                   _TfdsReader(builder, tfds_split, image_size, image_shape))


def _folder_split_dir(root: Path, split: str) -> tuple[Path, str]:
    """The folder of class sub-folders for `split`, and a description of the choice.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: `root/split` is missing while `root` holds other split folders.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"Expected an image folder DIR/<split>/<class>/*.jpg|png (or DIR/<class>/...). "
                                f"Received: {root}, which is not a folder")
    sub = root / split
    if sub.is_dir():
        return sub, str(sub)
    others = [s for s in _FOLDER_SPLITS if (root / s).is_dir()]
    if others:
        raise ValueError(f"Expected a folder {sub} for split={split!r}. Received: {root} holding the split folders "
                         f"{', '.join(others)}")
    return root, f"{root} (no {split!r} sub-folder: its class folders serve every split)"


def _read_synsets(path: Path) -> tuple[str, ...]:
    """Class names in label order, one a line.

    Raises:
        ValueError: an empty line before the last name, or a name listed twice.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"Expected one class name a line in {path}. Received: an empty line {i}")
    seen = set()
    for line in lines:
        if line in seen:
            raise ValueError(f"Expected each class name once in {path}. Received: {line!r} twice")
        seen.add(line)
    if not lines:
        raise ValueError(f"Expected one class name a line in {path}. Received: an empty file")
    return tuple(lines)


def _list_class_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted; hidden entries ('.name') ignored.

    Raises:
        ValueError: a non-image file or a sub-folder, or no image at all.
    """
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"Expected only image files ({', '.join(IMAGE_EXTENSIONS)}, any case) in the class "
                             f"folder {folder}. Received: {path}" + (", a folder" if entry.is_dir() else ""))
        files.append(path)
    if not files:
        raise ValueError(f"Expected at least one image file in the class folder {folder}. Received: none")
    return files


def _is_image_file(path: Path) -> tuple[bool, bytes]:
    """Whether the file starts with a JPEG or PNG signature, and its first bytes."""
    with open(path, "rb") as f:
        head = f.read(len(_PNG_MAGIC))
    return head.startswith(_JPEG_MAGIC) or head == _PNG_MAGIC, head


def _load_folder(root, split, image_size, corrupt) -> Dataset:
    root = Path(root).expanduser().resolve()
    split_dir, source = _folder_split_dir(root, split)
    entries = sorted(os.scandir(split_dir), key=lambda e: e.name)
    classes = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    if not classes:
        raise ValueError(f"Expected class sub-folders in {split_dir}. Received: none")
    # An image beside the class folders has no label: refuse it rather than drop it silently.
    loose = [e.path for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        raise ValueError(f"Expected images only inside class folders of {split_dir}. Received: {loose[0]}")
    synsets_path = root / "synsets.txt"
    if synsets_path.is_file():
        class_names = _read_synsets(synsets_path)
        index = {n: i for i, n in enumerate(class_names)}
        for c in classes:
            if c.name not in index:
                raise ValueError(f"Expected every class folder to be listed in {synsets_path}. Received: {c}")
        source += f", labels from {synsets_path}"
    else:
        class_names = tuple(c.name for c in classes)
        index = {n: i for i, n in enumerate(class_names)}
    files, labels, refused = [], [], []
    for c in classes:
        for path in _list_class_files(c):
            ok, head = _is_image_file(path)
            if not ok:
                if corrupt == "error":
                    raise ValueError(f"Expected JPEG or PNG image files (starting with {_JPEG_MAGIC.hex(' ')} or "
                                     f"{_PNG_MAGIC.hex(' ')}). Received: {path} starting with "
                                     f"{head.hex(' ') if head else 'nothing (an empty file)'}")
                refused.append(str(path))
                continue
            files.append(str(path))
            labels.append(index[c.name])
    size = image_size or DEFAULT_IMAGE_SIZE
    reader = _FolderReader(tuple(files), np.asarray(labels, np.int64), size, corrupt, tuple(refused))
    return Dataset(f"folder:{root}", split, (*size, 3), len(class_names), class_names, len(files), source, reader)


def load(name: str, split: str = "test", data_dir: str | os.PathLike | None = None, *,
         image_size: tuple[int, int] | None = None, corrupt: str = "skip") -> Dataset:
    """One split of a dataset, described and ready to read (`Dataset.as_tf()`, `Dataset.arrays()`).

    - "fashion-mnist" (Xiao et al., 2017): `load_fashion_mnist(data_dir)`, the folder of the four
      `*-ubyte.gz` files; Keras' download only as a last resort and never under `NNJPEG_OFFLINE=1`.
    - "cifar10" (Krizhevsky, 2009): the python batches, searched like `load_cifar10(data_dir)`.
    - "tfds:NAME": TensorFlow Datasets' NAME, already prepared in `data_dir` (never downloaded);
      needs the optional `tensorflow-datasets`. split "val" is TFDS' "validation" (ImageNet's
      labelled evaluation split). Images of varying sizes are resized and cropped to `image_size`.
    - "folder:DIR" (or "folder" with data_dir=DIR): an ImageNet-style tree
      `DIR/<split>/<class>/*.jpg|jpeg|png` (any case), or `DIR/<class>/...` for every split. Labels are
      the indices of the sorted class-folder names, or of the names in `DIR/synsets.txt` (one a line,
      in label order) where it exists. Files are listed once, sorted, and streamed: decoded and
      resized inside `tf.data`, never held in memory together. Each file's first bytes are checked
      at load for a JPEG or PNG signature.

    Args:
        name: one of the names above ("fashion_mnist" and "cifar-10" are accepted too).
        split: "train" or "test"; also "val" for tfds and folders.
        data_dir: where to read from (see each name); None for the default places.
        image_size: (H, W) of the images yielded. Folders: default (224, 224), each image scaled so
            that it covers (H, W) with its aspect kept (a square target: shorter side to the size),
            centre-cropped, then rounded, clipped and cast to uint8. TFDS: the stored size where fixed,
            else (224, 224) the same way. Fashion-MNIST and CIFAR-10: None or their stored size.
        corrupt: what to do with a folder's corrupt files: "skip" drops them and counts them in
            `Dataset.skipped`; "error" raises ValueError naming the file (at load for a bad signature,
            in `arrays()` for a file that fails to decode).

    Returns:
        The `Dataset`.

    Shape:
        Dataset.arrays(): x (N, H, W, C) uint8, y (N,) int64; C is 1 for Fashion-MNIST, 3 for CIFAR-10
        and folders, the stored channels for TFDS.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an unknown name or split, a bad image_size or corrupt, a malformed file (the
            message names it), a folder that breaks the layout above (an empty class folder, a
            non-image file, a class missing from synsets.txt, a corrupt file under corrupt="error").
        FileNotFoundError: the data is not where it was looked for (the message says where).
        ImportError: "tfds:..." without `tensorflow-datasets` installed.
    """
    if not isinstance(name, str):
        raise TypeError(f"Expected name to be a string: {_NAMES}. Received: name={name!r}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"Expected data_dir to be None, a str or an os.PathLike. Received: data_dir={data_dir!r}")
    image_size = _check_image_size(image_size)
    if not isinstance(corrupt, str) or corrupt not in ("skip", "error"):
        kind = ValueError if isinstance(corrupt, str) else TypeError
        raise kind(f"Expected corrupt to be 'skip' or 'error'. Received: corrupt={corrupt!r}")
    if name in _ALIASES:
        canonical = _ALIASES[name]
        split = _check_split(canonical, split, _SPLITS)
        return (_load_fashion_mnist if canonical == "fashion-mnist" else _load_cifar10)(split, data_dir, image_size)
    if name.startswith("tfds:") and name[5:]:
        split = _check_split(name, split, tuple(_TFDS_SPLITS))
        return _load_tfds(name[5:], split, data_dir, image_size)
    if name == "folder" or (name.startswith("folder:") and name[7:]):
        root = name[7:] or data_dir
        if root is None:
            raise ValueError("Expected the folder as name='folder:DIR' or as data_dir with name='folder'. "
                             "Received: name='folder', data_dir=None")
        if name != "folder" and data_dir is not None:
            raise ValueError(f"Expected the folder once: name='folder:DIR' or data_dir with name='folder'. "
                             f"Received: name={name!r}, data_dir={os.fspath(data_dir)!r}")
        split = _check_split(name, split, _FOLDER_SPLITS)
        return _load_folder(root, split, image_size, corrupt)
    raise ValueError(f"Expected name to be one of {_NAMES}. Received: name={name!r}")


def streamed(name: str) -> bool:
    """Whether dataset `name` is read from files as it goes and resized to the size asked for (an
    image folder, TFDS), rather than held at one stored size (Fashion-MNIST, CIFAR-10)."""
    return name == "folder" or name.startswith(("folder:", "tfds:"))


def load_evaluation(name: str, data_dir: str | os.PathLike | None = None, **kwargs) -> Dataset:
    """The split that `name` is evaluated on: "test", else "val" where the source has no test split
    (an ImageNet folder of train/ and val/, TFDS' "validation"). `kwargs` go to `load`.

    Raises:
        As `load`; where neither split exists, the error of "test".
    """
    try:
        return load(name, "test", data_dir, **kwargs)
    except ValueError as test_error:
        if name in ("fashion-mnist", "fashion_mnist", "cifar10", "cifar-10"):
            raise
        try:
            return load(name, "val", data_dir, **kwargs)
        except (ValueError, FileNotFoundError):
            raise test_error from None


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def fits(model_input_shape, dataset: Dataset, *, model: str | None = None) -> None:
    """Checks that a model takes the dataset's images.

    Args:
        model_input_shape: the model's input shape, with the batch axis (`model.input_shape`, e.g.
            (None, 32, 32, 3)) or without it ((32, 32, 3)); None dimensions match anything.
        dataset: a `Dataset` from `load`.
        model: the model's name, for the message.

    Shape:
        model_input_shape: (batch, H, W, C) or (H, W, C); dataset.image_shape: (H, W, C).

    Raises:
        TypeError: `dataset` is not a `Dataset`, or `model_input_shape` is not a tuple or list of
            integers and None.
        ValueError: `model_input_shape` has neither 3 nor 4 dimensions, or does not fit.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"Expected dataset to be an nnjpeg.datasets.Dataset. Received: {type(dataset).__name__}")
    if (not isinstance(model_input_shape, (tuple, list))
            or any(d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral))
                   for d in model_input_shape)):
        raise TypeError(f"Expected model_input_shape to be a tuple of integers and None, e.g. (None, 32, 32, 3). "
                        f"Received: {model_input_shape!r}")
    if len(model_input_shape) not in (3, 4):
        raise ValueError(f"Expected model_input_shape (batch, H, W, C) or (H, W, C). Received: "
                         f"{_shape_text(model_input_shape)}")
    shape = tuple(None if d is None else int(d) for d in model_input_shape[-3:])
    if any(m is not None and m != d for m, d in zip(shape, dataset.image_shape)):
        raise ValueError(f"Expected a model taking images of shape (H, W, C) = {_shape_text(dataset.image_shape)} "
                         f"for dataset {dataset.name} ({dataset.split}); Received: "
                         f"{f'{model}, ' if model else ''}a model taking {_shape_text(shape)}"
                         + (" (a folder's or TFDS' images are resized to the size asked for: --image-size H,W)"
                            if streamed(dataset.name) else ""))
