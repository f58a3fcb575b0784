"""device="cuda", and the entry point of TensorFlow's GPU op (nnjpeg::cuda::roundtrip_device),
against the CPU path, and the error a build or machine without CUDA gives.

NumPy only (no TensorFlow). The comparisons need `nnjpeg.build_info()["cuda_devices"] > 0`, that is
a build with -DNNJPEG_CUDA=ON on a machine with a GPU, or the build with -DNNJPEG_CUDA_EMULATION=ON
that scripts/check_native.sh makes (the same kernels run on the CPU); elsewhere they are skipped
with the reason.
"""

import numpy as np
import pytest

import nnjpeg
from nnjpeg import _codec, codec

INFO = nnjpeg.build_info()
if not INFO["cuda_compiled"]:
    NO_DEVICE = "nnjpeg was built without CUDA support (configure with -DNNJPEG_CUDA=ON)"
elif INFO["cuda_devices"] == 0:
    NO_DEVICE = "nnjpeg was built with CUDA, but no CUDA device is visible"
else:
    NO_DEVICE = ""

requires_device = pytest.mark.skipif(bool(NO_DEVICE), reason=NO_DEVICE)

# The device repeats the scalar CPU kernel operation for operation, without fused multiply-adds,
# so it should agree with NNJPEG_FORCE_SCALAR=1 bit for bit. The CPU default may be a SIMD kernel
# whose FMA sums differ in the last bit; that changes a result only where a value lies within an
# ulp of a rounding tie: a sample by one grey level, a coefficient by a few levels in one block.
MIN_IDENTICAL = 0.999

MODES = {  # name: (color, subsampling, channels)
    "rgb": ("rgb", "4:4:4", 3),
    "grey": ("rgb", "4:4:4", 1),
    "4:4:4": ("ycbcr", "4:4:4", 3),
    "4:2:2": ("ycbcr", "4:2:2", 3),
    "4:2:0": ("ycbcr", "4:2:0", 3),
}


def _table(channels):
    luma, chroma = nnjpeg.standard_tables(50)
    return np.stack([luma, chroma, chroma])[:channels]


def _both(img, mode):
    color, subsampling, channels = MODES[mode]
    img = img[..., :channels] if channels == 1 else img
    kwargs = dict(color=color, subsampling=subsampling)
    cpu = nnjpeg.compress(img, _table(channels), **kwargs)
    gpu = nnjpeg.compress(img, _table(channels), device="cuda", **kwargs)
    return cpu, gpu


def assert_matches_cpu(gpu, cpu):
    assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    scale = 255.0 if cpu.dtype == np.float32 else 1.0
    diff = np.abs(gpu.astype(np.float64) * scale - cpu.astype(np.float64) * scale)
    identical = np.mean(diff < 1e-4) if diff.size else 1.0
    within = np.mean(diff <= 1.0 + 1e-4) if diff.size else 1.0
    assert identical >= MIN_IDENTICAL, f"only {identical:.5%} of samples identical (max diff {diff.max()})"
    assert within >= MIN_IDENTICAL, f"only {within:.5%} of samples within 1 grey level"


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_matches_cpu_on_photos(photos, photo, mode):
    cpu, gpu = _both(photos[photo], mode)
    assert_matches_cpu(gpu, cpu)


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("size", ["1x1", "7x9", "17x33", "61x75"])
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_matches_cpu_on_odd_sizes(crops, size, mode, dtype):
    img = crops[size]
    if dtype == "float32":
        img = img.astype(np.float32) / 255.0
    cpu, gpu = _both(img, mode)
    assert_matches_cpu(gpu, cpu)


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_bit_identical_to_the_scalar_cpu_kernel(photos, crops, mode, dtype):
    # roundtrip.cu repeats the scalar kernel operation for operation, without fused multiply-adds:
    # not one sample may differ, not even where a value meets a rounding tie.
    color, subsampling, channels = MODES[mode]
    tables = codec.check_table(_table(channels), channels, color)
    for name, img in {"coffee": photos["coffee"], **crops}.items():
        img = img[..., :channels]
        if dtype == "float32":
            img = img.astype(np.float32) / 255.0
        scalar = codec.run(img, tables, codec.check_mode(color, subsampling), 1, "cpu", kernel="scalar")
        gpu = nnjpeg.compress(img, _table(channels), color=color, subsampling=subsampling, device="cuda")
        np.testing.assert_array_equal(gpu, scalar, err_msg=name)


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("mode", ["rgb", "4:2:0"])
def test_strided_batched_and_empty_inputs(photos, mode):
    color, subsampling, _ = MODES[mode]
    table = _table(3)
    batch = np.stack([photos["astronaut"], photos["astronaut"][::-1]])
    views = {
        "batch": batch,
        "strided": photos["coffee"][1::3, ::-2],
        "channels reversed": photos["chelsea"][..., ::-1],
        "float32 transposed": np.swapaxes(photos["rocket"].astype(np.float32) / 255.0, 0, 1),
        "empty batch": batch[:0],
    }
    for name, img in views.items():
        cpu = nnjpeg.compress(img, table, color=color, subsampling=subsampling)
        gpu = nnjpeg.compress(img, table, color=color, subsampling=subsampling, device="cuda")
        assert gpu.flags.c_contiguous, name
        assert_matches_cpu(gpu, cpu)


