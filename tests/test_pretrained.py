"""The pretrained models: the manifest, cards and metrics in the package; each name loading to the
model it was before its weights were stored once each; and where the weight files come from (a
folder, a checkout, the cache, a download from a mirror on 127.0.0.1)."""

import functools
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnjpeg import composition, hub, pretrained
from conftest import saved_configs
from nnjpeg.cli import main

CHECKOUT = Path(__file__).resolve().parents[1] / "models" / "weights"
REFERENCE = Path(__file__).parent / "data" / "pretrained_reference.npz"
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
        for entry in pretrained.files(name):
            assert entry.size <= 25 * 2**20, (name, entry)
        metrics = pretrained.metrics(name)
        json.loads((pretrained.WEIGHTS / f"{name}.json").read_text(), parse_constant=_reject_non_json)
        assert metrics["command"].startswith("nnjpeg train ") and metrics["data_sha256"]
        card = pretrained.card(name)
        assert card.startswith(f"# {name.split('/')[1]} (fashion-mnist)") and metrics["command"] in card


def test_the_package_manifest_is_the_checkouts_and_indexes_its_weights_folder():
    assert pretrained.manifest() == pretrained.manifest(CHECKOUT)
    assert pretrained.build_manifest(CHECKOUT, pretrained.manifest()["url"]) == pretrained.manifest(CHECKOUT)
    # The package holds no weight file of its own.
    assert not list(pretrained.WEIGHTS.rglob("*.keras"))


def _tensors(path: Path) -> dict[str, tuple[str, int]]:
    """Per tensor of a `.keras` file of 4 KiB or more (small ones, zero biases, may coincide): its
    SHA-256 and size in bytes."""
    import h5py

    out = {}
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.nbytes >= 4096:
                out[name] = (hashlib.sha256(np.ascontiguousarray(obj[()]).tobytes()).hexdigest(), obj.nbytes)
        h5.visititems(visit)
    return out


def test_each_part_is_stored_once_and_no_optimizer_state():
    # A composition shares whole nested models; what a file may still share with another is a few
    # tensors that training left as they were (VQUNet-oracle's codebook-usage counts): at most 1 %.
    owner = {}
    for rel in pretrained.manifest()["files"]:
        tensors = _tensors(CHECKOUT / rel)
        assert tensors and not [name for name in tensors if "optimizer" in name], rel
        repeated = {name: owner[digest] for name, (digest, _) in tensors.items() if digest in owner}
        repeated_bytes = sum(tensors[name][1] for name in repeated)
        assert repeated_bytes <= 0.01 * sum(size for _, size in tensors.values()), (rel, repeated)
        owner.update({digest: rel for digest, _ in tensors.values()})


def test_every_name_loads_to_the_model_it_was_in_a_fresh_process(tmp_path):
    pytest.importorskip("keras")
    from nnjpeg import datasets

    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    # A fresh interpreter in another folder: loading registers nnjpeg's layers itself, and the
    # weights come from NNJPEG_WEIGHTS_DIR (this checkout's, set by conftest.py).
    script = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(REFERENCE.parent)!r})\n"
        "import pretrained_reference as ref\n"
        "from nnjpeg import datasets, pretrained\n"
        "(_, _), (x, _) = datasets.load_fashion_mnist(download=False)\n"
        "images = x[:64].astype(np.float32)[..., None] / 255.0\n"
        "out = {}\n"
        "for name in pretrained.names():\n"
        "    model = pretrained.load(name)\n"
        "    pad = 0 if ref.model_input_side(model) == 28 else 2\n"
        "    batch = ref.padded(images[:8], pad) if pad else images\n"
        "    out[name + '/digest'] = np.array(ref.weights_digest(model))\n"
        "    out[name + '/outputs'] = model.predict(batch, verbose=0)\n"
        "    out[name + '/again'] = model.predict(batch, verbose=0)\n"
        "np.savez(sys.argv[1], **out)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "now.npz")], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    now, before = np.load(tmp_path / "now.npz"), np.load(REFERENCE)
    names = sorted(k[: -len("/digest")] for k in before.files if k.endswith("/digest"))
    assert names == pretrained.names()
    randomized = []
    for name in names:
        assert str(now[f"{name}/digest"]) == str(before[f"{name}/digest"]), name  # the same tensors, bit for bit
        if not np.array_equal(now[f"{name}/outputs"], now[f"{name}/again"]):
            randomized.append(name)  # a new random draw per call (TVM's pixel mask): its tensors say it all
            continue
        # Same weights, same graph: the outputs agree up to the CPU's choice of kernels.
        if not _quantizes(name):
            np.testing.assert_allclose(now[f"{name}/outputs"], before[f"{name}/outputs"], rtol=1e-5, atol=1e-5,
                                       err_msg=name)
            continue
        # A vector quantizer picks the nearest code: where two codes are nearly as near, another CPU's
        # kernels (another summation order) can pick the other one for an image, and that image's
        # logits move a little. The rest agree; a model put together wrongly would move them all.
        off = np.abs(now[f"{name}/outputs"] - before[f"{name}/outputs"]).max(axis=1)
        moved = off > 1e-5 + 1e-5 * np.abs(before[f"{name}/outputs"]).max(axis=1)
        assert moved.sum() <= 4 and off.max() < 0.25, (name, np.flatnonzero(moved), off.max())
    assert randomized == ["fmnist/tvm-classifier"]


