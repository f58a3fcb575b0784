"""Where an attack's time goes: its time per step beside one forward+backward of the attacked model.

Models: the target `fmnist/classifier` and a composed defense, `fmnist/vqunet-classifier` (VQUNet in
front of the same classifier), each on one batch of the first Fashion-MNIST test images it
classifies correctly (so that every attack starts on the whole batch; random images where the
dataset is absent). On that batch:

- forward+backward: one call of a traced function (`tf.function` taking any batch size) that returns
  the cross-entropy's gradient with respect to the images; forward alone beside it;
- PGD, `nnjpeg.attacks.pgd`: all iterations of a batch in one traced function;
- PGD, cleverhans 4, called as `nnjpeg.attacks.pgd` called it before its loop was traced: the
  gradient a traced function (also timed alone), each step's other operations eager, one Python call
  per step, and a final check of which images it fooled;
- APGD-CE and APGD-T (one target class, the DLR loss) through IBM's ART as
  `nnjpeg.art.autoattack_attacks` builds them, with `--steps` iterations: with the classifier that
  answers a step's loss and gradient from one traced pass (the default), and with ART's own
  (`one_pass=False`), which runs the model eagerly for each; `--long-apgd 100` adds APGD-CE with
  AutoAttack's 100 iterations, where the passes beyond one a step (the first step's second point,
  and a new point after each of ART's step-size checkpoints) weigh less;
- Square through ART at eps, where images fall and leave the later queries, and at eps / 10, where
  few do.

Per step: a run's wall time over its iterations (one query per image for Square); ratio: per step
over forward+backward (and the same of the process's CPU time, steadier where other work shares the
cores). Breakdown: the first run's time beside the steady runs' (tracing), and the traced functions'
traces (`experimental_get_tracing_count`) after the first run and after the steady runs, which must
add none; for ART, the time inside the classifier's calls (`loss_gradient`, `compute_loss`,
`predict`; the one-pass classifier's traced passes counted) against the rest (ART's NumPy and
Python); for the attacks, the share of the batch left classified correctly. Every
configuration runs once untimed, then in each of `--repeats` rounds all configurations of a model in
turn, each once untimed and once timed: timed alone right after another configuration, even the
traced forward+backward took up to twice its time back to back, and more for the composed defense.
Medians and spreads are reported. Last, the batch size: forward+backward and a PGD step per image at
each of the `--sweep` batch sizes, on the first model.

Run: .venv/bin/python benchmarks/bench_attacks.py [--models fmnist/classifier,fmnist/vqunet-classifier]
     [--batch 64] [--steps 5] [--square-steps 10] [--repeats 3] [--sweep 32,128] [--long-apgd 0]
     [--eps 0.1] [--json benchmarks/results/attacks.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The checkout's weights; no download.
os.environ.setdefault("NNJPEG_WEIGHTS_DIR", str(Path(__file__).resolve().parents[1] / "models" / "weights"))
os.environ.setdefault("NNJPEG_OFFLINE", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import RESULTS, environment, publish  # noqa: E402
from nnjpeg import _predict, attacks, datasets, pretrained  # noqa: E402

MODELS = {"fmnist/classifier": "the target", "fmnist/vqunet-classifier": "VQUNet in front of the target"}
GOAL = 1.5  # an attack step within 1.5x of one forward+backward


def images(model, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first `n` Fashion-MNIST test images `model` classifies correctly, and where they came from."""
    try:
        (_, _), (x, y) = datasets.load_fashion_mnist(download=False)
        x, y, source = x.astype(np.float32)[..., None] / 255.0, y.astype(np.int64), "Fashion-MNIST test images"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        x, y, source = rng.random((4 * n, 28, 28, 1), np.float32), None, "random images (Fashion-MNIST absent)"
    pred = _predict.logits(model, x[: 4 * n]).argmax(-1)
    y = pred if y is None else y[: 4 * n]
    keep = np.flatnonzero(pred == y)[:n]
    return x[keep], y[keep], source


def gradient_function(model):
    """The cross-entropy's gradient with respect to the images, traced once for any batch size."""
    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32), tf.TensorSpec((None,), tf.int64)]

    @tf.function(input_signature=spec)
    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False))
        return tape.gradient(loss, x)

    return gradient


def forward_function(model):
    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
    return tf.function(lambda x: model(x, training=False), input_signature=spec)


