"""Pretrained models, trained by `nnjpeg train` on this project's machines.

    >>> import nnjpeg.pretrained
    >>> nnjpeg.pretrained.names()
    ['fmnist/classifier', ...]
    >>> model = nnjpeg.pretrained.load("fmnist/classifier")   # float32 (N, 28, 28, 1) in [0, 1] -> logits

The package holds what describes the models: the manifest (`models/weights/manifest.json`: per
weight file its SHA-256 and size, per name the files it needs), each model's card (`.md`: exact
command, epochs, wall time) and metrics (`.json`), and the compositions (`.compose.json`) of the
models made of other models' parts. The weight files themselves are found, in this order:

1. `path=`, else `$NNJPEG_WEIGHTS_DIR`: a folder laid out as the weights folder (a checkout's
   `models/weights`, or one filled by `nnjpeg weights fetch --dest`); hash-checked; never downloads.
2. A source checkout's `models/weights` whose manifest is the package's, found from the working
   directory upwards: the README's commands and the tests run offline on a fresh clone.
3. The cache, `$NNJPEG_HOME/weights` (default `$XDG_CACHE_HOME/nnjpeg`, i.e. `~/.cache/nnjpeg`),
   re-hashed on every hit.
4. A download from `$NNJPEG_WEIGHTS_URL` (default: the manifest's `url`) joined with the file's
   path in the manifest, into the cache, unless `$NNJPEG_OFFLINE=1` or `download=False`. Serving a
   weights folder over HTTP makes a mirror.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from pathlib import Path

from . import composition, hub

__all__ = ["build_manifest", "card", "checkout_weights", "compose_new_files", "fetch", "files", "load", "locate",
           "manifest", "metrics", "names", "register_serializables", "verify", "weights_folder", "write_manifest"]

WEIGHTS = Path(__file__).resolve().parent / "models" / "weights"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "nnjpeg.weights/1"


def manifest(folder: Path | None = None) -> dict:
    """The manifest of the package's weights folder (or of `folder`)."""
    path = (WEIGHTS if folder is None else folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"Expected the weights manifest at {path}. Received: no such file (reinstall nnjpeg, "
                                f"or run `nnjpeg weights index` on a weights folder)")
    spec = json.loads(path.read_text())
    if spec.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"Expected a weights manifest of format {MANIFEST_FORMAT!r} at {path}. "
                         f"Received: {spec.get('format')!r}")
    return spec


def names() -> list[str]:
    """Names of the pretrained models, e.g. "fmnist/classifier"."""
    return sorted(manifest()["models"])


def _model(name: str) -> dict:
    models = manifest()["models"]
    if not isinstance(name, str) or name not in models:
        raise ValueError(f"Expected a pretrained model name in {sorted(models)}. Received: {name!r}")
    return models[name]


def files(name: str) -> list[hub.FileEntry]:
    """The weight files that the model `name` needs (a composition's parts included)."""
    known = manifest()["files"]
    return [hub.FileEntry(rel, known[rel]["sha256"], known[rel]["size"]) for rel in _model(name)["files"]]


def checkout_weights() -> Path | None:
    """The `models/weights` folder of a source checkout of this very version (its manifest equal to
    the package's), looked for in the working directory and its parents; None where there is none."""
    ours = (WEIGHTS / MANIFEST).read_bytes() if (WEIGHTS / MANIFEST).is_file() else None
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / "models" / "weights"
        if (candidate / MANIFEST).is_file() and (folder / "pyproject.toml").is_file():
            if candidate.resolve() != WEIGHTS and (candidate / MANIFEST).read_bytes() == ours:
                return candidate
    return None


def weights_folder(path: str | os.PathLike | None = None) -> Path | None:
    """The local folder that weights are taken from, never downloading: `path`, else
    `$NNJPEG_WEIGHTS_DIR`, else a checkout's (`checkout_weights`); None: the cache, then a download."""
    source = "path="
    if path is None and os.environ.get(hub.ENV_DIR):
        path, source = os.environ[hub.ENV_DIR], hub.ENV_DIR
    if path is None:
        return checkout_weights()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise hub.WeightsUnavailable(f"Expected {source} to name a weights folder (laid out as models/weights; "
                                     f"`nnjpeg weights fetch --dest DIR` fills one). Received: {str(folder)!r}, "
                                     "which is not a folder")
    return folder


