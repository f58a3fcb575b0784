"""The IDX reader, the Fashion-MNIST / CIFAR-10 loaders, and `load` over every kind of source."""

import gzip
import io
import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from nnjpeg import datasets
from synthetic import CIFAR_NAMES, write_cifar


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


def _write_fashion_mnist(folder, seed):
    """The four Fashion-MNIST files: 5 training images, and the first 3 of them as the test set."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 5, dtype=np.uint8)
    for name, arr in zip(datasets.FASHION_MNIST_FILES, (x, y, x[:3], y[:3])):
        _write_idx(folder / name, arr, 0x08)
    return x, y


def test_idx_roundtrip_and_loader_from_path(tmp_path):
    x, y = _write_fashion_mnist(tmp_path, 0)
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(xtr, x)
    np.testing.assert_array_equal(yte, y[:3])
    wide = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
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


# ------------------------------------------------------------------------------------------------
# `load` and `Dataset`: synthetic data written in each dataset's real on-disk format.

def _no_cifar_env(monkeypatch, keras_home):
    monkeypatch.delenv("NNJPEG_CIFAR10", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))


def _check_cifar_test(ds, written, source):
    data, labels = written["test_batch"]
    assert (ds.name, ds.split, ds.image_shape, ds.num_classes, ds.size) == ("cifar10", "test", (32, 32, 3), 10, 5)
    assert ds.class_names == tuple(n.decode() for n in CIFAR_NAMES) and ds.source == str(source)
    assert ds.skipped is None
    x, y = ds.arrays()
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    # Row 3, pixel (row 4, column 7): R at 4 * 32 + 7, G 1024 later, B 2048 later.
    np.testing.assert_array_equal(x[3, 4, 7], data[3, [135, 135 + 1024, 135 + 2048]])
    np.testing.assert_array_equal(x.reshape(5, 1024, 3).transpose(0, 2, 1).reshape(5, 3072), data)
    xs, ys = ds.arrays(limit=2)
    np.testing.assert_array_equal(xs, x[:2])
    np.testing.assert_array_equal(ys, y[:2])


def test_load_cifar10_from_data_dir_and_its_parent(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    folder = tmp_path / "cifar-10-batches-py"
    written = write_cifar(folder)
    for data_dir in (folder, str(folder), tmp_path):
        _check_cifar_test(datasets.load("cifar10", data_dir=data_dir), written, folder)
    train = datasets.load("cifar-10", "train", tmp_path)
    x, y = train.arrays()
    assert train.name == "cifar10" and train.size == 30 and x.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(y[6:12], written["data_batch_2"][1])
    np.testing.assert_array_equal(x[6, 0, 0], written["data_batch_2"][0][0, [0, 1024, 2048]])
    with pytest.raises(ValueError, match=r"read-only"):
        x[0, 0, 0, 0] = 1


def test_load_cifar10_as_tf_matches_arrays(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    write_cifar(tmp_path)
    ds = datasets.load("cifar10", "test", tmp_path)
    x, y = ds.arrays()
    elements = list(ds.as_tf().as_numpy_iterator())
    assert len(elements) == 5 and elements[0][0].dtype == np.uint8 and elements[0][1].dtype == np.int64
    np.testing.assert_array_equal(np.stack([e[0] for e in elements]), x)
    np.testing.assert_array_equal([e[1] for e in elements], y)
    assert ds.as_tf().element_spec[0].shape == (32, 32, 3)


def test_load_cifar10_from_env(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    folder = tmp_path / "elsewhere" / "cifar-10-batches-py"
    written = write_cifar(folder)
    monkeypatch.setenv("NNJPEG_CIFAR10", str(folder))
    _check_cifar_test(datasets.load("cifar10"), written, folder)
    monkeypatch.setenv("NNJPEG_CIFAR10", str(folder.parent))  # the parent is accepted too
    _check_cifar_test(datasets.load("cifar10"), written, folder)


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py"])
def test_load_cifar10_from_both_keras_cache_layouts(tmp_path, monkeypatch, layout):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    folder = tmp_path / "keras" / "datasets" / layout
    written = write_cifar(folder)
    _check_cifar_test(datasets.load("cifar10"), written, folder)
    (xtr, ytr), (xte, yte) = datasets.load_cifar10()  # the old function searches the same places
    assert xtr.shape == (30, 32, 32, 3) and ytr.dtype == np.uint8
    np.testing.assert_array_equal(yte, written["test_batch"][1])


def test_load_cifar10_not_found_names_every_folder(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    cache = tmp_path / "keras" / "datasets"
    (cache / "cifar-10-batches-py").mkdir(parents=True)
    (cache / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("cifar10", "test")
    message = str(info.value)
    assert message.startswith("Expected the CIFAR-10 python batches test_batch")
    assert f"{cache / 'cifar-10-batches-py'} (Missing: test_batch)" in message
    assert f"{cache / 'cifar-10-batches-py-target' / 'cifar-10-batches-py'} (Missing: the folder)" in message
    with pytest.raises(FileNotFoundError, match=r"Missing: data_batch_2, data_batch_3, data_batch_4, data_batch_5"):
        datasets.load_cifar10()
    with pytest.raises(FileNotFoundError, match=r"nowhere \(Missing: the folder\).*nowhere.cifar-10-batches-py"):
        datasets.load("cifar10", data_dir=tmp_path / "nowhere")


def test_load_cifar10_refuses_bad_pickles(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    written = write_cifar(tmp_path)
    test_batch = tmp_path / "test_batch"
    full = test_batch.read_bytes()
    test_batch.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"Expected a CIFAR-10 python pickle. Received: .*test_batch, which fails"):
        datasets.load("cifar10", data_dir=tmp_path)
    cases = [
        ({b"data": written["test_batch"][0][:, :100], b"labels": [0] * 5},
         r"Expected b'data' of dtype uint8 and shape \(N, 3072\) in .*test_batch. "
         r"Received: dtype=uint8, shape=\(5, 100\)"),
        ({b"data": written["test_batch"][0].astype(np.int32), b"labels": [0] * 5}, r"Received: dtype=int32"),
        ({b"data": written["test_batch"][0], b"labels": [0, 1, 2]}, r"Expected b'labels' of 5 integers.*shape=\(3,\)"),
        ({b"data": written["test_batch"][0], b"labels": [0, 1, 2, 3, 10]}, r"range 0...10"),
        ({b"data": written["test_batch"][0], b"labels": [[0], [1, 2], 3, 4, 5]}, r"Expected b'labels', a list of"),
        ({b"images": 1}, r"Expected a CIFAR-10 batch: a dict with keys b'data' and b'labels'.*b'images'"),
        ([1, 2], r"Expected a CIFAR-10 batch.*holding list"),
    ]
    for content, match in cases:
        with open(test_batch, "wb") as f:
            pickle.dump(content, f)
        with pytest.raises(ValueError, match=match):
            datasets.load("cifar10", data_dir=tmp_path)

    class RunsCode:  # what a hostile file could hold: unpickling would call os.system
        def __reduce__(self):
            import os

            return (os.system, ("echo never",))

    with open(test_batch, "wb") as f:
        pickle.dump({b"data": RunsCode(), b"labels": [0] * 5}, f)
    with pytest.raises(ValueError, match=r"fails to unpickle \(UnpicklingError: (posix|os).system is not allowed"):
        datasets.load("cifar10", data_dir=tmp_path)
    with open(test_batch, "wb") as f:
        pickle.dump({b"data": written["test_batch"][0], b"labels": written["test_batch"][1]}, f)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a"]}, f)
    with pytest.raises(ValueError, match=r"Expected b'label_names', a list of 10 byte strings, in .*batches.meta"):
        datasets.load("cifar10", data_dir=tmp_path)
    (tmp_path / "batches.meta").unlink()  # the standard names then
    assert datasets.load("cifar10", data_dir=tmp_path).class_names == datasets.CIFAR10_CLASSES


def test_load_fashion_mnist_adds_the_channel_axis(tmp_path):
    x, y = _write_fashion_mnist(tmp_path, 3)
    for alias in ("fashion-mnist", "fashion_mnist"):
        ds = datasets.load(alias, "train", tmp_path)
        assert (ds.name, ds.image_shape, ds.num_classes, ds.size, ds.source) == (
            "fashion-mnist", (28, 28, 1), 10, 5, str(tmp_path))
        assert ds.class_names == datasets.FASHION_MNIST_CLASSES
    xs, ys = ds.arrays()
    assert xs.shape == (5, 28, 28, 1) and ys.dtype == np.int64
    np.testing.assert_array_equal(xs[..., 0], x)
    np.testing.assert_array_equal(ys, y)
    (image, label), = ds.as_tf().skip(4).as_numpy_iterator()
    np.testing.assert_array_equal(image, xs[4])
    assert label == y[4]
    test = datasets.load("fashion-mnist", data_dir=tmp_path)
    assert test.split == "test" and test.size == 3
    with pytest.raises(ValueError, match=r"Expected image_size=None or \(28, 28\) for fashion-mnist.*\(32, 32\)"):
        datasets.load("fashion-mnist", data_dir=tmp_path, image_size=(32, 32))
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST files"):
        datasets.load("fashion-mnist", data_dir=tmp_path / "nowhere")


def test_load_debian_fashion_mnist(monkeypatch):
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    monkeypatch.delenv("NNJPEG_FASHION_MNIST", raising=False)
    ds = datasets.load("fashion-mnist")
    assert ds.size == 10000 and ds.source == str(datasets.DEBIAN_FASHION_MNIST)
    x, y = ds.arrays(limit=3)
    assert x.shape == (3, 28, 28, 1) and y.shape == (3,)


# Folders ----------------------------------------------------------------------------------------

def _png(path, array):
    Image.fromarray(array).save(path, "PNG")


def _jpeg(path, array):
    Image.fromarray(array).save(path, "JPEG", quality=90)


def _half_black_white(height, width):
    """Left half black, right half white: its centre crop has the boundary in its middle."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, width // 2 :] = 255
    return a


