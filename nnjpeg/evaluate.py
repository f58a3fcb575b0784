"""`nnjpeg evaluate`: robustness of defended classifiers under gray-box, black-box and white-box attacks.

Scenarios (the two papers' protocols, plus the adaptive one that matters):
- gray-box: adversarial examples made on the undefended target classifier, fed to each defense;
- black-box: examples transferred from the surrogates (the test subset split evenly among them);
- white-box: the attack runs on each defended model as a whole, gradients passing through the
  defense (straight-through/BPDA through the codec layers, the VQ straight-through estimator);
- mixed: the VQUNet paper's protocol (half the examples made on the target, half transferred from
  the surrogates), measured on every image both ways: the mean of the gray-box and black-box
  accuracies, each kept beside it.

A defense is a pretrained name ("fmnist/ensemble") or the path of a saved `.keras` model, e.g. one
that `nnjpeg train --export` wrote.

Every record holds (defense, attack, eps, scenario, accuracy, n) and the count of images classified
right; accuracies are measured, never typed. A run can be split into shards (`shard=(i, k)`: the i-th
of k fixed parts of the same seeded images, e.g. one per job of a cluster array) whose results `merge`
adds up into those of the whole run.
"""

from __future__ import annotations

import json
import numbers
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import _args, _checks, _console, stats
from ._predict import accuracy, right

SCENARIOS = ("gray-box", "black-box", "white-box", "mixed")


def test_set(dataset: str, n: int | None = None, seed: int = 0, data_dir=None, image_size=None):
    """`nnjpeg.datasets.load_evaluation(dataset, data_dir)` (the test split, else "val") and its
    images as float32 in [0, 1], each with its int64 label: all of them, or a seeded subset of `n` in
    their order (selected before the conversion, which copies). A folder of images is read whole,
    then subset; folders and TFDS at `image_size` (H, W; default `nnjpeg.datasets.load`'s)."""
    from nnjpeg import datasets

    loaded = datasets.load_evaluation(dataset, data_dir, image_size=image_size)
    x, y = loaded.arrays()
    if n is not None and n < len(x):
        idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
        x, y = x[idx], y[idx]
    return loaded, x.astype(np.float32) / 255.0, y.astype(np.int64)


def test_images(dataset: str, n: int | None = None, seed: int = 0, data_dir=None, image_size=None):
    """`test_set`'s images and labels."""
    return test_set(dataset, n, seed, data_dir, image_size)[1:]



def model_and_images(model: str, dataset: str, n: int, seed: int = 0, data_dir=None):
    """A model (`load_defense`: a pretrained name or a saved model's path) and a seeded subset of `n`
    test images of `dataset` that it takes, refused before any work where it does not. Folders and
    TFDS are read at the model's input size.

    Returns:
        (keras.Model, x float32 (n, H, W, C) in [0, 1], y int64 (n,)).

    Raises:
        ValueError: a bad n, an unknown model, or a model whose input shape does not fit the images.
    """
    from nnjpeg import datasets

    _checks.integer("n", n, 1, meaning=", the number of test images,")
    classifier = load_defense(model)
    side = tuple(classifier.input_shape[1:3])
    size = side if datasets.streamed(dataset) and None not in side else None
    loaded, x, y = test_set(dataset, n, seed, data_dir, size)
    datasets.fits(classifier.input_shape, loaded, model=model)
    return classifier, x, y


def subset(dataset: str, n: int, seed: int, data_dir=None):
    """`n` (>= 1) seeded test images of `dataset` and their labels, as `test_images`."""
    _checks.integer("n", n, 1, meaning=", the number of test images,")
    return test_images(dataset, n, seed, data_dir)


