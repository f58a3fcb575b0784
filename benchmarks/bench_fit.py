"""What the codec adds to a training step: `model.fit` on natural-image crops, with and without it.

The codec is meant to be fast enough that it never dominates a training step. This times whole
`model.fit` steps of a small CNN (two convolutions, 3x3, 16 and 32 filters; a stand-in for the
classifier being defended) on uint8 crops of scikit-image's photographs, in three configurations,
each with its own model and pipeline:

- "no codec": crops -> float32 in [0, 1] -> model;
- "layer in tf.data (threads=1)": the Keras layer in a parallel `map` of the input pipeline, before
  the conversion (the README's `tf.data` usage);
- "layer in the model": the layer as the model's first layer, on the float32 batch inside the
  training step, every core per call (the defended-model shape of `nnjpeg.keras`).

The layer's `tf.data` pipeline is checked first (its batches equal `nnjpeg.compress`). Then,
in each of `--repeats` rounds, every configuration fits one call of two epochs of `--steps` steps:
the first (a fresh iterator starting, the model warming up) untimed, the second timed by a callback.
Reported: the median ms per step with its spread, and the difference from "no codec", beside the
codec's own time on one batch (`nnjpeg.compress`, every core) for scale. Only this machine's CPU
runs the model here; where a GPU runs it, steps are shorter and the codec's share larger.

Run: .venv/bin/python benchmarks/bench_fit.py [--size 32] [--batch 256] [--steps 64] [--repeats 7]
     [--json benchmarks/results/fit.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import nnjpeg
from bench_codec import TABLE, looped_call, natural_crops
from common import RESULTS, environment, publish
from nnjpeg import _args


def model(keras, size: int, defense=None):
    inputs = keras.Input((size, size, 3))
    x = inputs if defense is None else defense(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inputs, keras.layers.Dense(10)(x))
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def run(size: int, batch: int, steps: int, repeats: int) -> dict:
    import keras
    import tensorflow as tf

    from nnjpeg import keras as nnkeras

    class EpochTimes(keras.callbacks.Callback):
        """The wall time of each epoch."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    images = natural_crops(8 * batch, size)  # 8 batches, repeated
    labels = (np.arange(len(images)) % 10).astype(np.int64)
    source = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch, drop_remainder=True).cache().repeat()
    in_data = nnkeras.Compression(TABLE.tolist(), threads=1)

    def to_unit(x, y):
        return tf.cast(x, tf.float32) / 255.0, y

    coded = source.map(lambda x, y: (in_data(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    first = next(iter(coded))[0].numpy()
    if not np.array_equal(first, nnjpeg.compress(images[:batch], TABLE)):
        raise SystemExit("the layer in tf.data did not give nnjpeg.compress's output")
    configs = {
        "no codec": (model(keras, size), source.map(to_unit)),
        "layer in tf.data (threads=1)": (model(keras, size), coded.map(to_unit)),
        "layer in the model": (model(keras, size, nnkeras.Compression(TABLE.tolist())), source.map(to_unit)),
    }
    configs = {name: (m, ds.prefetch(tf.data.AUTOTUNE)) for name, (m, ds) in configs.items()}
    per_step = {name: [] for name in configs}
    for r in range(repeats):
        for name, (m, ds) in configs.items():
            times = EpochTimes()
            m.fit(ds, steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[times], shuffle=False)
            per_step[name].append(times.seconds[1] / steps)
            print(f"round {r + 1}/{repeats}  {name:30s} {per_step[name][-1] * 1e3:7.2f} ms/step", file=sys.stderr)
    codec_s, _ = looped_call(lambda b: nnjpeg.compress(b, TABLE), images[:batch])
    base = statistics.median(per_step["no codec"])
    results = []
    for name, ts in per_step.items():
        med = statistics.median(ts)
        results.append({"config": name, "ms_per_step": med * 1e3, "min_ms": min(ts) * 1e3, "max_ms": max(ts) * 1e3,
                        "added_ms": (med - base) * 1e3, "added_share": med / base - 1, "rounds_ms": [t * 1e3 for t in ts]})
    return {"workload": f"{batch}x{size}x{size}x3 per step", "steps": steps, "repeats": repeats,
            "codec_ms_per_batch": codec_s * 1e3, "results": results, "environment": environment()}


def markdown(report: dict) -> str:
    lines = [f"`model.fit` steps of a small CNN, {report['workload']}, median of {report['repeats']} rounds of "
             f"{report['steps']} timed steps per configuration. The codec alone: "
             f"{report['codec_ms_per_batch']:.2f} ms per batch (`nnjpeg.compress`, every core).", "",
             "| configuration | median ms/step | min–max ms | beside no codec |", "|---|---:|---:|---:|"]
    for r in report["results"]:
        added = "" if r["config"] == "no codec" else f"{r['added_ms']:+.2f} ms ({100 * r['added_share']:+.1f} %)"
        lines.append(f"| {r['config']} | {r['ms_per_step']:.2f} | {r['min_ms']:.2f}–{r['max_ms']:.2f} | {added} |")
    env = report["environment"]
    lines += ["", f"Kernel `{env['build_info']['kernel']}`, {env['cpu']}, {env['cores']} cores; "
                  f"TensorFlow {env['tensorflow']} (layer's native route: {env.get('tf_native_route')})."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Crops of 8...300 pixels: the CNN needs 8, the smallest photograph (chelsea) has 300 rows.
    p.add_argument("--size", type=_args.integer(8, 300), default=32, help="crop side in pixels (default 32)")
    p.add_argument("--batch", type=_args.COUNT, default=256, help="images per step (default 256)")
    p.add_argument("--steps", type=_args.COUNT, default=64, help="timed steps per configuration and round (default 64)")
    p.add_argument("--repeats", type=_args.COUNT, default=7, help="rounds (default 7)")
    p.add_argument("--json", default=str(RESULTS / "fit.json"))
    args = p.parse_args()
    report = run(args.size, args.batch, args.steps, args.repeats)
    publish(report, markdown(report), args.json)


if __name__ == "__main__":
    main()