def locate(name: str, *, path: str | os.PathLike | None = None, download: bool = True,
           progress: bool | None = None) -> dict[str, Path]:
    """The local copy of every weight file that `name` needs, fetched where needed (see the module
    docstring for the order).

    Args:
        name: one of `names()`.
        path: a weights folder to take the files from instead (never downloads).
        download: allow a download into the cache.
        progress: a progress bar per download; None: where stderr is a terminal.

    Returns:
        Per file's path in the manifest, its local path.

    Raises:
        ValueError: an unknown name.
        hub.IntegrityError: a file whose size or SHA-256 is not the manifest's.
        hub.WeightsUnavailable: a file missing from the folder, or not cached and not downloadable.
    """
    entries = files(name)
    folder = weights_folder(path)
    url = hub.base_url(manifest()["url"])
    return {e.path: hub.locate(e, folder=folder, url=url, download=download, progress=progress) for e in entries}


def load(name: str, *, compile: bool = False, path: str | os.PathLike | None = None, download: bool = True):
    """Loads a pretrained model by name.

    Args:
        name: one of `names()`.
        compile: also restore the compile state (loss, optimizer) where the file holds one; the
            shipped files hold none.
        path: a weights folder to take the files from (never downloads); default: see the module
            docstring.
        download: allow a download into the cache where no local copy is found.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: an unknown name.
        hub.IntegrityError: a weight file whose size or SHA-256 is not the manifest's.
        hub.WeightsUnavailable: a weight file that could not be found or downloaded; the message
            says which variables to set.
    """
    local = locate(name, path=path, download=download)  # before Keras: a missing file is said at once
    import keras

    register_serializables()
    spec = _model(name)
    if "composition" not in spec:
        (only,) = local.values()
        return keras.saving.load_model(only, compile=compile)
    where = posixpath.dirname(spec["composition"])
    return composition.load(WEIGHTS / spec["composition"],
                            part_path=lambda rel: local[posixpath.normpath(posixpath.join(where, rel))])


def fetch(models: list[str] | None = None, *, dest: str | os.PathLike | None = None,
          progress: bool | None = None) -> list[Path]:
    """Makes the weight files of `models` (default: all) local, for machines without a network:
    copies them from the local folder where there is one, else downloads them.

    Args:
        models: names; None: every name.
        dest: a folder to fill, laid out as the weights folder (then `NNJPEG_WEIGHTS_DIR=dest`);
            default: the cache.
        progress: a progress bar per download; None: where stderr is a terminal.

    Returns:
        The local paths, one per distinct file.
    """
    wanted = {e.path: e for name in (names() if models is None else models) for e in files(name)}
    folder, url = weights_folder(), hub.base_url(manifest()["url"])
    target = None if dest is None else Path(dest).expanduser()
    out = []
    for entry in wanted.values():
        if folder is not None and target is not None:
            out.append(_copy(hub.locate(entry, folder=folder), target / entry.path, entry))
        elif folder is not None:
            out.append(hub.locate(entry, folder=folder))
        else:
            out.append(hub.locate(entry, cache=target, url=url, progress=progress))
    return out


def _copy(source: Path, dest: Path, entry: hub.FileEntry) -> Path:
    if dest.is_file() and dest.stat().st_size == entry.size and hub.sha256(dest) == entry.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    shutil.copyfile(source, part)
    os.replace(part, dest)
    return dest


def verify(models: list[str] | None = None, *, path: str | os.PathLike | None = None) -> list[tuple[str, str, str]]:
    """Checks the local copies of the weight files of `models` (default: all) without downloading.

    Args:
        models: names; None: every name.
        path: a weights folder to check instead of the default folder or cache.

    Returns:
        One row per distinct file: (path in the manifest, "ok" | "missing" | "corrupt", where it was
        looked for, with the reason for a corrupt one).
    """
    wanted = {e.path: e for name in (names() if models is None else models) for e in files(name)}
    folder = weights_folder(path)
    root = folder if folder is not None else hub.cache_dir() / "weights"
    rows = []
    for entry in wanted.values():
        local = root / entry.path
        if not local.is_file():
            rows.append((entry.path, "missing", str(local)))
            continue
        try:
            hub.verify(local, entry)
        except hub.IntegrityError as e:
            rows.append((entry.path, "corrupt", str(e)))
        else:
            rows.append((entry.path, "ok", str(local)))
    return rows


