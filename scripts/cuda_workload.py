"""Every mode of device="cuda" on small images, checked against the CPU's scalar kernel bit for bit.

Small enough to run under compute-sanitizer (scripts/check_gpu.sh), whose tools slow the kernels
down by orders of magnitude: crops of 1x1, 7x9, 17x33 and 61x75 pixels and a batch of two 64x64
images, uint8 and float32, in RGB with one and three channels and in YCbCr at every subsampling.
Each also goes through the entry point of TensorFlow's GPU op (images already in device memory,
one image per chunk, and its range check), and a float32 batch with a sample outside [0, 1] stops
there before any kernel of the pipeline.
"""

import sys

import numpy as np
from skimage import data

import nnjpeg
from nnjpeg import _codec, codec

MODES = [("rgb", "4:4:4", 1), ("rgb", "4:4:4", 3), ("ycbcr", "4:4:4", 3), ("ycbcr", "4:2:2", 3), ("ycbcr", "4:2:0", 3)]


def main() -> int:
    photo = data.astronaut()
    images = [photo[100:100 + h, 180:180 + w] for h, w in ((1, 1), (7, 9), (17, 33), (61, 75))]
    images.append(np.stack([photo[:64, :64], photo[200:264, 300:364]]))
    luma, chroma = nnjpeg.standard_tables(50)
    calls = 0
    for color, subsampling, channels in MODES:
        table = np.stack([luma, chroma, chroma])[:channels]
        tables = codec.check_table(table, channels, color)
        mode = codec.check_mode(color, subsampling)
        for img in images:
            for x in (img[..., :channels], img[..., :channels].astype(np.float32) / 255.0):
                gpu = nnjpeg.compress(x, table, color=color, subsampling=subsampling, device="cuda")
                cpu = codec.run(x, tables, mode, 1, "cpu", kernel="scalar")
                batch = np.ascontiguousarray(x if x.ndim == 4 else x[np.newaxis])
                entry = _codec._cuda_roundtrip_device(batch, tables, mode, 1)
                if not (np.array_equal(gpu, cpu) and np.array_equal(entry.reshape(cpu.shape), cpu)):
                    print(f"device and CPU differ: {color} {subsampling}, shape {x.shape}, {x.dtype}")
                    return 1
                calls += 2
    bad = images[-1].astype(np.float32) / 255.0
    bad[1, 63, 63, 2] = np.nan
    if _codec._cuda_roundtrip_device(bad, tables, mode, 1) is not None:
        print("the device entry point let a NaN sample through")
        return 1
    print(f"{calls + 1} device calls, every one equal to the scalar CPU kernel's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
