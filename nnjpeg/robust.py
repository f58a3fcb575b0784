"""The white-box evaluation that decides whether a defense holds, and the checks that it is not
gradient masking (Athalye, Carlini and Wagner, 2018; Carlini et al., 2019, "On evaluating
adversarial robustness", Sec. 5):

- PGD with many steps and restarts through the whole defended model (BPDA/straight-through
  gradients through the codec and VQ layers, EOT over randomized defenses);
- AutoAttack's standard version through IBM's ART (`nnjpeg.art`), where ART is installed;
- accuracy against a growing eps: it must fall as eps grows and reach 0 % at an unbounded eps;
- white-box accuracy must not exceed black-box (transfer) accuracy at the same eps.

A defense is credited with the worst of the white-box attacks on it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .evaluate import accuracy_at, percent

SWEEP = (0.03, 0.1, 0.2, 0.3, 1.0)  # 1.0: every image in [0, 1] is reachable, the unbounded check


def has_art() -> bool:
    return importlib.util.find_spec("art") is not None


def run(defenses, common: dict, *, eps: float = 0.1, steps: int = 100, restarts: int = 5, sweep=SWEEP,
        sweep_steps: int = 20, autoattack: bool = True, autoattack_n: int | None = None, eot: dict | None = None) -> dict:
    """White-box PGD (`steps` x `restarts`), AutoAttack (when `autoattack` and ART is installed; on
    the first `autoattack_n` images, all by default: ART's attacks run eagerly and cost several
    times PGD's) at `eps`, and PGD (`sweep_steps`) over the `sweep` of eps, on every defense;
    `common` holds `nnjpeg.evaluate.evaluate`'s shared arguments (data, load, progress, seed)."""
    from nnjpeg import evaluate

    eot = eot or {}
    kwargs = {**common, "eot": eot}
    out = {"eps": eps, "steps": steps, "restarts": restarts, "sweep_steps": sweep_steps}
    out["pgd"] = evaluate.evaluate(defenses, ["pgd"], [eps], "white-box", desc=f"white-box PGD-{steps} x {restarts}",
                                   per_image=True,
                                   **{**kwargs, "attack_kwargs": {"pgd": {"nb_iter": steps, "restarts": restarts}}})
    if autoattack and has_art():
        x, y = common["data"]
        n = len(x) if autoattack_n is None else min(autoattack_n, len(x))
        out["autoattack"] = evaluate.evaluate(defenses, ["autoattack"], [eps], "white-box", desc="white-box AutoAttack",
                                              per_image=True, **{**kwargs, "attack_kwargs": {}, "data": (x[:n], y[:n])})
    out["sweep"] = evaluate.evaluate(defenses, ["pgd"], list(sweep), "white-box", desc="masking check: PGD over eps",
                                     **{**kwargs, "attack_kwargs": {"pgd": {"nb_iter": sweep_steps}}})
    return out




def worst_per_image(robust: dict, d: str) -> tuple[int, int] | None:
    """RobustBench's robust accuracy: of the images that PGD and AutoAttack both ran on (the first n
    of them), how many the defense got right clean and under each; (right, n), or None for results
    kept without per-image records."""
    from nnjpeg import evaluate

    parts = [r for r in (robust["pgd"], robust.get("autoattack")) if r is not None]
    if not all("clean_right" in r and d in r["clean_right"] for r in parts):
        return None
    mask, n = evaluate.worst_per_image(parts, d)
    return int(mask.sum()), n


def worst(robust: dict, d: str) -> float | None:
    """The defense's accuracy under the strongest white-box attack run on it at `robust["eps"]`."""
    values = [v for v in (accuracy_at(robust["pgd"], d, "pgd", robust["eps"]),
                          accuracy_at(robust.get("autoattack"), d, "autoattack", robust["eps"])) if v is not None]
    return min(values) if values else None


def checks(robust: dict, black: dict | None, tolerance: float = 0.01) -> dict:
    """Per defense: `falls` (sweep accuracy never rises by more than `tolerance` as eps grows),
    `unbounded` (0 % at the sweep's largest eps), `white_le_black` (worst white-box accuracy at eps
    no higher than the lowest black-box accuracy at that eps; None without black-box results)."""
    sweep = robust["sweep"]
    eps_grid = sorted(sweep["config"]["eps"])
    out = {}
    for d in sweep["config"]["defenses"]:
        curve = [sweep["clean"][d]] + [accuracy_at(sweep, d, "pgd", e) for e in eps_grid]
        falls = all(b <= a + tolerance for a, b in zip(curve, curve[1:]))
        black_acc = None
        if black is not None:
            at = [r["accuracy"] for r in black["records"] if r["defense"] == d and r["eps"] == robust["eps"]]
            black_acc = min(at) if at else None
        w = worst(robust, d)
        out[d] = {"curve": curve, "falls": falls, "unbounded": curve[-1] == 0.0,
                  "white": w, "black": black_acc,
                  "white_le_black": None if black_acc is None or w is None else w <= black_acc}
    return out




def _mark(ok) -> str:
    return "–" if ok is None else ("yes" if ok else "**NO**")


def table(robust: dict, black: dict | None, label) -> list[str]:
    """Markdown: clean, PGD-20 sweep point at eps, PGD-steps x restarts, AutoAttack, worst, and
    the three masking checks, one row per defense."""
    e = robust["eps"]
    c = checks(robust, black)
    aa = "autoattack" in robust
    head = ["defense", "clean", f"PGD-{robust['steps']} x {robust['restarts']}"] + (["AutoAttack"] if aa else []) + [
        "worst white-box", "lowest black-box", "falls with eps", "white <= black", "0 % unbounded"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for d in robust["pgd"]["config"]["defenses"]:
        row = [label(d), percent(robust["pgd"]["clean"][d]), percent(accuracy_at(robust["pgd"], d, "pgd", e))]
        if aa:
            row.append(percent(accuracy_at(robust["autoattack"], d, "autoattack", e)))
        row += [f"**{percent(c[d]['white'])}**", percent(c[d]["black"]), _mark(c[d]["falls"]), _mark(c[d]["white_le_black"]),
                _mark(c[d]["unbounded"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def sweep_table(robust: dict, label) -> list[str]:
    sweep = robust["sweep"]
    eps_grid = sorted(sweep["config"]["eps"])
    lines = ["| defense | clean | " + " | ".join(f"eps {e:g}" for e in eps_grid) + " |",
             "|---|---:|" + "---:|" * len(eps_grid)]
    for d in sweep["config"]["defenses"]:
        lines.append(f"| {label(d)} | {percent(sweep['clean'][d])} | "
                     + " | ".join(percent(accuracy_at(sweep, d, "pgd", e)) for e in eps_grid) + " |")
    return lines


def plot_sweep(robust: dict, path, label) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = robust["sweep"]
    eps_grid = sorted(sweep["config"]["eps"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for d in sweep["config"]["defenses"]:
        ys = [100 * sweep["clean"][d]] + [100 * (accuracy_at(sweep, d, "pgd", e) or 0.0) for e in eps_grid]
        ax.plot(range(len(ys)), ys, marker="o", label=label(d))
    ax.set_xticks(range(len(eps_grid) + 1), ["0"] + [f"{e:g}" for e in eps_grid])
    ax.set_xlabel("eps (L-inf, images in [0, 1]); 1 = unbounded")
    ax.set_ylabel("white-box accuracy (%)")
    ax.set_title(f"White-box PGD-{robust['sweep_steps']} against eps (must fall, and reach 0 at eps 1)", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_hours(metrics: dict) -> float:
    """A trained defense's training time from its metrics: the members' fine-tuning summed for the
    ensemble, the time over every resumed invocation for adversarial training."""
    if "members_training_s" in metrics:
        return sum(v for v in metrics["members_training_s"].values() if v is not None) / 3600
    return metrics.get("training_s_total", metrics.get("wall_time_s_this_invocation", 0.0)) / 3600


def training_table(robust: dict, metrics: dict, label, paper: dict) -> list[str]:
    """NN-JPEG paper, Table 1 layout: each trained defense's training time beside its clean and
    white-box accuracy. `metrics`: defense -> its shipped metrics JSON."""
    e = robust["eps"]
    aa = "autoattack" in robust
    lines = ["| method | eps | epochs | clean | PGD-20, 1 start | "
             f"PGD-{robust['steps']} x {robust['restarts']} | " + ("AutoAttack | " if aa else "") + "training time (h) |",
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if aa else "") + "---:|"]
    for d, m in metrics.items():
        if d not in robust["pgd"]["clean"]:
            continue
        if "members_training_s" in m:  # the ensemble: the noisy fine-tuning chain M90 ... M30
            epochs = f"{m['epochs']} per member x {len(m['members_training_s'])}"
            eps_cell = "– (noise)"
        else:
            epochs = str(m.get("epochs_logged", m.get("epochs")))
            if m.get("init"):  # fine-tuned: its time adds to that of the model it started from
                epochs += f" (fine-tuning {Path(m['init']).stem})"
            eps_cell = "–" if m.get("eps", e) is None else f"{m.get('eps', e):g}"  # a composition trains no eps
        row = [label(d), eps_cell, epochs, percent(robust["pgd"]["clean"][d]), percent(accuracy_at(robust["sweep"], d, "pgd", e)),
               percent(accuracy_at(robust["pgd"], d, "pgd", e))]
        if aa:
            row.append(percent(accuracy_at(robust["autoattack"], d, "autoattack", e)))
        row.append(f"{training_hours(m):.2f}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"*paper* rows ({paper['source']}):", "",
              "| method | eps (of 255) | epochs | standard acc. | PGD + 1 restart | PGD + 10 restarts | total time (h) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} |" for r in paper["rows"]]
    return lines