def compose_new_files(folder: Path, known: dict) -> list[Path]:
    """Stores each `.keras` file of `folder` that `known` (a manifest's "files") does not list, and
    whose weights sit in nested models of which one or more are already stored there (a retrained
    pipeline beside its denoiser, a JPEG layer in front of the target), as a composition of those
    parts instead, writing only its new tensors (`nnjpeg.composition.write`); the file is removed.

    Returns:
        The compositions written.
    """
    singles = [p for p in sorted(folder.rglob("*.keras")) if "parts" not in p.relative_to(folder).parts]
    new = [p for p in singles if known.get(p.relative_to(folder).as_posix(), {}).get("sha256") != hub.sha256(p)]
    if not new:
        return []
    import keras

    register_serializables()
    written = []
    for path in new:
        model = keras.saving.load_model(path, compile=False)
        others = [p for p in singles if p != path]
        if composition.composable(model) and any(composition.match(model, others, path.parent).values()):
            dest = path.with_name(path.name[: -len(".keras")] + composition.SUFFIX)
            composition.write(model, dest, others)
            path.unlink()
            written.append(dest)
    return written


def build_manifest(folder: Path, url: str) -> dict:
    """The manifest of a weights folder: every `.keras` file with its SHA-256 and size, and per model
    (a card `<name>.md` beside `<name>.keras` or `<name>.compose.json`) the files it needs.

    Raises:
        ValueError: a `.keras` file that no model needs, a needed one missing, or a card without weights.
    """
    models, used = {}, set()
    for card_path in sorted(folder.rglob("*.md")):
        name = card_path.relative_to(folder).with_suffix("").as_posix()
        single, composed = folder / f"{name}.keras", folder / f"{name}{composition.SUFFIX}"
        if composed.is_file():
            where = posixpath.dirname(name)
            parts = sorted({posixpath.normpath(posixpath.join(where, rel))
                            for rel in composition.parts(composed).values()})
            models[name] = {"composition": f"{name}{composition.SUFFIX}", "files": parts}
        elif single.is_file():
            models[name] = {"files": [f"{name}.keras"]}
        else:
            raise ValueError(f"Expected {name}.keras or {name}{composition.SUFFIX} beside the card {card_path}. "
                             f"Received: neither")
        used.update(models[name]["files"])
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*.keras")}
    if present != used:
        raise ValueError(f"Expected every .keras file in {folder} to be needed by a model and every needed one to be "
                         f"there. Received: unused {sorted(present - used)}, missing {sorted(used - present)}")
    listed = {rel: {"sha256": hub.sha256(folder / rel), "size": (folder / rel).stat().st_size} for rel in sorted(used)}
    return {"format": MANIFEST_FORMAT, "url": url, "files": listed, "models": models}


def write_manifest(folder: Path, url: str) -> dict:
    """Indexes a weights folder after a model was added or retrained (`nnjpeg weights index`): new
    composed models become compositions (`compose_new_files`), then `folder/manifest.json` is
    rewritten (`build_manifest`).

    Returns:
        The manifest written.
    """
    known = manifest(folder)["files"] if (folder / MANIFEST).is_file() else {}
    compose_new_files(folder, known)
    spec = build_manifest(folder, url)
    (folder / MANIFEST).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return spec


def register_serializables() -> None:
    """Imports every module whose layers and models are registered with Keras, so that any
    nnjpeg `.keras` file loads with a plain `keras.saving.load_model`."""
    import importlib

    for module in ("attacks", "keras", "models.adversarial", "models.cyclegan", "models.defense_vae", "models.defenses",
                   "models.ensemble", "models.vqunet"):
        importlib.import_module(f"nnjpeg.{module}")


def metrics(name: str) -> dict:
    """The metrics JSON written when the model was trained."""
    _model(name)
    return json.loads((WEIGHTS / f"{name}.json").read_text())


def card(name: str) -> str:
    """The model card (Markdown)."""
    _model(name)
    return (WEIGHTS / f"{name}.md").read_text()