def _write_folder(split_dir):
    """Three classes; PNG and JPEG files of several sizes (W x H: 80x40, 60x40, 31x73, 64x64, 33x17)."""
    rng = np.random.default_rng(4)
    for c in ("cat", "dog", "eel"):
        (split_dir / c).mkdir(parents=True)
    _png(split_dir / "cat" / "a.png", _half_black_white(40, 80))
    _jpeg(split_dir / "cat" / "b.jpg", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    _jpeg(split_dir / "dog" / "c.JPEG", rng.integers(0, 256, (73, 31, 3), dtype=np.uint8))
    _png(split_dir / "dog" / "d.PNG", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    _png(split_dir / "eel" / "e.jpeg", rng.integers(0, 256, (17, 33, 3), dtype=np.uint8))  # a PNG named .jpeg
    (split_dir / "eel" / ".DS_Store").write_bytes(b"\x00junk")  # hidden: ignored


def _reference_crop(array, size):
    """Pillow's bilinear (antialiased) resize so that the image covers `size`, then the centre crop."""
    h, w = array.shape[:2]
    scale = max(size[0] / h, size[1] / w)
    nh, nw = max(size[0], round(h * scale)), max(size[1], round(w * scale))
    r = np.asarray(Image.fromarray(array).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - size[0]) // 2, (nw - size[1]) // 2
    return r[top : top + size[0], left : left + size[1]]


def test_load_folder_labels_shapes_and_centre_crop(tmp_path):
    _write_folder(tmp_path / "test")
    ds = datasets.load(f"folder:{tmp_path}", image_size=(32, 32))
    assert (ds.name, ds.split, ds.image_shape, ds.num_classes, ds.size, ds.skipped) == (
        f"folder:{tmp_path.resolve()}", "test", (32, 32, 3), 3, 5, 0)
    assert ds.class_names == ("cat", "dog", "eel") and ds.source == str(tmp_path.resolve() / "test")
    x, y = ds.arrays()
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2])
    # 80x40 -> 64x32, columns 16...47 kept: the black/white boundary (column 40 of 80) lands between
    # columns 15 and 16 of the crop; antialiasing blurs one column on each side of it.
    crop = x[0]
    assert (crop[:, :15] == 0).all() and (crop[:, 17:] == 255).all()
    assert (crop == crop[:1]).all() and 0 < crop[0, 15, 0] < 128 < crop[0, 16, 0] < 255
    # Every PNG against Pillow's resize: both use a triangle filter widened by the scale; they differ
    # by at most 1 level of rounding.
    for i, path in ((0, "cat/a.png"), (3, "dog/d.PNG"), (4, "eel/e.jpeg")):
        ref = _reference_crop(np.asarray(Image.open(tmp_path / "test" / path)), (32, 32))
        assert np.abs(x[i].astype(int) - ref).max() <= 1, path
    elements = list(ds.as_tf().as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([e[0] for e in elements]), x)
    np.testing.assert_array_equal([e[1] for e in elements], y)
    assert ds.as_tf().element_spec[0].shape == (32, 32, 3)
    x2, y2 = ds.arrays(limit=2)
    np.testing.assert_array_equal(x2, x[:2])
    assert len(y2) == 2