def _quantizes(name: str) -> bool:
    """Whether `name` holds a VQUNet that quantizes (read from its saved configs)."""
    return any('"class_name": "VQUNet"' in t and '"vq": true' in t for t in saved_configs(name))


def test_unknown_name():
    with pytest.raises(ValueError, match=r"Expected a pretrained model name in \[.*fmnist/classifier.*\]. Received: 'fmnist/nope'"):
        pretrained.load("fmnist/nope")
    with pytest.raises(ValueError, match=r"Received: 3"):
        pretrained.files(3)


def test_a_checkout_is_found_from_the_working_directory_without_any_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("NNJPEG_WEIGHTS_DIR")
    monkeypatch.setenv("NNJPEG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(CHECKOUT.parents[1] / "tests")  # below the checkout: its parents are searched
    assert pretrained.locate("fmnist/fd-classifier") == {"fmnist/classifier.keras": CHECKOUT / "fmnist/classifier.keras"}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hub.WeightsUnavailable, match=r"fmnist/classifier.keras.*NNJPEG_OFFLINE"):
        pretrained.locate("fmnist/classifier")
    # A checkout of another version (its manifest differs from the package's) is not taken.
    other = tmp_path / "other"
    (other / "models" / "weights").mkdir(parents=True)
    (other / "pyproject.toml").write_text("")
    (other / "models" / "weights" / "manifest.json").write_text('{"format": "nnjpeg.weights/1"}\n')
    monkeypatch.chdir(other / "models")
    assert pretrained.checkout_weights() is None


class _Mirror(http.server.SimpleHTTPRequestHandler):
    """A weights folder served as a mirror; every request path is recorded."""

    def log_message(self, *args):
        self.server.requests.append(self.path)