def load_defense(spec: str):
    """A pretrained name (`nnjpeg.pretrained.load`), or the path of a saved model: a ".keras" file,
    e.g. one written by `nnjpeg train --export`, or a composition (".compose.json") of saved parts,
    loaded with every nnjpeg layer registered."""
    from nnjpeg import composition, pretrained

    if isinstance(spec, str) and spec.endswith((".keras", composition.SUFFIX)):
        if not Path(spec).is_file():
            raise ValueError(f"Expected the path of a saved .keras model or {composition.SUFFIX} composition. "
                             f"Received: {spec!r}, which is not a file")
        import keras

        pretrained.register_serializables()
        if spec.endswith(composition.SUFFIX):
            return composition.load(Path(spec))
        return keras.saving.load_model(spec, compile=False)
    known = pretrained.names()
    if spec not in known:
        raise ValueError(f"Expected a pretrained model name in {known} or the path of a saved .keras model. "
                         f"Received: {spec!r}")
    return pretrained.load(spec)


def evaluate(defenses, attacks, eps_list, scenario: str = "gray-box", *, n: int = 500, seed: int = 0,
             dataset: str = "fashion-mnist", data_dir=None, data=None, load: Callable | None = None, target: str | None = None,
             surrogates=None, attack_kwargs: dict | None = None, eot: dict | None = None,
             progress: bool = True, desc: str | None = None, pairs=None, shard: tuple[int, int] | None = None,
             image_size: tuple[int, int] | None = None, per_image: bool = False) -> dict:
    """Runs every (defense, attack, eps) under `scenario`.

    Args:
        defenses: pretrained model names or paths of saved .keras models (image -> logits), e.g.
            "fmnist/ensemble" or "runs/vqunet/final.keras".
        attacks: names from `nnjpeg.attacks.ATTACKS`.
        eps_list: L-inf budgets (images in [0, 1]); ignored (recorded as null) for deepfool/cw.
        scenario: one of SCENARIOS.
        n: test images (a seeded random subset).
        dataset, data_dir: a name and folder for `nnjpeg.datasets.load` (its test split); every
            model must take its images (checked before any attack).
        data: optional (x, y) to use instead of the dataset (float32 in [0, 1], int labels).
        load: name -> keras.Model (default `load_defense`).
        target, surrogates: models for the gray-box and black-box scenarios (names or .keras paths);
            default the dataset's shipped ones (`nnjpeg.registry`).
        attack_kwargs: per-attack keyword arguments, e.g. {"pgd": {"nb_iter": 40}}.
        eot: defense name -> samples, for randomized defenses: white-box attacks then run on
            `nnjpeg.attacks.EOT(model, samples)` (gradients averaged over the randomness).
        progress: one progress bar for the whole run (one step per defense, attack and eps), with
            what runs now and an ETA; the attacks' own per-batch bars only under `--verbose`.
        desc: the bar's label (default: the scenario).
        pairs: (attack, eps) pairs to run instead of every attack at every eps (eps None for the
            unbounded attacks), e.g. the NN-JPEG paper's grid of FGSM and I-FGSM budgets.
        shard: (i, k): only the i-th of k contiguous parts of the images (`np.array_split` of the
            seeded subset), for `merge`.
        image_size: (H, W) that a folder's or TFDS' images are resized to (default 224 x 224).
        per_image: also keep which images each defense got right, clean (`clean_right`) and under
            each attack (each record's `right`), as `pack_mask` strings in the images' order: the
            worst case per image across attacks on the same images (`worst_per_image`). Not with the
            mixed scenario, whose images are attacked twice.

    Returns:
        dict with `records`, `clean` (accuracy of each defense on the benign subset), `clean_correct`
        (the counts behind it) and `config`.

    Raises:
        ValueError: unknown scenario, attack or defense, empty lists, an eps that is not > 0,
            `eot` outside the white-box scenario, a shard that is not 0 <= i < k <= n, or a model
            whose input shape does not fit the dataset's images.
    """
    from nnjpeg import attacks as A

    if scenario not in SCENARIOS:
        raise ValueError(f"Expected scenario in {SCENARIOS}. Received: {scenario!r}")
    unknown = [a for a in attacks if a not in A.ATTACKS]
    if unknown or not attacks or not defenses:
        raise ValueError(f"Expected one or more defenses and attacks from {sorted(A.ATTACKS)}. "
                         f"Received: defenses={list(defenses)}, attacks={list(attacks)}")
    if per_image and scenario == "mixed":
        raise ValueError("Expected per_image with the gray-box, black-box or white-box scenario, where each image is "
                         "attacked once. Received: per_image with scenario 'mixed'")
    if eot and scenario != "white-box":
        raise ValueError(f"Expected eot only with the white-box scenario, the one that attacks the defense itself. "
                         f"Received: eot={eot!r} with scenario {scenario!r}")
    for e in [e for _, e in pairs] if pairs is not None else eps_list:
        if e is not None and (isinstance(e, bool) or not isinstance(e, numbers.Real) or not 0 < e < float("inf")):
            raise ValueError(f"Expected every eps to be a finite number > 0. Received: eps={e!r}")
    target, surrogates = _attack_sources(dataset, scenario, target, surrogates)
    load = load or load_defense
    loaded = None
    if data is not None:
        x, y = data
    else:
        _checks.integer("n", n, 1, meaning=", the number of test images,")
        loaded, x, y = test_set(dataset, n, seed, data_dir, image_size)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"Expected one image or more, with a label each. Received: {len(x)} images, {len(y)} labels")
    n_all = len(x)
    positions = np.arange(n_all)  # each image's place in the whole run, which a shard keeps
    if shard is not None:
        positions = _shard_of(positions, shard)
        x, y = x[positions], y[positions]
    models = {d: load(d) for d in defenses}
    source = load(target) if scenario in ("gray-box", "mixed") else None
    subs = [load(s) for s in surrogates] if scenario in ("black-box", "mixed") else []
    if loaded is not None:
        from nnjpeg import datasets

        named = [*models.items(), *([(target, source)] if source is not None else []), *zip(surrogates, subs)]
        for name, model in named:
            datasets.fits(model.input_shape, loaded, model=name)
    clean_right = {d: right(m, x, y) for d, m in models.items()}
    clean_correct = {d: int(r.sum()) for d, r in clean_right.items()}
    clean = {d: c / len(x) for d, c in clean_correct.items()}
    clean_ci95 = {d: list(stats.wilson(c, len(x))) for d, c in clean_correct.items()}
    kwargs = attack_kwargs or {}
    records = []
    t0 = time.time()

    def run(name, model, xs, ys, e):
        return A.attack(name, model, xs, ys, None if name in A.UNBOUNDED else e, progress=progress and _console.verbose(),
                        **kwargs.get(name, {}))

    # The surrogates share the whole run's images evenly, each image to the same one in every shard.
    owner = np.zeros(n_all, np.int64)
    for j, idx in enumerate(np.array_split(np.arange(n_all), max(len(subs), 1))):
        owner[idx] = j
    owner = owner[positions]

    def transfer(name, xs, ys, e):
        adv = np.empty_like(xs)
        for j, model in enumerate(subs):
            idx = np.flatnonzero(owner == j)
            if len(idx):
                adv[idx] = run(name, model, xs[idx], ys[idx], e)
        return adv

    eot = eot or {}
    attacked = {d: (A.EOT(m, eot[d]) if d in eot else m) for d, m in models.items()}
    runs = ([(name, None if name in A.UNBOUNDED else e) for name, e in pairs] if pairs is not None else
            [(name, e) for name in attacks for e in ([None] if name in A.UNBOUNDED else eps_list)])
    bar = _console.stage(len(runs) * len(models), desc or scenario, enabled=progress)
    for name, e in runs:
        label = name if e is None else f"{name} eps {e:g}"
        made = []  # the examples every defense is fed: (scenario, examples), one pair per half of "mixed"
        if scenario in ("gray-box", "mixed"):
            bar.set_postfix_str(f"{label}: made on the target")
            made.append(("gray-box", run(name, source, x, y, e)))
        if scenario in ("black-box", "mixed"):
            bar.set_postfix_str(f"{label}: made on the surrogates")
            made.append(("black-box", transfer(name, x, y, e)))
        for d, model in models.items():
            bar.set_postfix_str(f"{label}: {d}")
            fed = [("white-box", run(name, attacked[d], x, y, e))] if scenario == "white-box" else made
            masks = {s: right(model, adv, y) for s, adv in fed}
            hits = {s: int(m.sum()) for s, m in masks.items()}
            parts = {s: c / len(x) for s, c in hits.items()}
            linf = max(float(np.abs(adv - x).max()) for _, adv in fed) if len(x) else 0.0
            l2 = (float(np.mean([np.sqrt(((adv - x) ** 2).reshape(len(x), -1).sum(1)).mean() for _, adv in fed]))
                  if len(x) else 0.0)
            records.append({"defense": d, "attack": name, "eps": e, "scenario": scenario,
                            "accuracy": float(np.mean(list(parts.values()))), "clean_accuracy": clean[d],
                            "n": int(len(x)), "correct": sum(hits.values()),
                            "ci95": list(stats.wilson(sum(hits.values()), len(x) * len(hits))),
                            "mean_l2": l2, "max_linf": linf,
                            **({"gray_box_accuracy": parts["gray-box"], "black_box_accuracy": parts["black-box"],
                                "gray_box_correct": hits["gray-box"], "black_box_correct": hits["black-box"]}
                               if scenario == "mixed" else {}),
                            **({"right": pack_mask(masks[scenario])} if per_image else {})})
            bar.update()
    bar.close()
    config = {"defenses": list(defenses), "attacks": list(attacks), "eps": list(eps_list), "scenario": scenario,
              "n": int(len(x)), "seed": seed, "dataset": dataset, "target": target, "surrogates": list(surrogates),
              "attack_kwargs": kwargs, "eot": eot, "wall_time_s": time.time() - t0,
              **({"data_dir": str(data_dir)} if data_dir is not None else {}),
              **({"shard": list(shard), "n_total": int(n_all)} if shard else {})}
    return {"records": records, "clean": clean, "clean_correct": clean_correct, "clean_ci95": clean_ci95,
            **({"clean_right": {d: pack_mask(r) for d, r in clean_right.items()}} if per_image else {}),
            "config": config}


