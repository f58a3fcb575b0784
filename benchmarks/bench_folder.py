"""Images/s of an image folder streamed through tf.data at 224x224, with and without the codec, on 1 and 2 threads.

The folder is read by `nnjpeg.datasets.load("folder:DIR")`, whose `as_tf()` reads, decodes, resizes
(the shorter side to 224, antialiased) and centre-crops every file inside `tf.data`. By default it is
an ImageNet-style tree written into a temporary folder first: `--files` JPEG files (quality 90, 4:2:0)
spread over `--classes` class folders, each a crop of one of scikit-image's photographs rescaled to a
random size, shorter side 224...480 pixels and aspect 3:4...4:3 (ImageNet's are mostly 500x375 or
375x500); `--data DIR` reads a tree of one's own instead (`--split`, as `load` takes it).

Two pipelines, `as_tf().repeat().batch(64, drop_remainder=True)` and then:

- "decoding alone": `.prefetch(AUTOTUNE)`;
- "decoding + codec": `.map(nnjpeg.tf_compress(nnjpeg.nn_table(5), threads=1),
  num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)`: the codec on each batch, one codec thread per
  call, as the README applies it in `tf.data`.

Each runs with tf.data limited to N threads (`--threads`, default 1 and 2) by `tf.data.Options` on
the final dataset: `threading.private_threadpool_size = N` (every function of the pipeline, the
loader's decoding and the codec's map, runs on a pool of N threads of its own instead of
TensorFlow's shared inter-op pool) and `threading.max_intra_op_parallelism = 1` (no op inside spreads
its work over more threads). `datasets.load` is used as it is: the limits are options of the dataset
it returns.

The first batch of each pipeline is checked first: the codec's equals `nnjpeg.compress` of the
decoded one. Then, in each of `--repeats` rounds, every configuration starts a fresh iterator, pulls
`--warmup` batches untimed (the pipeline's threads starting, its buffers filling) and then
`--images` images timed, pulled by a Python loop (no copy). Reported: the median images/s with its
spread, the process's CPU time per image (every thread), decoding + codec against decoding alone
and 2 threads against 1; beside the codec's own time on one batch (`nnjpeg.compress`, one thread).

Run: .venv/bin/python benchmarks/bench_folder.py [--files 384] [--repeats 7] [--threads 1 2]
     [--data DIR] [--json benchmarks/results/folder.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

import nnjpeg  # noqa: E402
from bench_codec import TABLE, looped_call  # noqa: E402
from common import RESULTS, environment, publish  # noqa: E402
from nnjpeg import _args, datasets  # noqa: E402

IMAGE_SIZE = (224, 224)
BATCH = 64  # bench_codec's batch at 224x224
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
SHORTER_SIDE = (224, 480)
ASPECT = (3 / 4, 4 / 3)
DECODING, WITH_CODEC = "decoding alone", "decoding + codec"


def write_folder(root: Path, files: int, classes: int, seed: int = 0) -> dict:
    """Writes `files` JPEG files into `root/class<k>/`, round-robin over the classes, and describes them.

    Each is a random crop of one of PHOTOS (in turn), rescaled (bilinear) to a random size: shorter
    side in SHORTER_SIDE, width / height in ASPECT; saved at quality 90, 4:2:0.

    Returns:
        The number of files and classes, the sizes' range and median (W x H) and the mean file size.
    """
    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)()[..., :3] for name in PHOTOS]
    for k in range(classes):
        (root / f"class{k}").mkdir(parents=True)
    sizes, nbytes = [], []
    for i in range(files):
        photo = photos[i % len(photos)]
        shorter, aspect = int(rng.integers(SHORTER_SIDE[0], SHORTER_SIDE[1] + 1)), rng.uniform(*ASPECT)
        w, h = (round(shorter * aspect), shorter) if aspect >= 1 else (shorter, round(shorter / aspect))
        # The largest crop of that aspect the photograph holds, times 0.5...1, somewhere in it.
        scale = min(photo.shape[0] / h, photo.shape[1] / w) * rng.uniform(0.5, 1.0)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        y, x = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
        image = Image.fromarray(photo[y : y + ch, x : x + cw]).resize((w, h), Image.Resampling.BILINEAR)
        path = root / f"class{i % classes}" / f"img_{i:04d}.JPEG"  # ImageNet's upper-case extension
        image.save(path, "JPEG", quality=90)
        sizes.append((w, h))
        nbytes.append(path.stat().st_size)
    pixels = [w * h for w, h in sizes]
    median = sizes[int(np.argsort(pixels)[len(pixels) // 2])]
    return {"files": files, "classes": classes, "written": True, "min_wh": list(min(sizes, key=lambda s: s[0] * s[1])),
            "median_wh": list(median), "max_wh": list(max(sizes, key=lambda s: s[0] * s[1])),
            "mean_kb": float(np.mean(nbytes)) / 1e3}


def pipeline(dataset: datasets.Dataset, codec: bool, threads: int) -> tf.data.Dataset:
    """The folder's examples in batches of BATCH, repeated, with or without the codec per batch, on
    `threads` tf.data threads."""
    ds = dataset.as_tf().repeat().batch(BATCH, drop_remainder=True)
    if codec:
        ds = ds.map(nnjpeg.tf_compress(TABLE, threads=1), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def check(dataset: datasets.Dataset, threads: int) -> np.ndarray:
    """Checks the codec pipeline's first batch against `nnjpeg.compress` of the decoding pipeline's;
    returns the decoded batch."""
    (plain, labels), (coded, coded_labels) = (next(iter(pipeline(dataset, codec, threads))) for codec in (False, True))
    plain = plain.numpy()
    if plain.shape != (BATCH, *IMAGE_SIZE, 3) or plain.dtype != np.uint8:
        raise SystemExit(f"Expected batches of uint8 images of shape {(BATCH, *IMAGE_SIZE, 3)}. Received: "
                         f"dtype={plain.dtype}, shape={plain.shape}")
    if not (np.array_equal(labels, coded_labels) and np.array_equal(coded, nnjpeg.compress(plain, TABLE, threads=1))):
        raise SystemExit("the codec's pipeline did not give nnjpeg.compress of the decoded batch")
    return plain


def images_per_second(ds: tf.data.Dataset, warmup: int, images: int) -> tuple[float, float]:
    """Images/s and CPU seconds per image (the process's, every thread) over `images` images (whole
    batches) pulled from a fresh iterator after `warmup` batches untimed."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    batches = -(-images // BATCH)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return batches * BATCH / wall, cpu / (batches * BATCH)


