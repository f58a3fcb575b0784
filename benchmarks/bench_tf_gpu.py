"""The codec op inside a Keras model on a GPU, beside the pure-TF backend and the op's CPU kernel.

Workloads: 64 x 224x224x3 and 1024 x 32x32x3 crops of natural photographs (scikit-image), as
float32 in [0, 1] (the Keras layers' input), already in GPU memory. Modes: the NN-favored table in
RGB (`Compression`) and standard JPEG at quality 75, 4:2:0 (`JPEG`). The model: the defence layer,
then a small classifier head (3x3 convolution to 16 channels, ReLU, global average pooling, 10
logits) on the GPU, in one tf.function; each call ends by copying the sum of the logits to the
host, which waits for the GPU (the same few microseconds in every row). Defences:

- none: the head alone;
- native, GPU kernel: backend="native", the op placed on the GPU with the model;
- native, CPU kernel: the same layer under tf.device("/CPU:0"), the images copied to the host and
  back, as a model on a GPU ran the op before it had a GPU kernel;
- tf: backend="tf" (`compress_tf`), on the GPU, and the same compiled with XLA.

Each defence's output is checked first against the scalar CPU kernel's: the GPU kernel must be
bit-identical to it (the run stops otherwise) and to run on the GPU; the share of identical samples
is reported for every defence. Then `--repeats` rounds, each timing every configuration once
(back-to-back calls for 0.2 s at least after 50 ms of untimed ones, as bench_codec.py); medians,
spreads and the defence's own time (the model's less the head's) go to JSON and Markdown.

Run where TensorFlow sees a GPU, against nnjpeg built with -DNNJPEG_CUDA=ON (scripts/check_gpu.sh
does both): python3 benchmarks/bench_tf_gpu.py [--repeats 5] [--json build/gpu/report/tf_gpu.json]
`--quick` (a few images, one round) checks the script itself; `--device /CPU:0` runs it without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

import nnjpeg
from bench_codec import TABLE, natural_crops, time_configs
from common import environment, publish
from nnjpeg import codec

MODES = {  # name: (layer for a backend, color, subsampling, table)
    "NN-favored table, rgb": ("Compression", "rgb", "4:4:4", TABLE),
    "jpeg q75, 4:2:0": ("JPEG", "ycbcr", "4:2:0", codec.jpeg_table(75, 3)),
}
DEFENCES = {  # name: (backend, where the layer runs: "model" or "cpu", XLA)
    "none": (None, "model", False),
    "native, GPU kernel": ("native", "model", False),
    "native, CPU kernel": ("native", "cpu", False),
    "tf": ("tf", "model", False),
    "tf, XLA": ("tf", "model", True),
}
GPU_KERNEL = "native, GPU kernel"


def make_layer(mode: str, backend: str):
    from nnjpeg.keras import JPEG, Compression

    kind, _, _, _ = MODES[mode]
    return Compression(TABLE, backend=backend) if kind == "Compression" else JPEG(75, backend=backend)


def scalar_reference(mode: str, images: np.ndarray) -> np.ndarray:
    """The scalar CPU kernel's round trip, which the GPU kernel repeats operation for operation."""
    _, color, subsampling, table = MODES[mode]
    tables = codec.check_table(table, images.shape[-1], color)
    return codec.run(images, tables, codec.check_mode(color, subsampling), 1, "cpu", kernel="scalar")