def pack_mask(mask) -> str:
    """Per-image booleans as text for JSON: the bits packed 8 to a byte (first image first, in the
    highest bit), in hex."""
    return np.packbits(np.asarray(mask, bool)).tobytes().hex()


def unpack_mask(text: str, n: int) -> np.ndarray:
    """`pack_mask`'s booleans of `n` images back.

    Raises:
        ValueError: `text` is not the hex of ceil(n / 8) bytes.
    """
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError):
        raise ValueError(f"Expected a hex string of per-image bits. Received: {text!r:.40}") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"Expected {(n + 7) // 8} bytes for {n} images. Received: {len(raw)}")
    return np.unpackbits(np.frombuffer(raw, np.uint8))[:n].astype(bool)


def worst_per_image(results: list[dict], defense: str) -> tuple[np.ndarray, int]:
    """The images `defense` got right clean and under every attack of `results` (evaluations with
    `per_image`, on the same images in the same order, or a prefix of them: the first n that all
    of them hold), the worst case per image (RobustBench's rule).

    Returns:
        (right: bool (n,), n).

    Raises:
        ValueError: a result without per-image records for `defense`.
    """
    masks = []
    for res in results:
        n = res["config"]["n"]
        if "clean_right" not in res or defense not in res["clean_right"]:
            raise ValueError(f"Expected evaluations with per_image=True holding {defense!r}. Received: one without "
                             f"its per-image results ({res['config'].get('attacks')})")
        masks.append(unpack_mask(res["clean_right"][defense], n))
        masks += [unpack_mask(r["right"], n) for r in res["records"] if r["defense"] == defense]
    n = min(len(m) for m in masks)
    worst = np.logical_and.reduce([m[:n] for m in masks])
    return worst, n