def cleverhans_pgd(model, x, y, eps: float, *, nb_iter: int, restarts: int = 1, batch_size: int = 256, seed: int = 0):
    """`nnjpeg.attacks.pgd` as it ran through cleverhans 4: per batch and restart, cleverhans' PGD
    (its gradient a traced function, the rest of each step eager), then a check of which images it
    fooled; later restarts on the others."""
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    logits = _cleverhans_logits(model)
    step = 2.5 * eps / nb_iter
    out = np.empty_like(x)
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        best, alive = xb.copy(), np.arange(len(xb))
        for r in range(restarts):
            tf.random.set_seed(seed + r)
            adv = projected_gradient_descent(logits, xb[alive], eps, step, nb_iter, np.inf, clip_min=0.0, clip_max=1.0,
                                             y=yb[alive], rand_init=True, rand_minmax=eps).numpy()
            best[alive] = adv
            alive = alive[_predict.logits(model, adv).argmax(-1) == yb[alive]]
            if not len(alive):
                break
        out[s : s + batch_size] = best
    return out


_CLEVERHANS_LOGITS: dict = {}


def _cleverhans_logits(model):
    # One function per model: cleverhans' traced gradient takes it as an argument, and a new one
    # would trace the model again.
    return _CLEVERHANS_LOGITS.setdefault(id(model), lambda t: model(t, training=False))


class CallTimer:
    """Wall time and count of calls to some methods of one object (`names`), and the count alone of
    calls to others (`counted`, called from within the first), replaced on the object itself."""

    def __init__(self, obj, names, counted=()):
        self.seconds = dict.fromkeys(names, 0.0)
        self.calls = dict.fromkeys((*names, *counted), 0)
        for name in (*names, *counted):
            setattr(obj, name, self._wrap(name, getattr(obj, name)))

    def _wrap(self, name, method):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                if name in self.seconds:
                    self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        return timed

    def reset(self):
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)


class Config:
    """One measured configuration: `run()` does `steps` steps; `traces()` counts its traced functions'
    traces (None where it has none); `timer` (a CallTimer) splits its time, where there is one."""

    def __init__(self, name, steps, run, traces=None, timer=None):
        self.name, self.steps, self.run, self.traces, self.timer = name, steps, run, traces, timer
        self.times, self.cpu, self.inside, self.calls, self.outside, self.robust = [], [], [], [], [], []


def seeded(fn, *args, **kwargs):
    np.random.seed(0)  # ART's random draws
    return fn(*args, **kwargs)


