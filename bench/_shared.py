"""The shared benchmark workloads (../shared/bench beside the repository), imported by name."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

WORKLOAD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def workload(name: str, needed_by: str) -> ModuleType:
    """The shared workload module `name`, or an exit naming the file that `needed_by` needs."""
    sys.path.insert(0, str(WORKLOAD_DIR))
    try:
        return importlib.import_module(name)
    except ImportError:
        sys.exit(
            f"{needed_by} needs the shared workload {WORKLOAD_DIR / (name + '.py')}, which was not "
            f"found: check out the shared folder beside the repository."
        )
