"""The shipped models as data: one row per pretrained name, saying what it is for.

    >>> from nnjpeg import registry
    >>> registry.get("fmnist/tvm-classifier").randomized     # attacked white-box through EOT
    True
    >>> registry.target("fashion-mnist"), registry.surrogates("fashion-mnist")
    ('fmnist/classifier', ('fmnist/surrogate-a', 'fmnist/surrogate-b', 'fmnist/surrogate-c'))

A fact about a model lives in its row here and nowhere else: the evaluation, the report and the demo
read a model's label, role, randomness and parts from it, never from its name. The weights behind
each row are in `nnjpeg.pretrained` (its manifest); a test checks that both list the same names. A
new shipped model is one row here, its recipe and its weights.
"""

from __future__ import annotations

import dataclasses

ROLES = ("target", "surrogate", "defense", "reference", "denoiser")


@dataclasses.dataclass(frozen=True)
class Model:
    """One shipped model.

    Attributes:
        name: its pretrained name, e.g. "fmnist/ensemble".
        label: what tables call it, e.g. "NN-JPEG ensemble".
        role: one of `ROLES`: "target" (the undefended classifier that gray-box attacks are made
            on), "surrogate" (a classifier that black-box attacks are transferred from), "defense"
            (image -> logits, defended), "reference" (image -> logits, but trained on the
            surrogates' own examples: it shows a ceiling, it is no defense) or "denoiser" (a part,
            image -> image).
        dataset: the dataset it was trained on, as `nnjpeg.datasets.load` names it.
        paper_row: the row of the papers' tables it answers (e.g. "Proposed", "Defense_VAE"), or None.
        randomized: its output is random per call (TVM's pixel dropout): white-box attacks average
            gradients over draws (`nnjpeg.attacks.EOT`).
        training_compared: its training cost is compared in NN-JPEG's Table 1 (adversarial training,
            the ensemble's noisy fine-tuning chain).
        parts: the shipped models it is built from, e.g. a denoiser and its classifier.
    """

    name: str
    label: str
    role: str
    dataset: str
    paper_row: str | None = None
    randomized: bool = False
    training_compared: bool = False
    parts: tuple[str, ...] = ()

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Expected role in {ROLES}. Received: {self.role!r} for {self.name!r}")


def _fmnist(name: str, label: str, role: str = "defense", **facts) -> Model:
    return Model(f"fmnist/{name}", label, role, "fashion-mnist", **facts)


