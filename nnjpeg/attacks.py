"""Adversarial attacks on Keras classifiers, including adaptive ones.

Every attack takes a Keras model returning logits, float32 images in [0, 1] of shape (N, H, W, C)
and integer labels, and returns adversarial images of the same shape in [0, 1] as a NumPy array.
L-inf attacks stay within `eps` of the input. All but AutoAttack (through IBM's ART) are implemented
here. FGSM, BIM, PGD, C&W-Linf and MI-FGSM make their steps as cleverhans 4 makes them (FGSM, BIM and
MI-FGSM give its output to the last bit), all iterations of a batch in one traced function
(`tf.while_loop`), traced once per model and image shape whatever the batch size, eps or number of
iterations, so that a step costs about one forward+backward of the model
(benchmarks/bench_attacks.py); C&W-L2, DeepFool, TI-FGSM and DI-FGSM step from Python.

Adaptive attacks: a defended model built from nnjpeg's layers (the codec layers, the ensemble,
VQUNet) is differentiable end to end with the straight-through (BPDA) gradient, so attacking the
defended model as a whole *is* BPDA. `bpda_layer` wraps any other NumPy preprocessing the same way;
`EOT` averages logits over a randomized defense's draws (Athalye et al., 2018).
"""

from __future__ import annotations

import math
import weakref
from typing import Callable

import numpy as np
import tensorflow as tf

from . import _checks, _predict
from .adaptive import BPDA, EOT, bpda_layer

__all__ = ["ATTACKS", "BPDA", "EOT", "attack", "autoattack", "bim", "bpda", "bpda_layer", "cw_l2", "cw_linf", "deepfool",
           "di_fgsm", "fgsm", "mifgsm", "pgd", "ti_fgsm"]


def check_inputs(x, y):
    """Images float32 in [0, 1] and one integer label each, as every attack takes them.

    Returns:
        (x, y as int64).

    Raises:
        TypeError, ValueError: images of another dtype, shape or range; labels not of shape (N,) or
            not integers.
    """
    x = _checks.unit_images("images", x, empty=True)
    y = np.asarray(y)
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ValueError(f"Expected integer labels of shape ({len(x)},). Received: dtype={y.dtype}, shape={y.shape}")
    return x, y.astype(np.int64)


def _check_counts(**counts) -> None:
    """Iterations, restarts, batch sizes: integers >= 1 (0 iterations would divide a budget by zero)."""
    for name, value in counts.items():
        _checks.integer(name, value, 1)


def _check_labels(model, y) -> None:
    """Labels within the model's classes, where its output shape says how many there are."""
    try:
        classes = model.output_shape[-1]
    except (AttributeError, TypeError, ValueError, IndexError):  # a model not built, or without one output
        return
    if isinstance(classes, int) and len(y) and not (y.min() >= 0 and y.max() < classes):
        raise ValueError(f"Expected labels in 0...{classes - 1} ({classes} classes in the model's output). "
                         f"Received: min={y.min()}, max={y.max()}")


def _batched(fn, model, x, y, batch_size: int, progress, desc: str) -> np.ndarray:
    x, y = check_inputs(x, y)
    _check_counts(batch_size=batch_size)
    _check_labels(model, y)
    out = np.empty_like(x)
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    for s in starts:
        adv = np.asarray(fn(x[s : s + batch_size], y[s : s + batch_size]), dtype=np.float32)
        out[s : s + batch_size] = np.clip(adv, 0.0, 1.0)
    return out


