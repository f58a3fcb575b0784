"""nnjpeg.compress / nnjpeg.jpeg against the float64 reference, Pillow, and every error path.

NumPy/SciPy/Pillow only (no TensorFlow): this file also runs under AddressSanitizer + UBSan.
"""

import io
import multiprocessing
import os
import threading

import numpy as np
import pytest
from PIL import Image

import nnjpeg
from nnjpeg.tables import ANNEX_K_CHROMA, ANNEX_K_LUMA

import reference

# Float32 DCTs against the float64 reference differ by ~1e-5 of a step, so results agree except
# where a coefficient sits within that distance of a quantization tie (or a sample of a rounding
# tie): such pixels may differ, by one grey level for a sample tie, by a few for a coefficient tie.
MIN_EQUAL_WITHIN_1 = 0.999

TABLES = {
    "nn5": nnjpeg.nn_table(5),
    "nn10_16_50": nnjpeg.nn_table(10, 16, 50),
    "luma_q50": nnjpeg.standard_tables(50)[0],
    "unit": np.ones((8, 8), np.float32),
    "random": np.random.default_rng(0).uniform(1, 121, (8, 8)).astype(np.float32),
}


def assert_close_to_reference(out, ref):
    assert out.shape == ref.shape and out.dtype == ref.dtype
    scale = 255.0 if out.dtype == np.float32 else 1.0
    diff = np.abs(out.astype(np.float64) * scale - ref.astype(np.float64) * scale)
    within = np.mean(diff <= 1.0 + 1e-4)
    assert within >= MIN_EQUAL_WITHIN_1, f"only {within:.5%} of pixels within 1 grey level (max diff {diff.max()})"


@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_rgb_matches_reference(photos, photo, table_name):
    img = photos[photo]
    table = TABLES[table_name]
    out = nnjpeg.compress(img, table)
    assert_close_to_reference(out, reference.roundtrip(img, np.broadcast_to(table, (3, 8, 8))))
    assert np.mean(out != img) > 0.01 or table_name == "unit"  # the transform does something


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_ycbcr_matches_reference(photos, photo, subsampling):
    img = photos[photo]
    luma, chroma = nnjpeg.standard_tables(60)
    out = nnjpeg.compress(img, np.stack([luma, chroma]), color="ycbcr", subsampling=subsampling)
    assert_close_to_reference(out, reference.roundtrip(img, [luma, chroma, chroma], "ycbcr", subsampling))


