"""A slow, obviously-correct float64 reference of the codec, built on scipy.fft.dctn(norm="ortho").

Written from the specification (ITU-T T.81 block transform, JFIF T.871 colour transform, libjpeg's
box downsampling and "fancy" triangle upsampling), independently of the native code.
"""

import numpy as np
from scipy.fft import dctn, idctn


def round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _pad(plane, mh, mw):
    h, w = plane.shape
    return np.pad(plane, ((0, -h % mh), (0, -w % mw)), mode="edge")


def block_roundtrip(plane, step):
    """plane: (Hp, Wp) float64 in [0, 255] with Hp, Wp multiples of 8; step: (8, 8)."""
    hp, wp = plane.shape
    blocks = plane.reshape(hp // 8, 8, wp // 8, 8).transpose(0, 2, 1, 3) - 128.0
    coef = dctn(blocks, axes=(2, 3), norm="ortho")
    # Coefficients (0,0), (0,4), (4,0), (4,4) of whole-number samples are exact multiples of 1/8 and
    # often sit exactly on a tie; float64 noise (~1e-13) would round those ties at random. Snapping
    # to a 2^-16 grid restores the exact value (and moves only non-ties within 2^-17 of a tie).
    t = np.round(coef / step * 65536.0) / 65536.0
    rec = idctn(round_half_away(t) * step, axes=(2, 3), norm="ortho") + 128.0
    out = np.clip(round_half_away(rec), 0, 255)
    return out.transpose(0, 2, 1, 3).reshape(hp, wp)


def _downsample(plane, hs, vs):
    h, w = plane.shape
    s = plane.reshape(h // vs, vs, w // hs, hs).sum(axis=(1, 3))
    x = np.arange(w // hs)[np.newaxis, :] % 2
    bias = (1 + x) if vs == 2 else x
    return np.floor((s + bias) / (hs * vs))


def _upsample(c, cvh, cvw, h, w, hs, vs):
    y = np.arange(h)[:, np.newaxis]
    x = np.arange(w)[np.newaxis, :]
    iy, ix = y // vs, x // hs
    at = lambda yy, xx: c[np.clip(yy, 0, cvh - 1), np.clip(xx, 0, cvw - 1)].astype(np.int64)
    nx = np.where(x % 2 == 0, ix - 1, ix + 1)
    if vs == 1:
        return (3 * at(iy, ix) + at(iy, nx) + np.where(x % 2 == 0, 1, 2)) >> 2
    ny = np.where(y % 2 == 0, iy - 1, iy + 1)
    near = 3 * at(iy, ix) + at(ny, ix)
    far = 3 * at(iy, nx) + at(ny, nx)
    return (3 * near + far + np.where(x % 2 == 0, 8, 7)) >> 4


def roundtrip(image, tables, color="rgb", subsampling="4:4:4"):
    """image: (H, W, C) uint8 or float32 in [0, 1]; tables: (C, 8, 8). Same dtype out."""
    is_float = image.dtype == np.float32
    x = image.astype(np.float64) * (255.0 if is_float else 1.0)
    h, w, c = x.shape
    tables = np.asarray(tables, dtype=np.float64)
    if color == "rgb" or c == 1:
        out = np.stack([block_roundtrip(_pad(x[..., k], 8, 8), tables[k])[:h, :w] for k in range(c)], -1)
    else:
        hs, vs = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}[subsampling]
        r, g, b = (_pad(x[..., k], 8 * vs, 8 * hs) for k in range(3))
        # T.871 weights over 10^3 / 10^6: exact numerators for whole-number samples, so exact ties.
        yy = np.clip(round_half_away((299 * r + 587 * g + 114 * b) / 1e3), 0, 255)
        cb = np.clip(round_half_away((-168736 * r - 331264 * g + 500000 * b) / 1e6 + 128), 0, 255)
        cr = np.clip(round_half_away((500000 * r - 418688 * g - 81312 * b) / 1e6 + 128), 0, 255)
        yy = block_roundtrip(yy, tables[0])[:h, :w]
        if (hs, vs) == (1, 1):
            cb = block_roundtrip(cb, tables[1])[:h, :w]
            cr = block_roundtrip(cr, tables[2])[:h, :w]
        else:
            cvh, cvw = -(-h // vs), -(-w // hs)
            cb = _upsample(block_roundtrip(_downsample(cb, hs, vs), tables[1]), cvh, cvw, h, w, hs, vs)
            cr = _upsample(block_roundtrip(_downsample(cr, hs, vs), tables[2]), cvh, cvw, h, w, hs, vs)
        cb, cr = cb - 128.0, cr - 128.0
        out = np.stack([yy + 1402 * cr / 1e3, yy - (344136 * cb + 714136 * cr) / 1e6, yy + 1772 * cb / 1e3], -1)
        out = np.clip(round_half_away(out), 0, 255)
    return (out / 255.0).astype(np.float32) if is_float else out.astype(np.uint8)


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