def _attack_sources(dataset: str, scenario: str, target, surrogates) -> tuple[str | None, tuple[str, ...]]:
    """The target and surrogates, the dataset's shipped ones where not given; refused where the
    scenario needs them and none ship."""
    from nnjpeg import registry

    if target is None:
        if scenario in ("gray-box", "mixed"):
            target = registry.target(dataset)  # raises, naming the datasets that have one
        else:
            shipped = registry.select(dataset=dataset, roles=("target",))
            target = shipped[0].name if shipped else None
    if surrogates is None:
        surrogates = registry.surrogates(dataset)
        if not surrogates and scenario in ("black-box", "mixed"):
            raise ValueError(f"Expected surrogates for the {scenario} scenario: none ship for dataset {dataset!r}. "
                             "Received: none; give .keras paths (--surrogates A.keras,B.keras)")
    return target, tuple(surrogates)


def _shard_of(positions: np.ndarray, shard) -> np.ndarray:
    """The shard's contiguous part of `positions`: the i-th of `np.array_split`'s k parts."""
    if (not isinstance(shard, tuple) or len(shard) != 2 or not all(isinstance(v, int) for v in shard)
            or not 0 <= shard[0] < shard[1] <= len(positions)):
        raise ValueError(f"Expected shard (i, k) with 0 <= i < k <= {len(positions)} (the images). Received: {shard!r}")
    return np.array_split(positions, shard[1])[shard[0]]