@pytest.mark.parametrize("size", ["1x1", "7x9", "17x33", "61x75"])
@pytest.mark.parametrize("mode", ["rgb", "4:4:4", "4:2:2", "4:2:0", "grey"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_odd_sizes_match_reference(crops, size, mode, dtype):
    img = crops[size]
    if mode == "grey":
        img = np.ascontiguousarray(img[..., 1:2])
    if dtype == "float32":
        img = img.astype(np.float32) / 255.0
    table = np.stack(nnjpeg.standard_tables(40) + (nnjpeg.standard_tables(40)[1],))[: img.shape[-1]]
    color, sub = ("rgb", "4:4:4") if mode in ("rgb", "grey") else ("ycbcr", mode)
    out = nnjpeg.compress(img, table, color=color, subsampling=sub)
    assert out.shape == img.shape
    assert_close_to_reference(out, reference.roundtrip(img, table, color, sub))


def test_float_output_on_the_255_grid_and_consistent_with_uint8(photos):
    img = photos["coffee"]
    table = nnjpeg.nn_table(6)
    out_u8 = nnjpeg.compress(img, table)
    out_f = nnjpeg.compress(img.astype(np.float32) / 255.0, table)
    assert out_f.dtype == np.float32
    k = out_f * 255.0
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert np.mean(np.round(k).astype(np.uint8) == out_u8) >= MIN_EQUAL_WITHIN_1


def test_float_input_is_not_rounded_to_uint8(photos):
    # A sub-grey-level perturbation must be seen by the codec (no silent cast of the input).
    img = photos["chelsea"].astype(np.float32) / 255.0
    delta = np.random.default_rng(1).uniform(-0.45, 0.45, img.shape).astype(np.float32) / 255.0
    moved = np.clip(img + delta, 0.0, 1.0)
    table = nnjpeg.nn_table(4, 16, 50)
    assert not np.array_equal(nnjpeg.compress(img, table), nnjpeg.compress(moved, table))
    assert_close_to_reference(nnjpeg.compress(moved, table), reference.roundtrip(moved, np.broadcast_to(table, (3, 8, 8))))


@pytest.mark.parametrize(
    ("quality", "subsampling", "min_psnr"),
    [(75, "4:4:4", 40.0), (50, "4:4:4", 40.0), (90, "4:4:4", 40.0), (75, "4:2:0", 35.0), (30, "4:2:0", 35.0), (75, "4:2:2", 35.0)],
)
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_jpeg_matches_pillow(photos, photo, quality, subsampling, min_psnr):
    img = photos[photo]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    decoded = np.asarray(Image.open(buf))
    ours = nnjpeg.jpeg(img, quality, subsampling=subsampling)
    assert reference.psnr(ours, decoded) >= min_psnr


@pytest.mark.parametrize("quality", [1, 10, 25, 50, 75, 95, 100])
def test_standard_tables_equal_the_ones_pillow_writes(quality):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG", quality=quality)
    written = Image.open(buf).quantization  # natural order, as libjpeg's JQUANT_TBL
    luma, chroma = nnjpeg.standard_tables(quality)
    np.testing.assert_array_equal(np.reshape(written[0], (8, 8)), luma)
    np.testing.assert_array_equal(np.reshape(written[1], (8, 8)), chroma)


def test_standard_tables_at_50_are_annex_k():
    luma, chroma = nnjpeg.standard_tables(50)
    np.testing.assert_array_equal(luma, ANNEX_K_LUMA)
    np.testing.assert_array_equal(chroma, ANNEX_K_CHROMA)


@pytest.mark.parametrize("k", [0, 1, 5, 15])
def test_nn_table_bands(k):
    t = nnjpeg.nn_table(k, of=16, af=50)
    i, j = np.indices((8, 8))
    assert t.shape == (8, 8) and t.dtype == np.float32
    assert (t[i + j < k] == 16).all() and (t[i + j >= k] == 50).all()
    assert np.count_nonzero(t == 16) == sum(min(d + 1, 15 - d) for d in range(k))


def test_fd_table_keeps_the_top_variance_bands_up_to_the_energy_fraction():
    from nnjpeg.tables import fd_table

    std = np.arange(64, 0, -1, dtype=np.float64).reshape(8, 8)  # strictly decreasing in raster order
    var = (std * std).ravel()
    for energy in (0.5, 0.9, 0.99, 1.0):
        t = fd_table(std, energy=energy, low=8, high=60)
        kept = np.count_nonzero(t == 8)
        # The smallest prefix of the variance-ranked bands reaching the fraction, found by brute force.
        expected = next(n for n in range(1, 65) if var[:n].sum() / var.sum() >= energy - 1e-12)
        assert kept == expected and (t.ravel()[:kept] == 8).all() and (t.ravel()[kept:] == 60).all()
    assert fd_table(np.eye(8), energy=1.0, low=2, high=9)[np.eye(8, dtype=bool)].tolist() == [2.0] * 8


@pytest.mark.parametrize("kwargs, match", [
    ({"band_std": np.ones((4, 4))}, r"band_std of shape \(8, 8\).*Received: shape \(4, 4\)"),
    ({"band_std": np.zeros((8, 8))}, r"not all zero"),
    ({"band_std": np.full((8, 8), np.nan)}, r"finite values >= 0"),
    ({"band_std": np.ones((8, 8)), "energy": 0.0}, r"energy in \(0, 1\]. Received: 0.0"),
    ({"band_std": np.ones((8, 8)), "high": -1.0}, r"high to be a finite number > 0. Received: high=-1.0"),
])
def test_fd_table_errors(kwargs, match):
    from nnjpeg.tables import fd_table

    std = kwargs.pop("band_std")
    with pytest.raises(ValueError, match=match):
        fd_table(std, **kwargs)


def test_shapes_batches_and_empty(photos):
    batch = np.stack([photos["astronaut"][:40, :40], photos["astronaut"][200:240, 300:340]])
    table = nnjpeg.nn_table(5)
    out = nnjpeg.compress(batch, table)
    assert out.shape == batch.shape
    np.testing.assert_array_equal(out[1], nnjpeg.compress(batch[1], table))
    empty = nnjpeg.compress(np.zeros((0, 9, 9, 3), np.uint8), table)
    assert empty.shape == (0, 9, 9, 3) and empty.dtype == np.uint8
    assert nnjpeg.jpeg(np.zeros((0, 9, 9, 1), np.float32)).shape == (0, 9, 9, 1)


def test_noncontiguous_and_readonly_inputs(photos):
    img = photos["rocket"]
    table = nnjpeg.nn_table(7)
    view = img[10:200:2, ::-3]  # strided and negative-stride view
    expected = nnjpeg.compress(np.ascontiguousarray(view), table)
    np.testing.assert_array_equal(nnjpeg.compress(view, table), expected)
    ro = np.ascontiguousarray(view)
    ro.flags.writeable = False
    np.testing.assert_array_equal(nnjpeg.compress(ro, table), expected)
    planar = np.ascontiguousarray(img.transpose(2, 0, 1)).transpose(1, 2, 0)  # channel stride != 1
    np.testing.assert_array_equal(nnjpeg.jpeg(planar, 80), nnjpeg.jpeg(img, 80))


def test_results_identical_for_every_thread_count(photos):
    batch = np.stack([photos["chelsea"][:120, :200]] * 3 + [photos["coffee"][:120, :200]])
    for args in [dict(table=nnjpeg.nn_table(5)), dict(table=np.stack(nnjpeg.standard_tables(70)), color="ycbcr", subsampling="4:2:0")]:
        results = [nnjpeg.compress(batch, threads=t, **args) for t in (1, 2, 3, 8)]
        results += [nnjpeg.compress(batch[:1], threads=t, **args) for t in (1, 4)]
        for r in results[1:4]:
            np.testing.assert_array_equal(r, results[0])
        np.testing.assert_array_equal(results[4], results[0][:1])
        np.testing.assert_array_equal(results[5], results[0][:1])


def test_concurrent_python_threads(photos):
    images = [photos[p][:96, :128] for p in ("astronaut", "coffee", "chelsea", "rocket")] * 2
    table = nnjpeg.nn_table(5)
    expected = [nnjpeg.compress(im, table, threads=1) for im in images]
    results = [None] * len(images)

    def work(i):
        for _ in range(5):
            results[i] = nnjpeg.compress(images[i], table, threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def _compress_in_child(batch, table):
    return nnjpeg.compress(batch, table, threads=2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_runs_with_its_own_workers(photos):
    # Calls share worker threads kept between calls; a forked child has none of its parent's
    # threads and must start its own (or at least not wait on the parent's).
    batch = np.stack([photos["chelsea"][:128, :128]] * 8)
    table = nnjpeg.nn_table(5)
    expected = nnjpeg.compress(batch, table, threads=2)  # the parent's workers exist now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_compress_in_child, (batch, table)).get(timeout=120)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(nnjpeg.compress(batch, table, threads=2), expected)


def test_build_info():
    info = nnjpeg.build_info()
    assert info["kernel"] in info["kernels_runnable"]
    assert info["rows"] in {"scalar", "avx2", "avx512vbmi"}
    assert info["rows"] == "scalar" or info["kernel"] != "scalar"
    assert set(info["kernels_runnable"]) <= set(info["kernels_compiled"])
    assert "scalar" in info["kernels_compiled"]


@pytest.mark.parametrize("args", [dict(table=nnjpeg.nn_table(5)),
                                  dict(table=np.stack(nnjpeg.standard_tables(70)), color="ycbcr", subsampling="4:2:0")])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_out_and_in_place(photos, args, dtype):
    batch = np.stack([photos["chelsea"][:77, :130], photos["coffee"][:77, :130], photos["rocket"][:77, :130]])
    batch = batch if dtype == np.uint8 else batch.astype(np.float32) / np.float32(255)
    expected = nnjpeg.compress(batch, **args)
    for threads in (1, 2):
        out = np.full_like(batch, 7)
        assert nnjpeg.compress(batch, **args, threads=threads, out=out) is out
        np.testing.assert_array_equal(out, expected)
        for images, want in ((batch.copy(), expected), (batch[1].copy(), expected[1])):
            assert nnjpeg.compress(images, **args, threads=threads, out=images) is images
            np.testing.assert_array_equal(images, want)
    grey = np.ascontiguousarray(batch[..., :1])
    assert nnjpeg.jpeg(grey, 60, out=grey) is grey
    np.testing.assert_array_equal(grey, nnjpeg.jpeg(np.ascontiguousarray(batch[..., :1]), 60))


def test_out_errors_leave_images_untouched():
    images = np.full((2, 8, 8, 3), 0.5, np.float32)
    images[1, 7, 7, 2] = 1.5  # the last sample: found only after the rest were coded
    before = images.copy()
    with pytest.raises(ValueError, match=r"values in \[0, 1\]. Received: min=0.5, max=1.5"):
        nnjpeg.compress(images, TABLE, out=images)
    np.testing.assert_array_equal(images, before)
    buf = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"overlapping part of them"):
        nnjpeg.compress(buf[:2], TABLE, out=buf[1:])
    np.testing.assert_array_equal(buf, 0)


def test_large_outputs_reuse_freed_buffers(photos):
    # New outputs of 32 MiB and more come from buffers kept for reuse once their arrays are freed.
    from nnjpeg import _codec

    tile = photos["astronaut"][:384, :384].astype(np.float32) / np.float32(255)
    batch = np.broadcast_to(tile, (24, 384, 384, 3))  # 42.5 MB of float32 output
    expected = np.empty(batch.shape, np.float32)
    nnjpeg.compress(batch, TABLE, out=expected)  # into an array NumPy allocated
    kept, _ = _codec.kept_output_buffers()
    first = nnjpeg.compress(batch, TABLE)
    np.testing.assert_array_equal(first, expected)
    assert first.ctypes.data % 64 == 0
    view = first[3]
    del first  # the view keeps its buffer out of reuse
    assert _codec.kept_output_buffers()[0] == kept
    second = nnjpeg.compress(batch, TABLE)
    assert not np.shares_memory(second, view)
    np.testing.assert_array_equal(second, expected)
    addresses = {second.ctypes.data, view.ctypes.data - view.nbytes * 3}
    second[...] = 0.5  # what a reused buffer holds must not show through
    del second, view
    count, nbytes = _codec.kept_output_buffers()
    assert count == min(kept + 2, 2) and nbytes >= 2 * expected.nbytes
    third = nnjpeg.compress(batch, TABLE)
    assert third.ctypes.data in addresses
    assert _codec.kept_output_buffers()[0] == count - 1
    np.testing.assert_array_equal(third, expected)
    # Smaller outputs come from NumPy's allocator, and nothing beyond two buffers is kept.
    small = nnjpeg.compress(batch[:2], TABLE)
    del small
    assert _codec.kept_output_buffers()[0] == count - 1
    others = [nnjpeg.compress(batch[: 24 - k], TABLE) for k in (1, 2, 3)]
    del others
    assert _codec.kept_output_buffers()[0] == 2


def _large_outputs_in_child(tile, table):
    from nnjpeg import _codec

    batch = np.broadcast_to(tile, (22, *tile.shape))
    before = _codec.kept_output_buffers()
    expected = np.empty(batch.shape, np.float32)
    nnjpeg.compress(batch, table, out=expected)
    out = nnjpeg.compress(batch, table)
    equal = bool(np.array_equal(out, expected))
    del out
    return before, equal, _codec.kept_output_buffers()[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_keeps_its_own_output_buffers(photos):
    from nnjpeg import _codec

    tile = photos["astronaut"][:384, :384].astype(np.float32) / np.float32(255)
    nnjpeg.compress(np.broadcast_to(tile, (22, *tile.shape)), TABLE)  # freed at once: the parent keeps it
    assert _codec.kept_output_buffers()[0] >= 1
    with multiprocessing.get_context("fork").Pool(1) as pool:
        before, equal, after = pool.apply_async(_large_outputs_in_child, (tile, TABLE)).get(timeout=120)
    assert before == (0, 0) and equal and after == 1


GOOD = np.zeros((8, 8, 3), np.uint8)
TABLE = nnjpeg.nn_table(5)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nnjpeg.compress(GOOD.astype(np.float64), TABLE), TypeError, r"dtype uint8 or float32.*Received: dtype=float64"),
        (lambda: nnjpeg.compress(GOOD.astype(np.int16), TABLE), TypeError, r"Received: dtype=int16"),
        (lambda: nnjpeg.compress(GOOD.tolist(), TABLE), TypeError, r"NumPy array. Received: list"),
        (lambda: nnjpeg.compress(np.zeros((8, 8), np.uint8), TABLE), ValueError, r"Received: dtype=uint8, shape=\(8, 8\)"),
        (lambda: nnjpeg.compress(np.zeros((1, 1, 8, 8, 3), np.uint8), TABLE), ValueError, r"shape=\(1, 1, 8, 8, 3\)"),
        (lambda: nnjpeg.compress(np.zeros((8, 8, 4), np.uint8), TABLE), ValueError, r"C in \{1, 3\}.*shape=\(8, 8, 4\)"),
        (lambda: nnjpeg.compress(np.zeros((0, 8, 3), np.uint8), TABLE), ValueError, r"H >= 1 and W >= 1"),
        (lambda: nnjpeg.compress(np.full((8, 8, 3), np.nan, np.float32), TABLE), ValueError, r"finite values.*192 NaN/Inf"),
        (lambda: nnjpeg.compress(np.full((8, 8, 1), np.inf, np.float32), TABLE), ValueError, r"64 NaN/Inf"),
        (lambda: nnjpeg.compress(np.full((8, 8, 3), 1.5, np.float32), TABLE), ValueError, r"values in \[0, 1\].*max=1.5"),
        (lambda: nnjpeg.compress(np.full((8, 8, 3), -0.1, np.float32), TABLE), ValueError, r"min=-0.1"),
        (lambda: nnjpeg.compress(GOOD, np.ones((4, 4))), ValueError, r"table of shape \(8, 8\) or \(3, 8, 8\).*Received: shape=\(4, 4\)"),
        (lambda: nnjpeg.compress(GOOD[..., :1], np.ones((3, 8, 8))), ValueError, r"\(8, 8\) or \(1, 8, 8\).*Received: shape=\(3, 8, 8\)"),
        (lambda: nnjpeg.compress(GOOD, np.ones((2, 8, 8))), ValueError, r"Received: shape=\(2, 8, 8\)"),
        (lambda: nnjpeg.compress(GOOD, np.zeros((8, 8))), ValueError, r"finite and > 0.*min=0.0"),
        (lambda: nnjpeg.compress(GOOD, -np.ones((8, 8))), ValueError, r"finite and > 0"),
        (lambda: nnjpeg.compress(GOOD, np.full((8, 8), np.nan)), ValueError, r"finite and > 0.*64 non-finite"),
        (lambda: nnjpeg.compress(GOOD, np.full((8, 8), 1e6)), ValueError, r"in \[0.001, 65535\]. Received: min=1000000.0"),
        (lambda: nnjpeg.compress(GOOD, np.full((8, 8), 1e-6)), ValueError, r"in \[0.001, 65535\]. Received: min=1e-06"),
        (lambda: nnjpeg.compress(GOOD, np.full((8, 8), True)), TypeError, r"numeric quantization table.*dtype=bool"),
        (lambda: nnjpeg.compress(GOOD, [["a"] * 8] * 8), TypeError, r"numeric quantization table"),
        (lambda: nnjpeg.compress(GOOD, TABLE, color="yuv"), ValueError, r"color to be one of 'rgb', 'ycbcr'. Received: 'yuv'"),
        (lambda: nnjpeg.compress(GOOD, TABLE, color="ycbcr", subsampling="4:1:1"), ValueError, r"subsampling to be one of .* Received: '4:1:1'"),
        (lambda: nnjpeg.compress(GOOD, TABLE, subsampling="4:2:0"), ValueError, r"subsampling='4:4:4' with color='rgb'"),
        (lambda: nnjpeg.compress(GOOD, TABLE, threads=0), ValueError, r"threads to be None or an integer in 1\.\.\.2147483647. Received: threads=0"),
        (lambda: nnjpeg.compress(GOOD, TABLE, threads=2**31), ValueError, r"Received: threads=2147483648"),
        (lambda: nnjpeg.compress(GOOD, TABLE, threads="2"), TypeError, r"Received: threads='2'"),
        (lambda: nnjpeg.compress(GOOD, TABLE, threads=True), TypeError, r"Received: threads=True"),
        (lambda: nnjpeg.compress(GOOD, TABLE, device="tpu"), ValueError, r"device to be one of 'cpu', 'cuda'. Received: 'tpu'"),
        (lambda: nnjpeg.compress(GOOD, TABLE, out=GOOD.tolist()), TypeError, r"out to be None or a NumPy array. Received: list"),
        (lambda: nnjpeg.compress(GOOD, TABLE, out=np.zeros((8, 8, 3), np.float32)), TypeError,
         r"out of the images' dtype uint8. Received: dtype=float32"),
        (lambda: nnjpeg.compress(GOOD, TABLE, out=np.zeros((1, 8, 8, 3), np.uint8)), ValueError,
         r"out of the images' shape \(8, 8, 3\). Received: shape=\(1, 8, 8, 3\)"),
        (lambda: nnjpeg.compress(GOOD, TABLE, out=np.zeros((8, 16, 3), np.uint8)[:, ::2]), ValueError,
         r"C-contiguous and writeable. Received: c_contiguous=False, writeable=True"),
        (lambda: nnjpeg.compress(GOOD, TABLE, out=np.broadcast_to(GOOD, GOOD.shape)), ValueError,
         r"c_contiguous=True, writeable=False"),
        (lambda: nnjpeg.jpeg(GOOD, 50, out=np.zeros((8, 8, 1), np.uint8)), ValueError, r"out of the images' shape"),
        (lambda: nnjpeg.jpeg(GOOD, 0), ValueError, r"quality to be an integer in 1...100. Received: quality=0"),
        (lambda: nnjpeg.jpeg(GOOD, 101), ValueError, r"quality=101"),
        (lambda: nnjpeg.jpeg(GOOD, 75.0), TypeError, r"quality to be an integer.*75.0 of type float"),
        (lambda: nnjpeg.jpeg(GOOD, True), TypeError, r"True of type bool"),
        (lambda: nnjpeg.jpeg(GOOD, subsampling="420"), ValueError, r"Received: '420'"),
        (lambda: nnjpeg.nn_table(16), ValueError, r"k to be an integer in 0...15. Received: k=16"),
        (lambda: nnjpeg.nn_table(2.0), TypeError, r"k to be an integer"),
        (lambda: nnjpeg.nn_table(3, of=0), ValueError, r"of to be a finite number > 0. Received: of=0"),
        (lambda: nnjpeg.nn_table(3, af=float("nan")), ValueError, r"af to be a finite number > 0"),
        (lambda: nnjpeg.standard_tables(0), ValueError, r"quality=0"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_type_stubs_name_what_the_native_module_defines():
    import ast
    from pathlib import Path

    from nnjpeg import _codec

    stub = ast.parse((Path(nnjpeg.__file__).parent / "_codec.pyi").read_text())
    stubbed = {node.name for node in stub.body if isinstance(node, ast.FunctionDef)}
    defined = {name for name in dir(_codec) if not name.startswith("_")}
    assert stubbed == defined
