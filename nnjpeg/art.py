"""nnjpeg in IBM's Adversarial Robustness Toolbox (ART): the codec as an ART preprocessing defence,
the shipped models as ART classifiers, and AutoAttack run through them.

    >>> import nnjpeg.art
    >>> clf = nnjpeg.art.classifier("fmnist/ensemble")        # a TensorFlowV2Classifier
    >>> adv = nnjpeg.art.autoattack(clf, x, y, eps=0.1)       # ART's AutoAttack, L-inf

ART is an optional extra: `pip install "nnjpeg[art]"`. Everything here takes float32 images in
[0, 1] of shape (N, H, W, C) and integer labels, as the rest of nnjpeg does.

Gradients: a shipped defended model already holds its defense as layers whose gradient is the
straight-through (BPDA) estimate, so ART's attacks on `classifier(name)` are the adaptive attack.
`Compression` gives ART's own estimators the same defense and the same estimate: the identity
(Athalye et al., 2018, Sec. 4.1), as `nnjpeg.keras.Compression(gradient="identity")`.
"""

from __future__ import annotations

import warnings

import numpy as np

try:
    with warnings.catch_warnings():
        # ART warns on import that PyTorch is missing for two certification tools nnjpeg does not use.
        warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
        import art.attacks.evasion  # noqa: F401
        import art.estimators.classification  # noqa: F401
        from art.defences.preprocessor import Preprocessor
except ImportError as e:  # the optional extra is missing
    raise ImportError("nnjpeg.art needs IBM's Adversarial Robustness Toolbox: pip install 'nnjpeg[art]' "
                      f"(or adversarial-robustness-toolbox). Import failed with: {e}") from e

from . import _checks
from ._predict import ModelCall
from .codec import check_choice, check_mode, check_table, compress
from .tables import check_quality, standard_tables

__all__ = ["AUTOATTACK", "Compression", "autoattack", "autoattack_attacks", "classifier"]


class Compression(Preprocessor):
    """The codec as an ART preprocessing defence: `nnjpeg.compress` forward, the identity backward.

    With `table`, the JPEG-like round trip with that table (the NN-favored JPEG of the NN-JPEG
    paper, Sec. 3.2, with `color="rgb"` and `nnjpeg.nn_table(k)`); with `quality`, standard JPEG
    (YCbCr, the Annex K tables at that IJG quality, as `nnjpeg.jpeg`).

    Shape:
        x: (N, H, W, C) float32 in [0, 1], C in {1, 3}; returns the same shape and dtype.

    Args:
        table: (8, 8), (C, 8, 8), or with `color="ycbcr"` (2, 8, 8) as (luma, chroma); values > 0.
        quality: IJG quality 1...100 instead of a table (standard JPEG).
        color: "rgb" or "ycbcr" (with `quality`, "ycbcr" is implied).
        subsampling: "4:4:4", "4:2:2" or "4:2:0" (the last two with "ycbcr").
        threads: codec threads per call; None uses every core.
        apply_fit: also code the training data when an ART estimator is fitted.
        apply_predict: code the inputs at prediction (and attack) time.

    Raises:
        ValueError: neither or both of `table` and `quality`; a bad table, quality, colour,
            subsampling or threads (also on `set_params`); unknown parameter names in `set_params`.
    """

    params = ["table", "quality", "color", "subsampling", "threads"]

    def __init__(self, table=None, *, quality: int | None = None, color: str = "rgb", subsampling: str = "4:4:4",
                 threads: int | None = None, apply_fit: bool = False, apply_predict: bool = True):
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.table = None if table is None else np.asarray(table, dtype=np.float32)
        self.quality = quality
        self.color = "ycbcr" if quality is not None else color
        self.subsampling = subsampling
        self.threads = threads
        self._check_params()

    def set_params(self, **kwargs) -> None:
        unknown = sorted(set(kwargs) - set(self.params))
        if unknown:
            raise ValueError(f"Expected parameters among {self.params}. Received: {unknown}")
        if "table" in kwargs and kwargs["table"] is not None:
            kwargs["table"] = np.asarray(kwargs["table"], dtype=np.float32)
        super().set_params(**kwargs)

    def _check_params(self) -> None:
        if (self.table is None) == (self.quality is None):
            raise ValueError("Expected exactly one of table and quality. "
                             f"Received: table={'None' if self.table is None else 'an array'}, quality={self.quality!r}")
        if self.quality is not None:
            check_quality(self.quality)
        check_choice("color", self.color, ("rgb", "ycbcr"))
        check_mode(self.color, self.subsampling)
        if self.table is not None:
            # Which shapes are valid depends on the images' channels, known at the call: one must fit.
            errors = []
            for channels in (3, 1):
                try:
                    check_table(self.table, channels, self.color)
                    break
                except ValueError as e:
                    errors.append(e)
            else:
                raise errors[0]
        if self.threads is not None:
            _checks.integer("threads", self.threads, 1, 2**31 - 1, or_none=True)

    def _tables(self, channels: int):
        if self.quality is None:
            return self.table
        luma, chroma = standard_tables(self.quality)
        return luma if channels == 1 else np.stack([luma, chroma])

    def __call__(self, x: np.ndarray, y=None):
        x = _checks.unit_images("x", x, channels=(1, 3))
        color = "rgb" if x.shape[-1] == 1 else self.color  # grey images have no colour transform
        subsampling = self.subsampling if color == "ycbcr" else "4:4:4"
        return compress(x, self._tables(x.shape[-1]), color=color, subsampling=subsampling, threads=self.threads), y

    def estimate_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA: the round trip's gradient taken as the identity."""
        return grad

    def fit(self, x, y=None, **kwargs) -> None:
        """Nothing to fit: the table is given."""


