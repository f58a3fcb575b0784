"""nnjpeg.hub: downloads from a local HTTP mirror (127.0.0.1 only), the cache, offline mode, local folders,
concurrent downloads and argument checks."""

import contextlib
import hashlib
import http.server
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest

from nnjpeg import hub

PATH = "fmnist/classifier.keras"
SIZE = 5000


class _Server(http.server.ThreadingHTTPServer):
    # Non-daemon handler threads, joined by server_close(): no handler outlives its test.
    daemon_threads = False
    block_on_close = True


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.root`; `server.mode` picks the answer: "ok", "tamper" (one byte flipped),
    "truncate" (full Content-Length, half the body, then the connection closes), "long" (64 KiB too
    many), "404", "stall" (no answer until released), "concurrent" (answers once two requests wait)."""

    timeout = 5

    def do_GET(self):  # noqa: N802 - the name http.server calls
        srv = self.server
        with srv.lock:
            srv.requests += 1
        if srv.mode == "stall":
            srv.release.wait(5)
            return
        if srv.mode == "concurrent":
            srv.barrier.wait()
        path = srv.root / urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if srv.mode == "404" or not path.is_file():
            self.send_error(404)
            return
        self._send(bytearray(path.read_bytes()), srv.mode)

    def _send(self, body: bytearray, mode: str):
        if mode == "tamper":
            body[len(body) // 2] ^= 0xFF
        if mode == "long":
            body += bytes(64 << 10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may stop reading early
            self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


class Mirror:
    """A ThreadingHTTPServer on 127.0.0.1 serving a weights folder at `url`."""

    def __init__(self, root):
        self.folder = root / "mirror"
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        srv = self._srv
        srv.root, srv.mode, srv.requests, srv.lock = root, "ok", 0, threading.Lock()
        srv.release, srv.barrier = threading.Event(), threading.Barrier(2, timeout=10)
        self.url = f"http://127.0.0.1:{srv.server_port}/mirror/"
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def requests(self) -> int:
        return self._srv.requests

    def serve(self, mode: str) -> None:
        self._srv.mode = mode

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._srv.release.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No developer setting leaks in, and 127.0.0.1 is never sent through a proxy."""
    for name in (hub.ENV_HOME, hub.ENV_URL, hub.ENV_DIR, hub.ENV_OFFLINE, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def data() -> bytes:
    return random.Random(0).randbytes(SIZE)


@pytest.fixture
def entry(data) -> hub.FileEntry:
    return hub.FileEntry(PATH, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def mirror(tmp_path, data):
    served = tmp_path / "served"
    (served / "mirror" / PATH).parent.mkdir(parents=True)
    (served / "mirror" / PATH).write_bytes(data)
    m = Mirror(served)
    yield m
    m.stop()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def files(folder) -> list:
    """Every file under `folder` (`.part` files included), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def tampered(data: bytes) -> bytes:
    body = bytearray(data)
    body[len(body) // 2] ^= 0xFF
    return bytes(body)


# --- downloads and the cache ------------------------------------------------------------------------


def test_download_then_cache_hit(mirror, entry, data, cache):
    path = hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert path == cache / PATH
    assert path.read_bytes() == data
    assert mirror.requests == 1
    assert hub.locate(entry, cache=cache, url=mirror.url, progress=False) == path
    assert mirror.requests == 1  # the hit was re-hashed, not downloaded
    assert files(cache) == [path]


def test_env_url_and_default_cache(mirror, entry, data, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.setenv(hub.ENV_URL, mirror.url.rstrip("/"))
    path = hub.locate(entry, progress=False)
    assert path == tmp_path / "home" / "weights" / PATH
    assert path.read_bytes() == data


def test_downloaded_file_gets_the_umask(mirror, entry, cache):
    mask = os.umask(0o022)
    os.umask(mask)
    path = hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("mode", ["tamper", "truncate"])
def test_corrupt_download_is_refused(mirror, entry, data, cache, mode):
    mirror.serve(mode)
    got = tampered(data) if mode == "tamper" else data[: SIZE // 2]
    received = f"Received: sha256={hashlib.sha256(got).hexdigest()}, size={len(got)} bytes"
    expected = f"Expected {PATH} downloaded from {hub.file_url(mirror.url, PATH)} to have sha256={entry.sha256}"
    match = f"(?s){re.escape(expected)}.*{re.escape(received)}.*NNJPEG_WEIGHTS_URL"
    with pytest.raises(hub.IntegrityError, match=match):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert files(cache) == []


def test_longer_body_is_refused(mirror, entry, cache):
    mirror.serve("long")
    with pytest.raises(hub.IntegrityError, match=f"{re.escape(PATH)}.*size=more than {SIZE} bytes"):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert files(cache) == []


def test_failed_download_keeps_what_was_at_dest(mirror, entry, tmp_path):
    dest = tmp_path / "out" / "old.keras"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    mirror.serve("tamper")
    with pytest.raises(hub.IntegrityError, match=re.escape(entry.sha256)):
        hub.download(entry, hub.file_url(mirror.url, PATH), dest, progress=False)
    assert files(dest.parent) == [dest]
    assert dest.read_bytes() == b"previous"


def test_http_404(mirror, entry, cache):
    mirror.serve("404")
    url = hub.file_url(mirror.url, PATH)
    with pytest.raises(hub.WeightsUnavailable, match=f"{re.escape(PATH)} from {re.escape(url)}: HTTP 404 Not Found"
                                                     ".*NNJPEG_WEIGHTS_URL.*NNJPEG_WEIGHTS_DIR"):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert files(cache) == []


def test_timeout(mirror, entry, cache):
    mirror.serve("stall")
    with pytest.raises(hub.WeightsUnavailable, match=f"{re.escape(PATH)}.*timed out"):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False, timeout=0.2)
    assert files(cache) == []


def test_connection_refused(mirror, entry, cache):
    mirror.stop()
    with pytest.raises(hub.WeightsUnavailable, match=f"Could not download {re.escape(PATH)}.*NNJPEG_WEIGHTS_DIR"):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert files(cache) == []


class FakeResponse:
    """Stands in for urlopen's response: an endless body of zeros in 1000-byte reads, counting them;
    `interrupt_after` raises KeyboardInterrupt on that many-plus-one'th read."""

    def __init__(self, interrupt_after=None):
        self.sent, self.reads, self.interrupt_after = 0, 0, interrupt_after

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        self.reads += 1
        if self.interrupt_after is not None and self.reads > self.interrupt_after:
            raise KeyboardInterrupt
        chunk = bytes(min(n, 1000))  # as a socket does, fewer bytes than asked for
        self.sent += len(chunk)
        return chunk


def test_interrupt_removes_the_part_file(entry, cache, monkeypatch):
    response = FakeResponse(interrupt_after=1)
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda url, timeout: response)
    with pytest.raises(KeyboardInterrupt):
        hub.locate(entry, cache=cache, url="http://127.0.0.1:9/", progress=False)
    assert response.reads == 2
    assert files(cache) == []


def test_reading_stops_after_one_byte_too_many(entry, cache, monkeypatch):
    response = FakeResponse()
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda url, timeout: response)
    with pytest.raises(hub.IntegrityError, match=f"size=more than {SIZE} bytes"):
        hub.locate(entry, cache=cache, url="http://127.0.0.1:9/", progress=False)
    assert response.sent == SIZE + 1
    assert files(cache) == []


def test_no_url_known(mirror, entry, cache):
    with pytest.raises(hub.WeightsUnavailable, match=f"{re.escape(PATH)}: no URL is known.*NNJPEG_WEIGHTS_URL"):
        hub.locate(entry, cache=cache, progress=False)
    assert mirror.requests == 0


def test_file_url_mirror(mirror, entry, data, tmp_path):
    mirror.stop()
    dest = hub.download(entry, hub.file_url(mirror.folder.as_uri(), PATH), tmp_path / "copy.keras", progress=False)
    assert dest.read_bytes() == data


# --- offline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_with_empty_cache(mirror, entry, cache, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    allow = how == "env"
    why = "NNJPEG_OFFLINE=1" if how == "env" else "download=False"
    with pytest.raises(hub.WeightsUnavailable, match=f"{re.escape(PATH)}.*{re.escape(str(cache))}.*off \\({why}\\)"
                                                     ".*NNJPEG_WEIGHTS_DIR"):
        hub.locate(entry, cache=cache, url=mirror.url, download=allow, progress=False)
    assert mirror.requests == 0
    assert files(cache) == []


def test_offline_with_good_cache(mirror, entry, data, cache, monkeypatch):
    hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    monkeypatch.setenv(hub.ENV_OFFLINE, "true")
    assert hub.locate(entry, cache=cache, url=mirror.url, progress=False).read_bytes() == data
    assert hub.locate(entry, cache=cache, download=False).read_bytes() == data
    assert mirror.requests == 1


def test_offline_refuses_tampered_cache(mirror, entry, data, cache, monkeypatch):
    (cache / PATH).parent.mkdir(parents=True)
    (cache / PATH).write_bytes(tampered(data))
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    bad = hashlib.sha256(tampered(data)).hexdigest()
    with pytest.raises(hub.IntegrityError, match=f"(?s){re.escape(PATH)}.*sha256={entry.sha256}.*sha256={bad}"
                                                 ".*cached copy; delete"):
        hub.locate(entry, cache=cache, url=mirror.url, progress=False)
    assert mirror.requests == 0
    assert (cache / PATH).read_bytes() == tampered(data)


def test_tampered_cache_is_downloaded_again(mirror, entry, data, cache):
    (cache / PATH).parent.mkdir(parents=True)
    (cache / PATH).write_bytes(tampered(data))
    assert hub.locate(entry, cache=cache, url=mirror.url, progress=False).read_bytes() == data
    assert mirror.requests == 1
    assert files(cache) == [cache / PATH]


# --- local folders ---------------------------------------------------------------------------------


def test_folder_without_network(mirror, entry, data, cache, tmp_path, monkeypatch):
    folder = tmp_path / "local"
    shutil.copytree(mirror.folder, folder)
    mirror.stop()
    monkeypatch.setenv(hub.ENV_URL, mirror.url)
    assert hub.locate(entry, folder=folder, cache=cache, url=mirror.url) == folder / PATH
    assert files(cache) == []


def test_folder_missing_file(mirror, entry, cache, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(hub.WeightsUnavailable, match=f"{re.escape(PATH)} in the weights folder {re.escape(str(folder))}"
                                                     f".*nnjpeg weights fetch --dest"):
        hub.locate(entry, folder=folder, cache=cache, url=mirror.url)
    assert mirror.requests == 0
    assert files(cache) == []


def test_folder_wrong_file(mirror, entry, data, cache, tmp_path):
    folder = tmp_path / "local"
    (folder / PATH).parent.mkdir(parents=True)
    (folder / PATH).write_bytes(data[:-1])
    with pytest.raises(hub.IntegrityError, match=f"(?s){re.escape(str(folder / PATH))}.*size={SIZE - 1} bytes"
                                                 f".*weights folder {re.escape(str(folder))} holds another version"):
        hub.locate(entry, folder=folder, cache=cache, url=mirror.url)
    assert mirror.requests == 0
    assert files(cache) == []


# --- two processes at once -------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from nnjpeg.hub import FileEntry, locate
path, digest, size, cache, url = sys.argv[1:]
print(locate(FileEntry(path, digest, int(size)), cache=Path(cache), url=url, progress=False))
"""


def test_two_processes_download_the_same_file(mirror, entry, cache, tmp_path):
    mirror.serve("concurrent")  # the server answers only once both requests are in: the race is real
    args = [sys.executable, "-c", CHILD, PATH, entry.sha256, str(entry.size), str(cache), mirror.url]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE, text=True)) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == [str(cache / PATH)] * 2
    assert mirror.requests == 2
    assert files(cache) == [cache / PATH]
    assert hub.sha256(cache / PATH) == entry.sha256


# --- settings --------------------------------------------------------------------------------------


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert hub.cache_dir() == tmp_path / "user" / ".cache" / "nnjpeg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "nnjpeg"
    monkeypatch.setenv(hub.ENV_HOME, "~/nn")
    assert hub.cache_dir() == tmp_path / "user" / "nn"


@pytest.mark.parametrize(("value", "expected"), [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False), ("OFF", False),
    ("1", True), ("true", True), ("YES", True), ("On", True),
])
def test_offline_parsing(monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv(hub.ENV_OFFLINE, value)
    assert hub.offline() is expected


def test_offline_bad_value(entry, cache, monkeypatch):
    monkeypatch.setenv(hub.ENV_OFFLINE, "maybe")
    with pytest.raises(ValueError, match="Expected NNJPEG_OFFLINE to be one of .* Received: NNJPEG_OFFLINE='maybe'"):
        hub.offline()
    with pytest.raises(ValueError, match="NNJPEG_OFFLINE='maybe'"):
        hub.locate(entry, cache=cache, url="http://127.0.0.1:9/")


def test_base_url(monkeypatch):
    assert hub.base_url("https://a.example/w") == "https://a.example/w"
    monkeypatch.setenv(hub.ENV_URL, "")
    assert hub.base_url("https://a.example/w") == "https://a.example/w"
    monkeypatch.setenv(hub.ENV_URL, "http://127.0.0.1:8000/w")
    assert hub.base_url("https://a.example/w") == "http://127.0.0.1:8000/w"
    with pytest.raises(TypeError, match="Expected default to be a str. Received: default=None"):
        hub.base_url(None)


@pytest.mark.parametrize(("base", "expected"), [
    ("http://127.0.0.1:8000/w", "http://127.0.0.1:8000/w/a/b.keras"),
    ("https://host.example/w/", "https://host.example/w/a/b.keras"),
    ("https://host.example/w//", "https://host.example/w/a/b.keras"),
    ("file:///srv/weights/", "file:///srv/weights/a/b.keras"),
])
def test_file_url(base, expected):
    assert hub.file_url(base, "a/b.keras") == expected


def test_file_url_quotes_the_path():
    assert hub.file_url("http://h/w", "a b/c.keras") == "http://h/w/a%20b/c.keras"


@pytest.mark.parametrize(("base", "path", "error", "match"), [
    ("ftp://h/w", "a.keras", ValueError,
     "Expected base to be an http://, https:// or file:// URL. Received: base='ftp://h/w'"),
    ("/srv/w", "a.keras", ValueError, "Received: base='/srv/w'"),
    (b"http://h", "a.keras", TypeError, "Expected base to be a str"),
    ("http://h", "../a.keras", ValueError, "Expected path to be a relative POSIX path .* Received: path='../a.keras'"),
    ("http://h", 3, TypeError, "Expected path to be a str. Received: path=3"),
])
def test_file_url_errors(base, path, error, match):
    with pytest.raises(error, match=match):
        hub.file_url(base, path)


GOOD = "0" * 64


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"path": "/abs/a.keras"}, ValueError, "Received: path='/abs/a.keras'"),
    ({"path": "a/../b.keras"}, ValueError, "no leading '/', no '..'.* Received: path='a/../b.keras'"),
    ({"path": "a\\b.keras"}, ValueError, re.escape("Received: path='a\\\\b.keras'")),
    ({"path": ""}, ValueError, "Received: path=''"),
    ({"path": "a//b.keras"}, ValueError, "Received: path='a//b.keras'"),
    ({"path": "C:/w/a.keras"}, ValueError, "Received: path='C:/w/a.keras'"),
    ({"path": None}, TypeError, "Expected path to be a str. Received: path=None"),
    ({"sha256": "A" * 64}, ValueError, "Expected sha256 of 64 lowercase hex digits. Received: sha256='AAAA"),
    ({"sha256": "0" * 63}, ValueError, "Expected sha256 of 64 lowercase hex digits"),
    ({"sha256": 0}, TypeError, "Expected sha256 to be a str. Received: sha256=0"),
    ({"size": -1}, ValueError, "Expected size >= 0 bytes. Received: size=-1"),
    ({"size": 1.0}, TypeError, "Expected size to be an int. Received: size=1.0"),
    ({"size": True}, TypeError, "Expected size to be an int. Received: size=True"),
])
def test_file_entry_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        hub.FileEntry(**{"path": "a/b.keras", "sha256": GOOD, "size": 0, **kwargs})


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"entry": "a.keras"}, TypeError, "Expected entry to be a FileEntry. Received: entry='a.keras'"),
    ({"timeout": 0}, ValueError, "Expected timeout to be a finite number of seconds > 0. Received: timeout=0"),
    ({"timeout": float("inf")}, ValueError, "Received: timeout=inf"),
    ({"timeout": "5"}, TypeError, "Expected timeout to be a number of seconds. Received: timeout='5'"),
    ({"progress": 1}, TypeError, "Expected progress to be None or a bool. Received: progress=1"),
    ({"download": 0}, TypeError, "Expected download to be a bool. Received: download=0"),
    ({"folder": 3}, TypeError, "Expected folder to be None or a str or os.PathLike. Received: folder=3"),
    ({"cache": 3}, TypeError, "Expected cache to be None or a str or os.PathLike. Received: cache=3"),
    ({"url": "ftp://h/w"}, ValueError, "Expected url to be an http://, https:// or file:// URL"),
])
def test_locate_argument_errors(entry, cache, kwargs, error, match):
    kwargs = {"entry": entry, "cache": cache, **kwargs}
    with pytest.raises(error, match=match):
        hub.locate(kwargs.pop("entry"), **kwargs)
    assert files(cache) == []


def test_download_argument_errors(entry, tmp_path):
    with pytest.raises(ValueError, match="Expected url to be an http://, https:// or file:// URL. Received: url='w/a'"):
        hub.download(entry, "w/a", tmp_path / "a")
    with pytest.raises(TypeError, match="Expected dest to be a str or os.PathLike. Received: dest=None"):
        hub.download(entry, "http://127.0.0.1:9/a", None)


def test_sha256_and_verify(entry, data, tmp_path):
    path = tmp_path / "a.keras"
    path.write_bytes(data)
    assert hub.sha256(path) == hashlib.sha256(data).hexdigest()
    hub.verify(path, entry)
    path.write_bytes(data + b"!")
    received = f"Received: sha256={hashlib.sha256(data + b'!').hexdigest()}, size={SIZE + 1} bytes. Do this."
    with pytest.raises(hub.IntegrityError, match=f"Expected {re.escape(PATH)} at {re.escape(str(path))} .*{received}"):
        hub.verify(path, entry, hint="Do this.")
    with pytest.raises(TypeError, match="Expected hint to be a str. Received: hint=None"):
        hub.verify(path, entry, hint=None)


# --- progress --------------------------------------------------------------------------------------


def test_progress_bar(mirror, entry, tmp_path, capsys):
    pytest.importorskip("tqdm")
    url = hub.file_url(mirror.url, PATH)
    hub.download(entry, url, tmp_path / "quiet.keras", progress=False)
    hub.download(entry, url, tmp_path / "auto.keras")  # stderr is not a terminal under capsys
    assert capsys.readouterr().err == ""
    hub.download(entry, url, tmp_path / "bar.keras", progress=True)
    err = capsys.readouterr().err
    assert PATH in err
    assert "100%" in err
    assert "5.00k/5.00k" in err  # total=entry.size, unit_scale
    assert "B/s" in err


def test_no_bar_without_tqdm(mirror, entry, data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    dest = hub.download(entry, hub.file_url(mirror.url, PATH), tmp_path / "a.keras", progress=True)
    assert dest.read_bytes() == data
    assert capsys.readouterr().err == ""


# --- the module stands alone -----------------------------------------------------------------------


def test_hub_imports_only_the_standard_library(tmp_path):
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('hub', {hub.__file__!r})\n"
            "sys.modules['hub'] = module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n"
            "print(sorted(m for m in ('nnjpeg', 'numpy', 'keras', 'tensorflow', 'tqdm') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr
