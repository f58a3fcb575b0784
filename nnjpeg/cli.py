"""The `nnjpeg` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import _args, codec, tables

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _load_images(paths: list[str]) -> dict[str, np.ndarray]:
    if not paths:
        try:
            from skimage import data
        except ImportError as e:
            raise SystemExit("nnjpeg compress: no images given and scikit-image (bundled sample photos) is not "
                             "installed. Pass image paths or `pip install scikit-image`.") from e
        return {name: np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in SAMPLE_PHOTOS}
    from PIL import Image, UnidentifiedImageError

    stems = [Path(p).stem for p in paths]
    images = {}
    for i, (p, stem) in enumerate(zip(paths, stems)):
        path = Path(p)
        if not path.is_file():
            raise SystemExit(f"nnjpeg compress: expected an image file. Received: {p!r} (not found)")
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise SystemExit(f"nnjpeg compress: expected an image file Pillow can read. Received: {p!r} ({e})") from e
        # Labelled by file name, or by the path where two files share a name (and a count where a
        # path repeats), so that every image given gets its row.
        label, seen = (stem if stems.count(stem) == 1 else p), paths[: i + 1].count(p)
        images[label if seen == 1 else f"{label} ({seen})"] = rgb
    return images


def _parse_table(spec: str) -> np.ndarray:
    """'nn:K[:OF:AF]' or 'q:QUALITY' (the standard luma table at that quality)."""
    kind, _, rest = spec.partition(":")
    try:
        if kind == "nn":
            parts = [float(v) for v in rest.split(":")] if rest else []
            if len(parts) not in (1, 3) or parts[0] != int(parts[0]):
                raise ValueError
            return tables.nn_table(int(parts[0]), *parts[1:])
        if kind == "q":
            return tables.standard_tables(int(rest))[0]
    except ValueError:
        pass
    raise SystemExit(f"nnjpeg compress: expected --table as 'nn:K', 'nn:K:OF:AF' or 'q:QUALITY'. Received: {spec!r}")


def cmd_compress(args: argparse.Namespace) -> int:
    images = _load_images(args.images)
    table = _parse_table(args.table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    panels = []
    for name, img in images.items():
        ours = codec.compress(img, table, color=args.color, threads=args.threads)
        std = codec.jpeg(img, args.quality, subsampling="4:2:0", threads=args.threads)
        rows.append({"image": name, "shape": list(img.shape), f"psnr_{args.table}_{args.color}": _psnr(ours, img),
                     f"psnr_jpeg_q{args.quality}_420": _psnr(std, img)})
        panels.append((name, img, ours, std))
    keys = list(rows[0])[2:]
    lines = ["| image | " + " | ".join(f"{k} (dB)" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {r['image']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |" for r in rows]
    table_md = "\n".join(lines)
    print(table_md)
    (out / "psnr.md").write_text(table_md + "\n")
    (out / "psnr.json").write_text(json.dumps({"table": table.tolist(), "color": args.color, "rows": rows}, indent=2))
    _plot(panels, args, out / "comparison.png")
    print(f"wrote {out / 'comparison.png'}, {out / 'psnr.md'}, {out / 'psnr.json'}")
    return 0


def _plot(panels, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["original", f"{args.table} ({args.color})", f"JPEG q{args.quality} 4:2:0", "|difference| x4"]
    fig, axes = plt.subplots(len(panels), 4, figsize=(13, 3.2 * len(panels)), squeeze=False)
    for row, (name, img, ours, std) in enumerate(panels):
        crop = tuple(slice(s // 2 - min(s, 128) // 2, s // 2 + min(s, 128) // 2) for s in img.shape[:2])
        diff = np.clip(np.abs(ours.astype(np.int16) - img.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        for col, (im, title) in enumerate(zip((img, ours, std, diff), cols)):
            ax = axes[row, col]
            ax.imshow(im[crop], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
        axes[row, 0].set_ylabel(f"{name}\n{_psnr(ours, img):.1f} dB / {_psnr(std, img):.1f} dB")
    fig.suptitle("nnjpeg round trips (centre 128x128 crops; PSNR: ours / standard JPEG)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _attack_set(args, n):
    """A seeded test subset, the classifier's correct ones kept, and their adversarial examples."""
    from . import attacks
    from .evaluate import model_and_images

    model, x, y = model_and_images(args.classifier, args.dataset, n, args.seed, args.data)
    correct = model.predict(x, batch_size=500, verbose=0).argmax(-1) == y
    return model, x, y, x[correct], y[correct], attacks.attack(args.attack, model, x[correct], y[correct], args.eps,
                                                                progress=True)


