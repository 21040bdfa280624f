import hashlib
import http.server
import io
import lzma
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fed_datasets import DatabaseFormatError, DownloadError, _download
from fed_datasets._download import (
    fetch_lzma_file,
    fetch_tar_bz2_member,
    resolve_base_url,
    resolve_cache_dir,
)
from fed_datasets._sql import check_database_format


class _Server(http.server.ThreadingHTTPServer):
    """Serves a folder over HTTP; the first `failures` requests get a 503."""

    def __init__(self, folder: Path, failures: int = 0):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                server.requests += 1
                if server.requests <= failures:
                    self.send_error(503, "try again")
                else:
                    super().do_GET()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """serve(failures=0) -> an HTTP server of tmp_path/'server', stopped after the test."""
    servers = []

    def start(failures: int = 0) -> _Server:
        (tmp_path / "server").mkdir(exist_ok=True)
        server = _Server(tmp_path / "server", failures)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _tar_bz2(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_lzma_database_is_downloaded_decompressed_checked_and_cached(publish, proto, tmp_path):
    base_url = publish({"train": {"a": [proto(n=[1])]}}, "tiny.sqlite.lzma")
    cache = tmp_path / "cache"
    path = fetch_lzma_file(
        "tiny.sqlite.lzma", cache_dir=cache, base_url=base_url, validate=check_database_format
    )
    assert path == cache / "tiny.sqlite"
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
    assert _leftovers(cache) == ["tiny.sqlite"]
    # A second call is served from the cache, even with the server gone.
    (tmp_path / "server" / "tiny.sqlite.lzma").unlink()
    assert fetch_lzma_file("tiny.sqlite.lzma", cache_dir=cache, base_url=base_url) == path


def test_a_truncated_download_leaves_nothing_in_the_cache(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    whole = lzma.compress(b"x" * 100_000)
    (server / "cut.sqlite.lzma").write_bytes(whole[: len(whole) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="ended before the end of its LZMA stream"):
        fetch_lzma_file("cut.sqlite.lzma", cache_dir=cache, base_url=server.as_uri())
    assert _leftovers(cache) == []


def test_a_file_that_is_not_lzma(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    (server / "plain.sqlite.lzma").write_bytes(b"not compressed at all")
    with pytest.raises(DownloadError, match="is not a valid LZMA file"):
        fetch_lzma_file("plain.sqlite.lzma", cache_dir=tmp_path / "c", base_url=server.as_uri())
    assert _leftovers(tmp_path / "c") == []


def test_content_that_fails_validation_is_not_cached(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    (server / "text.sqlite.lzma").write_bytes(lzma.compress(b"hello, not a database"))
    cache = tmp_path / "cache"
    with pytest.raises(DatabaseFormatError, match="is not a SQLite database"):
        fetch_lzma_file(
            "text.sqlite.lzma",
            cache_dir=cache,
            base_url=server.as_uri(),
            validate=check_database_format,
        )
    assert _leftovers(cache) == []


def test_sha256_of_the_compressed_file_is_checked(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    data = lzma.compress(b"payload")
    (server / "f.lzma").write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    with pytest.raises(DownloadError, match=f"expected sha256 {'0' * 64}; .* but got {good}"):
        fetch_lzma_file(
            "f.lzma", cache_dir=tmp_path / "c", base_url=server.as_uri(), sha256="0" * 64
        )
    assert _leftovers(tmp_path / "c") == []
    path = fetch_lzma_file(
        "f.lzma", cache_dir=tmp_path / "c", base_url=server.as_uri(), sha256=good
    )
    assert path.read_bytes() == b"payload"


def test_a_missing_file_on_the_server(tmp_path):
    with pytest.raises(DownloadError, match="could not download .*absent.sqlite.lzma"):
        fetch_lzma_file(
            "absent.sqlite.lzma", cache_dir=tmp_path / "c", base_url=(tmp_path / "srv").as_uri()
        )


def test_tar_bz2_member_is_checked_and_extracted_alone(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    archive = _tar_bz2({"./counts.txt": b"a 3\nb 1\n", "other.txt": b"ignored"})
    (server / "counts.tar.bz2").write_bytes(archive)
    cache = tmp_path / "cache"
    digest = hashlib.sha256(archive).hexdigest()
    path = fetch_tar_bz2_member(
        "counts.tar.bz2", "counts.txt", sha256=digest, cache_dir=cache, base_url=server.as_uri()
    )
    assert path.read_bytes() == b"a 3\nb 1\n"
    assert _leftovers(cache) == ["counts.txt"]


def test_tar_bz2_errors_leave_nothing_behind(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    archive = _tar_bz2({"something_else": b"x"})
    (server / "a.tar.bz2").write_bytes(archive)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_tar_bz2_member(
            "a.tar.bz2", "wanted", sha256="f" * 64, cache_dir=cache, base_url=server.as_uri()
        )
    with pytest.raises(DownloadError, match=r"has no file 'wanted'; it holds \['something_else'\]"):
        fetch_tar_bz2_member(
            "a.tar.bz2",
            "wanted",
            sha256=hashlib.sha256(archive).hexdigest(),
            cache_dir=cache,
            base_url=server.as_uri(),
        )
    (server / "b.tar.bz2").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="not a valid bzip2-compressed tar file"):
        fetch_tar_bz2_member(
            "b.tar.bz2", "x", sha256=None, cache_dir=cache, base_url=server.as_uri()
        )
    assert _leftovers(cache) == []
    with pytest.raises(ValueError, match="plain file name"):
        fetch_tar_bz2_member("a.tar.bz2", "../x", sha256=None, cache_dir=cache)


def test_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FED_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("FED_DATASETS_BASE_URL", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert resolve_cache_dir(None) == Path.home() / ".cache" / "fed" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir(None) == tmp_path / "xdg" / "fed" / "datasets"
    assert resolve_base_url(None) == "https://storage.googleapis.com/tff-datasets-public"
    monkeypatch.setenv("FED_DATASETS_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("FED_DATASETS_BASE_URL", "file:///srv/data/")
    assert resolve_cache_dir(None) == tmp_path / "env-cache"
    assert resolve_base_url(None) == "file:///srv/data"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_base_url("https://mirror.example/d") == "https://mirror.example/d"


def test_over_http_the_file_is_checked_and_only_its_decompressed_form_is_kept(serve, tmp_path):
    server = serve()
    data = lzma.compress(b"over the wire")
    (tmp_path / "server" / "w.lzma").write_bytes(data)
    cache = tmp_path / "cache"
    path = fetch_lzma_file(
        "w.lzma", cache_dir=cache, base_url=server.url, sha256=hashlib.sha256(data).hexdigest()
    )
    assert path.read_bytes() == b"over the wire"
    assert _leftovers(cache) == ["w"]
    assert fetch_lzma_file("w.lzma", cache_dir=cache, base_url=server.url) == path
    assert server.requests == 1


def test_a_failed_download_is_tried_again(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(_download, "RETRIES", 1)
    server = serve(failures=1)
    (tmp_path / "server" / "flaky.lzma").write_bytes(lzma.compress(b"second time lucky"))
    path = fetch_lzma_file("flaky.lzma", cache_dir=tmp_path / "c", base_url=server.url)
    assert path.read_bytes() == b"second time lucky"
    assert server.requests == 2


def test_an_http_error_names_the_url_and_leaves_nothing_behind(serve, tmp_path):
    server = serve()
    with pytest.raises(DownloadError, match=r"could not download http://.*/gone\.lzma: 404"):
        fetch_lzma_file("gone.lzma", cache_dir=tmp_path / "c", base_url=server.url)
    assert _leftovers(tmp_path / "c") == []
