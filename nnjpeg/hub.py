"""Fetches, caches and checks weight files, the way `keras.utils.get_file`, `torch.hub` and
`huggingface_hub` do, with the standard library alone.

A weights folder is a tree of files addressed by relative POSIX paths (`fmnist/classifier.keras`);
a manifest gives each file's sha256 and size (a `FileEntry`). A file's URL is the base URL joined with
its path, so any HTTP server of a weights folder is a mirror.

    from nnjpeg.hub import FileEntry, locate

    entry = FileEntry("fmnist/classifier.keras", sha256=manifest_sha256, size=manifest_size)
    path = locate(entry, url="https://example.org/nnjpeg/weights")  # cached under cache_dir()

`locate` looks in a given folder (never downloading), else in the cache (re-hashed on every hit),
else downloads into the cache. The environment steers it:

- `NNJPEG_HOME`: the cache folder (default `$XDG_CACHE_HOME/nnjpeg`, else `~/.cache/nnjpeg`).
- `NNJPEG_WEIGHTS_URL`: a mirror of the weights folder.
- `NNJPEG_WEIGHTS_DIR`: a local copy of the weights folder (callers pass it as `folder=`).
- `NNJPEG_OFFLINE=1`: never touch the network; only checked copies are used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import math
import os
import re
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = [
    "ENV_DIR",
    "ENV_HOME",
    "ENV_OFFLINE",
    "ENV_URL",
    "FileEntry",
    "IntegrityError",
    "WeightsUnavailable",
    "base_url",
    "cache_dir",
    "download",
    "file_url",
    "locate",
    "offline",
    "sha256",
    "verify",
]

ENV_HOME = "NNJPEG_HOME"
ENV_URL = "NNJPEG_WEIGHTS_URL"
ENV_DIR = "NNJPEG_WEIGHTS_DIR"
ENV_OFFLINE = "NNJPEG_OFFLINE"

_CHUNK = 1 << 20
_SCHEMES = ("http", "https", "file")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WAYS_IN = (f"Set {ENV_URL} to a mirror of the weights folder, or {ENV_DIR} to a local copy of it "
            f"(`nnjpeg weights fetch --dest FOLDER`).")


class IntegrityError(ValueError):
    """A file whose size or sha256 is not the manifest's."""


