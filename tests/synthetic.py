"""Small synthetic data in the real on-disk formats of datasets that cannot be fetched here."""

import pickle

import numpy as np

CIFAR_NAMES = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar(folder, seed=2):
    """The CIFAR-10 python batches: 6 images in each data_batch, 5 in test_batch, and batches.meta."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 5)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        written[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels,
                         b"filenames": [b"f%d.png" % i for i in range(n)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": CIFAR_NAMES, b"num_cases_per_batch": 6, b"num_vis": 3072}, f)
    return written
