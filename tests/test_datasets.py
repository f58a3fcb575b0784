"""The IDX reader and the Fashion-MNIST / CIFAR-10 loaders."""

import gzip
import pickle

import numpy as np
import pytest

from nnjpeg import datasets


def test_debian_fashion_mnist_files():
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist(datasets.DEBIAN_FASHION_MNIST)
    assert xtr.shape == (60000, 28, 28) and xtr.dtype == np.uint8
    assert xte.shape == (10000, 28, 28) and yte.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(ytr), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yte), [1000] * 10)
    assert xtr.max() == 255 and xtr.min() == 0 and 0.25 < xtr.mean() / 255 < 0.32


def _write_idx(path, arr, code):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_idx_roundtrip_and_loader_from_path(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 5, dtype=np.uint8)
    for name, arr in zip(datasets.FASHION_MNIST_FILES, (x, y, x[:3], y[:3])):
        _write_idx(tmp_path / name, arr, 0x08)
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(xtr, x)
    np.testing.assert_array_equal(yte, y[:3])
    wide = rng.normal(size=(2, 3)).astype(np.float32)
    _write_idx(tmp_path / "f.gz", wide, 0x0D)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "f.gz"), wide)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match=r"Expected an IDX file.*01020304"):
        datasets.read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(ValueError, match=r"Expected 10 bytes.*Received: 3"):
        datasets.read_idx(short)
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST files.*dataset-fashion-mnist"):
        datasets.load_fashion_mnist(tmp_path / "nowhere")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    images = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        images[name] = data
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(rng.integers(0, 10, 4))}, f)
    (xtr, ytr), (xte, yte) = datasets.load_cifar10(tmp_path)
    assert xtr.shape == (20, 32, 32, 3) and xte.shape == (4, 32, 32, 3) and ytr.dtype == np.uint8
    # Channel-planar rows (R plane, G plane, B plane) become interleaved HWC.
    np.testing.assert_array_equal(xte[1, 0, 0], images["test_batch"][1, [0, 1024, 2048]])
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"Missing: data_batch_3"):
        datasets.load_cifar10(tmp_path)
