"""Shared fixtures: natural photographs bundled with scikit-image."""

import numpy as np
import pytest
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photographs, uint8 (H, W, 3)."""
    return {name: np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in PHOTOS}


@pytest.fixture(scope="session")
def crops(photos) -> dict[str, np.ndarray]:
    """Odd-sized crops (1x1, 7x9, 17x33, 61x75) taken from textured parts of the photographs."""
    src = photos["astronaut"]
    return {f"{h}x{w}": src[100 : 100 + h, 180 : 180 + w] for h, w in ((1, 1), (7, 9), (17, 33), (61, 75))}
