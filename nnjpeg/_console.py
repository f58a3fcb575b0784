"""What the long commands (`nnjpeg demo`, `nnjpeg report`) show in a terminal: TensorFlow's logs
kept out unless asked for, one progress bar per stage, and tables as aligned text."""

from __future__ import annotations

import os
import sys

_VERBOSE = {"on": False}


def quiet_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow with its C++ start-up lines kept out of the terminal (unless `verbose`).

    TensorFlow 2.21 writes its oneDNN, CUDA-stub and CPU-feature lines through absl before its own
    log level applies, so TF_CPP_MIN_LOG_LEVEL alone does not hold them back: standard error is
    pointed at /dev/null while TensorFlow imports and finds its devices, then restored. Its Python
    logger then shows errors only. Call before anything imports TensorFlow."""
    _VERBOSE["on"] = verbose
    if verbose or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA platform's probe logs here, not at import
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    tf.get_logger().setLevel("ERROR")


def verbose() -> bool:
    """Whether the command was asked for everything (`--verbose`): then the attacks show their
    per-batch bars too."""
    return _VERBOSE["on"]


def stage(total: int, desc: str, enabled: bool = True):
    """One progress bar for one stage of a long run: `total` units, an ETA, and what runs now
    (`bar.set_postfix_str`). Left on screen when the stage ends."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=not enabled, leave=True, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}]{postfix}")


def text_table(header: list[str], rows: list[list[str]], title: str | None = None) -> str:
    """A table as aligned text: the first column left-aligned, the others right-aligned."""
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = ([title] if title else []) + [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]
    return "\n".join(out)