def test_load_folder_default_size_name_folder_and_val(tmp_path):
    _write_folder(tmp_path / "val")
    ds = datasets.load("folder", "val", tmp_path)
    assert ds.image_shape == (224, 224, 3) and ds.split == "val" and ds.source.endswith("val")
    x, _ = ds.arrays(limit=1)
    assert x.shape == (1, 224, 224, 3)
    with pytest.raises(ValueError, match=r"Expected a folder .*test for split='test'. Received: .* split folders val"):
        datasets.load(f"folder:{tmp_path}", "test")


def test_load_folder_without_split_folders(tmp_path):
    _write_folder(tmp_path)
    for split in ("train", "test", "val"):
        ds = datasets.load(f"folder:{tmp_path}", split, image_size=(8, 8))
        assert ds.size == 5 and ds.class_names == ("cat", "dog", "eel")
        assert "no " + repr(split) + " sub-folder: its class folders serve every split" in ds.source


def test_load_folder_with_synsets(tmp_path):
    _write_folder(tmp_path / "train")
    (tmp_path / "synsets.txt").write_text("eel\ndog\nant\ncat\n\n")
    ds = datasets.load(f"folder:{tmp_path}", "train", image_size=(16, 16))
    assert ds.num_classes == 4 and ds.class_names == ("eel", "dog", "ant", "cat") and "synsets.txt" in ds.source
    _, y = ds.arrays()
    np.testing.assert_array_equal(y, [3, 3, 1, 1, 0])  # files stay in sorted folder order
    (tmp_path / "synsets.txt").write_text("eel\ndog\n")
    with pytest.raises(ValueError, match=r"Expected every class folder to be listed in .*synsets.txt. Received: .*cat"):
        datasets.load(f"folder:{tmp_path}", "train")
    (tmp_path / "synsets.txt").write_text("eel\n\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"Expected one class name a line in .*synsets.txt. Received: an empty line 2"):
        datasets.load(f"folder:{tmp_path}", "train")
    (tmp_path / "synsets.txt").write_text("eel\ndog\ncat\ndog\n")
    with pytest.raises(ValueError, match=r"Expected each class name once.*Received: 'dog' twice"):
        datasets.load(f"folder:{tmp_path}", "train")


def test_load_folder_corrupt_files_skipped_and_counted(tmp_path):
    _write_folder(tmp_path / "test")
    garbage = tmp_path / "test" / "dog" / "bad.jpg"
    garbage.write_bytes(b"this is not an image at all")
    good = io.BytesIO()
    Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(good, "JPEG")
    truncated = tmp_path / "test" / "eel" / "f.jpg"  # a JPEG signature, then the data stops
    truncated.write_bytes(good.getvalue()[:120])
    ds = datasets.load(f"folder:{tmp_path}", image_size=(16, 16))
    # The pre-scan refused the garbage; the truncated file passes it and fails in the decoder.
    assert ds.size == 6 and ds.skipped == 1 and ds.skipped_files == (str(garbage.resolve()),)
    x, y = ds.arrays()
    assert len(x) == 5 and ds.skipped == 2
    assert ds.skipped_files == (str(garbage.resolve()), str(truncated.resolve()))
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2])
    assert len(list(ds.as_tf())) == 5 and ds.skipped == 2  # a second pass counts nothing twice
    with pytest.raises(ValueError, match=r"Expected JPEG or PNG image files.*Received: .*bad.jpg starting with "
                                         r"74 68 69 73"):
        datasets.load(f"folder:{tmp_path}", corrupt="error")
    garbage.write_bytes(b"")
    with pytest.raises(ValueError, match=r"bad.jpg starting with nothing \(an empty file\)"):
        datasets.load(f"folder:{tmp_path}", corrupt="error")
    garbage.unlink()
    strict = datasets.load(f"folder:{tmp_path}", image_size=(16, 16), corrupt="error")
    assert strict.size == 6 and strict.skipped == 0
    with pytest.raises(ValueError, match=r"Expected a decodable JPEG or PNG image. Received: .*f.jpg \("):
        strict.arrays()


