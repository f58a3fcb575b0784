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

from . import _args, registry, stats
from .evaluate import accuracy_at, percent, record_at

# How each VQUNet variant was trained, for the report's table of what was tried.
VQUNET_VARIANTS = {
    "fmnist/vqunet-classifier": "the paper's recipe: clean inputs, K = 1024, target retrained on denoised images",
    "fmnist/vqunet-k256-classifier": "the paper's recipe with K = 256 codes",
    "fmnist/non-vq-unet-classifier": "the same U-Net without quantization",
    "fmnist/vqunet-adv-classifier": "inputs also FGSM/PGD examples of the target (eps 0.1), clean targets, K = 1024",
    "fmnist/vqunet-adv-pgd-at": "that denoiser in front of the PGD-AT classifier, nothing retrained",
    "fmnist/vqunet-mix-classifier": "inputs FGSM/PGD examples at eps 0.03, 0.1, 0.2, 0.3, clean targets, K = 1024; "
                                    "then denoiser and target fine-tuned end to end (as Defense-VAE), the codebook "
                                    "terms in the loss",
    "fmnist/vqunet-oracle-classifier": "VQUNet-mix's denoiser fine-tuned end to end again with a fresh target, on "
                                       "FGSM/PGD examples at eps 0.05, 0.1, 0.15 made on the target and on this "
                                       "report's three surrogates: a reference that has seen the attacker's models, "
                                       "not a defense",
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
    "nnjpeg_table2_black": {
        "source": "NN-JPEG paper, Table 2, black-box (ImageNet, transferred from ResNet-v2-101 to ResNet-v2-50; eps in "
                  "grey levels of 255)",
        "columns": ["No attack", "FGSM 2", "FGSM 4", "FGSM 8", "I-FGSM 2", "I-FGSM 3", "I-FGSM 4", "TI-FGSM 2", "TI-FGSM 4",
                    "DI-FGSM 2", "DI-FGSM 4"],
        "rows": {"No Defense": [65.4, 45.0, 34.6, 25.3, 53.5, 55.8, 54.7, 56.1, 48.4, 45.6, 38.4],
                 "JPEG (75)": [60.5, 50.9, 40.1, 28.7, 55.8, 56.8, 56.2, 52.9, 47.0, 51.4, 42.3],
                 "FD": [59.5, 50.9, 41.2, 28.5, 56.5, 56.7, 55.6, 51.3, 46.9, 50.4, 44.1],
                 "TVM": [58.2, 59.3, 42.9, 32.6, 52.3, 55.7, 55.7, 51.5, 47.0, 52.1, 45.1],
                 "Proposed": [66.5, 62.1, 50.7, 34.9, 62.0, 63.1, 66.7, 55.1, 48.0, 52.0, 45.3]},
    },
    "nnjpeg_table1": {
        "source": "NN-JPEG paper, Table 1 (ImageNet; accuracies in %)",
        "rows": [("Fast", 2, 15, 60.90, 43.46, 43.43, 12.14), ("Free", 2, 15, 64.37, 43.31, 43.28, 52.20),
                 ("Proposed", 2, 14, 65.10, 40.06, 40.01, 11.51), ("Proposed", 2, 28, 63.10, 42.23, 42.17, 22.11),
                 ("Fast", 4, 15, 55.45, 30.28, 30.18, 12.14), ("Free", 4, 15, 60.42, 31.22, 31.08, 52.20),
                 ("Proposed", 4, 14, 64.02, 28.43, 28.40, 11.51), ("Proposed", 4, 28, 63.01, 30.89, 30.85, 22.11)],
    },
    "nnjpeg_table3": {
        "source": "NN-JPEG paper, Table 3, white-box BPDA (ImageNet, Inception-v4, 1000 iterations)",
        "rows": {"No Defense": (78, 0), "JPEG (75)": (74, 1), "FD": (73, 2), "TVM": (74, 0), "Proposed": (78, 60)},
    },
}


# The NN-JPEG paper's own eps grid (Table 2), in grey levels of 255.
PAPER_GRID_GRAY = (("fgsm", 2), ("fgsm", 4), ("fgsm", 8), ("bim", 2), ("bim", 3), ("bim", 4))
PAPER_GRID_BLACK = PAPER_GRID_GRAY + (("ti-fgsm", 2), ("ti-fgsm", 4), ("di-fgsm", 2), ("di-fgsm", 4))


def shipped_defenses(dataset: str = "fashion-mnist") -> list[str]:
    """The target and every defense (references too) shipped for `dataset`, in the tables' order."""
    from nnjpeg import pretrained

    names = set(pretrained.names())
    target = registry.target(dataset)
    if target not in names:
        raise RuntimeError(f"nnjpeg report needs the shipped {target!r}. Installed weights: {sorted(names) or 'none'}")
    return [m.name for m in registry.select(dataset=dataset, roles=("target", "defense", "reference")) if m.name in names]


def _seen_surrogates(d: str) -> bool:
    """Variants trained on examples made on the report's own surrogates: they show what training on
    the transferred half itself reaches, and are never the best reached nor the ceiling set against
    the goal."""
    row = registry.find(d)
    return row is not None and row.role == "reference"


def _paper_row(d: str) -> str | None:
    row = registry.find(d)
    return row.paper_row if row is not None else None


DEFAULT_EPS = (0.01, 0.03, 0.1, 0.2, 0.3)  # the VQUNet paper's Fig. 2 range
ANALYSIS_EPS = (0.03, 0.1, 0.2)