def measure(dataset: datasets.Dataset, threads: tuple[int, ...], repeats: int, warmup: int, images: int) -> list[dict]:
    """Every configuration once a round, `repeats` rounds, so that a slow spell of a shared machine
    falls on all of them alike; one row per configuration."""
    configs = {(name, n): pipeline(dataset, name == WITH_CODEC, n) for n in threads for name in (DECODING, WITH_CODEC)}
    runs = {key: [] for key in configs}
    for r in range(repeats):
        for (name, n), ds in configs.items():
            runs[name, n].append(images_per_second(ds, warmup, images))
            print(f"round {r + 1}/{repeats}  {name:18s} {n} thread(s)  {runs[name, n][-1][0]:7.1f} images/s",
                  file=sys.stderr, flush=True)
    rows = []
    for (name, n), values in runs.items():
        rates = [v for v, _ in values]
        rows.append({"pipeline": name, "threads": n, "images_per_s": statistics.median(rates), "min": min(rates),
                     "max": max(rates), "cpu_ms_per_image": statistics.median(c for _, c in values) * 1e3,
                     "runs": rates})
    return rows


def run(data_dir: str | None, split: str, files: int, classes: int, threads: tuple[int, ...], repeats: int,
        warmup: int, images: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            folder, written = Path(tmp), write_folder(Path(tmp), files, classes)
        else:
            folder, written = Path(data_dir), None
        dataset = datasets.load(f"folder:{folder}", split, image_size=IMAGE_SIZE)
        if dataset.size < BATCH:
            raise SystemExit(f"Expected a folder of {BATCH} images at least (one batch). Received: {dataset.size} "
                             f"in {dataset.source}")
        images = images or dataset.size
        batch = check(dataset, max(threads))
        rows = measure(dataset, threads, repeats, warmup, images)
        described = written or {"files": dataset.size, "classes": dataset.num_classes, "written": False,
                                "source": dataset.source}
        skipped = dataset.skipped
    codec_s, _ = looped_call(lambda b: nnjpeg.compress(b, TABLE, threads=1), batch)
    by = {(r["pipeline"], r["threads"]): r for r in rows}
    for r in rows:
        r["of_decoding_alone"] = r["images_per_s"] / by[DECODING, r["threads"]]["images_per_s"]
        r["of_one_thread"] = (r["images_per_s"] / by[r["pipeline"], 1]["images_per_s"]
                              if (r["pipeline"], 1) in by else None)
    return {"data": described, "split": split, "skipped_files": skipped, "image_size": list(IMAGE_SIZE),
            "batch": BATCH, "repeats": repeats, "warmup_batches": warmup, "timed_images": -(-images // BATCH) * BATCH,
            "threads_option": "threading.private_threadpool_size = N, threading.max_intra_op_parallelism = 1",
            "codec": "nnjpeg.tf_compress(nnjpeg.nn_table(5), threads=1)",
            "codec_alone_ms_per_batch": codec_s * 1e3, "results": rows, "environment": environment()}


def _describe(d: dict) -> str:
    if not d["written"]:
        return f"{d['files']} images in {d['classes']} classes from {d['source']}"
    wh = lambda key: "×".join(map(str, d[key]))  # noqa: E731
    return (f"{d['files']} JPEG files (quality 90) in {d['classes']} class folders, crops of scikit-image's "
            f"photographs from {wh('min_wh')} to {wh('max_wh')} pixels (median {wh('median_wh')}), "
            f"{d['mean_kb']:.0f} kB on average")


def markdown(report: dict) -> str:
    env = report["environment"]
    h, w = report["image_size"]
    lines = [f"`nnjpeg.datasets.load(\"folder:DIR\")` through `tf.data` at {h}×{w}, batches of {report['batch']}: "
             f"{_describe(report['data'])}. Median of {report['repeats']} rounds of {report['timed_images']} images per "
             f"configuration, each after {report['warmup_batches']} batches untimed; {env['cpu']}, {env['cores']} cores, "
             f"TensorFlow {env['tensorflow']} (the codec's route: {env.get('tf_native_route')}).", "",
             "| pipeline | tf.data threads | images/s | min–max | CPU ms per image | × decoding alone | × 1 thread |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        scaling = "" if r["of_one_thread"] is None else f"{r['of_one_thread']:.2f}"
        lines.append(f"| {r['pipeline']} | {r['threads']} | {r['images_per_s']:.1f} | {r['min']:.1f}–{r['max']:.1f} | "
                     f"{r['cpu_ms_per_image']:.2f} | {r['of_decoding_alone']:.2f} | {scaling} |")
    per_batch = report["codec_alone_ms_per_batch"]
    lines += ["", f"The codec alone: {per_batch:.2f} ms per batch of {report['batch']} on one thread "
                  f"(`nnjpeg.compress`, {report['batch'] / per_batch * 1e3:.0f} images/s). N tf.data threads: "
                  f"`tf.data.Options` on the final dataset, `{report['threads_option']}`; the codec: "
                  f"`{report['codec']}` on each batch. CPU ms: the process's CPU time (every thread, user + system) per image, "
                  "median."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="an image folder of one's own (default: one written to a temporary folder)")
    parser.add_argument("--split", default="val", choices=("train", "test", "val"))
    parser.add_argument("--files", type=_args.integer(BATCH), default=384, help="files written (default 384)")
    parser.add_argument("--classes", type=_args.COUNT, default=4, help="class folders written (default 4)")
    parser.add_argument("--threads", type=_args.COUNT, nargs="+", default=[1, 2], help="tf.data threads (default 1 2)")
    parser.add_argument("--repeats", type=_args.COUNT, default=7, help="rounds (default 7)")
    parser.add_argument("--warmup", type=_args.integer(0), default=2, help="batches untimed per run (default 2)")
    parser.add_argument("--images", type=_args.COUNT, default=None,
                        help="images timed per run, in whole batches (default: one pass over the folder)")
    parser.add_argument("--json", default=str(RESULTS / "folder.json"))
    args = parser.parse_args()
    if args.data is not None and not Path(args.data).is_dir():
        parser.error(f"--data: expected an image folder. Received: {args.data!r}, which is not a folder")
    report = run(args.data, args.split, args.files, args.classes, tuple(dict.fromkeys(args.threads)), args.repeats,
                 args.warmup, args.images)
    publish(report, markdown(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
