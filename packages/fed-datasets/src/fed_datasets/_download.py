"""Download, check, decompress and cache the files of the canned data sets.

Files come from `base_url` (by default TensorFlow Federated's public bucket, or the
`FED_DATASETS_BASE_URL` environment variable; a `file://` URL works too) and are cached in
`cache_dir` (by default `$FED_DATASETS_CACHE`, else the user's cache directory:
`$XDG_CACHE_HOME/fed/datasets` or `~/.cache/fed/datasets` on Linux). pooch does the transfer: it
downloads to a temporary file, checks the sha256 when one is known, retries failed downloads, and
moves the file into place only once it is complete. What is kept is the decompressed file alone,
moved into place only once it is whole and checked, so an interrupted run never leaves a broken
file in the cache.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import shutil
import sys
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pooch
import requests

DEFAULT_BASE_URL = "https://storage.googleapis.com/tff-datasets-public"
BASE_URL_ENV = "FED_DATASETS_BASE_URL"
CACHE_DIR_ENV = "FED_DATASETS_CACHE"
RETRIES = 3
"""How many times a failed download is tried again (pooch waits 1 s, 2 s, ... in between)."""
TIMEOUT_SECONDS = 60
"""How long a download may wait for the server before it fails (and is tried again)."""


class DownloadError(OSError):
    """A data set file could not be downloaded, or what arrived is not the expected file."""


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """`cache_dir`, else `$FED_DATASETS_CACHE`, else `datasets` in the user's cache for fed."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return platformdirs.user_cache_path("fed", appauthor=False) / "datasets"


def resolve_base_url(base_url: str | None) -> str:
    """`base_url`, else `$FED_DATASETS_BASE_URL`, else TensorFlow Federated's public bucket."""
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return url.rstrip("/")


def _copy_local_file(url: str, output_file: str, _pooch: Any, check_only: bool = False) -> bool:
    """A pooch downloader for `file://` URLs (pooch knows only network protocols)."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if check_only:
        return source.is_file()
    shutil.copyfile(source, output_file)
    return True


def _downloader(url: str) -> Callable[..., Any]:
    if url.startswith("file:"):
        return _copy_local_file
    # A progress bar (tqdm) on a terminal only, as it would clutter logs.
    return pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=TIMEOUT_SECONDS)


def _download(filename: str, directory: Path, base_url: str | None, sha256: str | None) -> Path:
    """Downloads `{base_url}/{filename}` into `directory` (checked against `sha256` when given)."""
    url = f"{resolve_base_url(base_url)}/{filename}"
    fetcher = pooch.create(
        path=directory,
        base_url=f"{resolve_base_url(base_url)}/",
        registry={filename: None if sha256 is None else f"sha256:{sha256}"},
        retry_if_failed=RETRIES,
    )
    try:
        return Path(fetcher.fetch(filename, downloader=_downloader(url)))
    except ValueError as e:
        if "does not match the known hash" in str(e):
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}; the download is corrupt "
                f"or the file has changed ({e})"
            ) from e
        raise
    except (requests.RequestException, OSError) as e:
        raise DownloadError(f"could not download {url}: {e}") from e


@contextlib.contextmanager
def _removed_on_exit(*paths: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def fetch_lzma_file(
    filename: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    sha256: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Returns the cached, decompressed form of `filename` (which ends in `.lzma`).

    On a cache miss, downloads `{base_url}/{filename}`, checks the compressed bytes against
    `sha256` when given, decompresses it and checks the result with `validate`, then moves it
    into the cache. Raises `DownloadError` when the file cannot be had or is not what it should be.
    """
    if not filename.endswith(".lzma"):
        raise ValueError(f"expected a file name ending in '.lzma', got {filename!r}")
    directory = resolve_cache_dir(cache_dir)
    target = directory / filename.removesuffix(".lzma")
    if target.exists():
        return target
    url = f"{resolve_base_url(base_url)}/{filename}"
    partial = directory / f".{target.name}.part"
    with _removed_on_exit(directory / filename, partial):
        archive = _download(filename, directory, base_url, sha256)
        try:
            pooch.Decompress(method="lzma", name=partial.name)(str(archive), "download", None)
        except lzma.LZMAError as e:
            raise DownloadError(f"{url} is not a valid LZMA file: {e}") from e
        except EOFError as e:
            raise DownloadError(
                f"{url} ended before the end of its LZMA stream (truncated?): {e}"
            ) from e
        if validate is not None:
            try:
                validate(partial)
            except Exception as e:
                e.add_note(f"(the file downloaded from {url})")
                raise
        os.replace(partial, target)
    return target


def fetch_tar_bz2_member(
    filename: str,
    member: str,
    *,
    sha256: str | None,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
) -> Path:
    """Returns the cached file `member` of the bzip2-compressed tar archive `filename`.

    On a cache miss, downloads `{base_url}/{filename}`, checks it against `sha256`, and extracts
    only `member` (a plain file name, so no archive can write outside the cache).
    """
    if "/" in member or member in ("", ".", ".."):
        raise ValueError(f"member must be a plain file name, got {member!r}")
    directory = resolve_cache_dir(cache_dir)
    target = directory / member
    if target.exists():
        return target
    url = f"{resolve_base_url(base_url)}/{filename}"
    extract_dir = directory / f".{member}.untar"
    with _removed_on_exit(directory / filename, extract_dir):
        archive = _download(filename, directory, base_url, sha256)
        try:
            untar = pooch.Untar(members=[member], extract_dir=extract_dir.name)
            untar(str(archive), "download", None)
            extracted = extract_dir / member
            if not extracted.is_file() or extracted.is_symlink():
                with tarfile.open(archive) as contents:
                    names = contents.getnames()
                raise DownloadError(f"{url} has no file {member!r}; it holds {names[:10]}")
        except (tarfile.TarError, EOFError) as e:
            raise DownloadError(f"{url} is not a valid bzip2-compressed tar file: {e}") from e
        os.replace(extracted, target)
    return target