def run(out: Path, *, n: int = 1000, seed: int = 0, eps=DEFAULT_EPS, analysis_eps=ANALYSIS_EPS,
        white_eps: float = 0.1,
        gray_attacks=("fgsm", "bim", "pgd", "cw-linf"), l2_attacks=("deepfool", "cw"), l2_n: int = 200,
        black_attacks=("fgsm", "bim", "pgd", "cw-linf", "ti-fgsm", "di-fgsm"),
        white_attack: str = "pgd", white_n: int | None = None, eot: int = 4, pgd_steps: int = 20, vq_n: int = 500,
        ablation_attacks=("fgsm", "bim"), paper_grid: bool = True, robust: bool = True, robust_n: int | None = None,
        robust_steps: int = 100, robust_restarts: int = 5, autoattack: bool = True, autoattack_n: int | None = 200,
        bpda_n: int = 100, bpda_iterations: int = 1000, progress: bool = True,
        command: str = "nnjpeg report", defenses=None, load=None, data=None, clean_all: bool = True, clean_data=None,
        available=None, resume: bool = False, fingerprint=None, readme: Path | str | None = None,
        shard: tuple[int, int] | None = None, merge=None) -> dict:
    """Runs every scenario and writes `out/README.md`, `results.json`, plots and, given `readme`,
    the results block of that README.

    By default on the shipped defenses, surrogates and a seeded subset of the Fashion-MNIST test
    set; `eps` are the gray-box and black-box budgets, `analysis_eps` those of the VQUNet analyses and
    the ablation; `defenses` (names, "fmnist/classifier" among them), `load` (name -> model), `data`
    ((x, y) in [0, 1]) and `available` (names loadable, for the surrogates) replace them. Each
    stage shows one progress bar. `paper_grid` adds the NN-JPEG paper's own eps grid (Table 2) and its
    white-box BPDA (Table 3: `bpda_iterations` Adam steps at rate 0.1) on the first `bpda_n` images;
    `robust` the strong white-box evaluation at `white_eps` (PGD-`robust_steps` x `robust_restarts`,
    AutoAttack where ART is installed and `autoattack`, on the first `autoattack_n` of them, the
    gradient-masking checks) on the first `robust_n` images (default: `white_n`). With `clean_all`,
    each defense's clean accuracy is measured on `clean_data` as well ((x, y); default: every
    Fashion-MNIST test image, unless `data` is given), for Table 1 and the papers' clean-drop
    claims, whose differences of a point or two a subset of 1000 images cannot tell apart.

    Each finished stage is saved to `out/stages.json`, with a fingerprint of each defense (`fingerprint`:
    name -> str; default the hash of its model card's metrics). With `resume`, a stage found there for
    the same settings is taken from it, and run only for the defenses it lacks or whose fingerprint
    changed since (their rows replaced, the others kept): a defense added or retrained costs its own
    attacks, not the whole report's.

    A report can be split over machines: with `shard=(i, k)` each attack stage runs on the i-th of k
    parts of its images (`nnjpeg.evaluate.evaluate`'s shards) and the run stops once they are saved
    to `out/stages.json`, writing no report. `merge` (the shards' `out` folders or `stages.json`
    files, every i of 0..k-1 once, made with the settings of this call) adds their stages up into
    `out/stages.json` (see `merge_stages`) and resumes from it: the stages that are not split (clean
    accuracy on every test image, the VQUNet analyses, the ablation) run then, and the report is
    written as the unsplit run writes it."""
    from nnjpeg import _console, evaluate, pretrained
    from nnjpeg import robust as R

    t0 = time.time()
    defenses = list(defenses) if defenses is not None else shipped_defenses()
    load = load or pretrained.load
    shipped = set(pretrained.names())  # one walk of the weights folder; `available` may name made-up models
    names = set(available) if available is not None else shipped
    models = {d: load(d) for d in defenses}
    models.update({s: load(s) for s in registry.surrogates("fashion-mnist") if s in names})
    x, y = data if data is not None else evaluate.subset("fashion-mnist", n, seed)
    settings = {"n": len(x), "seed": seed, "eps": list(eps), "white_eps": white_eps,
                "white_n": white_n, "eot": eot, "robust_n": robust_n, "robust_steps": robust_steps,
                "restarts": robust_restarts, "autoattack": autoattack, "autoattack_n": autoattack_n,
                "bpda_n": bpda_n, "bpda_iterations": bpda_iterations, "attacks": [list(gray_attacks),
                list(black_attacks), list(l2_attacks or ()), white_attack], "paper_grid": paper_grid}
    fingerprint = fingerprint or (lambda d: _card_fingerprint(d) if d in shipped else None)
    fingerprints = {d: fingerprint(d) for d in defenses}
    if shard is not None and merge is not None:
        raise ValueError(f"Expected either shard (run one part) or merge (add the parts up). Received: shard={shard!r} "
                         f"and merge={list(merge)!r}")
    if merge is not None:
        saved = merge_stages(merge, settings, fingerprints)
        out.mkdir(parents=True, exist_ok=True)
        (out / "stages.json").write_text(json.dumps(saved))
        resume = True
    if shard is not None:
        settings["shard"] = list(shard)  # a shard resumes only as the same shard
    stage = _Checkpoint(out / "stages.json", settings, fingerprints, resume)
    common = {"data": (x, y), "load": models.__getitem__, "progress": progress, "seed": seed, "shard": shard,
              "attack_kwargs": {"pgd": {"nb_iter": pgd_steps}, "cw-linf": {"nb_iter": pgd_steps}, "bim": {"nb_iter": 10},
                                "deepfool": {"max_iter": 20}, "cw": {"binary_steps": 4, "max_iter": 25}}}
    gray = stage("gray-box", lambda ds: evaluate.evaluate(ds, list(gray_attacks), list(eps), "gray-box", **common))
    if l2_attacks:  # the slow unbounded attacks on the first l2_n images only (each record keeps its n)
        l2 = stage("gray-box, L2", lambda ds: evaluate.evaluate(
            ds, list(l2_attacks), list(eps), "gray-box", desc="gray-box, L2 attacks",
            **{**common, "data": (x[:l2_n], y[:l2_n])}))
        gray = {**gray, "records": gray["records"] + l2["records"],
                "config": {**gray["config"], "attacks": gray["config"]["attacks"] + list(l2_attacks)}}
    results = {"gray-box": gray}
    if clean_all and clean_data is None and data is None:
        clean_data = evaluate.test_images("fashion-mnist")
    if clean_all and clean_data is not None and shard is None:
        results["clean, all"] = stage("clean, all", lambda ds: _clean_accuracy(ds, models, clean_data, progress,
                                                                               measured=((x, y), gray)))
    surrogates = [s for s in registry.surrogates("fashion-mnist") if s in models]
    if len(surrogates) == len(registry.surrogates("fashion-mnist")):
        results["black-box"] = stage("black-box", lambda ds: evaluate.evaluate(
            ds, list(black_attacks), list(eps), "black-box", **common))
    if paper_grid:
        grid = [(a, e / 255.0) for a, e in PAPER_GRID_GRAY]
        results["paper-grid gray-box"] = stage("paper-grid gray-box", lambda ds: evaluate.evaluate(
            ds, sorted({a for a, _ in grid}), [], "gray-box", pairs=grid, desc="gray-box, the NN-JPEG paper's eps",
            **common))
        if "black-box" in results:
            black_grid = [(a, e / 255.0) for a, e in PAPER_GRID_BLACK]
            results["paper-grid black-box"] = stage("paper-grid black-box", lambda ds: evaluate.evaluate(
                ds, sorted({a for a, _ in black_grid}), [], "black-box", pairs=black_grid,
                desc="black-box, the NN-JPEG paper's eps", **common))
    white_n = len(x) if white_n is None else min(white_n, len(x))  # the adaptive attack is the slow one
    randomized = {d: eot for d in defenses if registry.randomized(d)}
    results["white-box"] = stage("white-box", lambda ds: evaluate.evaluate(
        ds, [white_attack], [white_eps], "white-box", eot=randomized,
        **{**common, "data": (x[:white_n], y[:white_n])}))
    if paper_grid and bpda_n:  # NN-JPEG Table 3 with its own attack settings: 1000 Adam iterations, rate 0.1
        results["bpda"] = stage("bpda", lambda ds: evaluate.evaluate(
            ds, ["bpda"], [white_eps], "white-box", eot=randomized, desc="white-box BPDA, the paper's settings",
            **{**common, "data": (x[:bpda_n], y[:bpda_n]), "attack_kwargs": {"bpda": {"nb_iter": bpda_iterations,
                                                                                     "lr": 0.1}}}))
    if robust:
        robust_n = white_n if robust_n is None else min(robust_n, len(x))
        results["robust"] = stage("robust", lambda ds: R.run(
            ds, {**common, "data": (x[:robust_n], y[:robust_n])}, eps=white_eps, steps=robust_steps,
            restarts=robust_restarts, autoattack=autoattack, autoattack_n=autoattack_n, eot=randomized))
    if shard is not None:  # the stages that are not split, and the report, come with the merge
        return {"meta": {"n": len(x), "seed": seed, "shard": list(shard), "stages": out / "stages.json",
                         "wall_time_s": time.time() - t0 + stage.reused_s}, "results": results, "models": models,
                "data": (x, y)}
    if robust:
        results["training"] = {d: pretrained.metrics(d) for d in defenses if d in names and _training_compared(d)}
    out.mkdir(parents=True, exist_ok=True)
    for scenario, res in results.items():
        if scenario in ("gray-box", "black-box", "white-box"):
            evaluate.write_report(res, out / scenario)
    if "black-box" in results:
        plot_protocol(results["gray-box"], results["black-box"], out / "fig2_vqunet_protocol.png")
    plot_white_box(results["white-box"], out / "table3_white_box.png")
    if robust:
        R.plot_sweep(results["robust"], out / "masking_check.png", defense_label)
    if variants := [d for d in VQUNET_VARIANTS if d in results["gray-box"]["clean"]]:
        plot_vqunet_tried(results, variants, {"white_eps": white_eps}, out / "vqunet_tried.png")
    denoisers = {n: load(n) for n in ("fmnist/vqunet", "fmnist/vqunet-k256", "fmnist/non-vq-unet") if n in names}
    if denoisers:
        def analyses():
            with _console.stage(1, "VQUNet analyses (Figs. 3-6)", enabled=progress) as bar:
                return vq_analysis(denoisers, models["fmnist/classifier"], x[:vq_n], y[:vq_n], analysis_eps)

        results["vq-analysis"] = stage("vq-analysis", analyses, per_defense=False)
        from nnjpeg import vq_analysis as V

        V.plot(results["vq-analysis"], out / "vqunet_analyses.png")
    if ablation_attacks:
        from nnjpeg import ablation

        def grid():
            with _console.stage(1, "ablation: table x colour transform (Fig. 5)", enabled=progress):
                return ablation.run(models["fmnist/classifier"], x, y, attacks=tuple(ablation_attacks),
                                    eps=tuple(analysis_eps), progress=progress and _console.verbose())

        results["ablation"] = stage("ablation", grid, per_defense=False)
        ablation.plot(results["ablation"], out / "ablation.png")
    meta = {"n": len(x), "seed": seed, "eps": list(eps), "white_eps": white_eps, "white_attack": white_attack, "white_n": white_n, "eot": eot,
            "pgd_steps": pgd_steps, "l2_n": min(l2_n, len(x)) if l2_attacks else 0,
            "robust_n": results["robust"]["pgd"]["config"]["n"] if robust else 0,
            "autoattack_n": results["robust"]["autoattack"]["config"]["n"] if robust and "autoattack" in results["robust"]
            else 0,
            "wall_time_s": time.time() - t0 + stage.reused_s, "command": command, "surrogates": surrogates}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results, "paper": PAPER}, indent=2))
    _write_text(out, results, meta, readme)
    return {"meta": meta, "results": results, "models": models, "data": (x, y)}


class _Checkpoint:
    """The report's finished stages on disk (`stages.json`), so that hours of attacks survive an
    interruption and a defense can join a finished report.

    `stage(name, fn)` runs `fn(defenses)` for the defenses that `name` has no current result for
    (all of them unless resuming) and merges what it returns with the saved rest; `per_defense=False`
    stages run `fn()` once. `reused_s` sums the seconds of the results taken from the file."""

    def __init__(self, path: Path, settings: dict, fingerprints: dict, resume: bool):
        self.path, self.reused_s, self.fingerprints = path, 0.0, fingerprints
        self.saved = {"settings": json.loads(json.dumps(settings)), "stages": {}}
        if resume and path.exists():
            old = json.loads(path.read_text())
            if old.get("settings") != self.saved["settings"]:
                raise ValueError(f"Expected {path} to come from a report with the same settings, to resume it. "
                                 f"Received one made with {old.get('settings')}; this run has "
                                 f"{self.saved['settings']}. Run without --resume to start over.")
            self.saved = old

    def __call__(self, name: str, fn, per_defense: bool = True):
        entry = self.saved["stages"].get(name)
        order = list(self.fingerprints)
        if not per_defense:
            if entry is not None:
                self.reused_s += entry["seconds"]
                return entry["result"]
            todo = None
        else:
            kept = entry["fingerprints"] if entry else {}
            todo = [d for d in order if d not in kept or kept[d] != self.fingerprints[d]]
            if not todo:
                self.reused_s += entry["seconds"]
                return _merge(entry["result"], None, order)
        t0 = time.time()
        result = json.loads(json.dumps(fn() if todo is None else fn(todo)))  # as a resumed run reads it back
        seconds = time.time() - t0
        if todo is not None and entry is not None and len(todo) < len(order):
            self.reused_s += entry["seconds"]
            seconds += entry["seconds"]
            result = _merge(entry["result"], result, order)
        self.saved["stages"][name] = {"seconds": seconds, "result": result,
                                      **({"fingerprints": self.fingerprints} if per_defense else {})}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.saved))
        tmp.replace(self.path)
        return result


