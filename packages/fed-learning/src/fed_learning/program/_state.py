"""Program state: saved with its version (the round number), atomically, so that a program stopped at any
moment resumes from the newest complete save."""

from __future__ import annotations

import abc
import json
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fed_learning.program._structure import flatten, pack_like, shape_of, to_array

_META = "__fed_program_state__"
_TEMPORARY = ".saving-"
STALE_AFTER_SECONDS = 3600
"""Temporary files of saves older than this are what killed saves left behind, and are removed."""


class _DamagedSave(ValueError):
    """A save file that cannot be read."""


def _read(path: Path) -> tuple[dict[str, Any], list[Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive[_META]).decode())
            arrays = {name: archive[name] for name in archive.files if name != _META}
        leaves = [_decode(entry, arrays.get(f"leaf_{k}")) for k, entry in enumerate(meta["leaves"])]
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as error:
        raise _DamagedSave(f"{path} cannot be read: {error}") from None
    return meta, leaves


def _encode(leaf: Any, index: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """How one leaf is saved: a description, and the array that holds its data (if any)."""
    if leaf is None:
        return {"kind": "none"}, None
    if isinstance(leaf, (bytes, np.bytes_)):
        return {"kind": "bytes"}, np.frombuffer(bytes(leaf), np.uint8)
    if isinstance(leaf, (str, np.str_)):
        return {"kind": "str"}, np.frombuffer(str(leaf).encode(), np.uint8)
    if isinstance(leaf, int) and not isinstance(leaf, bool) and not -(2**63) <= leaf < 2**63:
        return {"kind": "int", "value": str(leaf)}, None
    array = to_array(leaf)
    if array.dtype.kind in "OSU":  # strings (a string tensor): each element's bytes, by position
        elements = array.ravel().tolist()
        if not all(isinstance(x, (bytes, str)) for x in elements):
            raise TypeError(
                f"Program state leaf {index} is a {type(leaf).__name__}, which cannot be saved: expected "
                f"tensors, arrays, numbers, strings, bytes, booleans or None."
            )
        items = [x if isinstance(x, bytes) else x.encode() for x in elements]
        data = np.frombuffer(b"".join(items), np.uint8)
        return {
            "kind": "strings",
            "shape": list(array.shape),
            "lengths": [len(x) for x in items],
        }, data
    if array.dtype.kind == "V" or array.dtype.type.__module__ == "ml_dtypes":
        return {
            "kind": "raw",
            "dtype": array.dtype.name,
            "shape": list(array.shape),
        }, np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"Program state leaf {index} is a {type(leaf).__name__} of dtype {array.dtype}, which cannot be "
            f"saved: expected tensors, arrays, numbers, strings, bytes, booleans or None."
        )
    return {"kind": "array"}, array


def _decode(entry: dict[str, Any], data: np.ndarray | None) -> Any:
    kind = entry["kind"]
    if kind == "none":
        return None
    if kind == "int":
        return int(entry["value"])
    assert data is not None
    if kind == "bytes":
        return data.tobytes()
    if kind == "str":
        return data.tobytes().decode()
    if kind == "strings":
        raw, items, start = data.tobytes(), [], 0
        for length in entry["lengths"]:
            items.append(raw[start : start + length])
            start += length
        return np.array(items, dtype=object).reshape(entry["shape"])
    if kind == "raw":
        import ml_dtypes  # the dtypes numpy lacks (bfloat16, ...), which TensorFlow and JAX bring

        dtype = np.dtype(getattr(ml_dtypes, entry["dtype"]))
        return np.frombuffer(data.tobytes(), dtype).reshape(entry["shape"])
    return data


def _mismatch(template: Any, leaf: Any) -> str | None:
    """What is wrong with a saved leaf where the template has `template`, or None."""
    if (
        template is None
        or isinstance(template, (bytes, str, int, float))
        and not hasattr(template, "shape")
    ):
        return None
    if not (hasattr(template, "shape") and hasattr(template, "dtype")):
        return None
    expected = to_array(template)
    given = np.asarray(leaf)
    if given.shape != expected.shape or given.dtype != expected.dtype:
        return f"is {given.dtype}{list(given.shape)}, not {expected.dtype}{list(expected.shape)}"
    return None


class ProgramStateStructureError(ValueError):
    """A saved program state whose structure is not the one the program expects."""


class ProgramStateManager(abc.ABC):
    """Saves and loads program state by version (TFF's interface; its methods are coroutines)."""

    @abc.abstractmethod
    async def get_versions(self) -> list[int] | None:
        """The saved versions, oldest first, or None if there are none."""

    @abc.abstractmethod
    async def load(self, version: int, structure: Any) -> Any:
        """The state saved as `version`, in the containers of `structure`."""

    @abc.abstractmethod
    async def save(self, program_state: Any, version: int) -> None:
        """Saves `program_state` as `version`."""

    async def load_latest(self, structure: Any) -> tuple[Any, int]:
        """The newest complete state and its version, or `(None, 0)` if there is none."""
        versions = await self.get_versions()
        for version in reversed(versions or []):
            try:
                return await self.load(version, structure), version
            except _DamagedSave:
                continue  # a save that cannot be read (damaged, or not one of ours): the one before
        return None, 0