def test_load_folder_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"Expected an image folder.*Received: .*nowhere, which is not a folder"):
        datasets.load(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"Expected class sub-folders in .*flat. Received: none"):
        datasets.load(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "flat" / "cls").mkdir()
    with pytest.raises(ValueError, match=r"Expected images only inside class folders of .*flat. Received: .*x.png"):
        datasets.load(f"folder:{tmp_path / 'flat'}")
    _write_folder(tmp_path / "d" / "test")
    (tmp_path / "d" / "test" / "fox").mkdir()
    with pytest.raises(ValueError, match=r"Expected at least one image file in the class folder .*fox. Received: none"):
        datasets.load(f"folder:{tmp_path / 'd'}")
    (tmp_path / "d" / "test" / "fox" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"Expected only image files \(.jpg, .jpeg, .png, any case\) in the class "
                                         r"folder .*fox. Received: .*notes.txt"):
        datasets.load(f"folder:{tmp_path / 'd'}")
    (tmp_path / "d" / "test" / "fox" / "notes.txt").unlink()
    (tmp_path / "d" / "test" / "fox" / "sub").mkdir()
    with pytest.raises(ValueError, match=r"Received: .*sub, a folder"):
        datasets.load(f"folder:{tmp_path / 'd'}")
    with pytest.raises(ValueError, match=r"Expected the folder as name='folder:DIR' or as data_dir"):
        datasets.load("folder")
    with pytest.raises(ValueError, match=r"Expected the folder once"):
        datasets.load(f"folder:{tmp_path}", data_dir=tmp_path)