_PER_SHARD = ("shard", "n", "wall_time_s")


def merge(results: list[dict], names: list[str] | None = None) -> dict:
    """The results of a sharded run added up into those of the whole run: counts summed, shares
    recomputed from them, mean L2 weighted by images, max L-inf the largest.

    Args:
        results: one `evaluate` result per shard, `shard=(i, k)` for every i in 0..k-1 once.
        names: what to call each in errors (e.g. their files); default "result 0", "result 1", ...

    Returns:
        A result as `evaluate` without `shard` gives, its wall time the shards' sum.

    Raises:
        ValueError: a result that is not a shard, shards of different settings or of different k,
            a shard given twice, or a missing one; the message names the results.
    """
    names = names or [f"result {i}" for i in range(len(results))]
    if not results or any("shard" not in r.get("config", {}) or "clean_correct" not in r for r in results):
        bad = [n for n, r in zip(names, results) if "shard" not in r.get("config", {}) or "clean_correct" not in r]
        raise ValueError(f"Expected the results of a sharded run (evaluate --shard I/K). Received: {bad or 'none'}")
    settings = [{k: v for k, v in r["config"].items() if k not in _PER_SHARD} for r in results]
    differ = [n for n, s in zip(names, settings) if s != settings[0]]
    if differ:
        keys = sorted({k for s in settings for k in s if any(t.get(k) != settings[0].get(k) for t in settings)})
        raise ValueError(f"Expected shards of one run (the same settings). Received: {differ} differ from {names[0]} "
                         f"in {keys}")
    k = results[0]["config"]["shard"][1]
    seen = {}
    for name, r in zip(names, results):
        i, kk = r["config"]["shard"]
        if kk != k:
            raise ValueError(f"Expected shards of one split into {k}. Received: {name} is shard {i}/{kk}")
        if i in seen:
            raise ValueError(f"Expected each shard once. Received: shard {i}/{k} in {seen[i]} and {name}")
        seen[i] = name
    if len(seen) != k:
        raise ValueError(f"Expected all {k} shards. Received: missing {sorted(set(range(k)) - set(seen))} "
                         f"(given: {', '.join(f'{i}/{k} {seen[i]}' for i in sorted(seen))})")
    ordered = [r for _, r in sorted(zip([r["config"]["shard"][0] for r in results], results), key=lambda t: t[0])]
    total = sum(r["config"]["n"] for r in ordered)
    clean_correct = {d: sum(r["clean_correct"][d] for r in ordered) for d in ordered[0]["clean_correct"]}
    clean = {d: c / total for d, c in clean_correct.items()}
    records = [_merged_record([r["records"][j] for r in ordered], total, clean)
               for j in range(len(ordered[0]["records"]))]
    clean_ci95 = {d: list(stats.wilson(c, total)) for d, c in clean_correct.items()}
    per_image = all("clean_right" in r for r in ordered)
    if per_image:  # the shards are contiguous parts in order: their bits follow one another
        for j, rec in enumerate(records):
            rec["right"] = pack_mask(np.concatenate([unpack_mask(r["records"][j]["right"], r["config"]["n"])
                                                     for r in ordered]))
        clean_right = {d: pack_mask(np.concatenate([unpack_mask(r["clean_right"][d], r["config"]["n"])
                                                    for r in ordered])) for d in clean_correct}
    if total != settings[0]["n_total"]:
        raise ValueError(f"Expected shards holding {settings[0]['n_total']} images in all. Received: {total}")
    config = {**settings[0], "n": total, "wall_time_s": sum(r["config"]["wall_time_s"] for r in ordered)}
    del config["n_total"]
    return {"records": records, "clean": clean, "clean_correct": clean_correct, "clean_ci95": clean_ci95,
            **({"clean_right": clean_right} if per_image else {}), "config": config}


