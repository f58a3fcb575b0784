"""Quantization-table search (NN-JPEG paper, Algorithm 1).

For k = 1...15 anti-diagonals in the original-favored (OF) band and QS_AF = 1, 6, ..., 121 (with
QS_OF = 16), round-trip benign images and adversarial examples through the RGB-domain codec with
`nn_table(k, QS_OF, QS_AF)`, and pick the (k, QS_AF) with the highest accuracy on the adversarial
examples subject to a benign accuracy drop below `max_drop`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._predict import accuracy
from .codec import compress
from .tables import nn_table


def search_table(model, x_benign, y_benign, x_adv, y_adv, *, ks=range(1, 16), afs=range(1, 122, 5), of: float = 16.0,
                 max_drop: float = 0.01, progress: bool = True) -> dict:
    """Grid search of Algorithm 1.

    Shape:
        x_benign, x_adv: (N, H, W, C) float32 in [0, 1]; y_*: (N,) integer labels.

    Raises:
        TypeError: images that are not float32.
        ValueError: images not (N, H, W, C) with finite values in [0, 1], labels not one integer per
            image, no images or no grid, max_drop outside [0, 1], a (k, af) that `nn_table` refuses.

    Returns:
        dict with `grid_defense` and `grid_drop` (len(ks) x len(afs) nested lists: accuracy on the
        compressed adversarial examples; benign accuracy drop), `best` ({k, af, of, defense, drop}, or
        None when no point meets the constraint), `clean_accuracy`, `undefended_adv_accuracy`.
    """
    from .attacks import check_inputs

    x_benign, y_benign = check_inputs(x_benign, y_benign)
    x_adv, y_adv = check_inputs(x_adv, y_adv)
    ks, afs = list(ks), list(afs)
    if not (len(x_benign) and len(x_adv) and ks and afs):
        raise ValueError(f"Expected benign images, adversarial examples, ks and afs, one or more of each. Received: "
                         f"{len(x_benign)} benign, {len(x_adv)} adversarial, {len(ks)} ks, {len(afs)} afs")
    if not 0.0 <= max_drop <= 1.0:
        raise ValueError("Expected max_drop, a share of the benign accuracy, in [0, 1]. "
                         f"Received: max_drop={max_drop!r}")
    clean = accuracy(model, x_benign, y_benign)
    defense = np.zeros((len(ks), len(afs)))
    drop = np.zeros((len(ks), len(afs)))
    cells = [(i, j) for i in range(len(ks)) for j in range(len(afs))]
    if progress:
        from tqdm.auto import tqdm

        cells = tqdm(cells, desc="table search", unit="table")
    for i, j in cells:
        table = nn_table(ks[i], of, afs[j])
        drop[i, j] = clean - accuracy(model, compress(x_benign, table), y_benign)
        defense[i, j] = accuracy(model, compress(x_adv, table), y_adv)
    ok = drop < max_drop
    best = None
    if ok.any():
        i, j = np.unravel_index(np.argmax(np.where(ok, defense, -1.0)), defense.shape)
        best = {"k": ks[i], "af": afs[j], "of": of, "defense": float(defense[i, j]), "drop": float(drop[i, j])}
    return {"ks": ks, "afs": afs, "of": of, "max_drop": max_drop, "clean_accuracy": clean,
            "undefended_adv_accuracy": accuracy(model, x_adv, y_adv), "grid_defense": defense.tolist(),
            "grid_drop": drop.tolist(), "best": best, "n_benign": int(len(y_benign)), "n_adv": int(len(y_adv))}


def plot(result: dict, path: Path) -> None:
    """Heatmaps of defended accuracy and benign drop over (k, QS_AF); the feasible region outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defense = np.asarray(result["grid_defense"]) * 100
    drop = np.asarray(result["grid_drop"]) * 100
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, data, title in ((axes[0], defense, "accuracy on adversarial examples (%)"),
                            (axes[1], drop, "benign accuracy drop (points)")):
        im = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis")
        ax.contour(drop < result["max_drop"] * 100, levels=[0.5], colors="w", linewidths=1)
        ax.set_xticks(range(len(result["afs"]))[::2], result["afs"][::2])
        ax.set_yticks(range(len(result["ks"])), result["ks"])
        ax.set_xlabel("QS_AF")
        ax.set_ylabel("k (OF anti-diagonals)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    best = result["best"]
    if best:
        bi, bj = result["ks"].index(best["k"]), result["afs"].index(best["af"])
        for ax in axes:
            ax.plot(bj, bi, "r*", markersize=12)
    fig.suptitle(f"Algorithm 1 grid (QS_OF = {result['of']}; white line: drop < {100 * result['max_drop']:.0f} %; "
                 f"star: chosen {best and (best['k'], best['af'])})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(result: dict) -> str:
    """The chosen table and what it costs and buys, in a few lines."""
    best = result["best"]
    head = (f"Algorithm 1 over k in {result['ks'][0]}...{result['ks'][-1]} and QS_AF in {result['afs'][0]}...{result['afs'][-1]} "
            f"(QS_OF = {result['of']:g}), {result['n_benign']} benign and {result['n_adv']} adversarial images; "
            f"undefended: {100 * result['clean_accuracy']:.1f} % clean, {100 * result['undefended_adv_accuracy']:.1f} % "
            "adversarial.")
    if best is None:
        return head + f"\n\nNo table keeps the clean accuracy drop below {100 * result['max_drop']:g} %.\n"
    rows = "\n".join("| " + " | ".join(f"{v:g}" for v in row) + " |" for row in nn_table(best["k"], best["of"], best["af"]))
    return (head + f"\n\nChosen: k = {best['k']}, QS_AF = {best['af']}: {100 * best['defense']:.1f} % on the adversarial "
            f"examples, clean drop {100 * best['drop']:.2f} points (bound {100 * result['max_drop']:g}).\n\n"
            "| | | | | | | | |\n|" + "---:|" * 8 + "\n" + rows + "\n\n![grid](table_search.png)\n")


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table_search.json").write_text(json.dumps(result, indent=2))
    (out / "table_search.md").write_text(markdown(result))
    plot(result, out / "table_search.png")
