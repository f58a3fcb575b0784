"""Every block kernel this CPU runs, on the same batches, one thread: time per 8x8 block.

The whole call is timed (row conversions included), through the private `kernel=` hook of the
native module that the tests use to compare kernels, so the rows say what choosing one kernel
over another does to `nnjpeg.compress`. Outputs are checked equal to the scalar kernel's first.

Run: .venv/bin/python benchmarks/bench_kernels.py [--repeats 7] [--json benchmarks/results/kernels.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codec import TABLE, looped_call, natural_crops  # noqa: E402
from common import cpu_model, publish  # noqa: E402

import nnjpeg  # noqa: E402
from nnjpeg import _codec  # noqa: E402

MODE_RGB = 0


def blocks(batch: np.ndarray) -> int:
    n, h, w, c = batch.shape
    return n * c * -(-h // 8) * -(-w // 8)


def run(repeats: int) -> dict:
    kernels = nnjpeg.build_info()["kernels_runnable"]
    tables = np.ascontiguousarray(np.broadcast_to(TABLE.reshape(1, 64), (3, 64)), np.float32)
    rows = []
    for wname, batch in {"64x224x224x3": natural_crops(64, 224), "1024x32x32x3": natural_crops(1024, 32)}.items():
        for dtype, images in (("uint8", batch), ("float32", batch.astype(np.float32) / np.float32(255))):
            reference = _codec.roundtrip(images, tables, MODE_RGB, 1, "scalar", "cpu")
            for kernel in kernels:
                def call(_, kernel=kernel):
                    return _codec.roundtrip(images, tables, MODE_RGB, 1, kernel, "cpu")

                if not np.array_equal(call(None), reference):
                    raise SystemExit(f"kernel {kernel} disagrees with the scalar kernel on {wname} {dtype}")
                times = [looped_call(call, None)[0] for _ in range(repeats)]
                med = statistics.median(times)
                rows.append({"workload": wname, "dtype": dtype, "kernel": kernel, "median_s": med,
                             "min_s": min(times), "max_s": max(times), "ns_per_block": med / blocks(batch) * 1e9})
                print(f"{wname:>14} {dtype:>8} {kernel:>8} {med * 1e3:9.2f} ms {rows[-1]['ns_per_block']:7.1f} ns/block",
                      flush=True)
    env = {"nnjpeg": nnjpeg.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "cpu": cpu_model(), "cores": os.cpu_count()}
    return {"results": rows, "build_info": nnjpeg.build_info(), "environment": env}


def markdown(report: dict) -> str:
    lines = ["| workload | dtype | kernel | median ms | min–max ms | ns per block |", "|---|---|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['workload']} | {r['dtype']} | {r['kernel']} | {r['median_s'] * 1e3:.2f} | "
                     f"{r['min_s'] * 1e3:.2f}–{r['max_s'] * 1e3:.2f} | {r['ns_per_block']:.1f} |")
    info = report["build_info"]
    lines += ["", f"One thread, {report['environment']['cpu']}; row conversions `{info['rows']}` under the active "
                  f"kernel `{info['kernel']}` (each kernel runs with its own)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1. Received: {args.repeats}")
    report = run(args.repeats)
    if args.json:
        publish(report, markdown(report), args.json)
    else:
        print()
        print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