def merge_stages(paths, settings: dict, fingerprints: dict) -> dict:
    """The checkpoints of a sharded report (`run(shard=(i, k))`, one `stages.json` per shard, or the
    folder holding it) added up into the checkpoint of the unsplit run with `settings`: each stage's
    evaluations merged by `nnjpeg.evaluate.merge`, its seconds summed.

    Raises:
        ValueError: a file that is missing or is not a shard's checkpoint, shards made with other
            settings or models than `settings` and `fingerprints`, or shards that do not hold the
            same finished stages; each message names the files. Overlapping or missing shards are
            refused by `nnjpeg.evaluate.merge`, naming the files too.
    """
    files = [Path(p) / "stages.json" if Path(p).is_dir() else Path(p) for p in paths]
    if not files:
        raise ValueError("Expected the checkpoints of a sharded report (nnjpeg report --shard I/K --out DIR). "
                         "Received: none")
    names = [str(f) for f in files]
    saved = []
    for f in files:
        if not f.is_file():
            raise ValueError(f"Expected a sharded report's stages.json (nnjpeg report --shard I/K --out DIR). "
                             f"Received: {f}, no such file")
        data = json.loads(f.read_text())
        if "shard" not in data.get("settings", {}):
            raise ValueError(f"Expected the checkpoint of a sharded report (nnjpeg report --shard I/K). Received: {f}, "
                             "one without a shard")
        saved.append(data)
    for f, data in zip(names, saved):
        mine = {k: v for k, v in data["settings"].items() if k != "shard"}
        if mine != json.loads(json.dumps(settings)):
            keys = sorted(k for k in {*mine, *settings} if mine.get(k) != settings.get(k))
            raise ValueError(f"Expected shards made with this report's settings. Received: {f} differs in {keys} "
                             f"({ {k: mine.get(k) for k in keys} } against { {k: settings.get(k) for k in keys} })")
    stages = list(saved[0]["stages"])
    for f, data in zip(names, saved):
        if list(data["stages"]) != stages:
            raise ValueError(f"Expected every shard to have finished the same stages, {stages} as {names[0]}. "
                             f"Received: {f} has {list(data['stages'])} (resume the unfinished one with --resume)")
        for name, entry in data["stages"].items():
            if entry.get("fingerprints") != fingerprints:
                raise ValueError(f"Expected shards of the same models. Received: {f}'s stage {name!r} was made with "
                                 f"{entry.get('fingerprints')}; these models are {fingerprints}")
    merged = {}
    for name in stages:
        parts = [data["stages"][name] for data in saved]
        merged[name] = {"seconds": sum(p["seconds"] for p in parts), "fingerprints": fingerprints,
                        "result": _merge_shards([p["result"] for p in parts], names)}
    return {"settings": json.loads(json.dumps(settings)), "stages": merged}


def _merge_shards(parts: list, names: list[str]):
    """One stage's results from each shard merged: evaluations by `evaluate.merge`, dicts of them key
    by key, anything else (a stage's settings) the same in every shard."""
    from nnjpeg import evaluate

    first = parts[0]
    if isinstance(first, dict) and "records" in first and "clean" in first:
        return evaluate.merge(parts, names)
    if isinstance(first, dict):
        return {k: _merge_shards([p[k] for p in parts], names) for k in first}
    if any(p != first for p in parts):
        raise ValueError(f"Expected the shards {names} to agree on {first!r}. Received: {parts}")
    return first


def _clean_accuracy(defenses: list[str], models: dict, data, progress: bool, measured=None) -> dict:
    """Each defense's accuracy on the benign images `data`, as an evaluation with no attack.
    `measured`: ((images, labels), an evaluation of them); when they are `data` (a report on every
    test image), its clean accuracies are taken, not measured again."""
    from nnjpeg import _console, evaluate

    x, y = data
    if measured is not None:
        (mx, my), result = measured
        if mx.shape == x.shape and np.array_equal(my, y) and np.array_equal(mx, x):
            return {"records": [], "clean": {d: result["clean"][d] for d in defenses},
                    "config": {"defenses": list(defenses), "n": len(x), "attacks": []}}
    clean = {}
    with _console.stage(len(defenses), f"clean accuracy, {len(x)} test images", enabled=progress) as bar:
        for d in defenses:
            bar.set_postfix_str(defense_label(d))
            clean[d] = evaluate.accuracy(models[d], x, y)
            bar.update(1)
    return {"records": [], "clean": clean, "config": {"defenses": list(defenses), "n": len(x), "attacks": []}}


def _merge(old, new, order: list):
    """`old` (an evaluation's result, or a dict of them) restricted to the defenses of `order`, with
    the rows of the defenses in `new` replaced by new's; the records kept in old's (attack, eps)
    order, defenses within in `order`."""
    if isinstance(old, dict) and "records" in old and "clean" in old:
        redone = set(new["clean"]) if new else set()
        records = [r for r in old["records"] if r["defense"] in order and r["defense"] not in redone]
        records += new["records"] if new else []
        keys = list(dict.fromkeys((r["attack"], r["eps"]) for r in old["records"] + records))
        records.sort(key=lambda r: (keys.index((r["attack"], r["eps"])), order.index(r["defense"])))
        source = {d: new if d in redone else old for d in order}
        clean = {d: source[d]["clean"][d] for d in order}
        config = {**old["config"], "defenses": list(order)}
        merged = {"records": records, "clean": clean, "config": config}
        for key in ("clean_correct", "clean_ci95", "clean_right"):  # absent from stages saved before they were kept
            if all(key in r for r in source.values()):
                merged[key] = {d: source[d][key][d] for d in order}
        return merged
    if isinstance(old, dict):
        return {k: _merge(v, (new or {}).get(k), order) for k, v in old.items()}
    return old


def _card_fingerprint(name: str) -> str:
    """A shipped model's identity for the report's stages: the hash of its model card's metrics
    (retraining writes new ones)."""
    import hashlib

    from nnjpeg import pretrained

    return hashlib.sha256(json.dumps(pretrained.metrics(name), sort_keys=True).encode()).hexdigest()[:16]


def _training_compared(d: str) -> bool:
    """Defenses whose training the NN-JPEG paper's Table 1 compares: adversarial training and the
    noisy fine-tuning chain of the ensemble."""
    row = registry.find(d)
    return row is not None and row.training_compared


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


def defense_label(d: str) -> str:
    return registry.label(d)




def _interval(share: float, n: int, trials: int = 1) -> tuple[float, float] | None:
    """The Wilson 95 % interval of an accuracy `share` of `n` images (x `trials` answers each), or
    None where the share is not one of them (nothing to count)."""
    try:
        return stats.wilson(stats.counted(share, n * trials), n * trials)
    except ValueError:
        return None


def _record_interval(r: dict | None) -> tuple[float, float] | None:
    if r is None:
        return None
    if "ci95" in r:
        return tuple(r["ci95"])
    return _interval(r["accuracy"], r["n"], 2 if r["scenario"] == "mixed" else 1)


def _pct_ci(v, ci) -> str:
    """An accuracy with its 95 % interval, in percent: "71.2 (67.1–75.0)"."""
    if v is None:
        return "–"
    return percent(v) if ci is None else f"{100 * v:.1f} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"


def _cell(res: dict | None, d: str, attack: str, e) -> str:
    r = record_at(res, d, attack, e)
    return _pct_ci(None if r is None else r["accuracy"], _record_interval(r))


def _clean_cell(res: dict, d: str) -> str:
    ci = res.get("clean_ci95", {}).get(d) or _interval(res["clean"][d], res["config"]["n"])
    return _pct_ci(res["clean"][d], ci)


def _counts(r: dict) -> tuple[int, int]:
    """A record's right answers and answers (a mixed record: n images, each attacked twice)."""
    trials = r["n"] * (2 if r["scenario"] == "mixed" else 1)
    return stats.counted(r["accuracy"], trials), trials


def _verdict(low: float, high: float, limit: float, *, at_least: bool = False) -> str:
    return f"**{stats.judge(low, high, limit, at_least=at_least)}**"


def _ci_text(low: float, high: float, scale: float = 100.0, unit: str = "") -> str:
    return f"95 % interval {scale * low:.1f}{unit} to {scale * high:.1f}{unit}"


_DECIDED = ("The verdict needs the claim's whole 95 % interval on one side of its limit; where the interval "
            "straddles it, the claim is not decided at this n.")


def table1(gray: dict, full: dict | None = None) -> list[str]:
    """The VQUNet paper's Table 1: each defense's clean accuracy and its drop from the target's, on
    the report's images and, given `full` (the "clean, all" stage), on every test image."""
    paper = PAPER["vqunet_table1"]
    sets = [gray] + ([full] if full is not None else [])
    head = "".join(f" acc, {res['config']['n']} images | degradation |" for res in sets)
    lines = [f"| method |{head} paper: acc | paper: degradation |", "|---|" + "---:|" * (2 * len(sets) + 2),
             "| target alone | " + "".join(f"{percent(res['clean']['fmnist/classifier'])} | – | " for res in sets)
             + f"{paper['target']:.2f} | – |"]
    for d in gray["config"]["defenses"]:
        if d == "fmnist/classifier":
            continue
        p = paper["rows"].get(_paper_row(d))
        lines.append(f"| {defense_label(d)} | " + "".join(
            f"{percent(res['clean'][d])} | {100 * (res['clean'][d] - res['clean']['fmnist/classifier']):+.2f} | "
            for res in sets) + (f"{p:.2f} | {p - paper['target']:+.2f} |" if p is not None else "– | – |"))
    return lines