def _merged_record(parts: list[dict], total: int, clean: dict) -> dict:
    first = parts[0]
    hits = sum(p["correct"] for p in parts)
    out = {**first, "n": total, "correct": hits, "clean_accuracy": clean[first["defense"]],
           "mean_l2": sum(p["mean_l2"] * p["n"] for p in parts) / total, "max_linf": max(p["max_linf"] for p in parts)}
    if "gray_box_correct" in first:
        gray, black = (sum(p[f"{s}_correct"] for p in parts) for s in ("gray_box", "black_box"))
        out.update(gray_box_correct=gray, black_box_correct=black, gray_box_accuracy=gray / total,
                   black_box_accuracy=black / total, accuracy=float(np.mean([gray / total, black / total])),
                   ci95=list(stats.wilson(gray + black, 2 * total)))
    else:
        out.update(accuracy=hits / total, ci95=list(stats.wilson(hits, total)))
    return out


def record_at(result: dict | None, defense: str, attack: str, eps) -> dict | None:
    """The record of `defense` under `attack` at `eps` in an evaluation's `result`, or None where it
    has no such cell (or there is no result)."""
    if result is None:
        return None
    return next((r for r in result["records"] if r["defense"] == defense and r["attack"] == attack and r["eps"] == eps),
                None)


def accuracy_at(result: dict | None, defense: str, attack: str, eps) -> float | None:
    """`record_at`'s accuracy, or None."""
    record = record_at(result, defense, attack, eps)
    return None if record is None else record["accuracy"]


def percent(share: float | None) -> str:
    """An accuracy as the tables print it: percent with one decimal, "–" for none."""
    return "–" if share is None else f"{100 * share:.1f}"


