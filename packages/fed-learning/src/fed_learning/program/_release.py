"""Release managers: where a program's values (a round's metrics) go, by key (the round number)."""

from __future__ import annotations

import abc
import collections
import csv
import enum
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fed_learning.program._structure import flatten_with_paths, to_array

_logger = logging.getLogger(__name__)


class ReleaseManager(abc.ABC):
    """Releases values by key (TFF's interface; `release` is a coroutine)."""

    @abc.abstractmethod
    async def release(self, value: Any, key: Any) -> None:
        """Releases `value` (any structure of metrics) under `key` (the round number in loops)."""


def flat_metrics(value: Any) -> dict[str, Any]:
    """`value`'s leaves by their '/'-joined names, numbers as Python scalars where they are scalars."""
    out = {}
    for name, leaf in flatten_with_paths(value):
        array = to_array(leaf)
        out[name] = array.item() if array.ndim == 0 else array
    return out


class LoggingReleaseManager(ReleaseManager):
    """Logs each released value at INFO level."""

    async def release(self, value: Any, key: Any) -> None:
        _logger.info("Released under key %s: %s", key, value)


class MemoryReleaseManager(ReleaseManager):
    """Keeps the released values in memory; `values()` gives them by key, in release order."""

    def __init__(self) -> None:
        self._values: collections.OrderedDict[Any, Any] = collections.OrderedDict()

    async def release(self, value: Any, key: Any) -> None:
        self._values[key] = value

    def values(self) -> collections.OrderedDict[Any, Any]:
        return collections.OrderedDict(self._values)


class CSVSaveMode(enum.Enum):
    APPEND = "append"
    """Adds to an existing file (rows with keys at or after a released key are replaced)."""
    WRITE = "write"
    """Starts the file afresh."""


class CSVFileReleaseManager(ReleaseManager):
    """Releases values as rows of a CSV file: one row per key, a column per flattened metric name.

    Values released under a key replace the rows at or after that key, so a program that resumes from a
    checkpoint at round k and releases round k + 1 again leaves no duplicate rows. New metric names add
    columns (the file is rewritten then); a row lacking a name leaves its cell empty.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        save_mode: CSVSaveMode = CSVSaveMode.APPEND,
        key_fieldname: str = "key",
    ):
        if not isinstance(save_mode, CSVSaveMode):
            raise TypeError(f"save_mode must be a CSVSaveMode, got {save_mode!r}.")
        if not isinstance(key_fieldname, str) or not key_fieldname:
            raise ValueError(f"key_fieldname must be a non-empty str, got {key_fieldname!r}.")
        self._path = Path(file_path)
        self._key = key_fieldname
        self._fields: list[str] = [key_fieldname]
        self._rows: list[dict[str, str]] = []
        if save_mode is CSVSaveMode.APPEND and self._path.exists():
            with self._path.open(newline="") as f:
                reader = csv.DictReader(f)
                self._fields = list(reader.fieldnames or [key_fieldname])
                self._rows = list(reader)
            if key_fieldname not in self._fields:
                raise ValueError(
                    f"{self._path} has no column {key_fieldname!r}: its columns are {self._fields}."
                )
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._write()

    async def release(self, value: Any, key: Any) -> None:
        row = {self._key: str(key)}
        for name, metric in flat_metrics(value).items():
            if name == self._key:
                raise ValueError(
                    f"A released metric is named {name!r}, the CSV file's key column: pass another "
                    f"key_fieldname to CSVFileReleaseManager."
                )
            # Arrays in full, as JSON lists (numpy's own printing abbreviates large ones).
            row[name] = (
                json.dumps(metric.tolist()) if isinstance(metric, np.ndarray) else str(metric)
            )
        kept = [r for r in self._rows if not _at_or_after(r.get(self._key, ""), key)]
        new_fields = [name for name in row if name not in self._fields]
        rewrite = new_fields or len(kept) != len(self._rows)
        self._fields += new_fields
        self._rows = [*kept, row]
        if rewrite:
            self._write()
        else:
            with self._path.open("a", newline="") as f:
                csv.DictWriter(f, self._fields).writerow(row)

    def _write(self) -> None:
        temporary = self._path.with_name(f".{self._path.name}.tmp")
        with temporary.open("w", newline="") as f:
            writer = csv.DictWriter(f, self._fields)
            writer.writeheader()
            writer.writerows(self._rows)
        os.replace(temporary, self._path)


def _at_or_after(existing: str, key: Any) -> bool:
    try:
        return float(existing) >= float(key)
    except (TypeError, ValueError):
        return existing == str(key)


class TensorBoardReleaseManager(ReleaseManager):
    """Releases values as TensorBoard summaries under `summary_dir`: scalars as scalars, other tensors as
    histograms, each at step `key` (which must be an integer)."""

    def __init__(self, summary_dir: str | os.PathLike[str]):
        import tensorflow as tf

        self._tf = tf
        Path(summary_dir).mkdir(parents=True, exist_ok=True)
        self._writer = tf.summary.create_file_writer(str(summary_dir))

    async def release(self, value: Any, key: Any) -> None:
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(
                f"TensorBoardReleaseManager needs an integer key (the step), got {key!r}."
            )
        with self._writer.as_default():
            for name, metric in flat_metrics(value).items():
                array = np.asarray(metric)
                if array.dtype.kind not in "biuf":
                    continue  # strings and the like have no summary
                if array.ndim == 0:
                    self._tf.summary.scalar(name, float(array), step=int(key))
                else:
                    self._tf.summary.histogram(name, array.astype(np.float64), step=int(key))
        self._writer.flush()


class GroupingReleaseManager(ReleaseManager):
    """Releases each value to every one of `release_managers`."""

    def __init__(self, release_managers: Iterable[ReleaseManager]):
        self._managers = list(release_managers)
        for manager in self._managers:
            if not callable(getattr(manager, "release", None)):
                raise TypeError(f"Expected release managers, got {manager!r}.")

    async def release(self, value: Any, key: Any) -> None:
        for manager in self._managers:
            result = manager.release(value, key)
            if hasattr(result, "__await__"):
                await result
