"""Program state: saved with its version (the round number), atomically, so that a program stopped at any
moment resumes from the newest complete save."""

from __future__ import annotations

import abc
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fed_learning.program._structure import flatten, pack_like, shape_of, to_array

_META = "__fed_program_state__"


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
            except ProgramStateStructureError:
                raise
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # an unreadable save: the one before it
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
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive[_META]))
            leaves = [archive[f"leaf_{k}"] for k in range(meta["leaves"])]
        expected = shape_of(structure)
        if meta["structure"] != expected:
            raise ProgramStateStructureError(
                f"The program state saved as version {version} has the structure {meta['structure']}, "
                f"not the expected {expected}."
            )
        return pack_like(structure, [leaf[()] if leaf.ndim == 0 else leaf for leaf in leaves])

    async def save(self, program_state: Any, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be an int >= 0, got {version!r}.")
        leaves = [to_array(leaf) for leaf in flatten(program_state)]
        for k, leaf in enumerate(leaves):
            if leaf.dtype.kind == "O":
                raise TypeError(
                    f"Program state leaf {k} is a {type(flatten(program_state)[k]).__name__}, which cannot "
                    f"be saved: expected tensors, arrays, numbers, strings or booleans."
                )
        self._root.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(
            {"version": version, "leaves": len(leaves), "structure": shape_of(program_state)}
        )
        arrays = {f"leaf_{k}": leaf for k, leaf in enumerate(leaves)}
        descriptor, temporary = tempfile.mkstemp(dir=self._root, prefix=".saving-", suffix=".npz")
        try:
            with os.fdopen(descriptor, "wb") as f:
                np.savez(f, **arrays, **{_META: np.asarray(meta)})
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self._path(version))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(self._root)
        await self._remove_old()

    async def _remove_old(self) -> None:
        versions = await self.get_versions() or []
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