def markdown(result: dict) -> str:
    """Table: one row per (attack, eps), one column per defense; the clean row first."""
    defenses = result["config"]["defenses"]
    lines = [f"Scenario: **{result['config']['scenario']}**, {result['config']['n']} test images, seed "
             f"{result['config']['seed']}. Accuracy (%).", "",
             "| attack | eps | " + " | ".join(defenses) + " |", "|---|---|" + "---:|" * len(defenses),
             "| none (clean) | – | " + " | ".join(f"{100 * result['clean'][d]:.1f}" for d in defenses) + " |"]
    keys = []
    for r in result["records"]:
        if (r["attack"], r["eps"]) not in keys:
            keys.append((r["attack"], r["eps"]))
    for a, e in keys:
        cell = {r["defense"]: _cell(r) for r in result["records"] if r["attack"] == a and r["eps"] == e}
        lines.append(f"| {a} | {'–' if e is None else e} | " + " | ".join(cell[d] for d in defenses) + " |")
    if result["config"]["scenario"] == "mixed":
        lines += ["", "Each mixed cell: the mean of the examples made on the target and those transferred from the "
                  "surrogates (each in brackets, in that order), all on the same images."]
    return "\n".join(lines)


def _cell(record: dict) -> str:
    """A record's accuracy in %, a mixed one with its gray-box and black-box halves."""
    if "gray_box_accuracy" not in record:
        return f"{100 * record['accuracy']:.1f}"
    return (f"{100 * record['accuracy']:.1f} ({100 * record['gray_box_accuracy']:.1f} / "
            f"{100 * record['black_box_accuracy']:.1f})")


