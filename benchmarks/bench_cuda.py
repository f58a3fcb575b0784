"""Throughput of device="cuda" beside the CPU path, on the workloads of bench_codec.py.

Workloads: 64 x 224x224x3 and 1024 x 32x32x3 uint8 crops of natural photographs (scikit-image),
and the first as float32 in [0, 1]. Modes: the NN-favored table in RGB (`compress`) and standard
JPEG at quality 75, 4:2:0 (`jpeg`). Each configuration is checked first: the share of samples the
device gives identical to the CPU path's. Then, `--repeats` rounds of back-to-back calls of 0.2 s
at least, after 50 ms of untimed ones (as bench_codec.py): nnjpeg on every core, and
device="cuda", whose call copies the images to the device, runs the kernels and copies the result
back. Medians and spreads are printed and written as JSON and Markdown.

Run where a CUDA device is visible, against nnjpeg built with -DNNJPEG_CUDA=ON (scripts/check_gpu.sh
does both): python3 benchmarks/bench_cuda.py [--repeats 5] [--json build/gpu/report/cuda.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

import nnjpeg
from bench_codec import TABLE, looped_call, natural_crops
from common import publish

MODES = {
    "NN-favored table, rgb": lambda images, **kw: nnjpeg.compress(images, TABLE, **kw),
    "jpeg q75, 4:2:0": lambda images, **kw: nnjpeg.jpeg(images, 75, **kw),
}


def run(repeats: int) -> list[dict]:
    crops = {"64x224x224x3": natural_crops(64, 224), "1024x32x32x3": natural_crops(1024, 32)}
    configs = [(w, mode, "uint8", batch) for w, batch in crops.items() for mode in MODES]
    configs.append(("64x224x224x3", "NN-favored table, rgb", "float32", crops["64x224x224x3"].astype(np.float32) / 255.0))
    rows = []
    for workload, mode, dtype, images in configs:
        call = MODES[mode]
        cpu, gpu = call(images), call(images, device="cuda")
        times = {"cpu": [], "cuda": []}
        for _ in range(repeats):
            times["cpu"].append(looped_call(call, images)[0])
            times["cuda"].append(looped_call(lambda x: call(x, device="cuda"), images)[0])
        cpu_s, cuda_s = statistics.median(times["cpu"]), statistics.median(times["cuda"])
        megabytes = images.size / 1e6  # uint8 input bytes, as bench_codec.py counts them
        rows.append({"workload": workload, "mode": mode, "dtype": dtype,
                     "identical": float(np.mean(cpu == gpu)),
                     "cpu_median_s": cpu_s, "cpu_min_s": min(times["cpu"]), "cpu_max_s": max(times["cpu"]),
                     "cuda_median_s": cuda_s, "cuda_min_s": min(times["cuda"]), "cuda_max_s": max(times["cuda"]),
                     "cuda_mb_per_s": megabytes / cuda_s, "cuda_x_cpu": cpu_s / cuda_s})
        print(f"{workload} {mode} {dtype}: CPU {cpu_s * 1e3:.2f} ms, CUDA {cuda_s * 1e3:.2f} ms", flush=True)
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    lines = [f"| workload | mode | dtype | identical to CPU | CPU ({threads} threads) ms | CUDA ms (min–max) | CUDA MB/s | CUDA × CPU |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['mode']} | {r['dtype']} | {100 * r['identical']:.3f} % | "
                     f"{r['cpu_median_s'] * 1e3:.2f} | {r['cuda_median_s'] * 1e3:.2f} "
                     f"({r['cuda_min_s'] * 1e3:.2f}–{r['cuda_max_s'] * 1e3:.2f}) | {r['cuda_mb_per_s']:.0f} | "
                     f"{r['cuda_x_cpu']:.2f} |")
    lines += ["", "CUDA times are whole calls: host-to-device copy, kernels, device-to-host copy, and the "
              "device buffers' allocation. MB/s of uint8 input (H·W·C bytes per image)."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="build/gpu/report/cuda.json")
    args = parser.parse_args()
    info = nnjpeg.build_info()
    if info["cuda_devices"] < 1:
        parser.error("needs nnjpeg built with -DNNJPEG_CUDA=ON and a visible CUDA device. Received: "
                     f"cuda_compiled={info['cuda_compiled']}, cuda_devices={info['cuda_devices']}")
    threads = nnjpeg.codec.default_threads()
    rows = run(args.repeats)
    report = {"results": rows, "threads": threads, "build_info": info, "cores": os.cpu_count()}
    publish(report, markdown(rows, threads), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