# The traced iterations, per model: {(kind, image shape): tf.function}. Held weakly, so that the
# cache keeps no model alive.
_ITERATIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cross_entropy(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _margin(labels, logits):
    """The C&W margin max_{i != y} Z_i - Z_y on the logits Z (positive once the example is misclassified)."""
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return tf.reduce_max(logits - 1e4 * onehot, -1) - tf.reduce_sum(onehot * logits, -1)


class _SignIterations:
    """`nb_iter` steps of L-inf sign-gradient ascent from `start` (FGSM, BIM, PGD, C&W-Linf), each as
    cleverhans 4's PGD makes it: x_k + step * sign(grad) clipped to [0, 1], projected onto the eps-ball
    around x, clipped to [0, 1] again. A callable object rather than a function (see
    `nnjpeg._predict.ModelCall` for why)."""

    def __init__(self, model, loss):
        self._logits = _predict.ModelCall(model)
        self._loss = loss

    def __call__(self, x, y, start, eps, step, nb_iter):
        def ascend(i, adv):
            with tf.GradientTape() as tape:
                tape.watch(adv)
                loss = self._loss(y, self._logits(adv))
            adv = tf.clip_by_value(adv + step * tf.sign(tape.gradient(loss, adv)), 0.0, 1.0)
            return i + 1, tf.clip_by_value(x + tf.clip_by_value(adv - x, -eps, eps), 0.0, 1.0)

        adv = tf.clip_by_value(x + tf.clip_by_value(start, -eps, eps), 0.0, 1.0)
        return tf.while_loop(lambda i, _: i < nb_iter, ascend, (tf.constant(0), adv))[1]


class _MomentumIterations:
    """`nb_iter` MI-FGSM steps as cleverhans 4 makes them: the cross-entropy's gradient divided by its
    mean absolute value, accumulated with `decay`, x_k + step * sign(momentum) projected onto the
    eps-ball around x and clipped to [0, 1]."""

    def __init__(self, model):
        self._logits = _predict.ModelCall(model)

    def __call__(self, x, y, eps, step, nb_iter, decay):
        def ascend(i, adv, momentum):
            with tf.GradientTape() as tape:
                tape.watch(adv)
                loss = _cross_entropy(y, self._logits(adv))
            grad = tape.gradient(loss, adv)
            grad = grad / tf.maximum(1e-12, tf.reduce_mean(tf.abs(grad), axis=[1, 2, 3], keepdims=True))
            momentum = decay * momentum + grad
            adv = x + tf.clip_by_value(adv + step * tf.sign(momentum) - x, -eps, eps)
            return i + 1, tf.clip_by_value(adv, 0.0, 1.0), momentum

        return tf.while_loop(lambda i, *_: i < nb_iter, ascend, (tf.constant(0), x, tf.zeros_like(x)))[1]


_KINDS = {"sign-ce": lambda m: _SignIterations(m, _cross_entropy), "sign-margin": lambda m: _SignIterations(m, _margin),
          "momentum": _MomentumIterations}


def _iterations(model, kind: str, shape: tuple):
    """The traced iterations of `kind` (a key of `_KINDS`) for `model` and images of `shape` (H, W, C):
    one trace for every batch size, eps, step and number of iterations."""
    per_model = _ITERATIONS.setdefault(model, {})
    fn = per_model.get((kind, shape))
    if fn is None:
        scalar = tf.TensorSpec((), tf.float32)
        images = tf.TensorSpec((None, *shape), tf.float32)
        head = [images, tf.TensorSpec((None,), tf.int64)]
        spec = ([*head, scalar, scalar, tf.TensorSpec((), tf.int32), scalar] if kind == "momentum"
                else [*head, images, scalar, scalar, tf.TensorSpec((), tf.int32)])
        fn = per_model[(kind, shape)] = tf.function(_KINDS[kind](model), input_signature=spec)
    return fn


def _sign_attack(model, x, y, eps, loss, desc, *, nb_iter, eps_iter, scale, restarts, batch_size, progress, seed):
    """BIM (seed None: no random start) or PGD (a uniform start in the eps-ball) on `loss` ("ce" or
    "margin"), `nb_iter` steps of eps_iter (default scale * eps / nb_iter). With `restarts` > 1 each
    example keeps the first restart that fools the model (else the last); later restarts run only
    on the examples no earlier one fooled. The starts come from NumPy's generator seeded
    (seed, restart), drawn for the images in their order in x, so they do not depend on the batch size."""
    eps = _checks.real("eps", eps, 0.0)
    _check_counts(nb_iter=nb_iter, restarts=restarts)
    step = scale * eps / nb_iter if eps_iter is None else _checks.real("eps_iter", eps_iter, 0.0)
    scalars = tf.constant(eps, tf.float32), tf.constant(step, tf.float32), tf.constant(nb_iter, tf.int32)
    rngs = None if seed is None else [np.random.default_rng([_checks.integer("seed", seed, 0), r])
                                      for r in range(restarts)]

    def run(xb, yb):
        fn = _iterations(model, f"sign-{loss}", xb.shape[1:])
        starts = ([np.zeros_like(xb)] if rngs is None else
                  [(eps * (2.0 * g.random(xb.shape) - 1.0)).astype(np.float32) for g in rngs])
        best = xb.copy()
        alive = np.arange(len(xb))  # the images no restart has fooled yet
        for r, start in enumerate(starts):
            adv = fn(tf.constant(xb[alive]), tf.constant(yb[alive]), tf.constant(start[alive]), *scalars).numpy()
            best[alive] = adv  # the last restart's where none fools the model
            if r + 1 == len(starts):
                break
            alive = alive[_predict.logits(model, adv).argmax(-1) == yb[alive]]
            if not len(alive):
                break
        return best

    return _batched(run, model, x, y, batch_size, progress, desc)


def fgsm(model, x, y, eps: float, *, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Fast Gradient Sign Method (Goodfellow et al., 2015), L-inf: one step of eps along the sign of
    the cross-entropy's gradient, clipped to [0, 1]."""
    return _sign_attack(model, x, y, eps, "ce", "FGSM", nb_iter=1, eps_iter=None, scale=1.0, restarts=1,
                        batch_size=batch_size, progress=progress, seed=None)


def bim(model, x, y, eps: float, *, nb_iter: int = 10, eps_iter: float | None = None, batch_size: int = 256,
        progress: bool = False) -> np.ndarray:
    """Basic Iterative Method / I-FGSM (Kurakin et al., 2017): PGD without the random start;
    eps_iter defaults to eps / nb_iter * 1.25."""
    return _sign_attack(model, x, y, eps, "ce", "BIM", nb_iter=nb_iter, eps_iter=eps_iter, scale=1.25, restarts=1,
                        batch_size=batch_size, progress=progress, seed=None)


def pgd(model, x, y, eps: float, *, nb_iter: int = 20, eps_iter: float | None = None, restarts: int = 1,
        batch_size: int = 256, progress: bool = False, seed: int = 0) -> np.ndarray:
    """PGD with a random start (Madry et al., 2018) on the cross-entropy: from a uniform draw in the
    eps-ball, `nb_iter` steps of eps_iter along the gradient's sign, each projected onto the eps-ball
    and [0, 1]. With `restarts` > 1 each example keeps the first restart that fools the model (else
    the last), and later restarts run only on the examples no earlier one fooled. eps_iter defaults
    to 2.5 * eps / nb_iter; `seed` (>= 0) fixes the random starts."""
    return _sign_attack(model, x, y, eps, "ce", "PGD", nb_iter=nb_iter, eps_iter=eps_iter, scale=2.5,
                        restarts=restarts, batch_size=batch_size, progress=progress, seed=seed)


def cw_linf(model, x, y, eps: float, *, nb_iter: int = 20, eps_iter: float | None = None, restarts: int = 1,
            batch_size: int = 256, progress: bool = False, seed: int = 0) -> np.ndarray:
    """C&W within an L-inf budget: PGD (random start, `restarts` as in `pgd`) ascending Carlini and
    Wagner's margin loss max_{i != y} Z_i - Z_y on the logits instead of the cross-entropy, the
    L-inf form of C&W used to set it beside FGSM, BIM and PGD at one eps (Madry et al., 2018)."""
    return _sign_attack(model, x, y, eps, "margin", "C&W-Linf", nb_iter=nb_iter, eps_iter=eps_iter, scale=2.5,
                        restarts=restarts, batch_size=batch_size, progress=progress, seed=seed)


def mifgsm(model, x, y, eps: float, *, nb_iter: int = 10, decay: float = 1.0, batch_size: int = 256,
           progress: bool = False) -> np.ndarray:
    """Momentum Iterative FGSM (Dong et al., 2018): `nb_iter` steps of eps / nb_iter along the sign of
    the accumulated, L1-normalized gradient (`decay` the momentum's factor)."""
    eps = _checks.real("eps", eps, 0.0)
    decay = _checks.real("decay", decay, 0.0)
    _check_counts(nb_iter=nb_iter)
    scalars = (tf.constant(eps, tf.float32), tf.constant(eps / nb_iter, tf.float32), tf.constant(nb_iter, tf.int32),
               tf.constant(decay, tf.float32))

    def run(xb, yb):
        return _iterations(model, "momentum", xb.shape[1:])(tf.constant(xb), tf.constant(yb), *scalars).numpy()

    return _batched(run, model, x, y, batch_size, progress, "MI-FGSM")


def _gradient(model, x, y, transform=None):
    """Gradient of the cross-entropy of `model(transform(x))` with respect to x."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(transform(x) if transform is not None else x, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tape.gradient(loss, x)


def _momentum_iterations(model, xb, yb, eps, nb_iter, decay, grad_fn):
    """MI-FGSM updates (L1-normalized gradient with momentum), used by TI- and DI-FGSM."""
    x0 = tf.convert_to_tensor(xb)
    adv = x0
    g = tf.zeros_like(x0)
    alpha = eps / nb_iter
    for _ in range(nb_iter):
        grad = grad_fn(adv)
        grad = grad / (tf.reduce_mean(tf.abs(grad), axis=[1, 2, 3], keepdims=True) + 1e-12)
        g = decay * g + grad
        adv = adv + alpha * tf.sign(g)
        adv = tf.clip_by_value(tf.clip_by_value(adv, x0 - eps, x0 + eps), 0.0, 1.0)
    return adv.numpy()


def _gaussian_kernel(size: int, sigma: float, channels: int):
    ax = np.arange(size) - (size - 1) / 2.0
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2.0 * sigma**2))
    k = (k / k.sum()).astype(np.float32)
    return np.tile(k[:, :, None, None], (1, 1, channels, 1))


def ti_fgsm(model, x, y, eps: float, *, nb_iter: int = 10, kernel_size: int = 5, sigma: float | None = None,
            decay: float = 1.0, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Translation-Invariant MI-FGSM (Dong et al., 2019): the gradient is smoothed by a Gaussian kernel
    before each step, which approximates attacking an ensemble of translated images. `kernel_size`
    scales with image size (the paper used 15 on 299x299 ImageNet; 5 suits 28x28)."""
    _check_counts(nb_iter=nb_iter, kernel_size=kernel_size)
    sigma = sigma if sigma is not None else kernel_size / (2.0 * math.sqrt(3.0))
    kernel = tf.constant(_gaussian_kernel(kernel_size, sigma, np.shape(x)[-1]))

    def run(xb, yb):
        def grad_fn(adv):
            return tf.nn.depthwise_conv2d(_gradient(model, adv, yb), kernel, [1, 1, 1, 1], "SAME")

        return _momentum_iterations(model, xb, yb, eps, nb_iter, decay, grad_fn)

    return _batched(run, model, x, y, batch_size, progress, "TI-FGSM")


def di_fgsm(model, x, y, eps: float, *, nb_iter: int = 10, prob: float = 0.5, max_scale: float = 1.1,
            decay: float = 1.0, batch_size: int = 256, progress: bool = False, seed: int = 0) -> np.ndarray:
    """Diverse-Inputs MI-FGSM (Xie et al., 2019): with probability `prob` per step the gradient is taken
    through a random resize (to between H and max_scale * H) and random zero padding back to
    max_scale * H, which is then resized to the model's input size."""
    _check_counts(nb_iter=nb_iter)
    rng = np.random.default_rng(seed)
    h, w = np.shape(x)[1:3]
    big = int(round(h * max_scale)), int(round(w * max_scale))

    def transform(t):
        if rng.random() >= prob:
            return t
        rh = int(rng.integers(h, big[0] + 1))
        rw = int(rng.integers(w, big[1] + 1))
        t2 = tf.image.resize(t, (rh, rw), method="nearest")
        top = int(rng.integers(0, big[0] - rh + 1))
        left = int(rng.integers(0, big[1] - rw + 1))
        t2 = tf.pad(t2, [[0, 0], [top, big[0] - rh - top], [left, big[1] - rw - left], [0, 0]])
        return tf.image.resize(t2, (h, w), method="bilinear")

    def run(xb, yb):
        return _momentum_iterations(model, xb, yb, eps, nb_iter, decay, lambda adv: _gradient(model, adv, yb, transform))

    return _batched(run, model, x, y, batch_size, progress, "DI-FGSM")


def deepfool(model, x, y, *, num_classes: int = 10, overshoot: float = 0.02, max_iter: int = 50,
             batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """DeepFool, L2 (Moosavi-Dezfooli et al., 2016): repeatedly steps to the nearest linearized decision
    boundary among the `num_classes` highest-scoring classes, then overshoots by (1 + overshoot).
    Examples already misclassified are returned unchanged. Not bounded by an eps."""
    _check_counts(max_iter=max_iter, num_classes=num_classes)

    def run(xb, yb):
        x0 = tf.convert_to_tensor(xb)
        n = len(yb)
        r_total = tf.zeros_like(x0)
        active = np.ones(n, bool)
        labels = tf.constant(yb)
        for _ in range(max_iter):
            adv = tf.clip_by_value(x0 + (1.0 + overshoot) * r_total, 0.0, 1.0)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(adv)
                logits = model(adv, training=False)
                k = min(num_classes, logits.shape[-1])
                top = tf.math.top_k(logits, k).indices
                f_true = tf.gather(logits, labels, batch_dims=1)
                others = [tf.gather(logits, top[:, j], batch_dims=1) - f_true for j in range(k)]
            active &= np.argmax(logits.numpy(), -1) == yb
            if not active.any():
                break
            best_ratio = np.full(n, np.inf, np.float32)
            best_step = np.zeros_like(xb)
            for j in range(k):
                same = top[:, j].numpy() == yb
                w = tape.gradient(others[j], adv).numpy()
                fk = others[j].numpy()
                norm = np.sqrt((w.reshape(n, -1) ** 2).sum(1)) + 1e-8
                ratio = np.abs(fk) / norm
                better = (~same) & (ratio < best_ratio)
                best_ratio = np.where(better, ratio, best_ratio)
                step = (np.abs(fk) + 1e-4)[:, None, None, None] / norm[:, None, None, None] ** 2 * w
                best_step = np.where(better[:, None, None, None], step, best_step)
            del tape
            r_total = r_total + tf.constant(best_step * active[:, None, None, None])
        return tf.clip_by_value(x0 + (1.0 + overshoot) * r_total, 0.0, 1.0).numpy()

    return _batched(run, model, x, y, batch_size, progress, "DeepFool")


def cw_l2(model, x, y, *, confidence: float = 0.0, initial_const: float = 1.0, binary_steps: int = 6,
          max_iter: int = 100, lr: float = 0.05, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """Carlini & Wagner L2 (2017): minimizes ||delta||_2^2 + c * max(Z_y - max_{i != y} Z_i, -kappa) in
    tanh space with Adam, binary-searching c per example; returns the smallest successful
    perturbation found (the input itself where none succeeds). Not bounded by an eps."""
    _check_counts(binary_steps=binary_steps, max_iter=max_iter)

    def run(xb, yb):
        n = len(yb)
        x0 = np.clip(xb, 1e-6, 1 - 1e-6)
        w0 = np.arctanh(2.0 * x0 - 1.0).astype(np.float32)
        onehot = tf.one_hot(yb, model.output_shape[-1])
        lo = np.zeros(n, np.float32)
        hi = np.full(n, np.inf, np.float32)
        c = np.full(n, initial_const, np.float32)
        best_l2 = np.full(n, np.inf, np.float32)
        best = xb.copy()
        for _ in range(binary_steps):
            w = tf.Variable(w0)
            opt = tf.keras.optimizers.Adam(lr)
            cc = tf.constant(c)
            success = np.zeros(n, bool)
            for _ in range(max_iter):
                with tf.GradientTape() as tape:
                    adv = (tf.tanh(w) + 1.0) / 2.0
                    logits = model(adv, training=False)
                    real = tf.reduce_sum(onehot * logits, -1)
                    other = tf.reduce_max(logits - 1e4 * onehot, -1)
                    f = tf.maximum(real - other, -confidence)
                    l2 = tf.reduce_sum(tf.square(adv - xb), axis=[1, 2, 3])
                    loss = tf.reduce_sum(l2 + cc * f)
                opt.apply_gradients([(tape.gradient(loss, w), w)])
                adv_np = adv.numpy()
                ok = np.argmax(logits.numpy(), -1) != yb
                l2_np = l2.numpy()
                improve = ok & (l2_np < best_l2)
                best_l2 = np.where(improve, l2_np, best_l2)
                best[improve] = adv_np[improve]
                success |= ok
            hi = np.where(success, np.minimum(hi, c), hi)
            lo = np.where(success, lo, np.maximum(lo, c))
            c = np.where(np.isinf(hi), c * 10.0, (lo + hi) / 2.0).astype(np.float32)
        return best

    return _batched(run, model, x, y, batch_size, progress, "C&W-L2")


_BPDA_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _BPDAStep:
    """One Adam ascent step on the model's cross-entropy, as a callable object (see
    `nnjpeg._predict.ModelCall` for why not a function)."""

    def __init__(self, model):
        self._logits = _predict.ModelCall(model)

    def __call__(self, x0, y, delta, m, v, t, eps, lr):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            logits = self._logits(tf.clip_by_value(x0 + delta, 0.0, 1.0))
            loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        g = tape.gradient(loss, delta)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * tf.square(g)
        m_hat, v_hat = m / (1.0 - 0.9**t), v / (1.0 - 0.999**t)
        delta = delta + lr * m_hat / (tf.sqrt(v_hat) + 1e-8)  # ascent: the loss is maximized
        delta = tf.clip_by_value(tf.clip_by_value(delta, -eps, eps), -x0, 1.0 - x0)
        fooled = tf.argmax(logits, -1, output_type=tf.int64) != y
        return delta, m, v, fooled


def _bpda_step(model):
    """The BPDA step for `model`, traced once per model and shape."""
    fn = _BPDA_STEPS.get(model)
    if fn is None:
        fn = _BPDA_STEPS[model] = tf.function(_BPDAStep(model), reduce_retracing=True)
    return fn


def bpda(model, x, y, eps: float, *, nb_iter: int = 1000, lr: float = 0.1, batch_size: int = 256,
         progress: bool = False) -> np.ndarray:
    """BPDA with the NN-JPEG paper's white-box settings (its Sec. 4.4: 1000 iterations, learning
    rate 0.1, the attack of Athalye et al., 2018): Adam maximizes the cross-entropy of the defended
    model, whose non-differentiable layers pass their straight-through (identity) gradient; the
    perturbation is projected onto the L-inf eps-ball and the image onto [0, 1] after every step.
    Each image keeps the first iterate that fools the model (else the last)."""
    _check_counts(nb_iter=nb_iter)
    lr = _checks.real("lr", lr, 0.0)
    step = _bpda_step(model)

    def run(xb, yb):
        x0 = tf.constant(xb)
        labels = tf.constant(yb)
        delta = tf.zeros_like(x0)
        m, v = tf.zeros_like(x0), tf.zeros_like(x0)
        best = xb.copy()
        done = np.zeros(len(xb), bool)
        for t in range(1, nb_iter + 1):
            previous = delta
            delta, m, v, fooled = step(x0, labels, delta, m, v, tf.constant(float(t)), tf.constant(eps, tf.float32),
                                       tf.constant(lr, tf.float32))
            new = fooled.numpy() & ~done  # fooled at the iterate before this step
            if new.any():
                best[new] = np.clip(xb[new] + previous.numpy()[new], 0.0, 1.0)
                done |= new
            if done.all():
                break
        last = np.clip(xb + delta.numpy(), 0.0, 1.0)
        best[~done] = last[~done]
        return best

    return _batched(run, model, x, y, batch_size, progress, "BPDA")


def autoattack(model, x, y, eps: float, *, batch_size: int = 250, square_queries: int = 5000,
               progress: bool = False) -> np.ndarray:
    """AutoAttack, standard version, L-inf (Croce and Hein, 2020), through IBM's Adversarial
    Robustness Toolbox: APGD-CE, APGD-T and Square, each on what the earlier ones left
    (`nnjpeg.art.autoattack`). Needs the `art` extra. `model` is attacked as given: wrap a randomized
    model in `EOT` first."""
    x, y = check_inputs(x, y)
    _check_labels(model, y)
    from . import art

    return art.autoattack(art.classifier(model, eot=0), x, y, eps, batch_size=batch_size,
                          square_queries=square_queries, progress=progress)


ATTACKS: dict[str, Callable] = {
    "fgsm": fgsm, "bim": bim, "ifgsm": bim, "pgd": pgd, "mifgsm": mifgsm, "ti-fgsm": ti_fgsm, "di-fgsm": di_fgsm,
    "deepfool": deepfool, "cw": cw_l2, "cw-linf": cw_linf, "autoattack": autoattack, "bpda": bpda,
}
UNBOUNDED = {"deepfool", "cw"}


def attack(name: str, model, x, y, eps: float | None = None, **kwargs) -> np.ndarray:
    """Runs attack `name` (a key of ATTACKS); `eps` is required for the L-inf ones and ignored by
    DeepFool and C&W-L2 (which minimize the L2 norm instead)."""
    if name not in ATTACKS:
        raise ValueError(f"Expected an attack in {sorted(ATTACKS)}. Received: {name!r}")
    if name in UNBOUNDED:
        return ATTACKS[name](model, x, y, **kwargs)
    if eps is None or not eps > 0:
        raise ValueError(f"Expected eps > 0 for attack {name!r}. Received: eps={eps!r}")
    return ATTACKS[name](model, x, y, eps, **kwargs)