@pytest.fixture
def mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Mirror, directory=str(CHECKOUT)))
    server.timeout = 10
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def no_local_weights(tmp_path, monkeypatch):
    """As on a user's machine: no weights folder, no checkout, an empty cache, downloads allowed."""
    monkeypatch.delenv("NNJPEG_WEIGHTS_DIR")
    monkeypatch.delenv("NNJPEG_OFFLINE")
    monkeypatch.setenv("NNJPEG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home" / "weights"


def test_download_from_a_mirror_then_the_cache_then_offline(mirror, no_local_weights, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    monkeypatch.setenv("NNJPEG_WEIGHTS_URL", f"http://127.0.0.1:{mirror.server_address[1]}/")
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    model = pretrained.load("fmnist/classifier")
    cached = no_local_weights / "fmnist" / "classifier.keras"
    assert hub.sha256(cached) == pretrained.manifest()["files"]["fmnist/classifier.keras"]["sha256"]
    assert mirror.requests == ["/fmnist/classifier.keras"]
    want = pretrained.load("fmnist/classifier", path=CHECKOUT).predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    # fd-classifier is the same classifier behind a layer: a cache hit, no request.
    pretrained.load("fmnist/fd-classifier")
    assert mirror.requests == ["/fmnist/classifier.keras"]
    # Offline, a tampered cache file is refused; nothing is requested.
    monkeypatch.setenv("NNJPEG_OFFLINE", "1")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 1
    cached.write_bytes(bytes(data))
    with pytest.raises(hub.IntegrityError, match=r"fmnist/classifier.keras"):
        pretrained.load("fmnist/classifier")
    # Offline with an empty cache: the message names NNJPEG_OFFLINE.
    monkeypatch.setenv("NNJPEG_HOME", str(tmp_path / "empty"))
    with pytest.raises(hub.WeightsUnavailable, match=r"NNJPEG_OFFLINE"):
        pretrained.load("fmnist/classifier")
    assert mirror.requests == ["/fmnist/classifier.keras"]
    # Online again, a mirror without the file: a 404 that names the variables to set.
    monkeypatch.delenv("NNJPEG_OFFLINE")
    monkeypatch.setenv("NNJPEG_WEIGHTS_URL", f"http://127.0.0.1:{mirror.server_address[1]}/nothing/")
    with pytest.raises(hub.WeightsUnavailable, match=r"HTTP 404.*NNJPEG_WEIGHTS_URL"):
        pretrained.load("fmnist/classifier")
    assert not list((tmp_path / "empty").rglob("*.keras")) and not list((tmp_path / "empty").rglob("*.part"))


def test_a_folder_never_downloads(no_local_weights, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    monkeypatch.setenv("NNJPEG_WEIGHTS_URL", "http://127.0.0.1:9/")  # nothing listens there
    assert pretrained.load("fmnist/classifier", path=CHECKOUT).name
    monkeypatch.setenv("NNJPEG_WEIGHTS_DIR", str(tmp_path / "missing"))
    with pytest.raises(hub.WeightsUnavailable, match=r"Expected NNJPEG_WEIGHTS_DIR to name a weights folder .*"
                                                     r"Received: '.*missing', which is not a folder"):
        pretrained.load("fmnist/classifier")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("NNJPEG_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(hub.WeightsUnavailable, match=r"fmnist/classifier.keras.*empty"):
        pretrained.load("fmnist/classifier")
    assert not no_local_weights.exists()


def test_weights_command_fetches_into_a_folder_and_verifies_it(tmp_path, capsys):
    dest = tmp_path / "dest"
    assert main(["weights", "fetch", "fmnist/fd-classifier", "fmnist/classifier", "--dest", str(dest)]) == 0
    assert f"1 file, 1.3 MB, checked, in {dest}" in capsys.readouterr().out
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["fmnist/classifier.keras"]
    assert main(["weights", "verify", "fmnist/fd-classifier", "--path", str(dest)]) == 0
    assert "1 of 1 files ok" in capsys.readouterr().out
    data = bytearray((dest / "fmnist" / "classifier.keras").read_bytes())
    data[100] ^= 1
    (dest / "fmnist" / "classifier.keras").write_bytes(bytes(data))
    assert main(["weights", "verify", "fmnist/classifier", "--path", str(dest)]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "0 of 1 files ok" in out
    assert main(["weights", "verify", "fmnist/surrogate-a", "--path", str(dest)]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(["weights", "list"]) == 0
    assert "fmnist/vqunet-mix-classifier" in capsys.readouterr().out
    assert main(["weights", "fetch", "fmnist/nope"]) == 2
    assert "Expected a pretrained model name" in capsys.readouterr().err


def _small_weights(folder: Path):
    """A weights folder of one tiny classifier (with its card) and a JPEG defense in front of it."""
    import keras

    from nnjpeg.models import build_classifier
    from nnjpeg.models.defenses import jpeg_classifier

    w = folder / "toy"
    w.mkdir(parents=True)
    clf = build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1)
    clf.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    clf.fit(np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int32), verbose=0)  # optimizer slots to strip
    clf.save(w / "clf.keras")
    jpeg_classifier(keras.saving.load_model(w / "clf.keras"), 50).save(w / "jpeg.keras")
    for name in ("clf", "jpeg"):
        (w / f"{name}.md").write_text(f"# {name}\n")
    return w


def test_index_stores_a_new_composed_model_as_its_parts(tmp_path):
    import keras

    pretrained.register_serializables()
    w = _small_weights(tmp_path / "weights")
    x = np.random.default_rng(3).random((3, 28, 28, 1)).astype(np.float32)
    want = keras.saving.load_model(w / "jpeg.keras").predict(x, verbose=0)
    spec = pretrained.write_manifest(tmp_path / "weights", "http://127.0.0.1:9/")
    assert sorted(p.name for p in w.iterdir()) == ["clf.keras", "clf.md", "jpeg.compose.json", "jpeg.md"]
    assert spec["models"]["toy/jpeg"] == {"composition": "toy/jpeg.compose.json", "files": ["toy/clf.keras"]}
    assert composition.parts(w / "jpeg.compose.json") == {"wrn_classifier": "clf.keras"}
    model = composition.load(w / "jpeg.compose.json")
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    # Indexing again changes nothing; a stray file or a card without weights is refused.
    assert pretrained.write_manifest(tmp_path / "weights", "http://127.0.0.1:9/") == spec
    (w / "stray.keras").write_bytes((w / "clf.keras").read_bytes())
    with pytest.raises(ValueError, match=r"unused \['toy/stray.keras'\], missing \[\]"):
        pretrained.write_manifest(tmp_path / "weights", "http://127.0.0.1:9/")
    (w / "stray.keras").unlink()
    (w / "lone.md").write_text("# lone\n")
    with pytest.raises(ValueError, match=r"Expected toy/lone.keras or toy/lone.compose.json beside the card"):
        pretrained.build_manifest(tmp_path / "weights", "http://127.0.0.1:9/")


def test_composition_writes_new_parts_once_and_refuses_bad_input(tmp_path):
    import keras

    from nnjpeg.models import build_classifier
    from nnjpeg.models.defenses import jpeg_classifier

    pretrained.register_serializables()
    clf = build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1)
    clf.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    clf.fit(np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int32), verbose=0)
    model = jpeg_classifier(clf, 50)
    layout = composition.write(model, tmp_path / "m.compose.json")  # no candidate: the part is written
    assert layout == {"wrn_classifier": "parts/m.wrn_classifier.keras"}
    assert not [n for n in _tensors(tmp_path / layout["wrn_classifier"]) if "optimizer" in n]
    x = np.random.default_rng(4).random((2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(composition.load(tmp_path / "m.compose.json").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"Expected the path of a composition, ending in '.compose.json'. "
                                         r"Received: '.*m.keras'"):
        composition.write(model, tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"Expected a model whose weights all sit in nested models"):
        composition.write(clf, tmp_path / "c.compose.json")
    spec = json.loads((tmp_path / "m.compose.json").read_text())
    (tmp_path / "bad.compose.json").write_text(json.dumps({**spec, "parts": {"wrn_classifier": "../x.keras"}}))
    with pytest.raises(ValueError, match=r"Expected part paths of .keras files below the composition's folder"):
        composition.load(tmp_path / "bad.compose.json")
    (tmp_path / "old.compose.json").write_text(json.dumps({"kind": "denoised"}))
    with pytest.raises(ValueError, match=r"Expected a composition of format 'nnjpeg.composition/1'"):
        composition.load(tmp_path / "old.compose.json")
    other = build_classifier(input_shape=(28, 28, 1), base_width=8, blocks=1)
    other.save(tmp_path / "other.keras")
    (tmp_path / "wrong.compose.json").write_text(json.dumps({**spec, "parts": {"wrn_classifier": "other.keras"}}))
    with pytest.raises(ValueError, match=r"Expected the part 'other.keras' to hold the weights of 'wrn_classifier'"):
        composition.load(tmp_path / "wrong.compose.json")
    with pytest.raises(ValueError, match=r"Expected every nested model of .* bit for bit. Received: "
                                         r"\['wrn_classifier'\] held by none of them"):
        composition.write(model, tmp_path / "n.compose.json", [tmp_path / "other.keras"], new_parts=False)
    assert not (tmp_path / "n.compose.json").exists() and not (tmp_path / "parts" / "n.wrn_classifier.keras").exists()
    assert keras.saving.load_model(tmp_path / "other.keras")