def table2(res: dict) -> list[str]:
    keys = list(dict.fromkeys((r["attack"], r["eps"]) for r in res["records"]))
    size = {(r["attack"], r["eps"]): r["n"] for r in res["records"]}
    head = ["No attack"] + [f"{a} {'' if e is None else e}".strip()
                            + (f" (n={size[a, e]})" if size[a, e] != res["config"]["n"] else "") for a, e in keys]
    lines = ["| defense | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for d in res["config"]["defenses"]:
        cells = [percent(res["clean"][d])] + [percent(accuracy_at(res, d, a, e)) for a, e in keys]
        lines.append(f"| {defense_label(d)} | " + " | ".join(cells) + " |")
    return lines


def paper_grid_table(res: dict, grid, paper: dict, extra: dict | None = None) -> list[str]:
    """The NN-JPEG paper's Table 2 layout on its own eps grid (grey levels of 255): each of our cells
    with the paper's beside it, "ours (paper)", for the defenses the paper has a row for.
    `extra`: column name -> (attack, eps) records taken from `res` for the unbounded attacks."""
    extra = extra or {}
    columns = ["No attack"] + [f"{'I-FGSM' if a == 'bim' else a.upper()} {e}" for a, e in grid] + list(extra)
    keys = [(a, e / 255.0) for a, e in grid] + list(extra.values())
    lines = ["| defense | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for d in res["config"]["defenses"]:
        ours = [res["clean"][d]] + [accuracy_at(res, d, a, e) for a, e in keys]
        theirs = paper["rows"].get(_paper_row(d))
        cells = []
        for i, v in enumerate(ours):
            j = paper["columns"].index(columns[i]) if theirs is not None and columns[i] in paper["columns"] else None
            cells.append(percent(v) + (f" ({theirs[j]:.1f})" if j is not None else ""))
        lines.append(f"| {defense_label(d)} | " + " | ".join(cells) + " |")
    return lines


def _vqunet_attacks(results: dict, variants, meta: dict) -> list[str]:
    """The gray-box attacks run on the VQUNet variants at the white-box eps."""
    gray, e = results["gray-box"], meta["white_eps"]
    return [a for a in gray["config"]["attacks"] if accuracy_at(gray, variants[0], a, e) is not None]


def _vqunet_cells(results: dict, variants, meta: dict) -> tuple[list[str], dict]:
    """The attacks run at the white-box eps (`_vqunet_attacks`), and each variant's cells there under
    the VQUNet paper's mixed protocol: {variant: {attack: (mixed, gray-box, black-box)}}, the
    black-box part None when there is no black-box run (the mixed cell is then the gray-box one)."""
    gray, black, e = results["gray-box"], results.get("black-box"), meta["white_eps"]
    attacks = _vqunet_attacks(results, variants, meta)
    cells = {d: {} for d in variants}
    for d in variants:
        for a in attacks:
            g = accuracy_at(gray, d, a, e)
            b = accuracy_at(black, d, a, e) if black is not None else None
            if g is not None:
                cells[d][a] = (g if b is None else (g + b) / 2, g, b)
    return attacks, cells


def _vqunet_lowest(cells: dict) -> dict:
    """Each variant's lowest cell of `_vqunet_cells`: {variant: (mixed, attack, gray-box, black-box)}."""
    return {d: min((m, a, g, b) for a, (m, g, b) in row.items()) for d, row in cells.items() if row}


def vqunet_table(results: dict, variants, meta: dict) -> list[str]:
    """Each VQUNet variant: how it was trained, clean accuracy, the paper's mixed protocol (mean of
    gray-box and black-box) per attack at eps 0.1, and white-box accuracy; then the best reached and,
    when the goal is not met, the variant nearest to it and which half of the protocol holds it back."""
    from nnjpeg import robust as R

    gray, white = results["gray-box"], results["white-box"]
    e = meta["white_eps"]
    attacks, cells = _vqunet_cells(results, variants, meta)
    # The best reached and the nearest to the goal are among the variants that never saw the surrogates.
    lowest = {d: v for d, v in _vqunet_lowest(cells).items() if not _seen_surrogates(d)}
    rb = results.get("robust")
    head = ["variant", "how it was trained", "clean"] + [f"{a} (mixed)" for a in attacks] + [f"white-box {meta['white_attack']}"]
    head += ["strongest white-box"] if rb else []
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for d in variants:
        row = [defense_label(d), VQUNET_VARIANTS[d], percent(gray["clean"][d])]
        row += [percent(cells[d][a][0] if a in cells[d] else None) for a in attacks]
        row.append(percent(accuracy_at(white, d, meta["white_attack"], e)))
        if rb:
            row.append(percent(R.worst(rb, d)))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "The paper's goal: at least 90 % under the mixed protocol for every attack, with a clean-accuracy "
                  "drop of at most 1 point (its Table 1 and Fig. 2)."
              + (f" {', '.join(defense_label(d) for d in variants if _seen_surrogates(d))}: trained on examples made on "
                 "this report's surrogates, the models the transferred half comes from, which no defender of an "
                 "unknown attacker has; set beside the others, never counted as the best reached."
                 if any(_seen_surrogates(d) for d in variants) else "")]
    target = gray["clean"].get("fmnist/classifier")
    drop = {d: None if target is None else 100 * (target - gray["clean"][d]) for d in lowest}
    if lowest:
        best = max(lowest, key=lambda d: lowest[d][0])
        value, attack = lowest[best][:2]
        met = value >= 0.9 and drop[best] is not None and drop[best] <= 1.0
        lines[-1] += (f" Best reached: {defense_label(best)}, lowest mixed accuracy {percent(value)} % ({attack})"
                      + ("" if drop[best] is None else f", clean drop {drop[best]:.1f} points")
                      + (": the goal is met." if met else ": the goal is **not met**."))
        if not met and target is not None:
            # Distance to the goal: points missing under 90 % plus points of clean drop over 1.
            gap = {d: 100 * max(0.0, 0.9 - lowest[d][0]) + max(0.0, drop[d] - 1.0) for d in lowest}
            near = min(gap, key=gap.get)
            value, attack, g, b = lowest[near]
            lines[-1] += ((" It is also the nearest to the goal:" if near == best else f" Nearest the goal: {defense_label(near)},")
                          + (f" {100 * (0.9 - value):.1f} points under 90 %" if value < 0.9 else f" {percent(value)} %")
                          + f" ({attack}"
                          + ("" if b is None else f": {percent(g)} % of the examples made on the target survive, "
                             f"{percent(b)} % of the transferred ones")
                          + f") at a clean drop of {drop[near]:.1f} points.")
    return lines


def transfer_ceiling(results: dict, variants, meta: dict) -> list[str]:
    """The best any defense in the report does on the transferred half of the mixed protocol alone
    (its lowest over the protocol's attacks at the white-box eps) and, when that is under 90 %, what
    the half made on the target would need beside it for a mixed 90 %; [] without a black-box run."""
    black = results.get("black-box")
    if black is None or not variants:
        return []
    attacks, e = _vqunet_attacks(results, variants, meta), meta["white_eps"]
    lowest = {}
    for d in black["config"]["defenses"]:
        cells = [(accuracy_at(black, d, a, e), a) for a in attacks]
        if cells and all(v is not None for v, _ in cells):
            lowest[d] = min(cells)
    fair = {d: v for d, v in lowest.items() if not _seen_surrogates(d)}
    if not fair:
        return []
    top = max(fair, key=lambda d: fair[d][0])
    value, attack = fair[top]
    text = (f"The transferred half alone, for every defense in this report that never saw the surrogates, at eps {e:g} "
            f"under the worst of {', '.join(attacks)}: the highest is {percent(value)} % ({defense_label(top)}, {attack}; "
            f"{percent(black['clean'][top])} % clean).")
    if value < 0.9:
        need = 1.8 - value  # the half made on the target that a mixed 90 % needs beside it
        clean = max(results["gray-box"]["clean"][d] for d in variants)
        text += (f" Beside a transferred half that high, a mixed 90 % needs {percent(need)} % of the examples made on "
                 "the target to be classified right"
                 + (f", more than any VQUNet variant here gets right of the clean images ({percent(clean)} %)."
                    if need > clean else "."))
    lines = [text]
    gray = results["gray-box"]
    for d in (d for d in lowest if _seen_surrogates(d)):
        value, attack = lowest[d]
        made = min(((v, a) for a in attacks if (v := accuracy_at(gray, d, a, e)) is not None), default=None)
        lines.append(f"{defense_label(d)}, trained on examples made on the surrogates themselves, keeps {percent(value)} % of the "
                     f"transferred examples under its worst attack ({attack}): "
                     + ("still under 90 %" if value < 0.9 else "90 % or more")
                     + (f"; of the clean images it keeps {percent(gray['clean'][d])} %." if made is None else
                        f"; of the examples made on the target it keeps {percent(made[0])} % ({made[1]}), of the clean "
                        f"images {percent(gray['clean'][d])} %."))
    return lines


def plot_vqunet_tried(results: dict, variants, meta: dict, path: Path) -> None:
    """Each VQUNet variant as a point: clean-accuracy drop against its lowest accuracy under the mixed
    protocol at the white-box eps, with the paper's goal (drop <= 1, lowest >= 90 %) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lowest = _vqunet_lowest(_vqunet_cells(results, variants, meta)[1])
    clean = results["gray-box"]["clean"]
    target = clean.get("fmnist/classifier")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if target is None or not lowest:
        ax.text(0.5, 0.5, "needs the target's clean accuracy and a mixed-protocol cell per variant", ha="center",
                transform=ax.transAxes, fontsize=9)
    else:
        drops = {d: 100 * (target - clean[d]) for d in lowest}
        left, right = min(-0.5, *drops.values()) - 3.0, max(2.0, *drops.values()) + 2.5  # room for the labels
        ax.fill_between([left, 1.0], 90, 100, color="tab:green", alpha=0.15, label="the paper's goal")
        placed = []
        for d, (value, attack, _, _) in sorted(lowest.items(), key=lambda kv: kv[1][0]):
            xy = (drops[d], 100 * value)
            seen = _seen_surrogates(d)  # hollow: not a defense, a reference that saw the surrogates
            ax.scatter(*xy, edgecolors="tab:blue", facecolors="none" if seen else "tab:blue",
                       label="trained on the surrogates' own examples" if seen else None)
            # A point just above a neighbour's takes its label on the left, clear of the neighbour's.
            crowded = any(abs(xy[0] - u) < 3.0 and 0 <= xy[1] - v < 5 for u, v in placed)
            ax.annotate(f"{defense_label(d)} ({attack})", xy, textcoords="offset points", xytext=(-5 if crowded else 5, 3),
                        ha="right" if crowded else "left", fontsize=8)
            placed.append(xy)
        ax.set_xlim(left, right)
        ax.legend(fontsize=8, loc="best")
    ax.set_ylim(0, 100)
    ax.set_xlabel("clean-accuracy drop vs the target (points)")
    ax.set_ylabel(f"lowest mixed-protocol accuracy, eps {meta['white_eps']:g} (%)")
    ax.set_title("VQUNet variants against the paper's goal", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table3(white: dict, bpda: dict | None = None) -> list[str]:
    ds = white["config"]["defenses"]
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    paper = PAPER["nnjpeg_table3"]["rows"]
    lines = ["| | " + " | ".join(defense_label(d) for d in ds) + " |", "|---|" + "---:|" * len(ds),
             "| Acc_raw | " + " | ".join(percent(white["clean"][d]) for d in ds) + " |",
             f"| Acc_ae ({a}, eps {e}) | " + " | ".join(percent(accuracy_at(white, d, a, e)) for d in ds) + " |",
             *([f"| Acc_raw / Acc_ae (BPDA, {bpda['config']['attack_kwargs']['bpda']['nb_iter']} iterations, "
                f"n={bpda['config']['n']}) | "
                + " | ".join(f"{percent(bpda['clean'][d])} / {percent(accuracy_at(bpda, d, 'bpda', e))}" for d in ds) + " |"]
               if bpda is not None else []),
             "| paper Acc_raw / Acc_ae (ImageNet) | " + " | ".join(
                 "{} / {}".format(*paper[_paper_row(d)]) if _paper_row(d) in paper else "–" for d in ds) + " |"]
    return lines


def _white_group(w: float, clean: float) -> int:
    """How a defense fares under the white-box attack: 0 falls to it (below 10 %), 1 holds partly
    (below half its clean accuracy), 2 holds."""
    return 0 if w < 0.1 else 1 if w < 0.5 * clean else 2


def verdicts(results: dict) -> list[str]:
    """The defenses grouped by how they fare under the white-box attack (a short reading, for the
    terminal)."""
    white, gray = results["white-box"], results["gray-box"]
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    groups = {"falls to the adaptive attack (below 10 %)": [], "holds partly (below half its clean accuracy)": [],
              "holds under this attack (check stronger ones before trusting it)": []}
    for d in gray["config"]["defenses"]:
        w = accuracy_at(white, d, a, e)
        if d == "fmnist/classifier" or w is None:
            continue
        groups[list(groups)[_white_group(w, white["clean"][d])]].append(f"{defense_label(d)} {percent(w)} %")
    return [f"- White-box {a} at eps {e:g}, {key}: " + ", ".join(names) + "." for key, names in groups.items() if names]


def reading(results: dict) -> list[str]:
    """Plain sentences generated from the numbers."""
    from nnjpeg import robust as R

    gray, white = results["gray-box"], results["white-box"]
    black, robust = results.get("black-box"), results.get("robust")
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    target_clean = gray["clean"]["fmnist/classifier"]
    out = []
    for d in gray["config"]["defenses"]:
        clean = gray["clean"][d]
        worst_g = min((r for r in gray["records"] if r["defense"] == d), key=lambda r: r["accuracy"])
        w = accuracy_at(white, d, a, e)
        s = (f"- **{defense_label(d)}**: clean {percent(clean)} % ({100 * (clean - target_clean):+.1f} points vs the target); "
             f"gray-box worst {percent(worst_g['accuracy'])} % ({worst_g['attack']}"
             + (f", eps {worst_g['eps']}" if worst_g["eps"] is not None else "") + ")")
        if black is not None:
            worst_b = min((r for r in black["records"] if r["defense"] == d), key=lambda r: r["accuracy"])
            s += f"; black-box worst {percent(worst_b['accuracy'])} % ({worst_b['attack']}, eps {worst_b['eps']})"
        s += f"; white-box {a} at eps {e}: {percent(w)} %"
        strong = R.worst(robust, d) if robust else None
        if strong is not None:
            s += f", under the strongest white-box evaluation {percent(strong)} %"
        if d != "fmnist/classifier" and w is not None:  # grouped as the demo's verdicts, by the strongest attack run
            s += (" — **falls to the adaptive attack**", " — holds partly under the adaptive attack",
                  " — holds under this adaptive attack (check stronger ones before trusting it)" if strong is None
                  else " — holds under the strongest white-box evaluation here")[
                _white_group(w if strong is None else min(w, strong), white["clean"][d])]
        out.append(s + ".")
    return out + papers_reading(results)


def papers_reading(results: dict) -> list[str]:
    """The reading's sentences on the papers' claims and on the strong white-box evaluation."""
    gray, white = results["gray-box"], results["white-box"]
    black = results.get("black-box")
    a, e = white["config"]["attacks"][0], white["config"]["eps"][0]
    out = []
    ens = "fmnist/ensemble"
    if ens in white["clean"]:
        kept = accuracy_at(white, ens, a, e)
        bpda = accuracy_at(results["bpda"], ens, "bpda", e) if "bpda" in results else None
        cells = [r for r in (record_at(white, ens, a, e), record_at(results.get("bpda"), ens, "bpda", e))
                 if r is not None]
        worst_cell = min(cells, key=lambda r: r["accuracy"])
        worst = worst_cell["accuracy"]
        low, high = stats.wilson(*_counts(worst_cell))
        paper = PAPER["nnjpeg_table3"]["rows"]["Proposed"][1]
        out.append(f"- NN-JPEG paper, Table 3: its ensemble keeps {paper} % under BPDA on ImageNet. Attacked as one "
                   f"model here (identity gradient through every member's compression), it keeps {percent(kept)} % under "
                   f"{a} at eps {e}" + (f" and {percent(bpda)} % under the paper's BPDA settings" if bpda is not None else "")
                   + ": " + _verdict(low, high, (paper - 5) / 100, at_least=True)
                   + f" ({100 * worst - paper:+.1f} points; the worst of them, {_ci_text(low, high)} %, against the "
                     f"paper's {paper} % less 5 points).")
    vq = "fmnist/vqunet-classifier"
    if vq in gray["clean"]:
        # The paper's protocol: half the examples made on the target, half transferred (the mean of the two).
        def protocol_counts(r):  # the mixed protocol's answers: this gray-box cell and its transferred twin
            k, trials = _counts(r)
            twin = record_at(black, vq, r["attack"], r["eps"])
            if twin is not None:
                k2, t2 = _counts(twin)
                k, trials = k + k2, trials + t2
            return k / trials, k, trials

        mixed = [(r["attack"], r["eps"], *protocol_counts(r))
                 for r in gray["records"] if r["defense"] == vq and r["eps"] is not None]
        if mixed:
            attack, eps_low, low, k, trials = min(mixed, key=lambda m: m[2])
            lo, hi = stats.wilson(k, trials)
            protocol = "its mixed protocol (half gray-box, half transferred)" if black is not None else "gray-box attacks"
            out.append(f"- VQUNet paper, Fig. 2: at least 90 % on Fashion-MNIST under every attack and eps it tried, "
                       f"examples made without knowledge of the denoiser. Here, under {protocol}, the lowest is "
                       f"{percent(low)} % ({attack}, eps {eps_low}; {_ci_text(lo, hi)} %): "
                       + _verdict(lo, hi, 0.9, at_least=True)
                       + f" ({100 * low - 90:+.1f} points against 90 %); the white-box attack through the denoiser "
                       f"leaves {percent(accuracy_at(white, vq, a, e))} %.")
    out += _codebook_tradeoff(gray)
    out += _paper_claims(results)
    out.append(f"- {_DECIDED}")
    if "robust" in results:
        out += _robust_reading(results)
    return out


def _paper_claims(results: dict) -> list[str]:
    """Which of the papers' claims hold here, and by how much, from the numbers."""
    gray = results["gray-box"]
    out = []
    grid = results.get("paper-grid gray-box")
    ens, others = "fmnist/ensemble", [d for d in ("fmnist/jpeg75-classifier", "fmnist/fd-classifier", "fmnist/tvm-classifier")
                                      if d in gray["clean"]]
    if grid is not None and ens in grid["clean"] and others:
        keys = [(a, e / 255.0) for a, e in PAPER_GRID_GRAY]
        # Each defense's answers over the six columns, pooled (the same images in each column: the
        # interval errs wide).
        pooled = {d: [sum(c) for c in zip(*(_counts(record_at(grid, d, a, e)) for a, e in keys))]
                  for d in [ens, *others]}
        mean = {d: k / trials for d, (k, trials) in pooled.items()}
        best = max(others, key=mean.get)
        margin = 100 * (mean[ens] - mean[best])
        _, lo, hi = stats.difference(*pooled[ens], *pooled[best])
        out.append(f"- NN-JPEG paper, Table 2: its ensemble beats JPEG (75), FD and TVM under gray-box FGSM and I-FGSM "
                   f"at 2-8/255 (by about 10 points on ImageNet). Here, averaged over those six columns, the ensemble "
                   f"keeps {100 * mean[ens]:.1f} % against {100 * mean[best]:.1f} % for the best of the three "
                   f"({defense_label(best)}): " + _verdict(lo, hi, 0.0, at_least=True)
                   + f" ({margin:+.1f} points; {_ci_text(lo, hi, unit='')} points).")
    table1 = PAPER["vqunet_table1"]
    clean = results.get("clean, all", gray)  # every test image where measured: a drop of 1-2 points needs them
    for d in ("fmnist/defense-vae-classifier", "fmnist/hfl-vae-classifier", "fmnist/cyclegan-classifier"):
        if d in clean["clean"] and "fmnist/classifier" in clean["clean"]:
            n = clean["config"]["n"]
            target_k, k = (stats.counted(clean["clean"][m], n) for m in ("fmnist/classifier", d))
            share, lo, hi = stats.difference(target_k, n, k, n)
            drop = 100 * share
            paper_drop = table1["target"] - table1["rows"][_paper_row(d)]
            out.append(f"- VQUNet paper, Table 1: {defense_label(d)} costs {paper_drop:.2f} points of clean accuracy; here "
                       f"{drop:.2f} points on {n} test images ({_ci_text(lo, hi)} points): "
                       + _verdict(lo, hi, (paper_drop + 1.0) / 100)
                       + " (within 1 point of the paper's drop counts as reproduced).")
    return out


def _robust_reading(results: dict) -> list[str]:
    from nnjpeg import robust as R

    rb = results["robust"]
    checks = R.checks(rb, results.get("black-box"))
    worst = {d: R.worst(rb, d) for d in rb["pgd"]["config"]["defenses"]}
    clean = rb["pgd"]["clean"]

    def rank(d):  # the most robust first; between equals, the more accurate on clean images
        return (-1.0 if worst[d] is None else worst[d], clean[d])

    best = max(worst, key=rank)
    qualified = [d for d in worst if clean[d] >= 0.85 and checks[d]["falls"] and checks[d]["unbounded"]
                 and checks[d]["white_le_black"] is not False]
    best_qualified = max(qualified, key=rank) if qualified else None
    met = best_qualified is not None and worst[best_qualified] >= 0.5
    attacks = f"PGD-{rb['steps']} x {rb['restarts']}" + (" and AutoAttack" if "autoattack" in rb else "")
    out = [f"- **Strongest white-box evaluation** ({attacks}, eps {rb['eps']}): the most robust defense is "
           f"{defense_label(best)}, {percent(worst[best])} % (clean {percent(clean[best])} %)"
           + (f"; with at least 85 % clean and every masking check passed, {defense_label(best_qualified)}: "
              f"{percent(worst[best_qualified])} % (clean {percent(clean[best_qualified])} %)" if best_qualified else
              "; no defense has at least 85 % clean and passes every masking check")
           + ". The goal of at least 50 % with at least 85 % clean is " + ("**met**." if met else "**not met**.")]
    holding = [d for d in worst if worst[d] is not None and worst[d] >= 0.5]
    falling = [d for d in worst if worst[d] is not None and worst[d] < 0.1]
    if falling:
        out.append("- Below 10 % under the strongest white-box attack: " + ", ".join(defense_label(d) for d in falling) + ".")
    if holding:
        out.append("- At least 50 %: " + ", ".join(f"{defense_label(d)} ({percent(worst[d])} %)" for d in holding) + ".")
    failed = {d: [name for name, key in (("accuracy does not fall with eps", "falls"),
                                         ("white-box beats black-box", "white_le_black"),
                                         ("unbounded eps does not reach 0 %", "unbounded")) if c[key] is False]
              for d, c in checks.items()}
    flagged = {d: f for d, f in failed.items() if f}
    if "autoattack" in rb:  # a gradient attack that stalls where AutoAttack does not is a masking sign too
        aa = {d: accuracy_at(rb["autoattack"], d, "autoattack", rb["eps"]) for d in worst}
        gaps = {d: accuracy_at(rb["pgd"], d, "pgd", rb["eps"]) - v for d, v in aa.items() if v is not None}
        wide = {d: g for d, g in gaps.items() if g > 0.1}
        if wide:
            out.append("- AutoAttack finds much more than PGD on " + ", ".join(
                f"{defense_label(d)} ({100 * g:.1f} points lower, on its {rb['autoattack']['config']['n']} images against "
                f"PGD's {rb['pgd']['config']['n']})" for d, g in wide.items())
                + ": PGD alone overstates these defenses, and their number is AutoAttack's.")
    out.append("- Gradient-masking checks: " + ("every defense passes all three." if not flagged else
               "; ".join(f"{defense_label(d)}: {', '.join(f)}" for d, f in flagged.items())
               + ". Numbers that fail a check are not evidence of robustness."))
    ens = "fmnist/ensemble"
    at = [d for d in ("fmnist/fast-at", "fmnist/free-at") if d in worst]
    if ens in worst and at and results.get("training"):
        hours = {d: R.training_hours(results["training"][d]) for d in [ens, *at] if d in results["training"]}
        # Within 5 points of each: the lowest bound of the differences decides it, the highest refutes it.
        gaps = [stats.difference(*_counts(_worst_record(rb, ens)), *_counts(_worst_record(rb, d))) for d in at]
        low, high = min(g[1] for g in gaps), min(g[2] for g in gaps)
        out.append(f"- NN-JPEG paper, Table 1: its noisy fine-tuning reaches about the robustness of Fast and Free "
                   f"adversarial training in less time. Here the ensemble keeps {percent(worst[ens])} % white-box "
                   + ", ".join(f"against {defense_label(d)}'s {percent(worst[d])} %" for d in at)
                   + (" (training " + ", ".join(f"{defense_label(d)} {h:.2f} h" for d, h in hours.items()) + ")" if hours else "")
                   + ": " + _verdict(low, high, -0.05, at_least=True)
                   + f" (within 5 points of each; the lowest difference's {_ci_text(low, high)} points).")
    return out


def _worst_record(rb: dict, d: str) -> dict:
    """The record of `robust.worst`: the defense's lowest white-box cell at the strong evaluation's eps."""
    cells = [r for r in (record_at(rb["pgd"], d, "pgd", rb["eps"]),
                         record_at(rb.get("autoattack"), d, "autoattack", rb["eps"]))
             if r is not None]
    return min(cells, key=lambda r: r["accuracy"])


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
    parts = [f"{defense_label(d)} {percent(gray['clean'][d])} % clean, "
             + ", ".join(f"{percent(accuracy_at(gray, d, x, e))} % under {x}" for x in attacks) for d in ds]
    verdict = ""
    if fine in ds and coarse in ds:
        adv = {d: np.mean([accuracy_at(gray, d, x, e) for x in attacks]) for d in (fine, coarse)}
        if gray["clean"][fine] > gray["clean"][coarse] and adv[fine] < adv[coarse]:
            verdict = (" The finer codebook keeps more of the clean image and passes more of the perturbation with it: "
                       "codebook size trades clean accuracy for robustness here.")
        else:
            verdict = " Here the codebook size does not trade clean accuracy against robustness."
    return [f"- The VQUNets and the U-Net, gray-box at eps {e}: " + "; ".join(parts) + "." + verdict]


def headline(results: dict, meta: dict) -> list[str]:
    """The report's headline table (also the README's Results): clean, gray-box PGD and the
    strongest white-box numbers at the white-box eps, with the gradient-masking verdict."""
    from nnjpeg import robust as R

    gray, e = results["gray-box"], meta["white_eps"]
    rb = results.get("robust")
    if rb is None:
        white = results["white-box"]
        head = ["defense", "clean", f"gray-box PGD eps {e:g}", f"white-box PGD eps {e:g}"]
        rows = [[defense_label(d), _clean_cell(gray, d), _cell(gray, d, "pgd", e), _cell(white, d, "pgd", e)]
                for d in gray["config"]["defenses"]]
    else:
        checks = R.checks(rb, results.get("black-box"))
        aa = "autoattack" in rb
        worst = {d: R.worst_per_image(rb, d) for d in gray["config"]["defenses"]}
        per_image = all(w is not None for w in worst.values())
        head = ["defense", "clean", f"gray-box PGD eps {e:g}", f"white-box PGD-{rb['steps']} x {rb['restarts']}"] + (
            ["AutoAttack"] if aa else []) + (["worst per image"] if per_image else []) + ["masking checks"]
        rows = []
        for d in gray["config"]["defenses"]:
            c = checks[d]
            ok = c["falls"] and c["unbounded"] and c["white_le_black"] is not False
            rows.append([defense_label(d), _clean_cell(gray, d), _cell(gray, d, "pgd", e), _cell(rb["pgd"], d, "pgd", rb["eps"])]
                        + ([_cell(rb["autoattack"], d, "autoattack", rb["eps"])] if aa else [])
                        + ([_pct_ci(worst[d][0] / worst[d][1], stats.wilson(*worst[d]))] if per_image else [])
                        + ["pass" if ok else "**fail**"])
    return ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1),
            *("| " + " | ".join(r) + " |" for r in rows)]