def test_load_argument_errors(tmp_path):
    accepted = r"Expected name to be one of 'fashion-mnist', 'cifar10', 'tfds:NAME' or 'folder:DIR'"
    for name in ("imagenet", "tfds:", "folder:", "CIFAR10"):
        with pytest.raises(ValueError, match=accepted + r".*Received: name=" + repr(name)):
            datasets.load(name)
    with pytest.raises(TypeError, match=r"Expected name to be a string"):
        datasets.load(10)
    with pytest.raises(ValueError,
                       match=r"Expected split to be one of 'train', 'test' for cifar10. Received: split='val'"):
        datasets.load("cifar10", "val")
    with pytest.raises(ValueError, match=r"Expected split to be one of 'train', 'test', 'val' for folder.*"
                                         r"Received: split='validation'"):
        datasets.load(f"folder:{tmp_path}", "validation")
    with pytest.raises(TypeError, match=r"Expected split to be a string"):
        datasets.load("cifar10", None)
    with pytest.raises(TypeError, match=r"Expected data_dir to be None, a str or an os.PathLike. Received: data_dir=3"):
        datasets.load("cifar10", data_dir=3)
    with pytest.raises(TypeError, match=r"Expected image_size to be None or a tuple \(height, width\).*\[32, 32\]"):
        datasets.load(f"folder:{tmp_path}", image_size=[32, 32])
    with pytest.raises(TypeError, match=r"Expected image_size.*\(32.0, 32\)"):
        datasets.load(f"folder:{tmp_path}", image_size=(32.0, 32))
    with pytest.raises(ValueError, match=r"Expected image_size.*\(0, 32\)"):
        datasets.load(f"folder:{tmp_path}", image_size=(0, 32))
    with pytest.raises(ValueError, match=r"Expected corrupt to be 'skip' or 'error'. Received: corrupt='ignore'"):
        datasets.load(f"folder:{tmp_path}", corrupt="ignore")
    with pytest.raises(TypeError, match=r"Expected corrupt to be 'skip' or 'error'. Received: corrupt=True"):
        datasets.load(f"folder:{tmp_path}", corrupt=True)
    with pytest.raises(ValueError, match=r"Expected image_size=None or \(32, 32\) for cifar10"):
        datasets.load("cifar10", image_size=(224, 224))


def test_arrays_limit_errors(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    write_cifar(tmp_path)
    ds = datasets.load("cifar10", data_dir=tmp_path)
    assert ds.arrays(limit=0)[0].shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match=r"Expected limit to be None or an integer >= 0. Received: limit=-1"):
        ds.arrays(limit=-1)
    with pytest.raises(TypeError, match=r"Expected limit to be None or an integer >= 0. Received: limit=2.0"):
        ds.arrays(limit=2.0)


# TensorFlow Datasets ----------------------------------------------------------------------------

