"""Shared fixtures: natural photographs bundled with scikit-image; the weights of this checkout."""

import atexit
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"

# Tests never reach off this machine: the pretrained models come from this checkout's weights folder
# (also for the subprocesses that tests start in other folders), never from a download or a
# developer's cache.
os.environ.setdefault("NNJPEG_WEIGHTS_DIR", str(CHECKOUT_WEIGHTS))
os.environ["NNJPEG_OFFLINE"] = "1"
os.environ["NNJPEG_HOME"] = tempfile.mkdtemp(prefix="nnjpeg-home-")
atexit.register(shutil.rmtree, os.environ["NNJPEG_HOME"], True)



def saved_configs(name: str) -> list[str]:
    """The saved Keras configs (JSON text) of pretrained `name` in this checkout: its composition's,
    if it has one, and each weight file's `config.json`."""
    entry = json.loads((CHECKOUT_WEIGHTS / "manifest.json").read_text())["models"][name]
    texts = [(CHECKOUT_WEIGHTS / entry["composition"]).read_text()] if "composition" in entry else []
    for f in entry["files"]:
        with zipfile.ZipFile(CHECKOUT_WEIGHTS / f) as z:
            texts.append(z.read("config.json").decode())
    return texts

@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photographs, uint8 (H, W, 3)."""
    return {name: np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in PHOTOS}


@pytest.fixture(scope="session")
def crops(photos) -> dict[str, np.ndarray]:
    """Odd-sized crops (1x1, 7x9, 17x33, 61x75) taken from textured parts of the photographs."""
    src = photos["astronaut"]
    return {f"{h}x{w}": src[100 : 100 + h, 180 : 180 + w] for h, w in ((1, 1), (7, 9), (17, 33), (61, 75))}