README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")


def _readme_text(readme: Path) -> str:
    start, end = README_MARKERS
    text = readme.read_text() if readme.is_file() else ""
    if start not in text or end not in text:
        raise ValueError(f"Expected a README holding the lines {start} and {end}. Received: {readme}"
                         + ("" if readme.is_file() else " (no such file)"))
    return text


def _headline_intro(results: dict, meta: dict) -> str:
    e, n = meta["white_eps"], meta["n"]
    text = (f"Accuracy (%, with its 95 % Wilson interval in brackets) of the Fashion-MNIST test images at eps {e:g} "
            f"(L-inf, images in [0, 1]): clean and gray-box "
            f"PGD-{meta['pgd_steps']} (made on the undefended target) on {n} images")
    if "robust" not in results:
        return text + f", white-box PGD through the whole defended model on the first {meta['white_n']}."
    rb = results["robust"]
    return (text + f"; white-box PGD-{rb['steps']} with {rb['restarts']} restarts through the whole defended model "
            f"(BPDA through compression, EOT for randomness) on the first {meta['robust_n']}"
            + (f", and ART's AutoAttack (standard, L-inf) on the first {meta['autoattack_n']}" if meta.get("autoattack_n")
               else "")
            + (". Worst per image: the images right clean and under every one of these attacks, of those they all ran "
               "on (RobustBench's rule)" if "clean_right" in rb["pgd"] else "")
            + ". Masking checks: accuracy falls as eps grows, white-box is no better than black-box, and unbounded eps "
              "reaches 0 %.")


