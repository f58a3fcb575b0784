"""The shipped weights: names, cards, sizes, and loading each by name in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

import nnjpeg
from nnjpeg import pretrained

REQUIRED = ["fmnist/classifier", "fmnist/surrogate-a", "fmnist/surrogate-b", "fmnist/surrogate-c", "fmnist/ensemble",
            "fmnist/vqunet", "fmnist/vqunet-classifier", "fmnist/non-vq-unet-classifier",
            "fmnist/defense-vae-classifier", "fmnist/jpeg75-classifier", "fmnist/fd-classifier", "fmnist/tvm-classifier",
            "fmnist/pgd-at", "fmnist/fast-at", "fmnist/free-at", "fmnist/nnjpeg-pgd-at", "fmnist/vqunet-adv-classifier",
            "fmnist/vqunet-adv-pgd-at", "fmnist/defense-vae", "fmnist/hfl-vae", "fmnist/hfl-vae-classifier",
            "fmnist/cyclegan", "fmnist/cyclegan-classifier", "fmnist/vqunet-mix", "fmnist/vqunet-mix-classifier",
            "fmnist/vqunet-oracle-classifier"]


def _reject_non_json(token):
    raise ValueError(f"metrics JSON holds {token}, which strict JSON parsers reject; write null")


def test_required_names_ship_with_cards_metrics_and_size_limit():
    names = pretrained.names()
    assert set(REQUIRED) <= set(names), sorted(set(REQUIRED) - set(names))
    for name in names:
        composed = pretrained.WEIGHTS / f"{name}{pretrained.COMPOSED}"
        if composed.is_file():  # two shipped models, assembled on loading: both must ship
            spec = json.loads(composed.read_text())
            paths = [composed.parent / spec["denoiser"], composed.parent / spec["classifier"]]
        else:
            paths = [pretrained.WEIGHTS / f"{name}.keras"]
        for path in paths:
            assert path.stat().st_size <= 25 * 2**20, (name, path.stat().st_size)
        metrics = pretrained.metrics(name)
        json.loads((pretrained.WEIGHTS / f"{name}.json").read_text(), parse_constant=_reject_non_json)
        assert metrics["command"].startswith("nnjpeg train ") and metrics["data_sha256"]
        card = pretrained.card(name)
        assert card.startswith(f"# {name.split('/')[1]} (fashion-mnist)") and metrics["command"] in card


def test_unknown_name():
    with pytest.raises(ValueError, match=r"Expected a pretrained model name in \[.*fmnist/classifier.*\]. Received: 'fmnist/nope'"):
        pretrained.load("fmnist/nope")


def test_an_install_without_weights_says_so(tmp_path, monkeypatch):
    # As a wheel built with -DNNJPEG_SHIP_WEIGHTS=OFF is installed: the weights folder holds none.
    monkeypatch.setattr(pretrained, "WEIGHTS", tmp_path)
    assert pretrained.names() == []
    with pytest.raises(ValueError, match=r"installed without its weights \(built with -DNNJPEG_SHIP_WEIGHTS=OFF; "
                                         r".* holds none\). Received: 'fmnist/classifier'"):
        pretrained.load("fmnist/classifier")


def test_every_classifier_loads_by_name_in_a_fresh_process():
    pytest.importorskip("keras")
    # A fresh interpreter: loading must register nnjpeg's layers itself, whatever was imported before.
    script = (
        "import json, sys, numpy as np\n"
        "import nnjpeg.pretrained as p\n"
        "x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)\n"
        "out = {n: list(p.load(n).predict(x, verbose=0).shape) for n in sys.argv[1:]}\n"
        "print(json.dumps(out))\n"
    )
    names = [n for n in pretrained.names() if n.endswith(("-classifier", "-at")) or n == "fmnist/ensemble"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(nnjpeg.__file__)), env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shapes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert shapes == {n: [3, 10] for n in names}
