"""Training steps per second under `--strategy mirrored` on 2 logical CPU devices against none.

This machine has no GPU: the two logical devices are one CPU (2 cores) split in two, so this
measures what distributing costs where nothing is gained (the all-reduce of the gradients and the
per-replica dispatch), not the speed-up of two real devices. Each model trains on random images
with `model.fit`: the target classifier (Keras' own `train_step`) and VQUNet (a custom `train_step`
with its loss scaled for distribution and its codebook statistics summed over the replicas), each
built and compiled under the strategy. In each of `--repeats` rounds, every configuration fits one
epoch of `--steps` steps untimed (tracing, warm-up), then one timed; reported: the median steps/s
with its spread, and mirrored / none.

Run: .venv/bin/python benchmarks/bench_strategy.py [--batch 128] [--steps 20] [--repeats 3]
     [--json benchmarks/results/strategy.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from common import RESULTS, environment, publish  # noqa: E402
from nnjpeg.models import build_classifier  # noqa: E402
from nnjpeg.models.vqunet import VQUNet  # noqa: E402


def _classifier():
    model = build_classifier(input_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, (28, 28, 1), True


def _vqunet():
    model = VQUNet(channels=1, widths=(16, 32), num_codes=256)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model, (32, 32, 1), False


MODELS = {"classifier (Keras train_step)": _classifier, "VQUNet (custom train_step)": _vqunet}


def steps_per_second(build, strategy, batch: int, steps: int) -> float:
    with strategy.scope():
        model, shape, labelled = build()
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, *shape)).astype(np.float32)
    y = rng.integers(0, 10, len(x)) if labelled else x
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)  # tracing and warm-up
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - t0)


def run(batch: int, steps: int, repeats: int) -> dict:
    strategies = {"none": tf.distribute.get_strategy(), "mirrored (2 logical CPUs)": tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])}
    rows = {}
    for model_name, build in MODELS.items():
        runs = {s: [] for s in strategies}
        for _ in range(repeats):
            for s, strategy in strategies.items():
                runs[s].append(steps_per_second(build, strategy, batch, steps))
        rows[model_name] = {s: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                            for s, v in runs.items()}
        medians = [rows[model_name][s]["median"] for s in strategies]
        rows[model_name]["ratio_mirrored_to_none"] = medians[1] / medians[0]
    return {"batch": batch, "steps": steps, "repeats": repeats, "rows": rows, "environment": environment()}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Training steps/s, global batch {report['batch']}, median of {report['repeats']} timed epochs of "
             f"{report['steps']} steps; {env['cpu']}, {env['cores']} cores, TensorFlow {env['tensorflow']}. The two "
             "logical devices share the same cores: this is the cost of distributing, not a speed-up.", "",
             "| model | none (steps/s) | mirrored, 2 logical CPUs (steps/s) | mirrored / none |", "|---|---:|---:|---:|"]
    for name, row in report["rows"].items():
        none, mirrored = row["none"], row["mirrored (2 logical CPUs)"]
        lines.append(f"| {name} | {none['median']:.2f} ({none['min']:.2f}–{none['max']:.2f}) | {mirrored['median']:.2f} "
                     f"({mirrored['min']:.2f}–{mirrored['max']:.2f}) | {row['ratio_mirrored_to_none']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "strategy.json"))
    args = parser.parse_args()
    report = run(args.batch, args.steps, args.repeats)
    publish(report, markdown(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