def readme_results(results: dict, meta: dict, report: str = "reports/fmnist/README.md") -> list[str]:
    """What the README shows between its results markers: the headline table with what it measures,
    and the strongest white-box evaluation's reading, all from one report run."""
    lines = [f"From the report at [{report}]({report}), generated by `{meta['command']}`. " + _headline_intro(results, meta),
             "", *headline(results, meta)]
    if "robust" in results:
        lines += ["", *_robust_reading(results)]
    return lines


def write_readme_results(readme: Path, results: dict, meta: dict, report: Path | None = None) -> None:
    """Replaces what lies between the README's results markers with `readme_results`; `report` is
    the report's README, linked relative to `readme`."""
    import os

    start, end = README_MARKERS
    before, rest = _readme_text(readme).split(start, 1)
    after = rest.split(end, 1)[1]
    link = "reports/fmnist/README.md" if report is None else Path(os.path.relpath(report, readme.parent)).as_posix()
    readme.write_text(before + start + "\n" + "\n".join(readme_results(results, meta, link)) + "\n" + end + after)


def markdown(results: dict, meta: dict) -> str:
    gray = results["gray-box"]
    lines = ["# nnjpeg report: Fashion-MNIST", "",
             f"Generated by `{meta['command']}` from a run on {meta['n']} test images (seed {meta['seed']}); every number "
             "below is measured by that run except the columns and rows marked *paper*, which are the papers' own "
             f"reported numbers on their data. Wall time {meta['wall_time_s']:.0f} s.", "",
             "## Headline", "", _headline_intro(results, meta) + " Details and checks below.", "",
             *headline(results, meta), "",
             "## Clean accuracy after filtering (VQUNet paper, Table 1 layout)", "",
             *table1(gray, results.get("clean, all")), "",
             f"*paper*: {PAPER['vqunet_table1']['source']}."
             + (f" The second pair of columns is measured on all {results['clean, all']['config']['n']} test images; the "
                "papers' clean-drop claims in the reading are judged by it." if "clean, all" in results else ""), "",
             "## Gray-box (NN-JPEG paper, Table 2 layout, top)", "",
             "Examples made on the undefended target, fed to each defense. Accuracy (%); eps is L-inf on images in "
             f"[0, 1]; PGD runs {meta['pgd_steps']} steps, BIM 10; cw-linf is C&W's margin loss ascended by the same PGD "
             "within the eps ball: C&W at a given eps, for the VQUNet paper's Fig. 2, which plots C&W over eps without "
             "saying how it bounds it."
             + (" DeepFool (20 iterations at most) and C&W-L2 (4 binary search steps x 25 Adam steps) are unbounded L2 "
                f"attacks, run on the first {meta['l2_n']} images only (n in the header)." if meta.get("l2_n") else ""),
             "", *table2(gray), ""]
    if "paper-grid gray-box" not in results:  # else the paper's numbers sit in brackets in that section
        p2 = PAPER["nnjpeg_table2_gray"]
        lines += [f"*paper* gray-box rows ({p2['source']}):", "", "| | " + " | ".join(p2["columns"]) + " |",
                  "|---|" + "---:|" * len(p2["columns"])]
        lines += [*(f"| {k} | " + " | ".join(f"{v:.1f}" for v in vals) + " |" for k, vals in p2["rows"].items()), ""]
    if "black-box" in results:
        lines += ["## Black-box (NN-JPEG paper, Table 2 layout, bottom)", "",
                  f"Examples transferred from the surrogates ({', '.join(meta['surrogates'])}), test images split evenly "
                  "among them.", "", *table2(results["black-box"]), "",
                  "## Accuracy vs eps, VQUNet paper protocol (Fig. 2 layout)", "",
                  "Half of the examples made on the target, half transferred from the surrogates: the mean of the "
                  "gray-box and black-box accuracies on the same images.", "", "![fig2](fig2_vqunet_protocol.png)", ""]
    else:
        lines += ["Black-box results need the three shipped surrogates; not all are installed.", ""]
    if "paper-grid gray-box" in results:
        l2 = {"DeepFool": ("deepfool", None), "C&W(L2)": ("cw", None)}
        pg = {**results["paper-grid gray-box"],
              "records": results["paper-grid gray-box"]["records"]  # the unbounded attacks, from the gray-box run
              + [r for r in gray["records"] if r["eps"] is None and r["attack"] in ("deepfool", "cw")]}
        lines += ["## The NN-JPEG paper's own grid (Table 2 layout)", "",
                  "Its budgets, in grey levels of 255 (eps 2 = 2/255 on images in [0, 1]); I-FGSM runs 10 steps. Each "
                  "cell is ours, with the paper's ImageNet number in brackets where the paper has that defense. "
                  f"DeepFool and C&W-L2 from the gray-box run above (first {meta['l2_n']} images).", "",
                  "Gray-box:", "", *paper_grid_table(pg, PAPER_GRID_GRAY, PAPER["nnjpeg_table2_gray"],
                                                    {k: v for k, v in l2.items() if meta.get("l2_n")}), ""]
        if "paper-grid black-box" in results:
            lines += ["Black-box (transferred from the surrogates):", "",
                      *paper_grid_table(results["paper-grid black-box"], PAPER_GRID_BLACK, PAPER["nnjpeg_table2_black"]),
                      "", f"*paper*: {PAPER['nnjpeg_table2_gray']['source']}; {PAPER['nnjpeg_table2_black']['source']}.",
                      ""]
    lines += ["", "## White-box, adaptive (NN-JPEG paper, Table 3 layout)", "",
              f"{meta['white_attack'].upper()}"
              + (f" ({meta['pgd_steps']} steps)" if meta["white_attack"] == "pgd" else "")
              + " through the whole defended model: identity (BPDA) gradient through compression and TVM, the VQ "
              f"straight-through estimator, EOT over {meta['eot']} draws for TVM, the ensemble attacked as one model"
              + (f"; on the first {meta['white_n']} of the {meta['n']} images, Acc_raw on the same images."
                 if meta.get("white_n", meta["n"]) < meta["n"] else ".")
              + (" The BPDA row runs the NN-JPEG paper's own white-box settings (Adam, learning rate 0.1, each image "
                 "kept at its first fooling iterate, projected onto the eps-ball) on fewer images."
                 if "bpda" in results else ""), "", *table3(results["white-box"], results.get("bpda")), "",
              f"*paper*: {PAPER['nnjpeg_table3']['source']}.", "", "![table3](table3_white_box.png)", ""]
    if "robust" in results:
        from nnjpeg import robust as R

        rb = results["robust"]
        lines += ["## White-box, strong: which defense holds", "",
                  f"Every attack runs through the whole defended model (BPDA/straight-through gradients, EOT over "
                  f"{meta['eot']} draws for TVM) at eps {rb['eps']}, on the first {meta['robust_n']} images: PGD with "
                  f"{rb['steps']} steps and {rb['restarts']} random restarts (a restart runs on the images no earlier "
                  "one fooled)"
                  + (", and AutoAttack's standard version (APGD-CE, APGD-T over the 9 other classes, Square with 5000 "
                     f"queries; IBM's ART, `nnjpeg.art`; ART has no FAB) on the first {meta['autoattack_n']}"
                     if "autoattack" in rb else
                     "; AutoAttack was not run (ART is not installed)")
                  + ". A defense is credited with its worst white-box number. Gradient-masking checks: accuracy must "
                  f"fall as eps grows (PGD-{rb['sweep_steps']} over eps, within 1 point), white-box must not beat "
                  f"the lowest black-box accuracy at eps {rb['eps']} (the black-box table above, on all "
                  f"{meta['n']} images), and eps 1 (unbounded) must reach 0 %.", "",
                  *R.table(rb, results.get("black-box"), defense_label), "",
                  f"White-box PGD-{rb['sweep_steps']} against eps:", "", *R.sweep_table(rb, defense_label), "",
                  "![masking](masking_check.png)", ""]
        if results.get("training"):
            lines += ["## Training cost (NN-JPEG paper, Table 1 layout)", "",
                      "Training time of each trained defense, from its model card, beside its accuracy above (all on "
                      "this project's 2-core CPU; the adversarially trained models are the Madry et al. CNN, the "
                      "ensemble's members the WRN target, so the times compare recipes on different networks).", "",
                      *R.training_table(rb, results["training"], defense_label, PAPER["nnjpeg_table1"]), ""]
    lines += ["## Reading", "", *reading(results), ""]
    if "vq-analysis" in results:
        lines += ["## VQUNet analyses (VQUNet paper, Figs. 3-6)", "",
                  "FGSM examples of the target at each eps, through the shipped denoisers alone: the l1 error of the "
                  "reconstruction against the clean image (Fig. 3), the mean l1 change of the encoder features between "
                  "clean and adversarial input before and after quantization, per depth (Figs. 4-5), and the share of "
                  "code indices that change (Fig. 6).", "", *vq_table(results["vq-analysis"]), "",
                  "![vq](vqunet_analyses.png)", ""]
    variants = [d for d in VQUNET_VARIANTS if d in gray["clean"]]
    if variants:
        lines += ["## VQUNet: what was tried (VQUNet paper, Fig. 2 protocol at eps 0.1)", "",
                  *vqunet_table(results, variants, meta), "", "![tried](vqunet_tried.png)", "",
                  *(line for text in transfer_ceiling(results, variants, meta) for line in (text, ""))]
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
        b = accuracy_at(black, r["defense"], r["attack"], r["eps"]) if r["eps"] is not None else None
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
    ax.bar(pos + 0.2, [100 * (accuracy_at(white, d, a, e) or 0.0) for d in ds], 0.4, label=f"white-box {a} eps {e} (Acc_ae)")
    ax.set_xticks(pos, [defense_label(d) for d in ds], rotation=30, ha="right", fontsize=8)
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
    p.add_argument("--eps", type=_args.EPS, action="append", default=None,
                   help="L-inf budgets of the gray-box and black-box tables (default 0.01, 0.03, 0.1, 0.2, 0.3)")
    p.add_argument("--white-eps", type=_args.EPS, default=0.1)
    p.add_argument("--eot", type=_args.COUNT, default=4, help="EOT draws for randomized defenses in the white-box attack")
    p.add_argument("--white-n", type=_args.COUNT, default=None,
                   help="attack only the first WHITE_N images white-box (the slow scenario; default all n)")
    p.add_argument("--robust-n", type=_args.COUNT, default=None,
                   help="images for the strong white-box evaluation (PGD with restarts, AutoAttack, masking checks; "
                        "default WHITE_N)")
    p.add_argument("--robust-steps", type=_args.COUNT, default=100, help="PGD steps of the strong evaluation")
    p.add_argument("--restarts", type=_args.COUNT, default=5, help="PGD restarts of the strong evaluation")
    p.add_argument("--no-autoattack", action="store_true", help="skip AutoAttack (it needs the art extra)")
    p.add_argument("--autoattack-n", type=_args.COUNT, default=200,
                   help="AutoAttack on the first AUTOATTACK_N of the strong evaluation's images (ART runs eagerly: "
                        "several times the cost of PGD)")
    p.add_argument("--out", default="reports/fmnist")
    p.add_argument("--bpda-n", type=_args.integer(0), default=100,
                   help="images for the NN-JPEG paper's white-box BPDA (Table 3; 0: skip it)")
    p.add_argument("--bpda-iterations", type=_args.COUNT, default=1000, help="its Adam iterations (the paper's: 1000)")
    p.add_argument("--readme", default=None,
                   help="also write the headline table into this README, between its results markers")
    p.add_argument("--render", action="store_true",
                   help="only write the report's text (and --readme's results) again from OUT/results.json")
    p.add_argument("--resume", action="store_true",
                   help="take the stages finished before from OUT/stages.json (same settings), and run them only for "
                        "the defenses they lack or that were retrained since: resumes an interrupted report, or adds "
                        "a defense to a finished one")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--shard", type=_args.shard, default=None,
                       help="I/K: run every attack stage on only the I-th of K parts of its images (e.g. a cluster "
                            "array's job index) and save them to OUT/stages.json, without a report; then --merge")
    split.add_argument("--merge", nargs="+", default=None, metavar="SHARD",
                       help="the --out folders (or stages.json files) of the K shards, made with these same flags: "
                            "adds them up, runs the stages that are not split and writes the report into OUT")
    p.add_argument("--verbose", action="store_true", help="TensorFlow's logs and the attacks' per-batch progress too")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import shlex

    from nnjpeg import _console

    if args.readme:
        _readme_text(Path(args.readme))  # refused before the hours of work, not after
    out = Path(args.out)
    if args.render:
        return _render(out, args.readme)
    _console.quiet_tensorflow(args.verbose)
    res = run(out, n=args.n, seed=args.seed, eps=tuple(args.eps or DEFAULT_EPS),
              white_eps=args.white_eps, eot=args.eot, white_n=args.white_n, robust_n=args.robust_n,
              robust_steps=args.robust_steps, robust_restarts=args.restarts, autoattack=not args.no_autoattack,
              autoattack_n=args.autoattack_n, bpda_n=args.bpda_n, bpda_iterations=args.bpda_iterations,
              resume=args.resume, readme=args.readme, shard=args.shard, merge=args.merge,
              command="nnjpeg report " + " ".join(shlex.quote(a) for a in _unsplit(args.argv)))
    if args.shard is not None:
        i, k = args.shard
        print(f"Shard {i}/{k}: its attack stages are in {res['meta']['stages']} ({res['meta']['wall_time_s']:.0f} s). "
              f"With all {k}, write the report: nnjpeg report --merge SHARD_DIR... --out DIR and these same flags.")
        return 0
    print(text_summary(res["results"], res["meta"]))
    print(f"\nWrote {out / 'README.md'} (the report), {out / 'results.json'}, the plots (*.png) and one folder per "
          f"scenario in {out}, in {res['meta']['wall_time_s']:.0f} s.")
    return 0


