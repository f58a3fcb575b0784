"""`nnjpeg report`: the two papers' tables and figures regenerated on Fashion-MNIST with the shipped
models, the papers' reported numbers beside ours, and a reading generated from the numbers.

Layouts reproduced:
- VQUNet paper, Table 1: the target's accuracy on benign images after each filter, and the drop.
- NN-JPEG paper, Table 2: every defense under gray-box attacks (examples made on the undefended
  target) and black-box attacks (transferred from the surrogates), per attack and eps.
- NN-JPEG paper, Table 3: white-box accuracy, benign (Acc_raw) against adversarial (Acc_ae), the
  attack running through the whole defended model (BPDA: identity gradient through compression
  and TVM; EOT over TVM's randomness; the ensemble attacked as one model).
- VQUNet paper, Fig. 2: accuracy against eps per attack, under that paper's protocol (half of the
  examples made on the target, half transferred), which is the mean of the gray-box and black-box
  accuracies on the same images.
- VQUNet paper, Figs. 3-6: what the adversarial noise does to the shipped denoisers, per depth.
- NN-JPEG paper, Fig. 5: quantization table x colour transform (`nnjpeg.ablation`).

The papers' numbers come from other data (NN-JPEG: ImageNet, ResNet-v2-50 / Inception-v4, eps in
grey levels of 255; VQUNet: Fashion-MNIST with a WRN-28-10): they are anchors, not like-for-like.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import _args

# name -> (label in the tables, row of the papers it corresponds to)
DEFENSES = {
    "fmnist/classifier": ("none", "No Defense"),
    "fmnist/jpeg75-classifier": ("JPEG (75)", "JPEG (75)"),
    "fmnist/fd-classifier": ("FD", "FD"),
    "fmnist/tvm-classifier": ("TVM", "TVM"),
    "fmnist/ensemble": ("NN-JPEG ensemble", "Proposed"),
    "fmnist/vqunet-classifier": ("VQUNet", "VQUNet"),
    "fmnist/vqunet-k256-classifier": ("VQUNet (K=256)", None),
    "fmnist/non-vq-unet-classifier": ("U-Net (no VQ)", None),
    "fmnist/defense-vae-classifier": ("Defense-VAE", "Defense_VAE"),
}

# Reported numbers, typed from the papers (../shared/papers), each with its source.
PAPER = {
    "vqunet_table1": {
        "source": "VQUNet paper, Table 1 (Fashion-MNIST, WRN-28-10 target, 94.31 % on benign data)",
        "target": 94.31,
        "rows": {"VQUNet": 93.39, "Cycle_GAN": 93.13, "HFL_VAE": 92.81, "Defense_VAE": 92.83},
    },
    "nnjpeg_table2_gray": {
        "source": "NN-JPEG paper, Table 2, gray-box (ImageNet, ResNet-v2-50; eps in grey levels of 255)",
        "columns": ["No attack", "FGSM 2", "FGSM 4", "FGSM 8", "I-FGSM 2", "I-FGSM 3", "I-FGSM 4", "DeepFool", "C&W(L2)"],
        "rows": {"No Defense": [65.4, 17.5, 14.4, 13.2, 15.1, 12.4, 9.5, 9.7, 9.3],
                 "JPEG (75)": [60.5, 41.1, 29.4, 21.1, 57.1, 51.6, 50.0, 60.0, 60.3],
                 "FD": [59.5, 44.1, 30.5, 21.4, 56.5, 54.4, 53.3, 58.8, 58.7],
                 "TVM": [58.2, 44.7, 33.7, 22.7, 55.1, 51.9, 48.8, 57.6, 58.8],
                 "Proposed": [66.5, 56.4, 43.1, 28.2, 68.0, 65.2, 64.8, 67.1, 65.4]},
    },
    "nnjpeg_table3": {
        "source": "NN-JPEG paper, Table 3, white-box BPDA (ImageNet, Inception-v4, 1000 iterations)",
        "rows": {"No Defense": (78, 0), "JPEG (75)": (74, 1), "FD": (73, 2), "TVM": (74, 0), "Proposed": (78, 60)},
    },
}


def shipped_defenses() -> list[str]:
    from nnjpeg import pretrained

    names = set(pretrained.names())
    if "fmnist/classifier" not in names:
        raise RuntimeError(f"nnjpeg report needs the shipped 'fmnist/classifier'. Installed weights: {sorted(names) or 'none'}")
    return [d for d in DEFENSES if d in names]


def run(out: Path, *, n: int = 1000, seed: int = 0, eps=(0.03, 0.1, 0.2), white_eps: float = 0.1,
        gray_attacks=("fgsm", "bim", "pgd"), l2_attacks=("deepfool", "cw"), l2_n: int = 200,
        black_attacks=("fgsm", "bim", "ti-fgsm", "di-fgsm"),
        white_attack: str = "pgd", white_n: int | None = None, eot: int = 4, pgd_steps: int = 20, vq_n: int = 500,
        ablation_attacks=("fgsm", "bim"), progress: bool = True,
        command: str = "nnjpeg report", defenses=None, load=None, data=None, available=None) -> dict:
    """Runs every scenario and writes `out/README.md`, `results.json` and plots.

    By default on the shipped defenses, surrogates and a seeded subset of the Fashion-MNIST test
    set; `defenses` (names, "fmnist/classifier" among them), `load` (name -> model), `data`
    ((x, y) in [0, 1]) and `available` (names loadable, for the surrogates) replace them."""
    from nnjpeg import evaluate, pretrained

    t0 = time.time()
    defenses = list(defenses) if defenses is not None else shipped_defenses()
    load = load or pretrained.load
    names = set(available if available is not None else pretrained.names())
    models = {d: load(d) for d in defenses}
    models.update({s: load(s) for s in evaluate.SURROGATES if s in names})
    x, y = data if data is not None else evaluate._subset("fashion-mnist", n, seed)
    common = {"data": (x, y), "load": models.__getitem__, "progress": progress, "seed": seed,
              "attack_kwargs": {"pgd": {"nb_iter": pgd_steps}, "bim": {"nb_iter": 10}, "deepfool": {"max_iter": 20},
                                "cw": {"binary_steps": 4, "max_iter": 25}}}
    gray = evaluate.evaluate(defenses, list(gray_attacks), list(eps), "gray-box", **common)
    if l2_attacks:  # the slow unbounded attacks on the first l2_n images only (each record keeps its n)
        l2 = evaluate.evaluate(defenses, list(l2_attacks), list(eps), "gray-box", **{**common, "data": (x[:l2_n], y[:l2_n])})
        gray["records"] += l2["records"]
        gray["config"]["attacks"] += list(l2_attacks)
    results = {"gray-box": gray}
    surrogates = [s for s in evaluate.SURROGATES if s in models]
    if len(surrogates) == len(evaluate.SURROGATES):
        results["black-box"] = evaluate.evaluate(defenses, list(black_attacks), list(eps), "black-box", **common)
    white_n = len(x) if white_n is None else min(white_n, len(x))  # the adaptive attack is the slow one
    results["white-box"] = evaluate.evaluate(defenses, [white_attack], [white_eps], "white-box",
                                             eot={d: eot for d in defenses if "tvm" in d},
                                             **{**common, "data": (x[:white_n], y[:white_n])})
    out.mkdir(parents=True, exist_ok=True)
    for scenario, res in results.items():
        evaluate.write_report(res, out / scenario)
    if "black-box" in results:
        plot_protocol(results["gray-box"], results["black-box"], out / "fig2_vqunet_protocol.png")
    plot_white_box(results["white-box"], out / "table3_white_box.png")
    denoisers = {n: load(n) for n in ("fmnist/vqunet", "fmnist/vqunet-k256", "fmnist/non-vq-unet") if n in names}
    if denoisers:
        results["vq-analysis"] = vq_analysis(denoisers, models["fmnist/classifier"], x[:vq_n], y[:vq_n], eps)
        from nnjpeg import vq_analysis as V

        V.plot(results["vq-analysis"], out / "vqunet_analyses.png")
    if ablation_attacks:
        from nnjpeg import ablation

        results["ablation"] = ablation.run(models["fmnist/classifier"], x, y, attacks=tuple(ablation_attacks), eps=tuple(eps),
                                           progress=progress)
        ablation.plot(results["ablation"], out / "ablation.png")
    meta = {"n": len(x), "seed": seed, "eps": list(eps), "white_eps": white_eps, "white_attack": white_attack, "white_n": white_n, "eot": eot,
            "pgd_steps": pgd_steps, "l2_n": min(l2_n, len(x)) if l2_attacks else 0,
            "wall_time_s": time.time() - t0, "command": command, "surrogates": surrogates}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results, "paper": PAPER}, indent=2))
    (out / "README.md").write_text(markdown(results, meta) + "\n")
    return {"meta": meta, "results": results, "models": models, "data": (x, y)}


def vq_analysis(denoisers: dict, target, x, y, eps) -> dict:
    """VQUNet paper Figs. 3-6 on FGSM examples of the target (the paper's setting), 28x28 images
    zero-padded to the denoisers' 32x32."""
    from nnjpeg import attacks, vq_analysis as V

    pad = lambda a: np.pad(a, ((0, 0), (2, 2), (2, 2), (0, 0)))  # noqa: E731
    adversarial = {e: pad(attacks.fgsm(target, x, y, e)) for e in eps}
    return V.sweep(denoisers, pad(x), adversarial)


def vq_table(result: dict) -> list[str]:
    names = list(result)
    eps = sorted(result[names[0]], key=float)
    lines = ["| model | eps | reconstruction l1 | pre-VQ l1 change per depth (% of clean) | "
             "post-VQ l1 change per depth (% of clean) | code indices changed per depth (%) |",
             "|---|---:|---:|---|---|---|"]
    for n in names:
        for e in eps:
            r = result[n][e]
            lines.append(f"| {n} | {e} | {r['reconstruction_l1']:.4f} | {_series(r['pre_vq_l1'], r.get('pre_vq_rel'))} | "
                         f"{_series(r['post_vq_l1'], r.get('post_vq_rel'))} | "
                         f"{', '.join('–' if v is None else f'{100 * v:.1f}' for v in r['index_change'])} |")
    return lines


def _series(values, relative=None) -> str:
    """Absolute l1 changes (3 significant digits), each with its size relative to the clean features."""
    relative = relative or [None] * len(values)
    return ", ".join("–" if v is None else f"{v:.3g}" + ("" if r is None else f" ({100 * r:.1f} %)")
                     for v, r in zip(values, relative))


def _label(d: str) -> str:
    return DEFENSES.get(d, (d, None))[0]


def _acc(res: dict, d: str, attack: str, e) -> float | None:
    for r in res["records"]:
        if r["defense"] == d and r["attack"] == attack and r["eps"] == e:
            return r["accuracy"]
    return None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def table1(gray: dict) -> list[str]:
    target = gray["clean"]["fmnist/classifier"]
    paper = PAPER["vqunet_table1"]
    lines = ["| method | acc (filtered benign) | degradation | paper: acc | paper: degradation |", "|---|---:|---:|---:|---:|",
             f"| target alone | {_pct(target)} | – | {paper['target']:.2f} | – |"]
    for d in gray["config"]["defenses"]:
        if d == "fmnist/classifier":
            continue
        row = DEFENSES.get(d, (d, None))[1]
        p = paper["rows"].get(row)
        lines.append(f"| {_label(d)} | {_pct(gray['clean'][d])} | {100 * (gray['clean'][d] - target):+.2f} | "
                     + (f"{p:.2f} | {p - paper['target']:+.2f} |" if p is not None else "– | – |"))
    return lines


def table2(res: dict) -> list[str]:
    keys = list(dict.fromkeys((r["attack"], r["eps"]) for r in res["records"]))
    size = {(r["attack"], r["eps"]): r["n"] for r in res["records"]}
    head = ["No attack"] + [f"{a} {'' if e is None else e}".strip()
                            + (f" (n={size[a, e]})" if size[a, e] != res["config"]["n"] else "") for a, e in keys]
    lines = ["| defense | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for d in res["config"]["defenses"]:
        cells = [_pct(res["clean"][d])] + [_pct(_acc(res, d, a, e)) for a, e in keys]
        lines.append(f"| {_label(d)} | " + " | ".join(cells) + " |")
    return lines


def table3(white: dict) -> list[str]:
    ds = white["config"]["defenses"]
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    paper = PAPER["nnjpeg_table3"]["rows"]
    lines = ["| | " + " | ".join(_label(d) for d in ds) + " |", "|---|" + "---:|" * len(ds),
             "| Acc_raw | " + " | ".join(_pct(white["clean"][d]) for d in ds) + " |",
             f"| Acc_ae ({a}, eps {e}) | " + " | ".join(_pct(_acc(white, d, a, e)) for d in ds) + " |",
             "| paper Acc_raw / Acc_ae (ImageNet) | " + " | ".join(
                 "{} / {}".format(*paper[DEFENSES[d][1]]) if DEFENSES.get(d, (0, None))[1] in paper else "–" for d in ds) + " |"]
    return lines


def reading(results: dict) -> list[str]:
    """Plain sentences generated from the numbers."""
    gray, white = results["gray-box"], results["white-box"]
    black = results.get("black-box")
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    target_clean = gray["clean"]["fmnist/classifier"]
    out = []
    for d in gray["config"]["defenses"]:
        clean = gray["clean"][d]
        worst_g = min((r for r in gray["records"] if r["defense"] == d), key=lambda r: r["accuracy"])
        w = _acc(white, d, a, e)
        s = (f"- **{_label(d)}**: clean {_pct(clean)} % ({100 * (clean - target_clean):+.1f} points vs the target); "
             f"gray-box worst {_pct(worst_g['accuracy'])} % ({worst_g['attack']}"
             + (f", eps {worst_g['eps']}" if worst_g["eps"] is not None else "") + ")")
        if black is not None:
            worst_b = min((r for r in black["records"] if r["defense"] == d), key=lambda r: r["accuracy"])
            s += f"; black-box worst {_pct(worst_b['accuracy'])} % ({worst_b['attack']}, eps {worst_b['eps']})"
        s += f"; white-box {a} at eps {e}: {_pct(w)} %"
        if d != "fmnist/classifier":
            s += (" — **falls to the adaptive attack**" if w is not None and w < 0.1 else
                  " — holds partly under the adaptive attack" if w is not None and w < 0.5 * clean else
                  " — holds under this adaptive attack (check stronger ones before trusting it)")
        out.append(s + ".")
    ens = "fmnist/ensemble"
    if ens in white["clean"]:
        out.append(f"- The NN-JPEG paper reports its ensemble keeping 60 % under BPDA on ImageNet (Table 3); attacked "
                   f"as one model here (identity gradient through every member's compression), it keeps "
                   f"{_pct(_acc(white, ens, a, e))} % at eps {e}.")
    vq = "fmnist/vqunet-classifier"
    if vq in gray["clean"]:
        bounded = [r for r in gray["records"] if r["defense"] == vq and r["eps"] is not None]
        low = min(bounded, key=lambda r: r["accuracy"]) if bounded else None
        if low is not None:
            out.append(f"- The VQUNet paper reports at least 90 % on Fashion-MNIST under every attack and noise level it "
                       f"tried (examples made without knowledge of the denoiser); here the lowest gray-box accuracy is "
                       f"{_pct(low['accuracy'])} % ({low['attack']}, eps {low['eps']}), and the white-box attack through "
                       f"the denoiser leaves {_pct(_acc(white, vq, a, e))} %.")
    out += _codebook_tradeoff(gray)
    return out


def _codebook_tradeoff(gray: dict) -> list[str]:
    """One sentence on the two shipped VQUNets (K = 1024 and K = 256) and the non-VQ U-Net: clean
    accuracy against gray-box accuracy under each iterative attack at the smallest eps."""
    fine, coarse = "fmnist/vqunet-classifier", "fmnist/vqunet-k256-classifier"
    ds = [d for d in (fine, coarse, "fmnist/non-vq-unet-classifier") if d in gray["clean"]]
    if len(ds) < 2:
        return []
    e = min(x for x in gray["config"]["eps"] if x is not None)
    attacks = [x for x in ("bim", "pgd") if x in gray["config"]["attacks"]]
    if not attacks:
        return []
    parts = [f"{_label(d)} {_pct(gray['clean'][d])} % clean, "
             + ", ".join(f"{_pct(_acc(gray, d, x, e))} % under {x}" for x in attacks) for d in ds]
    verdict = ""
    if fine in ds and coarse in ds:
        adv = {d: np.mean([_acc(gray, d, x, e) for x in attacks]) for d in (fine, coarse)}
        if gray["clean"][fine] > gray["clean"][coarse] and adv[fine] < adv[coarse]:
            verdict = (" The finer codebook keeps more of the clean image and passes more of the perturbation with it: "
                       "codebook size trades clean accuracy for robustness here.")
        else:
            verdict = " Here the codebook size does not trade clean accuracy against robustness."
    return [f"- The VQUNets and the U-Net, gray-box at eps {e}: " + "; ".join(parts) + "." + verdict]


def markdown(results: dict, meta: dict) -> str:
    gray = results["gray-box"]
    lines = ["# nnjpeg report: Fashion-MNIST", "",
             f"Generated by `{meta['command']}` from a run on {meta['n']} test images (seed {meta['seed']}); every number "
             "below is measured by that run except the columns and rows marked *paper*, which are the papers' own "
             f"reported numbers on their data. Wall time {meta['wall_time_s']:.0f} s.", "",
             "## Clean accuracy after filtering (VQUNet paper, Table 1 layout)", "", *table1(gray), "",
             f"*paper*: {PAPER['vqunet_table1']['source']}.", "",
             "## Gray-box (NN-JPEG paper, Table 2 layout, top)", "",
             "Examples made on the undefended target, fed to each defense. Accuracy (%); eps is L-inf on images in "
             f"[0, 1]; PGD runs {meta['pgd_steps']} steps, BIM 10."
             + (" DeepFool (20 iterations at most) and C&W-L2 (4 binary search steps x 25 Adam steps) are unbounded L2 "
                f"attacks, run on the first {meta['l2_n']} images only (n in the header)." if meta.get("l2_n") else ""),
             "", *table2(gray), ""]
    if "black-box" in results:
        lines += ["## Black-box (NN-JPEG paper, Table 2 layout, bottom)", "",
                  f"Examples transferred from the surrogates ({', '.join(meta['surrogates'])}), test images split evenly "
                  "among them.", "", *table2(results["black-box"]), "",
                  "## Accuracy vs eps, VQUNet paper protocol (Fig. 2 layout)", "",
                  "Half of the examples made on the target, half transferred from the surrogates: the mean of the "
                  "gray-box and black-box accuracies on the same images.", "", "![fig2](fig2_vqunet_protocol.png)", ""]
    else:
        lines += ["Black-box results need the three shipped surrogates; not all are installed.", ""]
    p2 = PAPER["nnjpeg_table2_gray"]
    lines += [f"*paper* gray-box rows ({p2['source']}):", "", "| | " + " | ".join(p2["columns"]) + " |",
              "|---|" + "---:|" * len(p2["columns"])]
    lines += [f"| {k} | " + " | ".join(f"{v:.1f}" for v in vals) + " |" for k, vals in p2["rows"].items()]
    lines += ["", "## White-box, adaptive (NN-JPEG paper, Table 3 layout)", "",
              f"{meta['white_attack'].upper()}"
              + (f" ({meta['pgd_steps']} steps)" if meta["white_attack"] == "pgd" else "")
              + " through the whole defended model: identity (BPDA) gradient through compression and TVM, the VQ "
              f"straight-through estimator, EOT over {meta['eot']} draws for TVM, the ensemble attacked as one model"
              + (f"; on the first {meta['white_n']} of the {meta['n']} images, Acc_raw on the same images."
                 if meta.get("white_n", meta["n"]) < meta["n"] else "."), "", *table3(results["white-box"]), "",
              f"*paper*: {PAPER['nnjpeg_table3']['source']}.", "", "![table3](table3_white_box.png)", "",
              "## Reading", "", *reading(results), ""]
    if "vq-analysis" in results:
        lines += ["## VQUNet analyses (VQUNet paper, Figs. 3-6)", "",
                  "FGSM examples of the target at each eps, through the shipped denoisers alone: the l1 error of the "
                  "reconstruction against the clean image (Fig. 3), the mean l1 change of the encoder features between "
                  "clean and adversarial input before and after quantization, per depth (Figs. 4-5), and the share of "
                  "code indices that change (Fig. 6).", "", *vq_table(results["vq-analysis"]), "",
                  "![vq](vqunet_analyses.png)", ""]
    if "ablation" in results:
        from nnjpeg import ablation

        lines += ["## Ablation: quantization table x colour transform (NN-JPEG paper, Fig. 5)", "",
                  "The target on clean and gray-box adversarial images through each pair of quantization table and colour "
                  "transform (4:4:4, so nothing else changes). Accuracy (%).", "", *ablation.markdown(results["ablation"]), "",
                  "![ablation](ablation.png)", ""]
    return "\n".join(lines)


def plot_protocol(gray: dict, black: dict, path: Path) -> None:
    """Accuracy vs eps per attack run in both scenarios: the mean of gray-box and black-box."""
    from nnjpeg import evaluate

    records = []
    for r in gray["records"]:
        b = _acc(black, r["defense"], r["attack"], r["eps"]) if r["eps"] is not None else None
        if b is not None:
            records.append({**r, "accuracy": (r["accuracy"] + b) / 2})
    evaluate.plot({"records": records, "clean": gray["clean"],
                   "config": {**gray["config"], "scenario": "50 % gray-box + 50 % transfer"}}, path)


def plot_white_box(white: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = white["config"]["defenses"]
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    pos = np.arange(len(ds))
    fig, ax = plt.subplots(figsize=(1.2 * len(ds) + 2, 3.6))
    ax.bar(pos - 0.2, [100 * white["clean"][d] for d in ds], 0.4, label="benign (Acc_raw)")
    ax.bar(pos + 0.2, [100 * (_acc(white, d, a, e) or 0.0) for d in ds], 0.4, label=f"white-box {a} eps {e} (Acc_ae)")
    ax.set_xticks(pos, [_label(d) for d in ds], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="the papers' tables and figures on Fashion-MNIST with the shipped models")
    p.add_argument("--n", type=_args.COUNT, default=1000, help="test images (a seeded subset; 10000 for all)")
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--eps", type=_args.EPS, action="append", default=None, help="L-inf budgets (default 0.03, 0.1, 0.2)")
    p.add_argument("--white-eps", type=_args.EPS, default=0.1)
    p.add_argument("--eot", type=_args.COUNT, default=4, help="EOT draws for randomized defenses in the white-box attack")
    p.add_argument("--white-n", type=_args.COUNT, default=None,
                   help="attack only the first WHITE_N images white-box (the slow scenario; default all n)")
    p.add_argument("--out", default="reports/fmnist")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import shlex

    res = run(Path(args.out), n=args.n, seed=args.seed, eps=tuple(args.eps or (0.03, 0.1, 0.2)),
              white_eps=args.white_eps, eot=args.eot, white_n=args.white_n,
              command="nnjpeg report " + " ".join(shlex.quote(a) for a in args.argv))
    print(markdown(res["results"], res["meta"]))
    return 0