def cmd_search_table(args: argparse.Namespace) -> int:
    from . import search

    model, xb, yb, xc, yc, adv = _attack_set(args, max(args.n_benign, args.n_adv))
    xb, yb = xb[: args.n_benign], yb[: args.n_benign]
    result = search.search_table(model, xb, yb, adv[: args.n_adv], yc[: args.n_adv], of=args.of, max_drop=args.max_drop)
    result.update({"classifier": args.classifier, "attack": args.attack, "eps": args.eps, "seed": args.seed})
    search.write(result, Path(args.out))
    print(json.dumps({k: result[k] for k in ("best", "clean_accuracy", "undefended_adv_accuracy")}, indent=2))
    print(f"wrote {Path(args.out) / 'table_search.json'} and table_search.png")
    return 0


def cmd_frequency(args: argparse.Namespace) -> int:
    from . import analysis

    out = Path(args.out)
    photos = _load_images([])
    crops = np.stack([p[:256, :256] for p in photos.values() if min(p.shape[:2]) >= 256]).astype(np.float32) / 255.0
    analysis.write(analysis.analyse(crops, label="natural RGB photographs (scikit-image), benign only"), out, "photos_rgb")
    _, _, _, xc, _, adv = _attack_set(args, args.n)
    grey = xc.shape[-1] == 1
    title = "Fashion-MNIST" if args.dataset == "fashion-mnist" else args.dataset
    stem = ("fmnist" if args.dataset == "fashion-mnist" else "".join(c if c.isalnum() else "_" for c in args.dataset)) \
        + ("_grey" if grey else "_rgb")
    res = analysis.analyse(xc, adv, label=f"{title} ({'grey' if grey else 'RGB'}), {args.attack} eps={args.eps} on "
                                          f"{args.classifier}")
    analysis.write(res, out, stem)
    top = res["channels"]["grey" if grey else "R"]["ratio_sorted"][:5]
    print(f"bands where perturbation/benign std is largest ({title}{'' if grey else ', red channel'}):",
          ", ".join(f"{t['band']} (anti-diagonal {t['anti_diagonal']}: {t['ratio']:.2f})" for t in top))
    print(f"wrote {out}/photos_rgb.(json|png) and {out}/{stem}.(json|png)")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from . import pretrained

    if args.action == "index":
        folder = Path(args.dir)
        url = args.url or pretrained.manifest(folder)["url"]
        spec = pretrained.write_manifest(folder, url)
        size = sum(f["size"] for f in spec["files"].values())
        print(f"wrote {folder / pretrained.MANIFEST}: {len(spec['models'])} models, {len(spec['files'])} files, "
              f"{size / 1e6:.1f} MB")
        return 0
    models = args.names or None
    if args.action == "list":
        for name in pretrained.names():
            entries = pretrained.files(name)
            print(f"{name:40s} {sum(e.size for e in entries) / 1e6:7.2f} MB  {', '.join(e.path for e in entries)}")
        return 0
    if args.action == "fetch":
        from .hub import cache_dir

        paths = pretrained.fetch(models, dest=args.dest)
        root = Path(args.dest) if args.dest else pretrained.weights_folder() or cache_dir() / "weights"
        print(f"{len(paths)} file{'' if len(paths) == 1 else 's'}, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB, "
              f"checked, in {root}")
        return 0
    rows = pretrained.verify(models, path=args.path)
    for path, status, where in rows:
        print(f"{status:8s} {path}  ({where})")
    bad = [row for row in rows if row[1] != "ok"]
    print(f"{len(rows) - len(bad)} of {len(rows)} files ok")
    return 1 if bad else 0


def _add_weights_parser(sub) -> None:
    p = sub.add_parser("weights", help="the pretrained models' weight files: list, fetch for offline use, verify, "
                                       "index a weights folder")
    p.add_argument("action", choices=("list", "fetch", "verify", "index"),
                   help="list: names and files; fetch: make them local (the cache, or --dest); verify: re-hash the "
                        "local copies; index: rewrite a weights folder's manifest.json after adding a model")
    p.add_argument("names", nargs="*", help="fetch, verify: pretrained names (default: all)")
    p.add_argument("--dest", default=None, help="fetch: a folder to fill instead of the cache (then point "
                                                "NNJPEG_WEIGHTS_DIR at it)")
    p.add_argument("--path", default=None, help="verify: the folder to check (default: NNJPEG_WEIGHTS_DIR, a "
                                                "checkout's, else the cache)")
    p.add_argument("--dir", default="models/weights", help="index: the weights folder (default models/weights)")
    p.add_argument("--url", default=None, help="index: the download address to record (default: the one recorded)")
    p.set_defaults(func=cmd_weights)


