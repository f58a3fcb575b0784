"""Sharded evaluation: one `nnjpeg evaluate` process against K shard processes run at once, merged.

Each configuration runs the same evaluation (defenses, attacks, eps, scenario, seeded images) as
whole processes of the installed `nnjpeg` command, start-up and model loading included, as a user
or a cluster runs them:

- "1 process": `nnjpeg evaluate ... --json whole.json`;
- "K shards at once": `nnjpeg evaluate ... --shard I/K` for every I, started together, then
  `nnjpeg merge`; its wall time runs from the first start to the end of the merge.

The merged results are checked against the whole run's first (every accuracy equal), then each
configuration runs `--repeats` times, alternating. Reported: the median wall time with its spread,
and the ratio of the shards' to the single process's. On this 2-core machine the shards share the
cores with each other; on K machines (or K GPUs) each would have its own.

Run: .venv/bin/python benchmarks/bench_shards.py [--n 400] [--shards 2] [--repeats 3]
     [--json benchmarks/results/shards.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, environment, publish

NNJPEG = [sys.executable, "-m", "nnjpeg"]
EVALUATION = ["evaluate", "--defense", "fmnist/classifier", "--defense", "fmnist/jpeg75-classifier", "--attack", "fgsm",
              "--attack", "bim", "--eps", "0.1", "--scenario", "gray-box"]


def _env() -> dict:
    # The checkout's weights, wherever the processes run; no download.
    weights = Path(__file__).resolve().parents[1] / "models" / "weights"
    return {**os.environ, "NNJPEG_WEIGHTS_DIR": str(weights), "NNJPEG_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def whole(n: int, work: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([*NNJPEG, *EVALUATION, "--n", str(n), "--json", str(work / "whole.json"), "--out", str(work / "w")],
                   check=True, capture_output=True, cwd=work, env=_env())
    return time.perf_counter() - t0


def sharded(n: int, k: int, work: Path) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*NNJPEG, *EVALUATION, "--n", str(n), "--shard", f"{i}/{k}", "--json",
                               str(work / f"s{i}.json"), "--out", str(work / f"o{i}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=work, env=_env()) for i in range(k)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"a shard failed: {err.decode()[-2000:]}")
    subprocess.run([*NNJPEG, "merge", *(str(work / f"s{i}.json") for i in range(k)), "--json", str(work / "merged.json")],
                   check=True, capture_output=True, cwd=work, env=_env())
    return time.perf_counter() - t0


def check(work: Path) -> int:
    """The merged results equal the whole run's, accuracy for accuracy; returns how many were compared."""
    merged, one = (json.loads((work / f).read_text()) for f in ("merged.json", "whole.json"))
    a, b = [r["accuracy"] for r in merged["records"]], [r["accuracy"] for r in one["records"]]
    if a != b or merged["clean"] != one["clean"]:
        raise AssertionError(f"the merged shards differ from the whole run: {a} against {b}")
    return len(a) + len(one["clean"])


def run(n: int, k: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        times = {"1 process": [whole(n, work)], f"{k} shards at once": [sharded(n, k, work)]}
        compared = check(work)
        for _ in range(repeats - 1):
            times["1 process"].append(whole(n, work))
            times[f"{k} shards at once"].append(sharded(n, k, work))
    rows = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": t} for name, t in times.items()}
    ratio = rows[f"{k} shards at once"]["median_s"] / rows["1 process"]["median_s"]
    return {"n": n, "shards": k, "repeats": repeats, "evaluation": EVALUATION, "cells_checked_equal": compared,
            "rows": rows, "ratio_shards_to_one": ratio, "environment": environment()}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Sharded evaluation, {report['n']} Fashion-MNIST test images: `nnjpeg {' '.join(report['evaluation'])}`, "
             f"whole processes (start-up and model loading included); median of {report['repeats']} runs. "
             f"{env['cpu']}, {env['cores']} cores, TensorFlow {env['tensorflow']}. The merged shards equal the whole "
             f"run in all {report['cells_checked_equal']} accuracies.", "",
             "| configuration | wall time (s) | spread (s) |", "|---|---:|---:|"]
    for name, row in report["rows"].items():
        lines.append(f"| {name} | {row['median_s']:.1f} | {row['min_s']:.1f}–{row['max_s']:.1f} |")
    lines += ["", f"Shards / one process: {report['ratio_shards_to_one']:.2f}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "shards.json"))
    args = parser.parse_args()
    report = run(args.n, args.shards, args.repeats)
    publish(report, markdown(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