@pytest.mark.cuda
@requires_device
def test_batch_larger_than_one_device_chunk(photos):
    # roundtrip.cu works through 256 MiB of device buffers at a time: about 49 such 512x512 images
    # in 4:2:0, so 64 of them take two chunks, the second one partial.
    img = photos["astronaut"]
    batch = np.stack([np.roll(img, 7 * i, axis=1) for i in range(64)])
    cpu = nnjpeg.jpeg(batch, 75)
    gpu = nnjpeg.jpeg(batch, 75, device="cuda")
    assert_matches_cpu(gpu, cpu)
    np.testing.assert_array_equal(gpu[-1], nnjpeg.jpeg(batch[-1], 75, device="cuda"))


def _tables_and_mode(mode):
    color, subsampling, channels = MODES[mode]
    return codec.check_table(_table(channels), channels, color), codec.check_mode(color, subsampling)


def _device_entry(batch, mode, chunk=0):
    """nnjpeg::cuda::roundtrip_device, the entry point of TensorFlow's GPU op, on device copies of a
    batch, `chunk` images at a time (0: its default); None for float32 samples outside [0, 1]."""
    return _codec._cuda_roundtrip_device(np.ascontiguousarray(batch), *_tables_and_mode(mode), chunk)


def _scalar(batch, mode):
    return codec.run(batch, *_tables_and_mode(mode), 1, "cpu", kernel="scalar")


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_device_pointer_entry_point_bit_identical_to_the_scalar_cpu_kernel(photos, crops, mode, dtype):
    # TensorFlow's GPU op runs the kernels of device="cuda" on tensors already in device memory,
    # with scratch it allocates: not one sample may differ from the scalar kernel there either.
    channels = MODES[mode][2]
    for name, img in {"coffee": photos["coffee"], **crops}.items():
        batch = img[np.newaxis, ..., :channels]
        if dtype == "float32":
            batch = batch.astype(np.float32) / 255.0
        np.testing.assert_array_equal(_device_entry(batch, mode), _scalar(batch, mode), err_msg=name)


@pytest.mark.cuda
@requires_device
@pytest.mark.parametrize("mode", ["rgb", "4:2:0"])
def test_device_pointer_entry_point_in_chunks_and_its_range_check(crops, mode):
    # The scratch sets the images per chunk: with room for 2, a batch of 5 runs in 3 chunks, the
    # last one partial.
    batch = np.stack([np.roll(crops["61x75"], 5 * i, axis=1) for i in range(5)])
    for chunk in (2, 0):
        np.testing.assert_array_equal(_device_entry(batch, mode, chunk), _scalar(batch, mode), err_msg=f"chunk={chunk}")
    assert _device_entry(batch[:0], mode).shape == (0, 61, 75, 3)
    # A float32 sample outside [0, 1] (in the second chunk) stops the call before any kernel sees it.
    for bad in (-0.25, 1.5, np.nan, np.inf):
        floats = batch.astype(np.float32) / 255.0
        floats[3, 60, 74, 2] = bad
        assert _device_entry(floats[:4], mode, 2) is None, bad


@pytest.mark.skipif(not NO_DEVICE, reason="a CUDA device is available")
@pytest.mark.parametrize("call", [nnjpeg.compress, nnjpeg.jpeg])
def test_cuda_without_device_raises(photos, call):
    img = photos["chelsea"][:16, :16]
    args = (img, _table(3)) if call is nnjpeg.compress else (img,)
    with pytest.raises(RuntimeError, match=r"built without CUDA support \(-DNNJPEG_CUDA=ON\)|no CUDA device is available"):
        call(*args, device="cuda")


def test_build_info_reports_cuda():
    assert isinstance(INFO["cuda_compiled"], bool)
    assert isinstance(INFO["cuda_devices"], int) and INFO["cuda_devices"] >= 0
    assert INFO["cuda_compiled"] or INFO["cuda_devices"] == 0
    assert isinstance(INFO["cuda_emulated"], bool)
    assert not INFO["cuda_emulated"] or (INFO["cuda_compiled"] and INFO["cuda_devices"] == 1)
