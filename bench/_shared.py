"""The shared benchmark workloads (../shared/bench beside the repository), imported by name."""

from __future__ import annotations

import importlib
import os
import resource
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


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux); elsewhere the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
