"""`nnjpeg demo`: every available defense side by side on Fashion-MNIST under gray-box and adaptive
white-box attacks, with a report folder (Markdown, plots, example images).

Defenses are the shipped models (`nnjpeg.pretrained`) plus, built on the fly around the shipped
target classifier, standard JPEG(75), NN-favored JPEG and TVM where no trained variant ships.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

DEFAULT_EPS = (0.05, 0.1)
DEFAULT_ATTACKS = ("fgsm", "pgd")
NN_K = 4  # OF band of the demo's NN-favored table when no searched table is supplied


def available_defenses(k: int = NN_K) -> dict:
    """name -> zero-argument loader, for every defense the installed weights allow."""
    from nnjpeg import pretrained

    names = pretrained.names()
    if "fmnist/classifier" not in names:
        raise RuntimeError("nnjpeg demo needs the shipped target classifier 'fmnist/classifier'; installed weights: "
                           f"{names or 'none'}. Train it with `nnjpeg train classifier --export ...` and reinstall.")

    def on_the_fly(builder, **kw):
        def load():
            from nnjpeg.models import defenses

            return getattr(defenses, builder)(pretrained.load("fmnist/classifier"), **kw)

        return load

    out = {"none (fmnist/classifier)": lambda: pretrained.load("fmnist/classifier")}
    built = {"fmnist/jpeg75-classifier": on_the_fly("jpeg_classifier", quality=75),
             f"nn-jpeg k={k} (16/50)": on_the_fly("nnjpeg_classifier", k=k),
             "fmnist/tvm-classifier": on_the_fly("tvm_classifier", seed=0, iterations=30)}
    for name in ("fmnist/jpeg75-classifier", "fmnist/fd-classifier", "fmnist/tvm-classifier", "fmnist/ensemble",
                 "fmnist/vqunet-classifier", "fmnist/non-vq-unet-classifier", "fmnist/defense-vae-classifier"):
        if name in names:
            out[name] = (lambda n=name: pretrained.load(n))
        elif name in built:
            out[name + " (built)"] = built[name]
    out[f"nn-jpeg k={k} (16/50)"] = built[f"nn-jpeg k={k} (16/50)"]
    return out


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


def run(out: Path, *, n: int = 1000, eps=DEFAULT_EPS, attacks=DEFAULT_ATTACKS, seed: int = 0) -> dict:
    import keras

    from nnjpeg import datasets, evaluate

    t0 = time.time()
    loaders = available_defenses()
    models = {name: load() for name, load in loaders.items()}
    x, y = evaluate._subset("fashion-mnist", n, seed)
    results = {}
    for scenario in ("gray-box", "white-box"):
        print(f"== {scenario}: {', '.join(attacks)} at eps {', '.join(map(str, eps))} on {len(x)} test images", flush=True)
        results[scenario] = evaluate.evaluate(list(models), list(attacks), list(eps), scenario, data=(x, y),
                                              load=models.__getitem__, target="none (fmnist/classifier)",
                                              attack_kwargs={"pgd": {"nb_iter": 10}},
                                              eot={d: 2 for d in models if "tvm" in d}, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# nnjpeg demo: defenses on Fashion-MNIST", "",
             f"{len(x)} test images (seed {seed}); attacks {', '.join(attacks)}; L-inf eps {', '.join(map(str, eps))} "
             "(images in [0, 1]). Gray-box: examples made on the undefended target. White-box: the attack runs on "
             "the whole defended model, with the identity (BPDA) gradient through compression/TVM layers and "
             "expectation over 2 draws (EOT) for the randomized TVM; PGD runs 10 steps.", ""]
    for scenario, res in results.items():
        evaluate.write_report(res, out / scenario)
        lines += [f"## {scenario}", "", evaluate.markdown(res), "", f"![{scenario}]({scenario}/accuracy_vs_eps.png)", ""]
    lines += ["## Reading", ""] + reading(results)
    target = models["none (fmnist/classifier)"]
    from nnjpeg import attacks as A

    adv = A.attack("pgd", target, x[:6], y[:6], max(eps))
    pre = {name: m for name, m in models.items() if name != "none (fmnist/classifier)"}
    defended = {}
    for name, m in pre.items():
        layer = next((lyr for lyr in m.layers[1:-1] if not isinstance(lyr, keras.Model)), None)
        if layer is not None and layer.__class__.__name__ in ("Compression", "JPEG", "TVM"):
            defended[name] = np.asarray(layer(adv))
    example_grid(x, adv, defended, [datasets.FASHION_MNIST_CLASSES[i] for i in y[:6]], out / "examples.png")
    lines += ["", "## Examples (PGD, gray-box, largest eps)", "", "![examples](examples.png)", "",
              f"Wall time: {time.time() - t0:.0f} s."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    return results


def reading(results: dict) -> list[str]:
    """Plain sentences generated from the numbers: where each defense holds and where it falls."""
    out = []
    gray, white = results["gray-box"], results["white-box"]
    for d in gray["config"]["defenses"]:
        g = [r for r in gray["records"] if r["defense"] == d]
        w = [r for r in white["records"] if r["defense"] == d]
        worst_g = min(g, key=lambda r: r["accuracy"])
        worst_w = min(w, key=lambda r: r["accuracy"])
        verdict = ("falls to the adaptive attack" if worst_w["accuracy"] < 0.5 * gray["clean"][d]
                   else "holds partly under the adaptive attack")
        out.append(f"- **{d}**: clean {100 * gray['clean'][d]:.1f} %; gray-box worst {100 * worst_g['accuracy']:.1f} % "
                   f"({worst_g['attack']}, eps {worst_g['eps']}); white-box worst {100 * worst_w['accuracy']:.1f} % "
                   f"({worst_w['attack']}, eps {worst_w['eps']}): {verdict}.")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="every available defense side by side under gray-box and adaptive attacks")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--eps", type=float, action="append", default=None)
    p.add_argument("--attack", action="append", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/demo")
    p.set_defaults(func=lambda a: (run(Path(a.out), n=a.n, eps=a.eps or DEFAULT_EPS, attacks=a.attack or DEFAULT_ATTACKS,
                                       seed=a.seed), 0)[1])
