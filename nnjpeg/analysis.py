"""Frequency analysis of images and adversarial perturbations (NN-JPEG paper, Sec. 3.1, Fig. 3).

For every 8x8 DCT band (i, j) and colour channel, delta_ij is the standard deviation of the band's
coefficients over all blocks of all images. Computed for benign images and for perturbations
(x_adv - x); delta' = delta_adv / delta_benign says which bands the adversary relies on more than
the image content does, which is what the NN-favored table's AF band targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.fft import dctn

from . import _checks

CHANNELS_RGB = ("R", "G", "B")
CHANNELS_YCC = ("Y", "Cb", "Cr")


def to_ycbcr(rgb255: np.ndarray) -> np.ndarray:
    """JFIF full-range BT.601 (ITU-T T.871) of float samples in [0, 255], without rounding."""
    r, g, b = rgb255[..., 0], rgb255[..., 1], rgb255[..., 2]
    return np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                     -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0,
                     0.5 * r - 0.418688 * g - 0.081312 * b + 128.0], axis=-1)


def band_std(images: np.ndarray) -> np.ndarray:
    """Std of each 8x8 DCT band per channel.

    Shape:
        images: (N, H, W, C) float (any scale; crops to whole blocks); returns (C, 8, 8).
    """
    x = np.asarray(images, np.float64)
    n, h, w, c = x.shape
    x = x[:, : h - h % 8, : w - w % 8]
    blocks = x.reshape(n, h // 8, 8, w // 8, 8, c).transpose(5, 0, 1, 3, 2, 4).reshape(c, -1, 8, 8)
    return dctn(blocks, axes=(2, 3), norm="ortho").std(axis=1)


def _check_images(name: str, images) -> None:
    # H, W >= 8: one 8x8 block at least.
    _checks.unit_images(f"{name} images", images, dtypes=("float32", "float64"), channels=(1, 3), min_side=8)


def analyse(benign: np.ndarray, adversarial: np.ndarray | None = None, *, label: str = "") -> dict:
    """delta (benign, and perturbation when `adversarial` is given) for RGB and YCbCr channels
    (colour images) or the single grey channel.

    Args:
        benign: (N, H, W, C) float32 in [0, 1], C in {1, 3}.
        adversarial: same shape, or None.
        label: what the images are (recorded in the output).

    Raises:
        TypeError: images that are not float32 or float64.
        ValueError: images that are not (N, H, W, C) in [0, 1], N >= 1, H, W >= 8, C in {1, 3}, or
            adversarial examples of another shape.

    Returns:
        dict: per channel, `benign` (8x8), `perturbation` (8x8) and `ratio` (8x8) as nested lists,
        and `ratio_sorted`: the bands ordered by delta' (largest first) with their zig-zag anti-diagonal.
    """
    _check_images("benign", benign)
    if adversarial is not None:
        _check_images("adversarial", adversarial)
        if np.shape(adversarial) != np.shape(benign):
            raise ValueError(f"Expected adversarial examples of the benign images' shape {np.shape(benign)}. "
                             f"Received: shape={np.shape(adversarial)}")
    x = np.asarray(benign, np.float64) * 255.0
    d = None if adversarial is None else np.asarray(adversarial, np.float64) * 255.0 - x
    spaces = {"grey": (("grey",), lambda a: a)} if x.shape[-1] == 1 else {
        "rgb": (CHANNELS_RGB, lambda a: a), "ycbcr": (CHANNELS_YCC, to_ycbcr)}
    out = {"label": label, "images": int(len(x)), "channels": {}}
    for _, (names, convert) in spaces.items():
        sb = band_std(convert(x))
        # A perturbation goes through the colour transform's linear part only (no offset).
        sp = None if d is None else band_std(convert(d) - (convert(np.zeros_like(d[:1])) if convert is to_ycbcr else 0))
        for k, name in enumerate(names):
            entry = {"benign": sb[k].tolist()}
            if sp is not None:
                ratio = sp[k] / np.maximum(sb[k], 1e-12)
                order = np.argsort(-ratio, axis=None)
                entry["perturbation"] = sp[k].tolist()
                entry["ratio"] = ratio.tolist()
                entry["ratio_sorted"] = [{"band": [int(i // 8), int(i % 8)], "anti_diagonal": int(i // 8 + i % 8),
                                          "ratio": float(ratio.flat[i])} for i in order]
            out["channels"][name] = entry
    return out


def plot(result: dict, path: Path) -> None:
    """Heatmaps of log10(delta) (benign), and of delta' when perturbations were given (paper Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chans = list(result["channels"])
    kinds = ["benign"] + (["ratio"] if "ratio" in result["channels"][chans[0]] else [])
    fig, axes = plt.subplots(len(kinds), len(chans), figsize=(2.6 * len(chans) + 1, 2.6 * len(kinds)), squeeze=False)
    for r, kind in enumerate(kinds):
        for c, ch in enumerate(chans):
            data = np.asarray(result["channels"][ch][kind])
            im = axes[r][c].imshow(np.log10(np.maximum(data, 1e-6)) if kind == "benign" else data, cmap="magma")
            axes[r][c].set_title(f"{ch}: {'log10 δ benign' if kind == 'benign' else 'δ′ = δadv / δbenign'}", fontsize=8)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            fig.colorbar(im, ax=axes[r][c], fraction=0.046)
    fig.suptitle(f"8x8 DCT band statistics: {result['label']} ({result['images']} images)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, out / f"{stem}.png")