def _eot_samples(model) -> int:
    """Draws to average for a randomized model (one holding TVM's random pixel dropout), else 0."""
    from nnjpeg.models.defenses import TVM

    def walk(layer):
        yield layer
        for sub in getattr(layer, "layers", []):
            yield from walk(sub)

    return 4 if any(isinstance(layer, TVM) for layer in walk(model)) else 0


def _classifier_class():
    """ART's TensorFlowV2Classifier whose `predict` runs one traced function for every batch size.
    ART's own calls a `tf.function` on whatever array it is handed (all of it at once), and
    AutoAttack hands it a different number of surviving images each time: TensorFlow traced the
    model again for each and warned about it."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    class Classifier(TensorFlowV2Classifier):
        def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs) -> np.ndarray:
            if training_mode:
                return super().predict(x, batch_size=batch_size, training_mode=True, **kwargs)
            if getattr(self, "_logits", None) is None:
                spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
                self._logits = tf.function(ModelCall(self._model), input_signature=[spec])
            x_pre, _ = self._apply_preprocessing(x, y=None, fit=False)
            x_pre = np.asarray(x_pre, dtype=np.float32)
            out = [self._logits(tf.constant(x_pre[s : s + batch_size])).numpy() for s in range(0, len(x_pre), batch_size)]
            preds = np.concatenate(out) if out else np.zeros((0, self.nb_classes), np.float32)
            return self._apply_postprocessing(preds=preds, fit=False)

    return Classifier


class _LossAndGradient:
    """Per-example losses of the model's logits and their gradient with respect to the images, in
    one pass; a callable object for `tf.function` (see `nnjpeg._predict.ModelCall`)."""

    def __init__(self, model, loss):
        self._logits = ModelCall(model)
        self._loss = loss

    def __call__(self, x, y):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self._loss(y, self._logits(x))
        return loss, tape.gradient(loss, x)


def _apgd_loss(loss_type: str):
    """ART's APGD losses on one-hot labels y and logits z, vectorized: "cross_entropy", and
    "difference_logits_ratio" as ART 1.20 writes it, -(z_y - z_i) / (z_(1) - z_(3)) with z_i the
    largest logit other than z_y and z_(k) the k-th largest (with a Python loop over the images)."""
    import tensorflow as tf

    if loss_type == "cross_entropy":
        return lambda y, z: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)

    def dlr(y, z):
        top, index = tf.math.top_k(z, 3)
        label = tf.argmax(y, -1, output_type=tf.int32)
        other = tf.where(index[:, 0] != label, top[:, 0], top[:, 1])
        return -(tf.gather(z, label, batch_dims=1) - other) / (top[:, 0] - top[:, 2])

    return dlr


def _one_pass_class():
    """The classifier that `autoattack_attacks` gives ART's APGD (see `_answer_in_one_pass`)."""
    import tensorflow as tf
    from art.utils import check_and_transform_label_format

    class OnePassClassifier(_classifier_class()):
        def __init__(self, model, loss_type: str, **kwargs):
            super().__init__(model, **kwargs)
            spec = [tf.TensorSpec((None, *self.input_shape), tf.float32),
                    tf.TensorSpec((None, self.nb_classes), tf.float32)]
            self._pass = tf.function(_LossAndGradient(model, _apgd_loss(loss_type)), input_signature=spec)
            self._last = None  # (x, y, per-example loss, gradient) of the last pass

        def _loss_and_gradient(self, x, y):
            x = np.asarray(x, dtype=np.float32)
            y = check_and_transform_label_format(y, self.nb_classes).astype(np.float32)
            last = self._last
            same = last is not None and last[0].shape == x.shape and last[1].shape == y.shape
            if not (same and np.array_equal(last[0], x) and np.array_equal(last[1], y)):
                loss, grad = self._pass(tf.constant(x), tf.constant(y))
                last = self._last = x.copy(), y, loss.numpy(), grad.numpy()
            return last[2], last[3]

        def compute_loss(self, x, y, reduction: str = "none", training_mode: bool = False, **kwargs) -> np.ndarray:
            if training_mode:
                return super().compute_loss(x, y, reduction=reduction, training_mode=True, **kwargs)
            loss = self._loss_and_gradient(x, y)[0]
            return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]

        def loss_gradient(self, x, y, training_mode: bool = False, **kwargs) -> np.ndarray:
            if training_mode:
                return super().loss_gradient(x, y, training_mode=True, **kwargs)
            return self._loss_and_gradient(x, y)[1] / len(x)  # the gradient of the batch's mean, as ART's

    return OnePassClassifier


