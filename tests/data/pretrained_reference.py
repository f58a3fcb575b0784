"""Writes `pretrained_reference.npz`: per shipped model, a SHA-256 of its weights (every tensor's
dtype, shape and bytes, in `get_weights()` order) and its outputs on the first 64 Fashion-MNIST test
images (for a denoiser alone, the first 8 of them zero-padded to 32x32, which it takes). It was run once on the weights as they stood before they were stored as compositions of
their parts, so that tests/test_pretrained.py checks that every name still loads to the same model.

    .venv/bin/python tests/data/pretrained_reference.py   # from the repository root
"""

import hashlib
from pathlib import Path

import numpy as np


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(f"{w.dtype}{w.shape}".encode())
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def model_input_side(model) -> int:
    """The height of the images `model` takes: 28 for the classifiers, 32 for a denoiser alone."""
    try:
        return int(model.input_shape[1])
    except AttributeError:  # a subclassed model (a denoiser alone) has no input_shape
        return int(model.get_build_config()["input_shape"][1])


def padded(images: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else images


def main() -> None:
    from nnjpeg import datasets, pretrained

    (_, _), (x, _) = datasets.load_fashion_mnist(download=False)
    images = x[:64].astype(np.float32)[..., None] / 255.0
    out = {}
    for name in pretrained.names():
        model = pretrained.load(name)
        out[f"{name}/digest"] = np.array(weights_digest(model))
        pad = 0 if model_input_side(model) == 28 else 2
        out[f"{name}/pad"] = np.array(pad)
        x = padded(images[:8], pad) if pad else images
        out[f"{name}/outputs"] = model.predict(x, verbose=0).astype(np.float32)
        print(name, out[f"{name}/digest"])
    np.savez_compressed(Path(__file__).with_suffix(".npz"), **out)


if __name__ == "__main__":
    main()