# The tables' order: the target first, then the defenses as the report lists them.
MODELS: tuple[Model, ...] = (
    _fmnist("classifier", "none", "target", paper_row="No Defense"),
    _fmnist("pgd-at", "PGD-AT", training_compared=True),
    _fmnist("fast-at", "Fast-AT", paper_row="Fast", training_compared=True),
    _fmnist("free-at", "Free-AT", paper_row="Free", training_compared=True),
    _fmnist("jpeg75-classifier", "JPEG (75)", paper_row="JPEG (75)", parts=("fmnist/classifier",)),
    _fmnist("fd-classifier", "FD", paper_row="FD", parts=("fmnist/classifier",)),
    _fmnist("tvm-classifier", "TVM", paper_row="TVM", randomized=True, parts=("fmnist/classifier",)),
    _fmnist("ensemble", "NN-JPEG ensemble", paper_row="Proposed", training_compared=True,
            parts=("fmnist/classifier",)),
    _fmnist("vqunet-classifier", "VQUNet", paper_row="VQUNet", parts=("fmnist/vqunet",)),
    _fmnist("vqunet-k256-classifier", "VQUNet (K=256)", parts=("fmnist/vqunet-k256",)),
    _fmnist("non-vq-unet-classifier", "U-Net (no VQ)", parts=("fmnist/non-vq-unet",)),
    _fmnist("vqunet-adv-classifier", "VQUNet-adv", parts=("fmnist/vqunet-adv",)),
    _fmnist("vqunet-mix-classifier", "VQUNet-mix", parts=("fmnist/vqunet-mix",)),
    _fmnist("vqunet-oracle-classifier", "VQUNet-oracle", "reference"),
    _fmnist("defense-vae-classifier", "Defense-VAE", paper_row="Defense_VAE", parts=("fmnist/defense-vae",)),
    _fmnist("hfl-vae-classifier", "HFL-VAE", paper_row="HFL_VAE", parts=("fmnist/hfl-vae",)),
    _fmnist("cyclegan-classifier", "Defense-CycleGAN", paper_row="Cycle_GAN", parts=("fmnist/cyclegan",)),
    _fmnist("nnjpeg-pgd-at", "NN-JPEG + PGD-AT"),
    _fmnist("vqunet-adv-pgd-at", "VQUNet-adv + PGD-AT", parts=("fmnist/vqunet-adv", "fmnist/pgd-at")),
    _fmnist("surrogate-a", "surrogate A", "surrogate"),
    _fmnist("surrogate-b", "surrogate B", "surrogate"),
    _fmnist("surrogate-c", "surrogate C", "surrogate"),
    _fmnist("vqunet", "VQUNet denoiser", "denoiser"),
    _fmnist("vqunet-k256", "VQUNet denoiser (K=256)", "denoiser"),
    _fmnist("non-vq-unet", "U-Net denoiser (no VQ)", "denoiser"),
    _fmnist("vqunet-adv", "VQUNet-adv denoiser", "denoiser"),
    _fmnist("vqunet-mix", "VQUNet-mix denoiser", "denoiser"),
    _fmnist("defense-vae", "Defense-VAE denoiser", "denoiser"),
    _fmnist("hfl-vae", "HFL-VAE denoiser", "denoiser"),
    _fmnist("cyclegan", "Defense-CycleGAN generator", "denoiser"),
)

_BY_NAME = {m.name: m for m in MODELS}


def names() -> list[str]:
    """Every row's name, in the tables' order."""
    return [m.name for m in MODELS]


def get(name: str) -> Model:
    """The row of `name`.

    Raises:
        TypeError: `name` is not a string.
        ValueError: no shipped model is called `name`.
    """
    if not isinstance(name, str):
        raise TypeError(f"Expected a model name (str). Received: {type(name).__name__}")
    if name not in _BY_NAME:
        raise ValueError(f"Expected a shipped model's name, one of {names()}. Received: {name!r}")
    return _BY_NAME[name]


def find(name: str) -> Model | None:
    """The row of `name`, or None for a model that is not shipped (a user's .keras file)."""
    return _BY_NAME.get(name)


def label(name: str) -> str:
    """What tables call `name`: its row's label, or the name itself for a model without a row."""
    row = _BY_NAME.get(name)
    return row.label if row is not None else name


def randomized(name: str) -> bool:
    """Whether `name`'s output is random per call (False for a model without a row)."""
    row = _BY_NAME.get(name)
    return row is not None and row.randomized


def select(*, dataset: str | None = None, roles=None) -> list[Model]:
    """The rows of `dataset` (any when None) whose role is in `roles` (any when None), in order."""
    if roles is not None:
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ValueError(f"Expected roles from {ROLES}. Received: {unknown}")
    return [m for m in MODELS if (dataset is None or m.dataset == dataset) and (roles is None or m.role in roles)]


def target(dataset: str) -> str:
    """The shipped target classifier of `dataset`.

    Raises:
        ValueError: none ships for `dataset`; the message says which datasets have one, and that a
            `.keras` path can be given instead.
    """
    rows = select(dataset=dataset, roles=("target",))
    if not rows:
        have = sorted({m.dataset for m in select(roles=("target",))})
        raise ValueError(f"Expected a dataset with a shipped target classifier, one of {have}, or a target given "
                         f"as a .keras path (--target). Received: dataset {dataset!r}")
    return rows[0].name


def surrogates(dataset: str) -> tuple[str, ...]:
    """The shipped surrogate classifiers of `dataset` (empty where none ship)."""
    return tuple(m.name for m in select(dataset=dataset, roles=("surrogate",)))