def _fake_tfds(images, labels, *, shape, names, splits=("train", "test")):
    """A stand-in for `tensorflow_datasets` with the calls `load` makes: `tfds.builder(name,
    data_dir=...)`, `builder.info.features[...]`, `builder.info.splits[...].num_examples`,
    `builder.as_dataset(split=..., as_supervised=True)`; it records them."""
    import tensorflow as tf

    calls = []
    ns = types.SimpleNamespace
    info = ns(features={"image": ns(shape=shape), "label": ns(num_classes=len(names), names=list(names))},
              splits={s: ns(num_examples=len(images)) for s in splits})

    class Builder:
        def __init__(self, name, data_dir):
            self.info = info
            calls.append(("builder", name, data_dir))

        def as_dataset(self, *, split, as_supervised):
            calls.append(("as_dataset", split, as_supervised))
            if isinstance(images, list):  # varying sizes
                return tf.data.Dataset.from_generator(
                    lambda: iter(zip(images, labels)),
                    output_signature=(tf.TensorSpec(shape, tf.uint8), tf.TensorSpec((), tf.int64)))
            return tf.data.Dataset.from_tensor_slices((images, labels))

    module = types.ModuleType("tensorflow_datasets")
    module.builder = lambda name, data_dir=None: Builder(name, data_dir)
    return module, calls


def test_load_tfds(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1], np.int64)
    module, calls = _fake_tfds(images, labels, shape=(32, 32, 3), names=[n.decode() for n in CIFAR_NAMES])
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    ds = datasets.load("tfds:cifar10", "test", tmp_path)
    assert (ds.name, ds.image_shape, ds.num_classes, ds.size, ds.class_names[:2]) == (
        "tfds:cifar10", (32, 32, 3), 10, 4, ("plane", "car"))
    assert str(tmp_path) in ds.source and ds.skipped is None
    x, y = ds.arrays()
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64
    assert calls[:2] == [("builder", "cifar10", str(tmp_path)), ("as_dataset", "test", True)]
    small = datasets.load("tfds:cifar10", "train", tmp_path, image_size=(16, 16))
    assert small.image_shape == (16, 16, 3) and small.arrays()[0].shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match=r"Expected tfds:cifar10 to have a 'validation' split for split='val'. "
                                         r"Received: splits test, train"):
        datasets.load("tfds:cifar10", "val", tmp_path)


def test_load_tfds_varying_sizes_use_the_folder_transform(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((40, 60, 3), (300, 250, 3))]
    images[0] = _half_black_white(40, 80)
    module, calls = _fake_tfds(images, np.array([7, 2], np.int64), shape=(None, None, 3),
                               names=[f"n{i}" for i in range(9)], splits=("train", "validation"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    ds = datasets.load("tfds:imagenet2012", "val", tmp_path)
    assert ds.image_shape == (224, 224, 3) and calls[-1] == ("builder", "imagenet2012", str(tmp_path))
    x, y = ds.arrays()
    assert x.shape == (2, 224, 224, 3) and calls[-1] == ("as_dataset", "validation", True)
    np.testing.assert_array_equal(y, [7, 2])
    assert np.abs(x[0].astype(int) - _reference_crop(images[0], (224, 224))).max() <= 1


def test_load_tfds_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"Expected the optional package tensorflow_datasets for name='tfds:cifar10'"
                                          r".*pip install tensorflow-datasets.*prepared in data_dir"):
        datasets.load("tfds:cifar10")


# fits -------------------------------------------------------------------------------------------

def test_fits(tmp_path, monkeypatch):
    _no_cifar_env(monkeypatch, tmp_path / "keras")
    write_cifar(tmp_path)
    ds = datasets.load("cifar10", data_dir=tmp_path)
    for shape in ((None, 32, 32, 3), (32, 32, 3), [None, None, None, 3], (8, None, 32, None), (np.int64(32), 32, 3)):
        assert datasets.fits(shape, ds) is None
    with pytest.raises(ValueError, match=r"^Expected a model taking images of shape \(H, W, C\) = \(32, 32, 3\) for "
                                         r"dataset cifar10 \(test\); Received: a model taking \(28, 28, 1\)$"):
        datasets.fits((None, 28, 28, 1), ds)
    with pytest.raises(ValueError, match=r"Received: a model taking \(None, 32, 1\)"):
        datasets.fits((None, None, 32, 1), ds)
    with pytest.raises(ValueError, match=r"Expected model_input_shape \(batch, H, W, C\) or \(H, W, C\). "
                                         r"Received: \(32, 3\)"):
        datasets.fits((32, 3), ds)
    with pytest.raises(TypeError, match=r"Expected model_input_shape to be a tuple of integers and None"):
        datasets.fits((None, 32.0, 32, 3), ds)
    with pytest.raises(TypeError, match=r"Expected model_input_shape"):
        datasets.fits("32x32x3", ds)
    with pytest.raises(TypeError, match=r"Expected dataset to be an nnjpeg.datasets.Dataset. Received: tuple"):
        datasets.fits((32, 32, 3), (32, 32, 3))
