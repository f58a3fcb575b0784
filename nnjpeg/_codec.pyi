# Type stubs of the private native module (csrc/bindings.cpp). Arguments are checked in
# nnjpeg/codec.py before they get here; the module trusts them.
from typing import Any

import numpy as np
import numpy.typing as npt

def roundtrip(
    images: npt.NDArray[np.uint8] | npt.NDArray[np.float32],
    tables: npt.NDArray[np.float32],
    mode: int,
    threads: int,
    kernel: str = "",
    device: str = "cpu",
    out: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.uint8] | npt.NDArray[np.float32] | None:
    """(N, H, W, C) images round-tripped with `tables` ((planes, 64) float32, natural order) in
    pipeline `mode` (0 RGB, 1 YCbCr 4:4:4, 2 4:2:2, 3 4:2:0), into `out` when given (C-contiguous,
    writeable, the images' dtype and shape, possibly the images themselves); None if float32
    samples lie outside [0, 1] or are NaN/Inf. `kernel`: a name from
    build_info()["kernels_runnable"], "" the active one."""

def build_info() -> dict[str, Any]: ...

def kept_output_buffers() -> tuple[int, int]:
    """(count, bytes) of the freed outputs of 32 MiB and more kept for reuse by later calls."""