def _unsplit(argv: list[str]) -> list[str]:
    """The report's command as the unsplit run would be written: without --resume, --shard, --merge
    and their values."""
    kept, skip = [], False
    for a in argv:
        if a in ("--resume",) or a.startswith(("--shard=", "--merge=")):
            continue
        if a in ("--shard", "--merge"):
            skip = True
            continue
        if skip and not a.startswith("-"):
            continue
        skip = False
        kept.append(a)
    return kept


def _write_text(out: Path, results: dict, meta: dict, readme: Path | str | None = None) -> None:
    """The report's text (`out/README.md`) and, given `readme`, that README's results block."""
    (out / "README.md").write_text(markdown(results, meta) + "\n")
    if readme:
        write_readme_results(Path(readme), results, meta, out / "README.md")


def _render(out: Path, readme: str | None) -> int:
    """`--render`: the report's text (and the README's results) written again from its saved
    `results.json`, without running an attack."""
    saved = out / "results.json"
    if not saved.is_file():
        raise ValueError(f"Expected {saved}, the results of an earlier `nnjpeg report --out {out}`, to render. "
                         "Received: no such file.")
    data = json.loads(saved.read_text())
    _write_text(out, data["results"], data["meta"], readme)
    print(f"Wrote {out / 'README.md'}" + (f" and the results in {readme}" if readme else "") + f", from {saved}.")
    return 0


