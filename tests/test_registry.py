"""nnjpeg.registry: one row per shipped model, checked against the weights it describes."""

import json
import re

import pytest

from conftest import CHECKOUT_WEIGHTS, saved_configs
from nnjpeg import registry

MANIFEST = json.loads((CHECKOUT_WEIGHTS / "manifest.json").read_text())["models"]


def _layer_classes(name: str) -> set[str]:
    """Every Keras class named in `name`'s saved configs: its composition's and each weight file's."""
    return {c for t in saved_configs(name) for c in re.findall(r'"class_name": "(\w+)"', t)}


def test_the_registry_and_the_weights_name_the_same_models():
    assert sorted(registry.names()) == sorted(MANIFEST)
    assert len(set(registry.names())) == len(registry.names())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_each_rows_facts_match_its_saved_model(name):
    row = registry.get(name)
    # Randomized exactly where a layer draws at random per call (TVM's pixel dropout).
    assert row.randomized == ("TVM" in _layer_classes(name))
    # Its parts: the shipped models saved whole in one of the files its weights are made of.
    own = set(MANIFEST[name]["files"])
    parts = {other for other, e in MANIFEST.items()
             if other != name and "composition" not in e and len(e["files"]) == 1 and e["files"][0] in own}
    assert set(row.parts) == parts
    assert row.dataset == "fashion-mnist" and name.startswith("fmnist/")


def test_roles_targets_and_surrogates():
    assert registry.target("fashion-mnist") == "fmnist/classifier"
    assert registry.surrogates("fashion-mnist") == ("fmnist/surrogate-a", "fmnist/surrogate-b", "fmnist/surrogate-c")
    assert registry.surrogates("cifar10") == ()
    with pytest.raises(ValueError, match=r"Expected a dataset with a shipped target classifier, one of \['fashion-mnist'\], "
                                         r"or a target given as a .keras path \(--target\). Received: dataset 'cifar10'"):
        registry.target("cifar10")
    assert [m.name for m in registry.select(roles=("reference",))] == ["fmnist/vqunet-oracle-classifier"]
    assert {m.name for m in registry.select(roles=("denoiser",))} == {
        m.name for m in registry.MODELS if any(m.name in r.parts for r in registry.MODELS) and m.role == "denoiser"}
    assert registry.label("fmnist/ensemble") == "NN-JPEG ensemble" and registry.label("runs/mine.keras") == "runs/mine.keras"
    assert registry.randomized("fmnist/tvm-classifier") and not registry.randomized("runs/mine.keras")
    assert registry.find("runs/mine.keras") is None
    assert {m.name for m in registry.MODELS if m.training_compared} == {
        "fmnist/pgd-at", "fmnist/fast-at", "fmnist/free-at", "fmnist/ensemble"}


def test_bad_look_ups_are_refused():
    with pytest.raises(ValueError, match=r"Expected a shipped model's name, one of \['fmnist/classifier', .* "
                                         r"Received: 'fmnist/nothing'"):
        registry.get("fmnist/nothing")
    with pytest.raises(TypeError, match="Expected a model name \\(str\\). Received: int"):
        registry.get(3)
    with pytest.raises(ValueError, match=r"Expected roles from .* Received: \['judge'\]"):
        registry.select(roles=("judge",))
    with pytest.raises(ValueError, match=r"Expected role in .* Received: 'judge' for 'x'"):
        registry.Model("x", "x", "judge", "fashion-mnist")