class FileProgramStateManager(ProgramStateManager):
    """Program state in files under `root_dir`, one per version (`{prefix}{version}.npz`).

    Any structure of tensors, arrays and Python numbers, strings and booleans is saved, in containers
    (lists, tuples, dicts, named tuples, dataclasses, attrs classes, fed Structs). Each save is atomic:
    written to a temporary file in the same folder, flushed to disk, then renamed into place, so a
    program killed during a save leaves the previous saves readable. The newest `keep_total` saves are
    kept (and the first, with `keep_first`); `load` needs a `structure` to rebuild the containers, as
    TFF's does, and refuses a save whose structure differs.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        prefix: str = "program_state_",
        keep_total: int = 5,
        keep_first: bool = True,
    ):
        if not isinstance(prefix, str) or not re.fullmatch(r"[\w.-]*", prefix):
            raise ValueError(
                f"prefix must be made of letters, digits, '_', '-' and '.', got {prefix!r}."
            )
        if isinstance(keep_total, bool) or not isinstance(keep_total, int) or keep_total < 0:
            raise ValueError(
                f"keep_total must be an int >= 0 (0 keeps every save), got {keep_total!r}."
            )
        if not isinstance(root_dir, (str, os.PathLike)) or not str(root_dir):
            raise TypeError(f"root_dir must be a folder's path, got {root_dir!r}.")
        self._root = Path(root_dir)
        self._prefix = prefix
        self._keep_total = keep_total
        self._keep_first = keep_first
        self._pattern = re.compile(rf"{re.escape(prefix)}(\d+)\.npz")

    def _path(self, version: int) -> Path:
        return self._root / f"{self._prefix}{version}.npz"

    async def get_versions(self) -> list[int] | None:
        if not self._root.is_dir():
            return None
        versions = sorted(
            int(m.group(1)) for p in self._root.iterdir() if (m := self._pattern.fullmatch(p.name))
        )
        return versions or None

    async def load(self, version: int, structure: Any) -> Any:
        path = self._path(version)
        if not path.exists():
            raise ValueError(f"No program state of version {version} in {self._root}.")
        meta, leaves = _read(path)  # a damaged file raises _DamagedSave
        expected = shape_of(structure)
        if meta["structure"] != expected:
            raise ProgramStateStructureError(
                f"The program state saved as version {version} has the structure {meta['structure']}, "
                f"not the expected {expected}."
            )
        templates = flatten(structure)
        for k, (template, leaf) in enumerate(zip(templates, leaves)):
            problem = _mismatch(template, leaf)
            if problem is not None:
                raise ProgramStateStructureError(
                    f"The program state saved as version {version} does not fit the expected one: leaf {k} "
                    f"{problem}."
                )
        return pack_like(structure, leaves)

    async def save(self, program_state: Any, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be an int >= 0, got {version!r}.")
        versions = await self.get_versions() or []
        if versions and version < versions[-1]:
            raise ValueError(
                f"version {version} is older than the newest save in {self._root} ({versions[-1]}): resume "
                f"from it, or remove the saves to start over."
            )
        leaves = flatten(program_state)
        entries, arrays = [], {}
        for k, leaf in enumerate(leaves):
            entry, array = _encode(leaf, k)
            entries.append(entry)
            if array is not None:
                arrays[f"leaf_{k}"] = array
        self._root.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(
            {"version": version, "structure": shape_of(program_state), "leaves": entries}
        )
        descriptor, temporary = tempfile.mkstemp(dir=self._root, prefix=_TEMPORARY, suffix=".npz")
        try:
            with os.fdopen(descriptor, "wb") as f:
                files = {**arrays, _META: np.frombuffer(meta.encode(), np.uint8)}
                np.savez(f, **files)  # type: ignore[arg-type]  # (numpy 2 types **kwds as allow_pickle)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self._path(version))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(self._root)
        self._remove_stale_temporaries()
        self._remove_old(sorted({*versions, version}))

    def _remove_stale_temporaries(self) -> None:
        """Removes what saves killed before their rename left behind (not ones a live save may hold)."""
        cutoff = time.time() - STALE_AFTER_SECONDS
        for path in self._root.glob(f"{_TEMPORARY}*.npz"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    def _remove_old(self, versions: list[int]) -> None:
        """Removes the saves beyond the newest `keep_total` (and the first, with `keep_first`)."""
        if not self._keep_total or len(versions) <= self._keep_total:
            return
        keep = set(versions[-self._keep_total :])
        if self._keep_first:
            keep.add(versions[0])
        for version in versions:
            if version not in keep:
                self._path(version).unlink(missing_ok=True)


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
