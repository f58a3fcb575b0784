"""What every benchmark writes beside its numbers: the machine and library versions, and the report
itself, as JSON with its Markdown beside it under `benchmarks/results/`."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

import nnjpeg

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict:
    """nnjpeg's version and build (kernel), the CPU and its cores, and the versions of the libraries
    measured beside it (None where one is not installed); with TensorFlow, the route the codec takes
    inside it (its op, or `tf.numpy_function`)."""
    env = {"nnjpeg": nnjpeg.__version__, "build_info": nnjpeg.build_info(), "numpy": np.__version__}
    for key, module in (("scipy", "scipy"), ("pillow", "PIL")):
        env[key] = _version(module)
    env.update({"python": platform.python_version(), "cpu": cpu_model(), "cores": os.cpu_count()})
    for module in ("simplejpeg", "tensorflow"):
        env[module] = _version(module)
    if env["tensorflow"]:
        from nnjpeg import tf_ops

        env["tf_native_route"] = tf_ops.native_op_status()
    return env


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def write_report(json_path: str | os.PathLike, report: dict, md: str) -> Path:
    """The report as JSON at json_path, and its Markdown beside it (.md); returns the JSON's path."""
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    path.with_suffix(".md").write_text(md.rstrip("\n") + "\n")
    return path


def publish(report: dict, md: str, json_path: str | os.PathLike) -> Path:
    """Prints the Markdown, writes both files (`write_report`) and says where; returns the JSON's path."""
    print()
    print(md)
    path = write_report(json_path, report, md)
    print(f"\nwrote {path} and {path.with_suffix('.md')}")
    return path