def _answer_in_one_pass(attack) -> None:
    """ART's APGD wraps the model in a TensorFlowV2Classifier of its own, with its loss, whose
    `loss_gradient` and `compute_loss` run the model eagerly, one forward pass each; yet each step
    asks for the loss at the new point and the next for the gradient at the same point. Where that
    classifier has no preprocessing (other than the identity standardisation), it is replaced by
    one that answers both from one traced forward+backward and keeps the last answer: a step costs
    one forward+backward. The attack itself is ART's, unchanged. (For a randomized model, the loss and
    the gradient at a point then come from the same draws.)"""
    from art.preprocessing.standardisation_mean_std import StandardisationMeanStd, StandardisationMeanStdTensorFlow

    est = attack.estimator
    identity = all(isinstance(op, (StandardisationMeanStd, StandardisationMeanStdTensorFlow))
                   and np.all(op.mean == 0) and np.all(op.std == 1) for op in est.preprocessing_operations)
    if not identity or est.postprocessing_defences:
        return
    attack._estimator = _one_pass_class()(est.model, attack.loss_type, nb_classes=est.nb_classes,
                                          input_shape=est.input_shape, loss_object=est.loss_object,
                                          clip_values=est.clip_values)


def classifier(model, *, eot: int | None = None, preprocessing_defences=None, input_shape=None,
               nb_classes: int | None = None):
    """A shipped model (by name) or any Keras classifier returning logits, as an ART
    `TensorFlowV2Classifier` with clip values (0, 1).

    Args:
        model: a name from `nnjpeg.pretrained.names()`, e.g. "fmnist/ensemble", or a `keras.Model`.
        eot: randomized defenses: average the logits over this many draws (`nnjpeg.attacks.EOT`),
            so that ART's gradients are averaged over the randomness too. None: 4 for models holding
            TVM (the shipped "fmnist/tvm-classifier"), 0 for the others; 0: none.
        preprocessing_defences: ART preprocessors in front of the model (e.g. `Compression`).
        input_shape, nb_classes: default to the model's own.

    Returns:
        An `art.estimators.classification.TensorFlowV2Classifier` (whose `predict` traces the model
        once for every batch size).

    Raises:
        ValueError: an unknown name, or eot < 0.
        TypeError: `model` neither a name nor a Keras model.
    """
    import keras

    from . import pretrained
    from .adaptive import EOT

    if isinstance(model, str):
        model = pretrained.load(model)
    elif not isinstance(model, keras.Model):
        raise TypeError(f"Expected a pretrained model name or a keras.Model. Received: {type(model).__name__}")
    inner = model.model if isinstance(model, EOT) else model  # an EOT model averages draws already
    samples = (0 if inner is not model else _eot_samples(model)) if eot is None else _checks.integer("eot", eot, 0)
    attacked = EOT(model, samples) if samples > 1 else model
    return _classifier_class()(
        attacked, nb_classes=nb_classes or int(inner.output_shape[-1]),
        input_shape=tuple(input_shape or inner.input_shape[1:]),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True), clip_values=(0.0, 1.0),
        preprocessing_defences=preprocessing_defences)


AUTOATTACK = ("apgd-ce", "apgd-t", "square")