def make_head(tf, keras, device: str):
    with tf.device(device):
        head = keras.Sequential([keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
        head.build((None, None, None, 3))
    return head


def make_defence(tf, layer, place: str, xla: bool, device: str):
    """The defence alone as a tf.function: the layer on `device`, or on the CPU (place="cpu")."""
    call = tf.function(lambda x: layer(x), jit_compile=True) if xla else layer

    @tf.function
    def defence(x):
        with tf.device("/CPU:0" if place == "cpu" else device):
            return call(x)

    return defence


def make_model(tf, defence, head, device: str):
    """defence, then the head on `device`; returns the logits' sum, a scalar the host waits for."""
    @tf.function
    def model(x):
        y = x if defence is None else defence(x)
        with tf.device(device):
            return tf.reduce_sum(head(y))

    return model


def check_defence(tf, name: str, layer, images, on_device, mode: str, reference, device: str) -> float:
    """Share of samples of the defence's output identical to the scalar kernel's; the GPU kernel must
    give every one, and run on `device`."""
    backend, place, xla = DEFENCES[name]
    out = make_defence(tf, layer, place, xla, device)(on_device).numpy()
    identical = float(np.mean(out == reference))
    if name == GPU_KERNEL:
        with tf.device(device):
            eager = layer(on_device)
        ran_on = tf.DeviceSpec.from_string(eager.device).device_type
        want = tf.DeviceSpec.from_string(device).device_type
        if ran_on != want:
            raise SystemExit(f"Expected the native op to run on {device}. Received: {eager.device}")
        if identical != 1.0:
            diff = np.abs(out.astype(np.float64) - reference) * 255
            raise SystemExit(f"Expected the GPU kernel's output bit-identical to the scalar CPU kernel's ({mode}, "
                             f"{images.shape}). Received: {identical:.6%} identical, max diff {diff.max():.3f} "
                             "grey levels")
    return identical


def run(tf, keras, workloads: dict, repeats: int, device: str) -> list[dict]:
    head = make_head(tf, keras, device)
    rows = []
    for workload, images in workloads.items():
        with tf.device(device):
            on_device = tf.identity(tf.constant(images))
        for mode in MODES:
            reference = scalar_reference(mode, images)
            configs, identical = {}, {}
            for name, (backend, place, xla) in DEFENCES.items():
                defence = None
                if backend is not None:
                    layer = make_layer(mode, backend)
                    layer.build(images.shape)
                    identical[name] = check_defence(tf, name, layer, images, on_device, mode, reference, device)
                    defence = make_defence(tf, layer, place, xla, device)
                model = make_model(tf, defence, head, device)
                configs[name] = lambda x, model=model: model(x).numpy()
            times = time_configs(configs, on_device, repeats)
            head_s = statistics.median(s for s, _ in times["none"])
            for name, samples in times.items():
                wall = [s for s, _ in samples]
                median = statistics.median(wall)
                rows.append({"workload": workload, "mode": mode, "defence": name,
                             "identical_to_scalar": identical.get(name),
                             "median_s": median, "min_s": min(wall), "max_s": max(wall),
                             "defence_s": median - head_s})
                print(f"{workload} {mode} {name}: {median * 1e3:.2f} ms per model call", flush=True)
    return rows


def markdown(rows: list[dict], device: str) -> str:
    lines = [f"| workload | mode | defence | identical to scalar CPU | model ms (min–max) | defence ms | "
             f"× GPU kernel |", "|---|---|---|---:|---:|---:|---:|"]
    gpu = {(r["workload"], r["mode"]): r["defence_s"] for r in rows if r["defence"] == GPU_KERNEL}
    for r in rows:
        same = "" if r["identical_to_scalar"] is None else f"{100 * r['identical_to_scalar']:.3f} %"
        base = gpu[(r["workload"], r["mode"])]
        ratio = "" if r["defence"] == "none" or base <= 0 else f"{r['defence_s'] / base:.2f}"
        lines.append(f"| {r['workload']} | {r['mode']} | {r['defence']} | {same} | {r['median_s'] * 1e3:.2f} "
                     f"({r['min_s'] * 1e3:.2f}–{r['max_s'] * 1e3:.2f}) | {r['defence_s'] * 1e3:.2f} | {ratio} |")
    lines += ["", f"A model call on {device}: the defence, then the head, on float32 images already on the device, "
              "ending with the logits' sum copied to the host. Defence ms: the model's median less the head's "
              "alone (none). × GPU kernel: the defence's time over the GPU kernel's."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="build/gpu/report/tf_gpu.json")
    parser.add_argument("--device", default="/GPU:0", help="where the model runs (default /GPU:0)")
    parser.add_argument("--quick", action="store_true", help="a few images and one round: checks the script")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    from nnjpeg import tf_ops

    if tf.DeviceSpec.from_string(args.device).device_type == "GPU" and not tf.config.list_physical_devices("GPU"):
        parser.error(f"Expected TensorFlow to see a GPU for --device {args.device}. Received: "
                     "tf.config.list_physical_devices('GPU') == []")
    if tf_ops.native_op_status() != "op":
        parser.error(f"Expected nnjpeg's TensorFlow op to load. Received: {tf_ops.native_op_status()}")
    sizes = ((4, 224), (64, 32)) if args.quick else ((64, 224), (1024, 32))
    workloads = {f"{n}x{s}x{s}x3": natural_crops(n, s).astype(np.float32) / 255.0 for n, s in sizes}
    rows = run(tf, keras, workloads, 1 if args.quick else args.repeats, args.device)
    gpus = tf.config.list_physical_devices("GPU")
    report = {"results": rows, "device": args.device, "tensorflow": tf.__version__, "keras": keras.__version__,
              "gpu": tf.config.experimental.get_device_details(gpus[0]).get("device_name") if gpus else None,
              "environment": environment()}
    publish(report, markdown(rows, args.device), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