def plot(result: dict, path: Path) -> None:
    """Accuracy against eps, one panel per L-inf attack, one line per defense (VQUNet paper Fig. 2 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = [a for a in dict.fromkeys(r["attack"] for r in result["records"]) if any(
        r["eps"] is not None for r in result["records"] if r["attack"] == a)]
    if not attacks:
        return
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.6), squeeze=False)
    for ax, a in zip(axes[0], attacks):
        for d in result["config"]["defenses"]:
            pts = sorted((r["eps"], r["accuracy"]) for r in result["records"] if r["attack"] == a and r["defense"] == d)
            ax.plot([0.0] + [p[0] for p in pts], [result["clean"][d] * 100] + [p[1] * 100 for p in pts], marker="o", label=d)
        ax.set_title(f"{a} ({result['config']['scenario']})")
        ax.set_xlabel("eps (L-inf, images in [0, 1])")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: dict, out: Path, json_path: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (json_path or out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown(result) + "\n")
    plot(result, out / "accuracy_vs_eps.png")


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy of defenses under attack (gray-box, black-box, white-box, mixed)")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist, cifar10, tfds:NAME or folder:DIR (nnjpeg.datasets.load; its test split)")
    p.add_argument("--data", default=None, help="the dataset's folder (default: where nnjpeg.datasets looks)")
    p.add_argument("--image-size", type=_args.size, default=None, metavar="H,W",
                   help="folder: and tfds: images resized and centre-cropped to H,W, the models' input size "
                        "(default 224,224)")
    p.add_argument("--target", default=None,
                   help="the model gray-box and mixed examples are made on: a pretrained name or a .keras path "
                        "(default: the dataset's shipped target, fmnist/classifier for fashion-mnist)")
    p.add_argument("--surrogates", type=_args.model_list, default=None,
                   help="the models black-box and mixed examples are transferred from, comma-separated pretrained "
                        "names or .keras paths (default: the dataset's shipped ones, fmnist/surrogate-a,b,c for "
                        "fashion-mnist)")
    p.add_argument("--defense", action="append", required=True,
                   help="pretrained name, or the path of a saved .keras model; repeat for several")
    p.add_argument("--attack", action="append", required=True, help="attack name; repeat for several")
    p.add_argument("--eps", type=_args.EPS, action="append", default=None, help="L-inf budget; repeat for several (default 0.1)")
    p.add_argument("--scenario", default="gray-box", choices=SCENARIOS)
    p.add_argument("--n", type=_args.COUNT, default=500)
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--json", default=None, help="where to write the JSON (default OUT/results.json)")
    p.add_argument("--steps", type=_args.COUNT, default=None, help="iterations of the iterative attacks (PGD: 20, BIM: 10)")
    p.add_argument("--restarts", type=_args.COUNT, default=1, help="PGD random restarts")
    p.add_argument("--eot", type=_args.integer(0), default=0,
                   help="white-box: average a randomized defense over this many draws (0: none)")
    p.add_argument("--shard", type=_args.shard, default=None,
                   help="I/K: only the I-th of K parts of the images, for `nnjpeg merge` (e.g. a cluster array's "
                        "job index); counts are written so that the parts add up to the whole run")
    p.add_argument("--out", default="out/evaluate", help="report folder (Markdown table, plot)")
    p.add_argument("--verbose", action="store_true", help="TensorFlow's logs and the attacks' per-batch progress too")
    p.set_defaults(func=_cmd)
    p = sub.add_parser("merge", help="add up the results of `nnjpeg evaluate --shard I/K` into those of the whole run")
    p.add_argument("results", nargs="+", help="the shards' JSON files, every I of 0..K-1 once")
    p.add_argument("--json", required=True, help="where to write the merged JSON")
    p.add_argument("--out", default=None, help="also write the report folder (Markdown table, plot) here")
    p.set_defaults(func=_merge_cmd)


def _merge_cmd(args) -> int:
    results = []
    for name in args.results:
        try:
            results.append(json.loads(Path(name).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"Expected the JSON file of an evaluate run. Received: {name!r} ({e})") from e
    merged = merge(results, args.results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(merged, indent=2))
    if args.out:
        write_report(merged, Path(args.out))
    print(text(merged))
    print(f"\nMerged {len(results)} shards of {merged['config']['n']} images into {args.json}.")
    return 0


def _cmd(args) -> int:
    from . import _console

    _console.quiet_tensorflow(args.verbose)
    if args.eot > 1 and args.scenario != "white-box":
        raise ValueError(f"Expected --eot N only with --scenario white-box, the one that attacks the defense itself. "
                         f"Received: --eot {args.eot} with --scenario {args.scenario}")
    kwargs = {"pgd": {"restarts": args.restarts}}
    if args.steps is not None:
        for name in ("pgd", "bim", "mifgsm", "ti-fgsm", "di-fgsm"):
            kwargs.setdefault(name, {})["nb_iter"] = args.steps
    result = evaluate(args.defense, args.attack, args.eps or [0.1], args.scenario, n=args.n, seed=args.seed,
                      dataset=args.dataset, data_dir=args.data, target=args.target, surrogates=args.surrogates,
                      attack_kwargs={k: v for k, v in kwargs.items() if k in args.attack},
                      eot={d: args.eot for d in args.defense} if args.eot > 1 else None, shard=args.shard,
                      image_size=args.image_size)
    write_report(result, Path(args.out), Path(args.json) if args.json else None)
    print(text(result))
    print(f"\nWrote {Path(args.json) if args.json else Path(args.out) / 'results.json'}, "
          f"{Path(args.out) / 'results.md'} and {Path(args.out) / 'accuracy_vs_eps.png'}.")
    return 0


def text(result: dict) -> str:
    """`markdown`'s table as aligned text for a terminal."""
    from ._console import text_table

    defenses = result["config"]["defenses"]
    keys = list(dict.fromkeys((r["attack"], r["eps"]) for r in result["records"]))
    rows = [["none (clean)", "–", *(f"{100 * result['clean'][d]:.1f}" for d in defenses)]]
    for a, e in keys:
        cell = {r["defense"]: _cell(r) for r in result["records"] if r["attack"] == a and r["eps"] == e}
        rows.append([a, "–" if e is None else f"{e:g}", *(cell[d] for d in defenses)])
    mixed = result["config"]["scenario"] == "mixed"
    return text_table(["attack", "eps", *defenses], rows,
                      title=f"{result['config']['scenario']}, {result['config']['n']} test images, accuracy (%)"
                      + (": mean (made on the target / transferred)" if mixed else ""))