class WeightsUnavailable(OSError):
    """A file that cannot be had: missing in a folder, offline with no cached copy, or an HTTP or
    network error."""


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of a weights folder, as the manifest gives it.

    Args:
        path: relative POSIX path in the weights folder, e.g. "fmnist/classifier.keras".
        sha256: 64 lowercase hexadecimal digits.
        size: the file's length in bytes, >= 0.

    Raises:
        TypeError: a field of the wrong type.
        ValueError: an absolute path, a path with "..", ".", an empty part or a backslash; a sha256
            that is not 64 lowercase hex digits; a negative size.
    """

    path: str
    sha256: str
    size: int

    def __post_init__(self):
        _check_relative("path", self.path)
        if not isinstance(self.sha256, str):
            raise TypeError(f"Expected sha256 to be a str. Received: sha256={self.sha256!r}")
        if not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"Expected sha256 of 64 lowercase hex digits. Received: sha256={self.sha256!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError(f"Expected size to be an int. Received: size={self.size!r}")
        if self.size < 0:
            raise ValueError(f"Expected size >= 0 bytes. Received: size={self.size!r}")


def _check_relative(name: str, path) -> str:
    """`path` as a relative POSIX path of plain parts (no "", ".", ".." and no backslash)."""
    if not isinstance(path, str):
        raise TypeError(f"Expected {name} to be a str. Received: {name}={path!r}")
    parts = path.split("/")
    if ("\\" in path or path.startswith("/") or re.match(r"[A-Za-z]:", path)
            or any(part in ("", ".", "..") for part in parts)):
        raise ValueError(f"Expected {name} to be a relative POSIX path such as 'fmnist/classifier.keras' "
                         f"(no leading '/', no '..', '.', empty parts or backslashes). Received: {name}={path!r}")
    return path


def _check_url(name: str, url) -> str:
    if not isinstance(url, str):
        raise TypeError(f"Expected {name} to be a str. Received: {name}={url!r}")
    if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        raise ValueError(f"Expected {name} to be an http://, https:// or file:// URL. Received: {name}={url!r}")
    return url


def _check_path(name: str, value, *, or_none: bool = False) -> Path | None:
    if value is None and or_none:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"Expected {name} to be {'None or ' if or_none else ''}a str or os.PathLike. "
                        f"Received: {name}={value!r}")
    return Path(os.fspath(value))


def _check_options(entry, progress, timeout) -> None:
    """The arguments `download` and `locate` share."""
    if not isinstance(entry, FileEntry):
        raise TypeError(f"Expected entry to be a FileEntry. Received: entry={entry!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"Expected progress to be None or a bool. Received: progress={progress!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"Expected timeout to be a number of seconds. Received: timeout={timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"Expected timeout to be a finite number of seconds > 0. Received: timeout={timeout!r}")


def _env(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    return os.environ.get(name) or None


def cache_dir() -> Path:
    """The nnjpeg cache folder; weight files go under `cache_dir() / "weights" / entry.path`.

    Returns:
        `$NNJPEG_HOME`, else `$XDG_CACHE_HOME/nnjpeg`, else `~/.cache/nnjpeg`, with `~` expanded.
    """
    if _env(ENV_HOME):
        return Path(_env(ENV_HOME)).expanduser()
    if _env("XDG_CACHE_HOME"):
        return Path(_env("XDG_CACHE_HOME")).expanduser() / "nnjpeg"
    return Path("~/.cache/nnjpeg").expanduser()


def offline() -> bool:
    """Whether `NNJPEG_OFFLINE` forbids network access.

    Returns:
        True for 1/true/yes/on, False for 0/false/no/off, empty or unset (case-insensitive).

    Raises:
        ValueError: any other value.
    """
    value = os.environ.get(ENV_OFFLINE, "")
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError(f"Expected {ENV_OFFLINE} to be one of 1/true/yes/on or 0/false/no/off (any case). "
                     f"Received: {ENV_OFFLINE}={value!r}")


def base_url(default: str) -> str:
    """The base URL of the weights folder.

    Args:
        default: the URL used when `NNJPEG_WEIGHTS_URL` is unset or empty.

    Returns:
        `$NNJPEG_WEIGHTS_URL` if set and non-empty, else `default`.

    Raises:
        TypeError: `default` is not a str.
    """
    if not isinstance(default, str):
        raise TypeError(f"Expected default to be a str. Received: default={default!r}")
    return _env(ENV_URL) or default


def file_url(base: str, path: str) -> str:
    """The URL of one file of a weights folder.

    Args:
        base: http://, https:// or file:// URL of the weights folder, with or without a trailing "/".
        path: the file's relative POSIX path in the folder (percent-quoted in the result).

    Returns:
        `base` and `path` joined by exactly one "/".

    Raises:
        TypeError: `base` or `path` is not a str.
        ValueError: another URL scheme, or a path that is not relative (see `FileEntry`).
    """
    _check_url("base", base)
    _check_relative("path", path)
    return f"{base.rstrip('/')}/{urllib.parse.quote(path)}"


def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB chunks.

    Args:
        path: the file.

    Returns:
        64 lowercase hex digits.

    Raises:
        TypeError: `path` is not a str or os.PathLike.
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(_check_path("path", path), "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(entry: FileEntry, where: str, digest: str, size, hint: str) -> IntegrityError:
    return IntegrityError(f"Expected {entry.path} {where} to have sha256={entry.sha256}, size={entry.size} bytes. "
                          f"Received: sha256={digest}, size={size} bytes. {hint}".rstrip())


def verify(path: str | os.PathLike, entry: FileEntry, *, hint: str = "") -> None:
    """Checks a file's size and sha256 against its manifest entry.

    Args:
        path: the file.
        entry: its manifest entry.
        hint: a sentence appended to the error, saying what to do about it.

    Raises:
        IntegrityError: the size or the sha256 differs; names `entry.path`, the file's location,
            the expected and received sha256 and size, then `hint`.
        TypeError: an argument of the wrong type.
        OSError: the file cannot be read.
    """
    path = _check_path("path", path)
    if not isinstance(entry, FileEntry):
        raise TypeError(f"Expected entry to be a FileEntry. Received: entry={entry!r}")
    if not isinstance(hint, str):
        raise TypeError(f"Expected hint to be a str. Received: hint={hint!r}")
    size, digest = path.stat().st_size, sha256(path)
    if size != entry.size or digest != entry.sha256:
        raise _mismatch(entry, f"at {path}", digest, size, hint)


def download(entry: FileEntry, url: str, dest: str | os.PathLike, *, progress: bool | None = None,
             timeout: float = 60.0) -> Path:
    """Downloads one file, checks it, and moves it onto `dest` atomically.

    The body streams into a uniquely named `.part` file beside `dest`, hashed and counted on the way,
    and is `os.replace`d onto `dest` once its size and sha256 are the manifest's, so processes
    downloading the same file at once all end with a sound file. On any failure (including
    KeyboardInterrupt) the `.part` file is removed and `dest` is left as it was.

    Args:
        entry: the file's manifest entry.
        url: http://, https:// or file:// URL of the file itself.
        dest: where the file goes; missing folders are made.
        progress: draw a tqdm bar on stderr (when tqdm is installed); None draws one when stderr is a
            terminal.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        `dest`, as a Path.

    Raises:
        IntegrityError: the body's size or sha256 is not the manifest's (reading stops once more than
            `entry.size` bytes arrived).
        WeightsUnavailable: an HTTP error (e.g. 404), a connection error or a timeout.
        TypeError: an argument of the wrong type.
        ValueError: a URL of another scheme, or a timeout <= 0.
    """
    _check_options(entry, progress, timeout)
    _check_url("url", url)
    return _fetch(entry, url, _check_path("dest", dest), progress, timeout)


def _fetch(entry: FileEntry, url: str, dest: Path, progress: bool | None, timeout: float) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, out = _create_part(dest)
    try:
        with out:
            digest, size = _stream(entry, url, out, progress, timeout)
        if size != entry.size or digest != entry.sha256:
            raise _mismatch(entry, f"downloaded from {url}", digest, size,
                            f"The server sent another file than the manifest's; if {ENV_URL} names a mirror, "
                            f"check that it holds this version of the weights folder.")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def _create_part(dest: Path):
    """A new `.part` file beside `dest`, opened for writing. Made with os.open(0o666) rather than
    tempfile.mkstemp (0o600) so that the finished file gets the user's umask like any other."""
    part = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return part, os.fdopen(os.open(part, flags, 0o666), "wb")