def autoattack_attacks(estimator, eps: float, *, batch_size: int = 250, square_queries: int = 5000,
                       verbose: bool = False, one_pass: bool = True) -> list:
    """The standard AutoAttack of Croce and Hein (2020, Sec. 5) in ART's parts, L-inf: APGD on the
    cross-entropy (100 iterations, one start), APGD on the targeted DLR loss (100 iterations, the
    9 classes after the true one as targets), and the Square attack (`square_queries` queries).
    ART has no FAB, the standard version's third attack; its role there (a minimum-norm attack that
    finds what the two APGDs miss) is left to the others.

    ART's APGD asks its classifier for the loss at each new point, then for the gradient at the same
    point. With `one_pass` (and an estimator without preprocessing), the APGDs ask a classifier
    that answers both from one traced forward+backward and keeps the last answer, one pass a step;
    without it, ART's own, which runs the model eagerly for each. The attacks are ART's either way."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    step = 2.0 * eps  # APGD halves its step from there as progress stalls (Croce and Hein, Sec. 3)
    apgd = [AutoProjectedGradientDescent(estimator, norm=np.inf, eps=eps, eps_step=step, max_iter=100,
                                         targeted=targeted, nb_random_init=1, batch_size=batch_size, loss_type=loss,
                                         verbose=verbose)
            for targeted, loss in ((False, "cross_entropy"), (True, "difference_logits_ratio"))]
    if one_pass:
        for attack in apgd:
            _answer_in_one_pass(attack)
    return [*apgd, SquareAttack(estimator, norm=np.inf, eps=eps, max_iter=square_queries, p_init=0.8, nb_restarts=1,
                                batch_size=batch_size, verbose=verbose)]


def autoattack(estimator, x, y, eps: float, *, batch_size: int = 250, square_queries: int = 5000,
               progress: bool = False) -> np.ndarray:
    """AutoAttack, standard version, L-inf (Croce and Hein, 2020), from ART's attacks
    (`autoattack_attacks`), in the standard order: APGD-CE, then APGD-T once per target class,
    then Square, each on the images that every earlier one left correctly classified. An image
    counts as robust only if it survives all of them. Returns adversarial images within `eps`
    (L-inf) of `x` (the input itself where nothing fooled the model).

    Args:
        estimator: an ART classifier, e.g. `classifier("fmnist/ensemble")`, or a Keras model
            (wrapped with `classifier`).
        x: (N, H, W, C) float32 in [0, 1].
        y: (N,) integer labels.
        eps: L-inf budget, > 0.
        batch_size: images per attack batch.
        square_queries: Square attack queries per image.
        progress: show ART's progress bars.

    Raises:
        TypeError, ValueError: bad images, labels or settings, named.
    """
    x = _checks.unit_images("x", x, empty=True)
    y = np.asarray(y)
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ValueError(f"Expected integer labels of shape ({len(x)},). Received: dtype={y.dtype}, shape={y.shape}")
    eps = _checks.real("eps", eps, 0.0)
    if eps == 0.0:
        raise ValueError("Expected eps > 0. Received: eps=0.0")
    _checks.integer("batch_size", batch_size, 1)
    _checks.integer("square_queries", square_queries, 1)
    if not hasattr(estimator, "loss_gradient"):
        estimator = classifier(estimator)
    adv = x.copy()
    if len(x) == 0:
        return adv
    classes = estimator.nb_classes
    if classes < 3:
        raise ValueError("Expected a classifier of 3 classes or more (the DLR loss of APGD-T ranks the three largest "
                         f"logits). Received: {classes} classes")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"Expected labels in 0...{classes - 1}. Received: min={y.min()}, max={y.max()}")
    apgd_ce, apgd_t, square = autoattack_attacks(estimator, eps, batch_size=batch_size, square_queries=square_queries,
                                                 verbose=progress)
    onehot = np.eye(classes, dtype=np.float32)
    runs = [(apgd_ce, 0), *((apgd_t, shift) for shift in range(1, classes)), (square, 0)]
    for attack, shift in runs:
        alive = np.flatnonzero(np.argmax(estimator.predict(adv, batch_size=batch_size), 1) == y)
        if not len(alive):
            break
        # Untargeted attacks get the true labels; APGD-T the class `shift` places after the true one.
        labels = onehot[(y[alive] + shift) % classes]
        candidate = attack.generate(x[alive], y=labels)
        candidate = np.clip(np.clip(candidate, x[alive] - eps, x[alive] + eps), 0.0, 1.0).astype(np.float32)
        fooled = np.argmax(estimator.predict(candidate, batch_size=batch_size), 1) != y[alive]
        adv[alive[fooled]] = candidate[fooled]
    return adv
