"""`nnjpeg demo`: every shipped defense side by side on Fashion-MNIST under gray-box, black-box
and adaptive white-box attacks, with a report folder (Markdown tables in the papers' layouts, plots,
a generated reading, example images); `nnjpeg report` with lighter settings (two L-inf attacks, two
eps, 10-step PGD, the white-box attack on the first 250 images, EOT over 2 draws) so that it finishes in minutes on a laptop-class CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import _args
from .evaluate import accuracy_at, percent

DEFAULT_EPS = (0.05, 0.1)
DEFAULT_ATTACKS = ("fgsm", "pgd")


def example_grid(x, adv, defended, labels, path: Path, rows: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["clean", "adversarial", "|perturbation| x5"] + list(defended)
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.7 * len(cols), 1.8 * rows), squeeze=False)
    for r in range(rows):
        panels = [x[r], adv[r], np.clip(np.abs(adv[r] - x[r]) * 5, 0, 1)] + [d[r] for d in defended.values()]
        for c, (img, title) in enumerate(zip(panels, cols)):
            axes[r][c].imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(title, fontsize=7)
        axes[r][0].set_ylabel(labels[r], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def defended_view(model, x):
    """What the classifier inside a "defense -> classifier" model sees, or None for models that are
    not such a chain (the undefended target, the ensemble)."""
    import keras

    chain = model.layers[1:-1]
    if not chain or not isinstance(model.layers[-1], keras.Model) or "ensemble" in model.name:
        return None
    h = x
    for layer in chain:
        h = layer(h)
    return np.asarray(h)


def run(out: Path, *, n: int = 1000, white_n: int = 250, eps=DEFAULT_EPS, attacks=DEFAULT_ATTACKS, seed: int = 0,
        command: str = "nnjpeg demo", progress: bool = True) -> dict:
    """Every shipped defense under gray-box, black-box and white-box (adaptive) attacks, through
    `nnjpeg.report.run` with settings sized for a few minutes, plus a grid of example images."""
    from nnjpeg import attacks as A, datasets, registry, report

    t0 = time.time()
    # A reference trained on the surrogates' own examples is no defense: it is left to the report.
    defenses = [d for d in report.shipped_defenses() if registry.get(d).role != "reference"]
    res = report.run(out, n=n, seed=seed, eps=tuple(eps), analysis_eps=tuple(eps), gray_attacks=tuple(attacks),
                     defenses=defenses, l2_attacks=(), ablation_attacks=(), clean_all=False,
                     black_attacks=tuple(attacks), paper_grid=False, robust=False,
                     white_attack="pgd", white_eps=max(eps), white_n=white_n, eot=2, pgd_steps=10, command=command,
                     progress=progress)
    models, (x, y) = res["models"], res["data"]
    adv = A.attack("pgd", models["fmnist/classifier"], x[:6], y[:6], max(eps), nb_iter=10)
    views = {report.defense_label(d): defended_view(m, adv) for d, m in models.items() if d in res["results"]["gray-box"]["clean"]}
    example_grid(x, adv, {k: v for k, v in views.items() if v is not None},
                 [datasets.FASHION_MNIST_CLASSES[i] for i in y[:6]], out / "examples.png")
    wall = time.time() - t0
    with (out / "README.md").open("a") as f:
        f.write(f"\n## Examples (PGD, gray-box, eps {max(eps)})\n\n![examples](examples.png)\n\n"
                f"Demo wall time, examples included: {wall:.0f} s.\n")
    print(summary(res["results"], res["meta"], out, wall))
    return res


def summary(results: dict, meta: dict, out: Path, wall: float) -> str:
    """The run as the terminal shows it: aligned tables (accuracy, %), the reading, and where the
    files went."""
    from nnjpeg import report
    from nnjpeg._console import text_table

    gray, black, white = results["gray-box"], results.get("black-box"), results["white-box"]
    wa, we = white["config"]["attacks"][0], white["config"]["eps"][0]
    ds = gray["config"]["defenses"]

    def keys(res):
        return list(dict.fromkeys((r["attack"], r["eps"]) for r in res["records"]))

    def head(res):
        return [a if e is None else f"{a} {e:g}" for a, e in keys(res)]

    def cells(res, d):
        return [percent(accuracy_at(res, d, a, e)) for a, e in keys(res)]

    text = [text_table(["defense", "clean", *head(gray), f"white-box {wa} {we:g}"],
                       [[report.defense_label(d), percent(gray["clean"][d]), *cells(gray, d),
                         percent(accuracy_at(white, d, wa, we))] for d in ds],
                       title=f"Gray-box (made on the target) and white-box (through the whole defended model, BPDA, "
                             f"EOT for TVM; first {meta['white_n']} images): accuracy (%) on {meta['n']} test images"), ""]
    if black:
        text += [text_table(["defense", *head(black)], [[report.defense_label(d), *cells(black, d)] for d in ds],
                            title="Black-box (transferred from the three surrogates): accuracy (%)"), ""]
    text += ["Reading (the report has one line per defense):",
             *[_plain(line) for line in report.verdicts(results) + report.papers_reading(results)], "",
             f"Wrote in {wall:.0f} s:",
             f"  report   {out / 'README.md'} (Markdown tables in the papers' layouts), {out / 'results.json'}",
             f"  plots    {out / 'fig2_vqunet_protocol.png'}, {out / 'table3_white_box.png'}, "
             f"{out}/<scenario>/accuracy_vs_eps.png",
             f"  images   {out / 'examples.png'} (clean, adversarial and defended examples)"]
    return "\n".join(text)


def _plain(line: str) -> str:
    """A Markdown reading line for the terminal: no emphasis marks."""
    return line.replace("**", "")


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="every available defense side by side under gray-box and adaptive attacks")
    p.add_argument("--n", type=_args.COUNT, default=1000, help="test images (a seeded subset)")
    p.add_argument("--white-n", type=_args.COUNT, default=250, help="of which the first WHITE_N are attacked white-box")
    p.add_argument("--eps", type=_args.EPS, action="append", default=None)
    p.add_argument("--attack", action="append", default=None)
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--out", default="out/demo")
    p.add_argument("--verbose", action="store_true", help="TensorFlow's logs and the attacks' per-batch progress too")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import shlex

    from nnjpeg import _console

    _console.quiet_tensorflow(args.verbose)
    run(Path(args.out), n=args.n, white_n=args.white_n, eps=args.eps or DEFAULT_EPS, attacks=args.attack or DEFAULT_ATTACKS, seed=args.seed,
        command="nnjpeg demo " + " ".join(shlex.quote(a) for a in args.argv))
    return 0