def cmd_data_worker(args: argparse.Namespace) -> int:
    from . import _console, data_service

    _console.quiet_tensorflow(args.verbose)
    data_service.run_worker(args.dispatcher, port=args.port, host=args.host, timeout=args.timeout)
    return 0


def _add_data_worker_parser(sub) -> None:
    p = sub.add_parser("data-worker", help="a tf.data service worker with nnjpeg's op registered, for tf_compress "
                                           "pipelines distributed over machines")
    p.add_argument("--dispatcher", required=True, help="the dispatcher's HOST:PORT")
    p.add_argument("--port", type=_args.integer(0, 65535), default=0, help="this worker's port (default: any free one)")
    p.add_argument("--host", default="localhost", help="the name the dispatcher reaches this worker by")
    p.add_argument("--timeout", type=_args.real(0, low_open=True), default=None,
                   help="stop after this many seconds (default: serve until stopped)")
    p.add_argument("--verbose", action="store_true", help="TensorFlow's logs too")
    p.set_defaults(func=cmd_data_worker)


def cmd_info(_: argparse.Namespace) -> int:
    from . import __version__

    print(json.dumps({"version": __version__, **codec.build_info()}, indent=2))
    return 0


def _add_data_arguments(p) -> None:
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist, cifar10, tfds:NAME or folder:DIR (nnjpeg.datasets.load; its test split)")
    p.add_argument("--data", default=None, help="the dataset's folder (default: where nnjpeg.datasets looks)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="nnjpeg", description="Compression defenses for image classifiers.")
    parser.add_argument("--version", action="version", version=f"nnjpeg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compress", help="round-trip images through the NN-favored codec and standard JPEG; "
                                        "writes a side-by-side PNG and a PSNR table")
    p.add_argument("images", nargs="*", help="image files, read as RGB: grey repeated, alpha dropped "
                                             "(default: scikit-image's bundled photographs)")
    p.add_argument("--table", default="nn:5", help="'nn:K', 'nn:K:OF:AF' or 'q:QUALITY' (default: nn:5)")
    p.add_argument("--color", choices=("rgb", "ycbcr"), default="rgb")
    p.add_argument("--quality", type=int, default=75, help="quality of the standard JPEG shown beside (default 75)")
    p.add_argument("--threads", type=_args.COUNT, default=None)
    p.add_argument("--out", default="out/compress", help="output folder (default out/compress)")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("info", help="version, compiled and active SIMD kernels, CUDA")
    p.set_defaults(func=cmd_info)
    _add_weights_parser(sub)
    _add_data_worker_parser(sub)
    try:
        from .models import train
    except ImportError:  # a source tree that was never installed has no nnjpeg.models
        pass
    else:
        train.add_parser(sub)
    from . import ablation, demo, evaluate, report

    evaluate.add_parser(sub)
    demo.add_parser(sub)
    report.add_parser(sub)
    ablation.add_parser(sub)
    p = sub.add_parser("search-table", help="NN-JPEG Algorithm 1: grid over (k, QS_AF) under a clean-accuracy-drop bound")
    p.add_argument("--classifier", default="fmnist/classifier",
                   help="the undefended classifier: a pretrained name or a .keras path")
    _add_data_arguments(p)
    p.add_argument("--attack", default="bim")
    p.add_argument("--eps", type=_args.EPS, default=0.03)
    p.add_argument("--n-benign", type=_args.COUNT, default=1000)
    p.add_argument("--n-adv", type=_args.COUNT, default=200)
    p.add_argument("--of", type=_args.real(0, low_open=True), default=16.0)
    p.add_argument("--max-drop", type=_args.real(0, 1), default=0.01)
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--out", default="out/search")
    p.set_defaults(func=cmd_search_table)
    p = sub.add_parser("frequency", help="DCT band statistics of benign images and adversarial perturbations (NN-JPEG Sec. 3.1)")
    p.add_argument("--classifier", default="fmnist/classifier",
                   help="the classifier the perturbations are made on: a pretrained name or a .keras path")
    _add_data_arguments(p)
    p.add_argument("--attack", default="fgsm")
    p.add_argument("--eps", type=_args.EPS, default=0.03)
    p.add_argument("--n", type=_args.COUNT, default=1000)
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--out", default="out/frequency")
    p.set_defaults(func=cmd_frequency)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]
    from .hub import WeightsUnavailable

    try:
        return args.func(args)
    except (TypeError, ValueError, WeightsUnavailable) as e:
        print(f"nnjpeg {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
