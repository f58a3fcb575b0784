"""SIMD block kernels and row conversions against the scalar kernel, and the pipeline's fast paths.

The scalar kernel is itself checked against the float64 SciPy reference in test_codec.py; here every
other kernel this CPU can run is checked against it, and against that reference too. NumPy, SciPy and
scikit-image only (this file also runs under AddressSanitizer).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnjpeg
from nnjpeg import _codec

import reference

KERNELS = nnjpeg.build_info()["kernels_runnable"]
SIMD_KERNELS = [k for k in KERNELS if k != "scalar"]
MODES = {"rgb": 0, "4:4:4": 1, "4:2:2": 2, "4:2:0": 3}

# The SIMD kernels are specified to agree with the scalar one within one grey level on every pixel
# and exactly on at least 99.9 % of them (a float difference may flip a sample's rounding tie).
# They are in fact built to repeat its floating-point operations exactly (no FMA, same order), so
# test_simd_kernels_are_bit_identical also asserts equality; the tolerance test states the contract.
MAX_DIFF = 1
MIN_IDENTICAL = 0.999


def _tables():
    rng = np.random.default_rng(7)
    return {
        "ones": np.ones((8, 8), np.float32),
        "121": np.full((8, 8), 121, np.float32),
        "random_1_121": rng.integers(1, 122, (8, 8)).astype(np.float32),
        "random_fractional": rng.uniform(0.3, 200.0, (8, 8)).astype(np.float32),
        "nn5": nnjpeg.nn_table(5),
        "nn10_16_50": nnjpeg.nn_table(10, 16, 50),
        "luma_q90": nnjpeg.standard_tables(90)[0],
    }


TABLES = _tables()

# Heights and widths that give odd and even block counts, partial blocks and widths that are not a
# multiple of the 8- or 16-pixel vector steps of the row conversions (their scalar tails).
SIZES = [(1, 1), (7, 9), (17, 33), (8, 8), (8, 24), (13, 40), (16, 56), (23, 71), (9, 129), (64, 104)]


def run(images, table, mode="rgb", threads=1, kernel="", out=None):
    planes = 3 if images.shape[-1] == 3 else 1
    tables = np.ascontiguousarray(np.broadcast_to(np.asarray(table, np.float32).reshape(-1, 64), (planes, 64)))
    return _codec.roundtrip(images if images.ndim == 4 else images[np.newaxis], tables, MODES[mode], threads,
                            kernel, "cpu", out)


def assert_agrees_with_scalar(out, ref):
    assert out.shape == ref.shape and out.dtype == ref.dtype
    scale = 255.0 if out.dtype == np.float32 else 1.0
    diff = np.abs(np.rint(out.astype(np.float64) * scale) - np.rint(ref.astype(np.float64) * scale))
    identical = np.mean(diff == 0)
    assert diff.max() <= MAX_DIFF, f"max difference {diff.max()} grey levels"
    assert identical >= MIN_IDENTICAL, f"only {identical:.5%} of samples identical"


def test_simd_kernels_compiled_and_runnable():
    info = nnjpeg.build_info()
    assert info["kernels_runnable"][0] == "scalar"
    assert set(info["kernels_runnable"]) <= set(info["kernels_compiled"])
    assert info["kernel"] in info["kernels_runnable"]


@pytest.mark.parametrize("kernel", SIMD_KERNELS)
@pytest.mark.parametrize("table_name", sorted(TABLES))
def test_simd_kernels_match_scalar_on_photos(photos, kernel, table_name):
    table = TABLES[table_name]
    for img in photos.values():
        assert_agrees_with_scalar(run(img, table, kernel=kernel), run(img, table, kernel="scalar"))


@pytest.mark.parametrize("kernel", SIMD_KERNELS)
def test_simd_kernels_are_bit_identical(photos, kernel):
    for table in TABLES.values():
        for img in (photos["astronaut"], photos["rocket"][:101, :203]):
            for mode in MODES:
                np.testing.assert_array_equal(run(img, table, mode, kernel=kernel),
                                              run(img, table, mode, kernel="scalar"))


@pytest.mark.parametrize("kernel", SIMD_KERNELS)
def test_interleaved_uint8_rows_are_bit_identical(photos, kernel):
    # 3-channel uint8 images a whole number of blocks wide: where the CPU has AVX-512 VBMI, the
    # avx512 kernel codes their bands straight from the interleaved rows (Kernel::fn_rgb8) instead
    # of split planes. A table of its own per channel, so that a channel mix-up shows; heights that
    # leave a partial last band (coded through planes), block counts with a lone last block, a
    # batch, rows flipped (a negative row stride) and coding in place.
    tables = np.stack([TABLES["nn5"], TABLES["random_1_121"], TABLES["random_fractional"]])
    src = photos["astronaut"]
    for h, w in [(8, 8), (8, 24), (21, 40), (64, 104), (33, 224)]:
        img = np.stack([src[50 + 9 * i : 50 + 9 * i + h, 70 : 70 + w] for i in range(3)])
        expected = run(img, tables, kernel="scalar")
        np.testing.assert_array_equal(run(img, tables, kernel=kernel), expected)
        np.testing.assert_array_equal(run(img, tables, threads=2, kernel=kernel), expected)
        flipped = img[:, ::-1]
        np.testing.assert_array_equal(run(flipped, tables, kernel=kernel),
                                      run(np.ascontiguousarray(flipped), tables, kernel="scalar"))
        in_place = img.copy()
        run(in_place, tables, kernel=kernel, out=in_place)
        np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("kernel", SIMD_KERNELS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 3])
def test_simd_kernels_match_scalar_on_odd_sizes(photos, kernel, dtype, channels):
    src = photos["coffee"]
    for i, (h, w) in enumerate(SIZES):
        img = np.ascontiguousarray(src[37 + 5 * i : 37 + 5 * i + h, 101 : 101 + w, :channels])
        if dtype == "float32":
            img = img.astype(np.float32) / 255.0
        for mode in (["rgb", "4:4:4", "4:2:2", "4:2:0"] if channels == 3 else ["rgb"]):
            for table in (TABLES["nn5"], TABLES["random_1_121"]):
                out = run(img, table, mode, kernel=kernel)
                assert out.shape == (1, h, w, channels)
                assert_agrees_with_scalar(out, run(img, table, mode, kernel="scalar"))


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_match_float64_reference(photos, kernel):
    # Same tolerance as test_codec.py: float32 against float64 may differ where a coefficient sits
    # within ~1e-5 of a step of a quantization tie.
    img = photos["chelsea"]
    table = TABLES["random_1_121"]
    out = run(img, table, kernel=kernel)[0]
    ref = reference.roundtrip(img, np.broadcast_to(table, (3, 8, 8)))
    assert np.mean(np.abs(out.astype(np.int64) - ref.astype(np.int64)) <= 1) >= 0.999


@pytest.mark.parametrize("kernel", KERNELS)
def test_float_output_is_uint8_output_over_255(photos, kernel):
    img = photos["astronaut"][:77, :91]
    table = TABLES["nn5"]
    as_u8 = run(img, table, kernel=kernel)
    as_f32 = run(img.astype(np.float32) / 255.0, table, kernel=kernel)
    np.testing.assert_array_equal(as_f32, as_u8.astype(np.float32) / np.float32(255.0))
    assert not np.signbit(as_f32).any()  # zeros are +0, never -0


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_uint8_kernel_is_bit_identical_to_float_kernel(photos, kernel, channels):
    # Channel by channel, uint8 images go through the byte kernel and byte row conversions, float32
    # ones through the float kernel: the same operations per sample, so the same results, at sizes
    # that cover partial blocks and the row conversions' vector bodies and tails.
    src = photos["rocket"]
    for i, (h, w) in enumerate(SIZES):
        img = np.ascontiguousarray(src[11 + 7 * i : 11 + 7 * i + h, 50 : 50 + w, :channels])
        for table in TABLES.values():
            as_u8 = run(img, table, kernel=kernel)
            as_f32 = run(img.astype(np.float32) / np.float32(255), table, kernel=kernel)
            np.testing.assert_array_equal(np.rint(as_f32 * 255).astype(np.uint8), as_u8)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_float_range_is_checked_as_samples_load(kernel, channels):
    # The float32 range check runs inside the row loads (the native call returns None on a bad
    # sample): one bad sample must be found wherever it sits, in a vector body or a scalar tail
    # (W = 41), in strided input (reversed W) and in the YCbCr pipeline; 0, -0 and 1 are in range.
    h, w = 13, 41
    base = np.full((2, h, w, channels), 0.5, np.float32)
    base[0, 0, 0, 0], base[1, 3, 9, channels - 1], base[0, 12, 40, 0] = 0.0, -0.0, 1.0
    modes = ["rgb", "4:4:4", "4:2:0"] if channels == 3 else ["rgb"]
    spots = [(0, 0, 0, 0), (1, h - 1, w - 1, channels - 1), (1, 5, 17, 0), (0, 7, 40, channels - 1), (1, 12, 3, channels // 2)]
    for mode in modes:
        for img in (base, base[:, :, ::-1]):
            assert run(img, TABLES["nn5"], mode, kernel=kernel) is not None
    for bad in (np.nan, np.inf, -np.inf, np.float32(-1e-7), np.nextafter(np.float32(1), np.float32(2)), np.float32(2)):
        for spot in spots:
            img = base.copy()
            img[spot] = bad
            for mode in modes:
                assert run(img, TABLES["nn5"], mode, kernel=kernel) is None, (bad, spot, mode)
                assert run(img[:, :, ::-1], TABLES["nn5"], mode, kernel=kernel) is None, (bad, spot, mode)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_float_output_is_exactly_k_over_255_for_every_k(kernel, channels):
    # Flat 8x8 blocks with step 1 come back unchanged (the DC term is exact), so the output holds
    # every whole number 0...255; the SIMD stores compute k / 255 without a division and must still
    # give the correctly rounded quotient for each. Row widths cover the vector bodies and tails.
    levels = np.repeat(np.repeat(np.arange(256).reshape(8, 32), 8, axis=0), 8, axis=1)
    img = np.repeat(levels[..., np.newaxis], channels, axis=-1).astype(np.uint8)
    for w in (256, 253):
        x = img[:, :w]
        out = run(x.astype(np.float32) / np.float32(255), np.ones((8, 8)), kernel=kernel)[0]
        np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["rgb", "4:2:0"])
def test_identical_for_every_thread_count(photos, kernel, mode):
    # Work units (bands, images) are independent, so the partition over threads cannot matter: one
    # large image (band-level split), a few images, and many small ones.
    batches = [
        photos["rocket"][np.newaxis],
        np.stack([photos["chelsea"][:150, :200], photos["coffee"][:150, :200], photos["astronaut"][:150, :200]]),
        np.stack([photos["astronaut"][y : y + 32, x : x + 32] for y in range(0, 480, 40) for x in range(0, 480, 60)]),
    ]
    table = np.stack(nnjpeg.standard_tables(70) + (nnjpeg.standard_tables(70)[1],))
    for batch in batches:
        results = [run(batch, table, mode, threads=t, kernel=kernel) for t in (1, 2, 3, 8)]
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


def _views(img):
    """Non-contiguous and read-only views of `img`, each paired with its contiguous copy."""
    padded = np.zeros((img.shape[0], img.shape[1] + 5, img.shape[2]), img.dtype)
    padded[:, 3 : 3 + img.shape[1]] = img
    planar = np.ascontiguousarray(img.transpose(2, 0, 1)).transpose(1, 2, 0)
    wh = np.ascontiguousarray(img.transpose(1, 0, 2)).transpose(1, 0, 2)
    readonly = img.copy()
    readonly.flags.writeable = False
    views = {
        "row_padding": padded[:, 3 : 3 + img.shape[1]],
        "every_other": np.repeat(img, 2, axis=1)[:, ::2],
        "negative_strides": img[::-1, ::-1].copy()[::-1, ::-1],
        "channel_planar": planar,
        "width_major": wh,
        "readonly": readonly,
    }
    if img.shape[-1] == 1:
        views["new_channel_axis"] = img[..., 0][..., np.newaxis]  # channel stride 0
    return views


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 3])
def test_noncontiguous_and_readonly_inputs(photos, kernel, dtype, channels):
    img = np.ascontiguousarray(photos["rocket"][50:111, 200:275, :channels])
    if dtype == "float32":
        img = img.astype(np.float32) / 255.0
    table = TABLES["nn10_16_50"]
    for mode in (["rgb", "4:2:2"] if channels == 3 else ["rgb"]):
        expected = run(img, table, mode, kernel=kernel)
        for name, view in _views(img).items():
            np.testing.assert_array_equal(run(view, table, mode, kernel=kernel), expected, err_msg=name)
    # A view reversed along H and W is a different image: compare with its own contiguous copy.
    flipped = img[::-1, ::-2]
    np.testing.assert_array_equal(run(flipped, table, kernel=kernel),
                                  run(np.ascontiguousarray(flipped), table, kernel=kernel))


def test_public_api_uses_fast_and_generic_paths_alike(photos):
    img = photos["chelsea"][:100, :130]
    table = nnjpeg.nn_table(6)
    expected = nnjpeg.compress(img, table)
    np.testing.assert_array_equal(nnjpeg.compress(img[:, ::-1][:, ::-1], table), expected)
    np.testing.assert_array_equal(nnjpeg.compress(np.asfortranarray(img), table), expected)
    np.testing.assert_array_equal(nnjpeg.jpeg(np.asfortranarray(img), 75), nnjpeg.jpeg(img, 75))


def test_force_scalar_environment_variable(photos, tmp_path):
    img = np.ascontiguousarray(photos["astronaut"][:120, :136])
    table = TABLES["random_1_121"]
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "table.npy", table)
    script = (
        "import sys, numpy as np, nnjpeg\n"
        "d = sys.argv[1]\n"
        "print(nnjpeg.build_info()['kernel'])\n"
        "np.save(d + '/out.npy', nnjpeg.compress(np.load(d + '/img.npy'), np.load(d + '/table.npy')))\n"
        "np.save(d + '/jpeg.npy', nnjpeg.jpeg(np.load(d + '/img.npy'), 80))\n"
    )
    # The child imports the very package under test (installed, or a staged copy), whatever the
    # working directory holds.
    package_parent = os.path.dirname(os.path.dirname(nnjpeg.__file__))
    env = dict(os.environ, NNJPEG_FORCE_SCALAR="1", PYTHONPATH=package_parent)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                          check=False, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["scalar"]
    assert_agrees_with_scalar(np.load(tmp_path / "out.npy")[np.newaxis], nnjpeg.compress(img, table)[np.newaxis])
    assert_agrees_with_scalar(np.load(tmp_path / "jpeg.npy")[np.newaxis], nnjpeg.jpeg(img, 80)[np.newaxis])


def test_unknown_kernel_name_is_rejected():
    with pytest.raises(ValueError, match="kernel 'sse9' is not runnable"):
        run(np.zeros((8, 8, 1), np.uint8), np.ones((8, 8)), kernel="sse9")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 3])
def test_nothing_written_past_the_output(photos, kernel, dtype, channels):
    # The row conversions end rows with masked or partial stores: an output that ends where the
    # buffer goes on must keep the bytes after it (here a canary), in every mode.
    img = photos["coffee"][..., :channels]
    for i, (h, w) in enumerate(SIZES):
        x = np.ascontiguousarray(img[i : i + h, 3 * i : 3 * i + w])[np.newaxis]
        x = x if dtype == "uint8" else x.astype(np.float32) / np.float32(255)
        for mode in MODES:
            expected = run(x, TABLES["nn5"], mode, kernel=kernel)
            buf = np.full(x.nbytes + 256, 0xA5, np.uint8)
            out = buf[: x.nbytes].view(x.dtype).reshape(x.shape)
            assert run(x, TABLES["nn5"], mode, kernel=kernel, out=out) is out
            np.testing.assert_array_equal(out, expected)
            assert (buf[x.nbytes:] == 0xA5).all(), (h, w, mode)
