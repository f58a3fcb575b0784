"""Throughput of nnjpeg's round trip beside what a user would otherwise pick, in one run.

Workloads: 64 x 224x224x3 and 1024 x 32x32x3 uint8 crops of natural photographs (scikit-image).
Configurations: nnjpeg (1 thread and all threads, on uint8 and on float32 images in [0, 1], the
Keras layer's input format, and the latter into a reused `out=` buffer), Pillow (encode + decode
with the same table as `qtables`, 4:4:4), simplejpeg (q75, 4:4:4), a NumPy/SciPy `dctn`
implementation, nnjpeg's pure-TF backend (XLA), and nnjpeg's Keras layer inside a `tf.data` pipeline
(every core per call, and `threads=1`, one per call with tf.data running calls in parallel; and the
latter through `tf.numpy_function`, the layer's route where its TensorFlow op does not load). The
pipelines are consumed inside a tf.function, as model.fit consumes them, and some also by a Python
loop that turns each batch into a NumPy array. Each configuration is warmed up and checked against
the native output; then every configuration is timed once per round, `--repeats` rounds (a plain
call over back-to-back calls of 0.2 s at least, a pipeline in steps of whole passes, 64 batches at
least, for 0.2 s at least, both after 50 ms of untimed ones), and the median and the spread are
reported in MB/s of uint8 input, with the ratio to Pillow and the process's CPU time. From the
latter comes the ceiling of the layer's share: on two cores, a pipeline that does the codec's work
and its own cannot run faster than the two together divided by the cores.

Run: .venv/bin/python benchmarks/bench_codec.py [--repeats 7] [--json benchmarks/results/codec.json]
     [--tf-threads default|inter-op-1|no-spinning]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time

import numpy as np
from PIL import Image
from scipy.fft import dctn, idctn
from skimage import data

import nnjpeg
from common import RESULTS, environment, publish

TABLE = nnjpeg.nn_table(5)
PIPELINE_ONLY = "tf.data alone:"  # rows that time the pipeline without the codec: not checked
NUMPY_FUNCTION = "through tf.numpy_function"  # the layer's route where its TensorFlow op does not load
TO_NUMPY = "batches to NumPy in Python"  # the pipeline pulled by a Python loop, not inside a tf.function


def natural_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)()[..., :3] for name in ("astronaut", "coffee", "chelsea", "rocket")]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        p = photos[i % len(photos)]
        y = rng.integers(0, p.shape[0] - size + 1)
        x = rng.integers(0, p.shape[1] - size + 1)
        out[i] = p[y : y + size, x : x + size]
    return out


def pillow_roundtrip(batch: np.ndarray) -> np.ndarray:
    q = [int(v) for v in TABLE.ravel()]
    out = np.empty_like(batch)
    for i, img in enumerate(batch):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", qtables=[q, q], subsampling=0)
        out[i] = np.asarray(Image.open(buf))
    return out


def simplejpeg_roundtrip(batch: np.ndarray) -> np.ndarray:
    import simplejpeg

    out = np.empty_like(batch)
    for i, img in enumerate(batch):
        out[i] = simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(img, quality=75, colorsubsampling="444"))
    return out


def scipy_roundtrip(batch: np.ndarray) -> np.ndarray:
    """The same transform written with NumPy/SciPy, vectorized over the whole batch."""
    n, h, w, c = batch.shape
    x = batch.astype(np.float32).reshape(n, h // 8, 8, w // 8, 8, c) - 128.0
    coef = dctn(x, axes=(2, 4), norm="ortho")
    step = TABLE[np.newaxis, np.newaxis, :, np.newaxis, :, np.newaxis]
    t = coef / step
    q = np.sign(t) * np.floor(np.abs(t) + 0.5)
    rec = idctn(q * step, axes=(2, 4), norm="ortho") + 128.0
    return np.clip(np.sign(rec) * np.floor(np.abs(rec) + 0.5), 0, 255).astype(np.uint8).reshape(n, h, w, c)


def tf_configs(batch: np.ndarray, threads: int):
    """The pure-TF backend and the Keras layer in tf.data, or nothing when TensorFlow is missing."""
    try:
        import tensorflow as tf

        from nnjpeg import keras as nnkeras
        from nnjpeg import tf_ops
    except ImportError as e:
        print(f"skipping TensorFlow configurations: {e}", file=sys.stderr)
        return {}
    tf_table = TABLE

    xla = tf.function(lambda x: tf_ops.compress_tf(x, tf_table), jit_compile=True)
    images = tf.constant(batch)

    def tf_backend(_):
        return xla(images).numpy()

    per_call = 64 if batch.shape[1] >= 224 else 256  # typical training batch sizes at these resolutions
    calls = len(batch) // per_call

    def steady_state(images, layer, to_numpy=False):
        # Elements that are already batches, as after an upstream .batch(): this measures the layer's
        # cost in tf.data, not tf.data's own per-image slicing.
        ds = tf.data.Dataset.from_tensor_slices(images.reshape(calls, per_call, *images.shape[1:])).repeat()
        ds = ds if layer is None else ds.map(layer, num_parallel_calls=tf.data.AUTOTUNE)
        return Pipeline(tf, ds.prefetch(tf.data.AUTOTUNE), calls, to_numpy)

    floats = batch.astype(np.float32) / 255.0
    # threads=None: every core per call, as a model's own batches want; threads=1: one per call, tf.data
    # running the calls in parallel (the layer's documented setting for a parallel map).
    every, one = nnkeras.Compression(TABLE.tolist()), nnkeras.Compression(TABLE.tolist(), threads=1)

    def identity(x):
        y = tf.numpy_function(lambda a: a, [x], x.dtype, stateful=False)
        y.set_shape(x.shape)
        return y

    def through_numpy_function(images, layer):
        # The layer as it runs where nnjpeg/_tf_op.so does not load: the map is traced here, and
        # the layer picks its route when traced.
        saved, tf_ops._op = tf_ops._op, False
        try:
            return steady_state(images, layer)
        finally:
            tf_ops._op = saved

    # What the pipeline costs without the codec: the ceiling of the layer's share of the raw speed.
    return {"tf backend (XLA, float32 DCT)": tf_backend,
            f"{PIPELINE_ONLY} no map, uint8": steady_state(batch, None),
            f"{PIPELINE_ONLY} no map, {TO_NUMPY}, uint8": steady_state(batch, None, to_numpy=True),
            f"{PIPELINE_ONLY} identity numpy_function, uint8": steady_state(batch, identity),
            "keras layer in tf.data, uint8": steady_state(batch, every),
            f"keras layer in tf.data, {TO_NUMPY}, uint8": steady_state(batch, every, to_numpy=True),
            "keras layer in tf.data, float32": steady_state(floats, every),
            "keras layer (threads=1) in tf.data, uint8": steady_state(batch, one),
            f"keras layer (threads=1) in tf.data, {TO_NUMPY}, uint8": steady_state(batch, one, to_numpy=True),
            "keras layer (threads=1) in tf.data, float32": steady_state(floats, one),
            f"keras layer (threads=1) in tf.data, {NUMPY_FUNCTION}, uint8": through_numpy_function(batch, one)}


# A configuration is timed over back-to-back calls (or pipeline steps) lasting MIN_TIMED_S at least,
# after WARM_S of untimed ones: on this VM a core that had been idle, or had just run other work,
# took some 10-20 ms to come up to speed (one thread on 64x224x224x3: 6.4 ms right after a 50 ms
# sleep, 4.3 ms back to back), so a lone call of a few milliseconds after another configuration
# measured the core's wake-up rather than the codec. A pipeline timed over a single 21 ms step
# (64 batches of 256 32x32 images) right after it started measured 1.31 ms per 1024 images, and
# 1.14 ms over 2000 batches once running.
WARM_S, MIN_TIMED_S = 0.05, 0.2


class Pipeline:
    """A tf.data pipeline timed while running, as a training loop pulls it.

    The batches are consumed inside a tf.function, as model.fit consumes them, or (to_numpy) pulled
    one by one by a Python loop and turned into NumPy arrays: a copy of each batch (EagerTensor.numpy)
    and a Python call per batch, which neither the codec nor model.fit makes. A step pulls whole
    passes over the workload, 64 batches at least; times are per pass. A running pipeline works
    ahead into its prefetch buffer, as much at the end of the timed steps as at their start.
    """

    def __init__(self, tf, ds, calls: int, to_numpy: bool):
        self.tf, self.ds, self.calls, self.to_numpy = tf, ds, calls, to_numpy
        self.passes_per_step = -(-64 // calls)

    def outputs(self) -> list[np.ndarray]:
        """The first pass of a fresh iterator, in NumPy (for the check)."""
        it = iter(self.ds)
        return [next(it).numpy() for _ in range(self.calls)]

    def _stepper(self, it):
        tf, batches = self.tf, self.calls * self.passes_per_step
        if self.to_numpy:
            def step():
                for _ in range(batches):
                    next(it).numpy()
            return step

        @tf.function
        def consume(n):
            total = tf.constant(0.0)  # one sample of each batch, so that every batch is a value used
            for _ in tf.range(n):
                total += tf.cast(next(it)[0, 0, 0, 0], tf.float32)
            return total

        n = tf.constant(batches)
        return lambda: consume(n).numpy()

    def timed(self) -> tuple[float, float]:
        """Seconds and CPU seconds per pass, on a fresh iterator. One left behind works only until
        its prefetch buffer is full, so it takes nothing from the configurations timed after it."""
        step = self._stepper(iter(self.ds))
        step()  # starts the pipeline's threads (and traces the consumer)
        warm_until = time.perf_counter() + WARM_S
        while time.perf_counter() < warm_until:
            step()
        steps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= MIN_TIMED_S:
                passes = steps * self.passes_per_step
                return elapsed / passes, (time.process_time() - c0) / passes


def looped_call(fn, batch) -> tuple[float, float]:
    """Seconds and CPU seconds per call of fn, called back to back as in a loop over batches."""
    warm_until = time.perf_counter() + WARM_S
    fn(batch)
    while time.perf_counter() < warm_until:
        fn(batch)
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(batch)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= MIN_TIMED_S:
            return elapsed / calls, (time.process_time() - c0) / calls


def time_configs(configs: dict, batch, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(seconds, CPU seconds) per pass for every configuration, `repeats` times each, in rounds
    (CPU: the whole process's, every thread; time.process_time). Every round times
    each configuration once, so that a slow spell of this shared machine falls on all of them
    alike rather than on whichever happened to be timed then, and the ratios stay comparable.

    A plain call is timed in a loop of its own (looped_call), a pipeline in steps of whole passes
    (Pipeline.timed), both after WARM_S of untimed ones: the timing is of a configuration called
    repeatedly, as in a training loop, not of its first call after another one.
    """
    times = {name: [] for name in configs}
    for _ in range(repeats):
        for name, fn in configs.items():
            times[name].append(fn.timed() if isinstance(fn, Pipeline) else looped_call(fn, batch))
    return times


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of samples within one grey level; float32 results in [0, 1] are scaled to [0, 255] first."""
    a, b = (np.round(x * 255.0) if x.dtype == np.float32 else x for x in (a, b))
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)) <= 1))


TF_THREADS = ("default", "inter-op-1", "no-spinning")


def configure_tensorflow(setting: str) -> None:
    """TensorFlow's threading for the run, set before TensorFlow starts.

    "default" leaves it alone; "inter-op-1" runs one inter-op thread (as TF_NUM_INTEROP_THREADS=1);
    "no-spinning" stops its thread pools' spin-waiting for work before they sleep (ConfigProto's
    experimental.disable_thread_spinning, which TensorFlow 2 takes only through the eager
    context's private `_config`: for finding where a pipeline's CPU time goes, not to ship).
    """
    if setting == "default":
        return
    import tensorflow as tf

    if setting == "inter-op-1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    config = config_pb2.ConfigProto()
    config.experimental.disable_thread_spinning = True
    context.context()._config = config


def run(repeats: int, tf_threads: str = "default") -> dict:
    configure_tensorflow(tf_threads)
    threads = nnjpeg.codec.default_threads()
    workloads = {"64x224x224x3": natural_crops(64, 224), "1024x32x32x3": natural_crops(1024, 32)}
    results = []
    for wname, batch in workloads.items():
        native = nnjpeg.compress(batch, TABLE, threads=threads)
        floats = batch.astype(np.float32) / 255.0  # the Keras layer's input format, converted untimed
        float_out = np.empty_like(floats)
        configs = {
            "nnjpeg 1 thread": lambda b: nnjpeg.compress(b, TABLE, threads=1),
            "nnjpeg 1 thread, float32 in/out": lambda b: nnjpeg.compress(floats, TABLE, threads=1),
            f"nnjpeg {threads} threads": lambda b: nnjpeg.compress(b, TABLE, threads=threads),
            f"nnjpeg {threads} threads, float32 in/out": lambda b: nnjpeg.compress(floats, TABLE, threads=threads),
            # One result buffer reused from call to call (out=): no fresh pages to fault in.
            f"nnjpeg {threads} threads, float32 in/out, out= reused": lambda b: nnjpeg.compress(
                floats, TABLE, threads=threads, out=float_out),
            "Pillow (same table, 4:4:4)": pillow_roundtrip,
            "simplejpeg (q75, 4:4:4)": simplejpeg_roundtrip,
            "NumPy/SciPy dctn": scipy_roundtrip,
            **tf_configs(batch, threads),
        }
        mb = batch.nbytes / 1e6
        agree = {}
        for cname, fn in configs.items():
            # Warm-up (and XLA compilation), then the check; a pipeline's batches in order.
            out = np.concatenate(fn.outputs()) if isinstance(fn, Pipeline) else fn(batch)
            # Pillow/simplejpeg work in YCbCr with libjpeg's integer DCT: checked loosely.
            agree[cname] = None if cname.startswith(PIPELINE_ONLY) else agreement(out, native)
        all_times = time_configs(configs, batch, repeats)
        for cname, runs in all_times.items():
            times, cpu = [t for t, _ in runs], statistics.median(c for _, c in runs)
            med = statistics.median(times)
            results.append({"workload": wname, "config": cname, "median_s": med, "min_s": min(times),
                            "max_s": max(times), "cpu_median_s": cpu, "mb_per_s": mb / med,
                            "agree_within_1": agree[cname]})
            print(f"{wname:>14}  {cname:<44} {med * 1e3:9.2f} ms  CPU {cpu * 1e3:8.2f} ms  {mb / med:9.1f} MB/s  agree "
                  + ("-" if agree[cname] is None else f"{agree[cname]:.4f}"),
                  flush=True)
        base = next(r for r in results if r["workload"] == wname and r["config"].startswith("Pillow"))
        raw = {dt: next(r for r in results if r["workload"] == wname and r["config"] == f"nnjpeg {threads} threads{sfx}")
               for dt, sfx in (("uint8", ""), ("float32", ", float32 in/out"))}
        for r in results:
            if r["workload"] == wname:
                r["x_pillow"] = r["mb_per_s"] / base["mb_per_s"]
                same = raw.get(r["config"].rsplit(" ", 1)[-1])
                if r["config"].startswith("keras layer"):
                    r["of_raw_same_dtype"] = r["mb_per_s"] / same["mb_per_s"]
                elif r["config"].startswith(PIPELINE_ONLY):
                    r["time_of_raw_same_dtype"] = same["mb_per_s"] / r["mb_per_s"]
    return {"results": results, "threads": threads, "tf_threads": tf_threads, "environment": environment()}


# The project's throughput targets on a 2-core machine: one thread against Pillow per workload, all
# threads against one, and the Keras layer in tf.data against the raw codec (uint8).
TARGET_X_PILLOW = {"64x224x224x3": 10.0, "1024x32x32x3": 50.0}
TARGET_SCALING = 1.7
TARGET_LAYER_SHARE = 0.70


def targets(report: dict) -> list[str]:
    """One line per target and workload: the measured value, the target, met or not."""
    threads = report["threads"]
    rows = {(r["workload"], r["config"]): r for r in report["results"]}
    verdict = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    lines = ["Against the targets, in this run:", ""]
    for wname, want in TARGET_X_PILLOW.items():
        one, every = rows.get((wname, "nnjpeg 1 thread")), rows.get((wname, f"nnjpeg {threads} threads"))
        if one is None:
            continue
        lines.append(f"- {wname}: 1 thread {one['x_pillow']:.2f}x Pillow (target >= {want:g}x, {verdict(one['x_pillow'] >= want)}); "
                     f"{threads} threads {one['median_s'] / every['median_s']:.2f}x one "
                     f"(target >= {TARGET_SCALING}x, {verdict(one['median_s'] / every['median_s'] >= TARGET_SCALING)})")
        for cname in ("keras layer in tf.data, uint8", "keras layer (threads=1) in tf.data, uint8",
                      f"keras layer in tf.data, {TO_NUMPY}, uint8",
                      f"keras layer (threads=1) in tf.data, {TO_NUMPY}, uint8",
                      f"keras layer (threads=1) in tf.data, {NUMPY_FUNCTION}, uint8"):
            r = rows.get((wname, cname))
            if r is not None:
                share = r["of_raw_same_dtype"]
                lines.append(f"  - {cname}: {100 * share:.1f} % of the raw codec (target >= {100 * TARGET_LAYER_SHARE:.0f} %, "
                             f"{verdict(share >= TARGET_LAYER_SHARE)})")
        for consumer, suffix in (("consumed in a tf.function", ""), (TO_NUMPY, f", {TO_NUMPY}")):
            alone = rows.get((wname, f"{PIPELINE_ONLY} no map{suffix}, uint8"))
            if alone is None:
                continue
            # The layer's pipeline does the codec's work and the pipeline's own on `threads` cores.
            work = one["cpu_median_s"] + alone["cpu_median_s"]
            lines.append(f"  - the ceiling on {threads} cores, {consumer}: the codec's {one['cpu_median_s'] * 1e3:.2f} ms "
                         f"of CPU per pass (1 thread) and the pipeline's own {alone['cpu_median_s'] * 1e3:.2f} ms (no map) "
                         f"take {work / threads * 1e3:.2f} ms at least, so the layer in tf.data reaches about "
                         f"{100 * every['median_s'] * threads / work:.0f} % of the raw codec at most")
    return lines


def markdown(report: dict) -> str:
    lines = ["| workload | configuration | median ms | min–max ms | CPU ms | MB/s | × Pillow |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        note = (f" ({100 * r['of_raw_same_dtype']:.0f} % of nnjpeg, same dtype)" if "of_raw_same_dtype" in r
                else f" ({100 * r['time_of_raw_same_dtype']:.0f} % of nnjpeg's time)" if "time_of_raw_same_dtype" in r else "")
        lines.append(f"| {r['workload']} | {r['config']}{note} | {r['median_s'] * 1e3:.2f} | "
                     f"{r['min_s'] * 1e3:.2f}–{r['max_s'] * 1e3:.2f} | {r['cpu_median_s'] * 1e3:.2f} | {r['mb_per_s']:.1f} | "
                     f"{r['x_pillow']:.1f} |")
    lines += ["", *targets(report)]
    info = report["environment"]
    lines += ["", f"Kernel `{info['build_info']['kernel']}`, {report['threads']} threads, {info['cpu']}; NumPy "
              f"{info['numpy']}, Pillow {info['pillow']}, simplejpeg {info['simplejpeg']}, TensorFlow {info['tensorflow']}"
              + (f" (layer's native route: {info['tf_native_route']})" if info.get("tf_native_route") else "")
              + (f", TensorFlow threading: {report['tf_threads']}" if report.get("tf_threads", "default") != "default" else "")
              + ". MB/s of uint8 input (H·W·C bytes per image) for every row; CPU ms: the process's CPU time"
              " (every thread, user + system) per call or pipeline pass, median."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=str(RESULTS / "codec.json"))
    parser.add_argument("--tf-threads", choices=TF_THREADS, default="default",
                        help="TensorFlow's threading for the run (see configure_tensorflow)")
    args = parser.parse_args()
    if args.tf_threads != "default":
        try:
            import tensorflow  # noqa: F401
        except ImportError as e:
            parser.error(f"--tf-threads {args.tf_threads} needs TensorFlow, which did not import: {e}")
    report = run(args.repeats, args.tf_threads)
    publish(report, markdown(report), args.json)
    print(f"kernel: {report['environment']['build_info']['kernel']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