def text_summary(results: dict, meta: dict) -> str:
    """The report's headline for a terminal: clean, gray-box and white-box accuracy at the white-box
    eps, and the strong white-box evaluation with its checks, as aligned text."""
    from nnjpeg import robust as R
    from nnjpeg._console import text_table

    gray, white = results["gray-box"], results["white-box"]
    e, a = meta["white_eps"], meta["white_attack"]
    rb = results.get("robust")
    checks = R.checks(rb, results.get("black-box")) if rb else {}
    header = ["defense", "clean", f"gray {a} {e:g}", f"white {a} {e:g}"] + (
        [f"PGD-{rb['steps']}x{rb['restarts']}", *(["AutoAttack"] if "autoattack" in rb else []), "masking checks"]
        if rb else [])
    rows = []
    for d in gray["config"]["defenses"]:
        row = [defense_label(d), percent(gray["clean"][d]), percent(accuracy_at(gray, d, a, e)), percent(accuracy_at(white, d, a, e))]
        if rb:
            row.append(percent(accuracy_at(rb["pgd"], d, "pgd", rb["eps"])))
            if "autoattack" in rb:
                row.append(percent(accuracy_at(rb["autoattack"], d, "autoattack", rb["eps"])))
            c = checks[d]
            row.append("pass" if c["falls"] and c["unbounded"] and c["white_le_black"] is not False else "FAIL")
        rows.append(row)
    lines = [text_table(header, rows, title=f"Accuracy (%) on {meta['n']} Fashion-MNIST test images; white-box on the "
                                            f"first {meta['white_n']}" + (f", strong white-box on the first "
                                                                         f"{meta['robust_n']}" if rb else "")), "",
             "Reading:", *[line.replace("**", "") for line in reading(results)]]
    return "\n".join(lines)