def _unavailable(entry: FileEntry, url: str, err: BaseException) -> WeightsUnavailable:
    if isinstance(err, urllib.error.HTTPError):
        reason = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        reason = str(err.reason)
    else:
        reason = f"{type(err).__name__}: {err}".rstrip(": ")
    return WeightsUnavailable(f"Could not download {entry.path} from {url}: {reason}. {_WAYS_IN}")


def _stream(entry: FileEntry, url: str, out, progress: bool | None, timeout: float) -> tuple[str, int]:
    """Copies the body of `url` into `out`; returns its sha256 and length. Reads at most
    `entry.size + 1` bytes: one byte too many is enough to refuse the file."""
    digest, size = hashlib.sha256(), 0
    bar = _progress_bar(entry, progress)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(min(_CHUNK, entry.size + 1 - size)):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if size > entry.size:
                    raise _mismatch(entry, f"downloaded from {url}", "(not computed)", f"more than {entry.size}",
                                    f"The server sent a longer file than the manifest's; check {ENV_URL}.")
    except urllib.error.HTTPError as err:
        err.close()
        raise _unavailable(entry, url, err) from err
    except (OSError, http.client.HTTPException) as err:
        raise _unavailable(entry, url, err) from err
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest(), size


def _progress_bar(entry: FileEntry, progress: bool | None):
    """A tqdm bar on stderr, or None when not asked for or tqdm is not installed."""
    if not (sys.stderr.isatty() if progress is None else progress):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.path, file=sys.stderr)