def configurations(model, x, y, eps: float, steps: int, square_steps: int, long_apgd: int) -> list[Config]:
    from cleverhans.tf2.utils import compute_gradient

    from nnjpeg import art

    grad, fwd = gradient_function(model), forward_function(model)
    xt, yt = tf.constant(x), tf.constant(y)
    classes = int(model.output_shape[-1])
    onehot = np.eye(classes, dtype=np.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits
    shape = tuple(x.shape[1:])
    configs = [
        Config("forward+backward (traced)", 1, lambda: grad(xt, yt).numpy(), grad.experimental_get_tracing_count),
        Config("forward (traced)", 1, lambda: fwd(xt).numpy(), fwd.experimental_get_tracing_count),
        Config("cleverhans' traced gradient alone", 1,
               lambda: compute_gradient(_cleverhans_logits(model), ce, xt, yt, False).numpy(),
               compute_gradient.experimental_get_tracing_count),
        Config("PGD, nnjpeg.attacks.pgd (one traced loop)", steps,
               lambda: attacks.pgd(model, x, y, eps, nb_iter=steps, batch_size=len(x)),
               lambda: attacks._iterations(model, "sign-ce", shape).experimental_get_tracing_count()),
        Config("PGD, cleverhans 4 (per-step calls)", steps,
               lambda: cleverhans_pgd(model, x, y, eps, nb_iter=steps, batch_size=len(x)),
               compute_gradient.experimental_get_tracing_count),
    ]
    estimator = art.classifier(model, eot=0)
    for one_pass in (True, False):
        apgd_ce, apgd_t, square = art.autoattack_attacks(estimator, eps, batch_size=len(x), one_pass=one_pass)
        how = "one-pass classifier" if one_pass else "ART's own classifier"
        for name, attack, labels in ((f"APGD-CE, ART, {how}", apgd_ce, onehot[y]),
                                     (f"APGD-T (DLR, 1 target), ART, {how}", apgd_t, onehot[(y + 1) % classes])):
            attack.set_params(max_iter=steps)
            est = attack.estimator  # the classifier the attack asks, with the attack's loss
            traced = est._pass if one_pass else est._forward_pass
            configs.append(Config(name, steps, lambda a=attack, lab=labels: a.generate(x, y=lab),
                                  traced.experimental_get_tracing_count,
                                  CallTimer(est, ("loss_gradient", "compute_loss", "predict"),
                                            ("_pass",) if one_pass else ())))
    if long_apgd:  # AutoAttack's APGD runs 100 steps: the first step's extra pass and the checkpoints weigh less
        apgd_ce = art.autoattack_attacks(estimator, eps, batch_size=len(x))[0]
        apgd_ce.set_params(max_iter=long_apgd)
        configs.append(Config(f"APGD-CE, ART, one-pass classifier, {long_apgd} steps", long_apgd,
                              lambda a=apgd_ce: a.generate(x, y=onehot[y]),
                              apgd_ce.estimator._pass.experimental_get_tracing_count,
                              CallTimer(apgd_ce.estimator, ("loss_gradient", "compute_loss", "predict"), ("_pass",))))
    # Square at eps, where images fall and leave its later queries, and at eps / 10, where few do.
    for e in (eps, eps / 10):
        square = art.autoattack_attacks(estimator, e, batch_size=len(x), square_queries=square_steps)[2]
        configs.append(Config(f"Square, ART, eps {e:g}", square_steps,
                              lambda a=square: seeded(a.generate, x, y=onehot[y]),
                              lambda: estimator._logits.experimental_get_tracing_count(),
                              CallTimer(estimator, ("predict",))))
    return configs


def measure(configs: list[Config], repeats: int, model, y) -> list[dict]:
    first, traces = {}, {}
    for c in configs:
        t0 = time.perf_counter()
        c.run()
        first[c.name] = time.perf_counter() - t0
        traces[c.name] = c.traces() if c.traces else None
    for _ in range(repeats):
        for c in configs:  # every configuration once per round: slow spells fall on all alike
            c.run()  # untimed: what the configuration before left in the caches is not its cost
            if c.timer:
                c.timer.reset()
            t0, cpu0 = time.perf_counter(), time.process_time()
            out = c.run()
            c.times.append(time.perf_counter() - t0)
            c.cpu.append(time.process_time() - cpu0)
            if c.steps > 1:  # an attack: the share of the batch it left classified correctly
                c.robust.append(float(np.mean(_predict.logits(model, out).argmax(-1) == y)))
            if c.timer:
                c.inside.append(dict(c.timer.seconds))
                c.calls.append(dict(c.timer.calls))
                c.outside.append(c.times[-1] - sum(c.timer.seconds.values()))
    rows = []
    for c in configs:
        median = statistics.median(c.times)
        row = {"configuration": c.name, "steps": c.steps, "run_median_s": median, "run_min_s": min(c.times),
               "run_max_s": max(c.times), "runs_s": c.times, "step_median_s": median / c.steps,
               "cpu_step_median_s": statistics.median(c.cpu) / c.steps, "first_run_s": first[c.name],
               "traces_after_first_run": traces[c.name],
               "traces_after_steady_runs": c.traces() if c.traces else None,
               "robust_accuracy": statistics.median(c.robust) if c.robust else None}
        if c.timer:
            inside = {k: statistics.median(r[k] for r in c.inside) for k in c.inside[0]}
            row["inside_estimator_s"] = inside
            row["estimator_calls_per_run"] = c.calls[0]
            row["outside_estimator_s"] = statistics.median(c.outside)
        rows.append(row)
    base, cpu_base = rows[0]["step_median_s"], rows[0]["cpu_step_median_s"]
    for row in rows:
        row["ratio_to_forward_backward"] = row["step_median_s"] / base
        row["cpu_ratio_to_forward_backward"] = row["cpu_step_median_s"] / cpu_base
    return rows


def sweep(model, sizes: list[int], steps: int, eps: float, repeats: int) -> list[dict]:
    x, y, _ = images(model, max(sizes))
    grad = gradient_function(model)
    out = []
    for b in sizes:
        xb, yb = x[:b], y[:b]
        xt, yt = tf.constant(xb), tf.constant(yb)
        runs = {"forward+backward": (1, lambda: grad(xt, yt).numpy()),
                "PGD step, nnjpeg.attacks.pgd": (steps, lambda: attacks.pgd(model, xb, yb, eps, nb_iter=steps,
                                                                             batch_size=b))}
        row = {"batch": b}
        for name, (n, run) in runs.items():
            run()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            row[name] = statistics.median(times) / n / b
        out.append(row)
    return out


def run(models: list[str], batch: int, steps: int, square_steps: int, repeats: int, eps: float, sizes: list[int],
        long_apgd: int) -> dict:
    results = {}
    for name in models:
        model = pretrained.load(name)
        x, y, source = images(model, batch)
        rows = measure(configurations(model, x, y, eps, steps, square_steps, long_apgd), repeats, model, y)
        results[name] = {"what": MODELS.get(name, "a pretrained model"), "images": source, "batch": len(x), "rows": rows}
    return {"batch": batch, "steps": steps, "square_steps": square_steps, "repeats": repeats, "eps": eps, "goal": GOAL,
            "long_apgd": long_apgd, "models": results,
            "sweep": sweep(pretrained.load(models[0]), sizes, steps, eps, repeats) if sizes else [],
            "environment": {**environment(), "art": _version("art"), "cleverhans": _version("cleverhans")}}


def _version(module: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(__import__(module), "__version__", None)
    except ImportError:
        return None


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Attack steps beside one forward+backward of the model on the same batch, eps {report['eps']}; median of "
             f"{report['repeats']} runs ({report['steps']} steps for PGD and APGD, {report['square_steps']} for Square); "
             f"{env['cpu']}, {env['cores']} cores, TensorFlow {env['tensorflow']}, ART {env['art']}, cleverhans "
             f"{env['cleverhans']}. Goal: a step within {report['goal']}x of forward+backward."]
    for name, res in report["models"].items():
        lines += ["", f"### {name} ({res['what']}), batch {res['batch']} ({res['images']})", "",
                  "| configuration | ms per step | min–max | × fwd+bwd | CPU × fwd+bwd | first run − median run, ms | "
                  "traces (first run, after) | inside the estimator, ms per step | rest, ms per step | left correct |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for row in res["rows"]:
            n = row["steps"]
            inside = row.get("inside_estimator_s")
            calls = row.get("estimator_calls_per_run", {})
            inside_text = ", ".join(f"{k} {v / n * 1e3:.1f} ({calls[k]} calls)" for k, v in inside.items()) if inside else ""
            if "_pass" in calls:
                per_pass = (inside["loss_gradient"] + inside["compute_loss"]) / calls["_pass"]
                inside_text += f"; {calls['_pass']} traced passes of {per_pass * 1e3:.1f} ms"
            rest = f"{row['outside_estimator_s'] / n * 1e3:.1f}" if inside else ""
            goal = "" if n == 1 else (" (met)" if row["ratio_to_forward_backward"] <= report["goal"] else " (**not met**)")
            traces = ("" if row["traces_after_first_run"] is None else
                      f"{row['traces_after_first_run']}, {row['traces_after_steady_runs']}")
            lines.append(f"| {row['configuration']} | {row['step_median_s'] * 1e3:.1f} | {row['run_min_s'] / n * 1e3:.1f}–"
                         f"{row['run_max_s'] / n * 1e3:.1f} | {row['ratio_to_forward_backward']:.2f}{goal} | "
                         f"{row['cpu_ratio_to_forward_backward']:.2f} | "
                         f"{(row['first_run_s'] - row['run_median_s']) * 1e3:.0f} | {traces} | {inside_text} | {rest} | "
                         f"{'' if row['robust_accuracy'] is None else format(row['robust_accuracy'], '.2f')} |")
    if report["sweep"]:
        lines += ["", f"### Batch size, {next(iter(report['models']))}: ms per image", "",
                  "| batch | forward+backward | PGD step, nnjpeg.attacks.pgd |", "|---:|---:|---:|"]
        for row in report["sweep"]:
            lines.append(f"| {row['batch']} | {row['forward+backward'] * 1e3:.3f} | "
                         f"{row['PGD step, nnjpeg.attacks.pgd'] * 1e3:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="pretrained names, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--square-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--sweep", default="32,128", help="batch sizes, comma-separated; empty for none")
    parser.add_argument("--long-apgd", type=int, default=0,
                        help="also APGD-CE (one-pass classifier) with this many steps; 0 for none")
    parser.add_argument("--json", default=str(RESULTS / "attacks.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sweep.split(",") if s]
    report = run(args.models.split(","), args.batch, args.steps, args.square_steps, args.repeats, args.eps, sizes,
                 args.long_apgd)
    publish(report, markdown(report), args.json)
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        # cleverhans imports deprecated modules; ART warns that PyTorch is missing.
        warnings.simplefilter("ignore")
        sys.exit(main())
