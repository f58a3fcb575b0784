"""Ablation of the NN-JPEG paper's two departures from JPEG (Sec. 3.3, Fig. 5): the quantization
table (standard Annex K at a quality vs the NN-favored table) crossed with the colour transform (JFIF
YCbCr vs none, i.e. RGB). Chroma is never subsampled (4:4:4), so only those two factors change.

Grey images (C = 1) are replicated to three channels for the round trip and the first channel is
kept. For R = G = B the JFIF transform gives Y = the grey sample and Cb = Cr = 128, which the round
trip keeps, so on images on the 1/255 grid the colour transform changes nothing: the standard table
meets the grey samples as its luma table either way, and the two rows of each table coincide.
Adversarial examples lie off the grid, and the YCbCr path rounds the converted samples to whole
numbers first (as 8-bit JPEG does), so their rows may differ slightly. `run` measures which rows
coincide instead of assuming it; comparing colour transforms for real needs colour images and a
colour classifier (e.g. CIFAR-10 or ImageNet, run with the same function).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _args, _checks
from ._predict import accuracy
from .codec import compress
from .tables import nn_table, standard_tables


def combinations(quality: int = 75, k: int = 5, of: float = 16.0, af: float = 50.0) -> dict[str, dict]:
    """The four (table, colour transform) pairs of Fig. 5, by label: `table` and `color` for
    `nnjpeg.compress`. The standard table in RGB quantizes every channel with the luma table."""
    luma, chroma = standard_tables(quality)
    nn = nn_table(k, of, af)
    return {f"standard q{quality} + YCbCr (JPEG, 4:4:4)": {"table": np.stack([luma, chroma]), "color": "ycbcr"},
            f"standard q{quality} luma table, RGB": {"table": luma, "color": "rgb"},
            f"NN table (k={k}) + YCbCr": {"table": nn, "color": "ycbcr"},
            f"NN table (k={k}), RGB (NN-JPEG)": {"table": nn, "color": "rgb"}}


def round_trip(x: np.ndarray, spec: dict) -> np.ndarray:
    """`x` (N, H, W, C) float32 in [0, 1] through one combination; grey goes through as R = G = B."""
    if x.shape[-1] == 1:
        return compress(np.repeat(x, 3, axis=-1), spec["table"], color=spec["color"])[..., :1]
    return compress(x, spec["table"], color=spec["color"])


def run(model, x: np.ndarray, y: np.ndarray, *, attacks=("fgsm", "bim"), eps=(0.05, 0.1), quality: int = 75,
        k: int = 5, progress: bool = True) -> dict:
    """Accuracy of `model` on clean and gray-box adversarial images (made on `model`) through each
    combination, and of `model` alone.

    Shape:
        x: (N, H, W, C) float32 in [0, 1], C in {1, 3}; y: (N,) integer labels.

    Returns:
        dict with `columns` ("clean", then "attack eps"), `rows` (label -> column -> accuracy),
        `undefended` (column -> accuracy), `coincide` (pairs of labels whose round trips gave
        identical images on every input), `n`, `channels`, `quality`, `k`.
    """
    from . import attacks as A

    x = _checks.unit_images("images", x, channels=(1, 3))
    inputs = {"clean": x}
    for a in attacks:
        for e in eps:
            inputs[f"{a} {e}"] = A.attack(a, model, x, y, e, progress=progress)
    combos = combinations(quality, k)
    rows, same = {}, {}
    for label, spec in combos.items():
        outs = {c: round_trip(v, spec) for c, v in inputs.items()}
        rows[label] = {c: accuracy(model, o, y) for c, o in outs.items()}
        same[label] = outs
    labels = list(combos)
    coincide = [[a, b] for i, a in enumerate(labels) for b in labels[i + 1:]
                if all(np.array_equal(same[a][c], same[b][c]) for c in inputs)]
    return {"columns": list(inputs), "rows": rows, "undefended": {c: accuracy(model, v, y) for c, v in inputs.items()},
            "coincide": coincide, "n": int(len(x)), "channels": int(x.shape[-1]), "quality": quality, "k": k}


def markdown(result: dict) -> list[str]:
    cols = result["columns"]
    lines = ["| table, colour transform | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols),
             "| no compression | " + " | ".join(f"{100 * result['undefended'][c]:.1f}" for c in cols) + " |"]
    lines += [f"| {label} | " + " | ".join(f"{100 * r[c]:.1f}" for c in cols) + " |" for label, r in result["rows"].items()]
    lines.append("")
    if result["channels"] == 1:
        lines.append(f"Grey images ({result['n']}), replicated to R = G = B for the round trip: the colour transform "
                     "only moves the grey samples into Y.")
    if result["coincide"]:
        lines.append("Identical round trips on every clean and adversarial input: "
                     + "; ".join(f"{a} = {b}" for a, b in result["coincide"]) + ".")
    else:
        lines.append("No two combinations gave identical images on every input.")
    return lines


def plot(result: dict, path: Path) -> None:
    """Grouped bars: accuracy per input column, one bar per combination (and no compression)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = result["columns"]
    series = {"no compression": result["undefended"], **result["rows"]}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(cols)), 3.8))
    for i, (label, accs) in enumerate(series.items()):
        ax.bar(np.arange(len(cols)) + (i - (len(series) - 1) / 2) * width, [100 * accs[c] for c in cols], width, label=label)
    ax.set_xticks(np.arange(len(cols)), cols)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("quantization table x colour transform (NN-JPEG paper, Fig. 5 layout)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(result, indent=2))
    (out / "ablation.md").write_text("\n".join(markdown(result)) + "\n")
    plot(result, out / "ablation.png")


def add_parser(sub) -> None:
    p = sub.add_parser("ablation", help="NN-JPEG Fig. 5: quantization table x colour transform under gray-box attacks")
    p.add_argument("--classifier", default="fmnist/classifier",
                   help="the undefended classifier: a pretrained name or a .keras path")
    p.add_argument("--dataset", default="fashion-mnist", help="as for `nnjpeg evaluate`")
    p.add_argument("--data", default=None, help="the dataset's folder (default: where nnjpeg.datasets looks)")
    p.add_argument("--attack", action="append", default=None, help="repeatable (default fgsm and bim)")
    p.add_argument("--eps", type=_args.EPS, action="append", default=None, help="repeatable (default 0.05 and 0.1)")
    p.add_argument("--quality", type=int, default=75, help="quality of the standard tables (default 75)")
    p.add_argument("--k", type=int, default=5, help="anti-diagonals in the NN table's OF band (default 5)")
    p.add_argument("--n", type=_args.COUNT, default=1000)
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--out", default="out/ablation")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from .evaluate import model_and_images

    model, x, y = model_and_images(args.classifier, args.dataset, args.n, args.seed, args.data)
    result = run(model, x, y, attacks=tuple(args.attack or ("fgsm", "bim")), eps=tuple(args.eps or (0.05, 0.1)),
                 quality=args.quality, k=args.k)
    result.update({"classifier": args.classifier, "dataset": args.dataset, "seed": args.seed})
    write(result, Path(args.out))
    print("\n".join(markdown(result)))
    print(f"wrote {Path(args.out)}/ablation.(json|md|png)")
    return 0