def locate(entry: FileEntry, *, folder: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
           url: str | None = None, download: bool = True, progress: bool | None = None,
           timeout: float = 60.0) -> Path:
    """The path of a checked copy of one file, downloading it into the cache when needed.

    Resolution order:

    1. `folder` given: the file must be at `folder / entry.path`; it is checked and returned. The
       cache and the network are never used.
    2. The cache: `cache / entry.path`, re-hashed on every hit; a sound copy is returned without
       any network request. A corrupt copy is downloaded again when downloading is allowed.
    3. A download from `file_url(url, entry.path)` into the cache (`url` defaults to
       `$NNJPEG_WEIGHTS_URL`), unless `download=False` or `NNJPEG_OFFLINE` is set.

    Args:
        entry: the file's manifest entry.
        folder: a weights folder that must hold the file (`path=`, `$NNJPEG_WEIGHTS_DIR`, or a source
            checkout's weights folder).
        cache: the cache folder; default `cache_dir() / "weights"`.
        url: base URL of the weights folder; default `$NNJPEG_WEIGHTS_URL` when set.
        download: allow a download; False (like `NNJPEG_OFFLINE=1`) uses checked copies only.
        progress: as in `download`.
        timeout: as in `download`.

    Returns:
        The path of the checked file.

    Raises:
        IntegrityError: a file in `folder`, a cached copy that cannot be replaced, or a download whose
            size or sha256 is not the manifest's.
        WeightsUnavailable: the file is not in `folder`; or it is not cached and downloading is off,
            no URL is known, or the download failed.
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range, or a bad `NNJPEG_OFFLINE` value.
    """
    _check_options(entry, progress, timeout)
    folder = _check_path("folder", folder, or_none=True)
    cache = _check_path("cache", cache, or_none=True) or cache_dir() / "weights"
    if url is not None:
        _check_url("url", url)
    if not isinstance(download, bool):
        raise TypeError(f"Expected download to be a bool. Received: download={download!r}")
    off = [f"{ENV_OFFLINE}={os.environ[ENV_OFFLINE]}"] if offline() else []
    off += [] if download else ["download=False"]
    if folder is not None:
        return _from_folder(entry, folder)
    target = cache / entry.path
    if _from_cache(entry, target, may_download=not off):
        return target
    if off:
        raise _offline_error(entry, cache, " and ".join(off))
    return _fetch(entry, file_url(_resolve_url(entry, url), entry.path), target, progress, timeout)


def _from_folder(entry: FileEntry, folder: Path) -> Path:
    path = folder / entry.path
    if not path.is_file():
        missing = "" if folder.is_dir() else " (the folder does not exist)"
        raise WeightsUnavailable(f"Expected {entry.path} in the weights folder {folder}{missing}. Received: no file "
                                 f"at {path}. Fill the folder with `nnjpeg weights fetch --dest {folder}`.")
    verify(path, entry, hint=f"The weights folder {folder} holds another version of this file; refill it with "
                             f"`nnjpeg weights fetch --dest {folder}`.")
    return path


def _from_cache(entry: FileEntry, target: Path, *, may_download: bool) -> bool:
    """Whether the cache holds a sound copy. A corrupt one is an error only when it cannot be
    downloaded again."""
    if not target.is_file():
        return False
    try:
        verify(target, entry, hint=f"This is the cached copy; delete {target} and fetch it again "
                                   f"(`nnjpeg weights fetch` with {ENV_OFFLINE} unset).")
    except IntegrityError:
        if may_download:
            return False
        raise
    return True


def _offline_error(entry: FileEntry, cache: Path, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"Cannot get {entry.path}: it is not in the cache {cache} and downloading is off ({why}). Either "
        f"allow downloading (unset {ENV_OFFLINE}, pass download=True); or run `nnjpeg weights fetch` on a "
        f"connected machine and copy its cache, or a `--dest` folder, over here; or set {ENV_DIR} to a local "
        f"copy of the weights folder.")


def _resolve_url(entry: FileEntry, url: str | None) -> str:
    if url is not None:
        return url
    if _env(ENV_URL):
        return base_url("")
    raise WeightsUnavailable(f"Cannot download {entry.path}: no URL is known (url=None and {ENV_URL} is unset). "
                             f"{_WAYS_IN}")
