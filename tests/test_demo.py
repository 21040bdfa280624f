"""The README's demo runs end to end (short runs): it trains, writes its metrics and plot, continues from
its saved state when run again, and starts over with --fresh."""

import csv
import os
import pathlib
import subprocess
import sys

import pytest

DEMO = pathlib.Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _demo(out, *arguments):
    done = subprocess.run(
        [sys.executable, str(DEMO), "--clients-per-round", "4", "--out", str(out), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final test accuracy over 20 clients" in done.stdout
    return done.stdout


def _rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_demo_trains_resumes_and_starts_over(tmp_path):
    assert "starting fresh" in _demo(tmp_path, "--rounds", "3")
    rows = _rows(tmp_path)
    assert [int(r["key"]) for r in rows] == [0, 1, 2, 3]  # round 0: the initial model's evaluation
    assert all(0.0 <= float(r["evaluation/sparse_categorical_accuracy"]) <= 1.0 for r in rows)
    assert float(rows[-1]["client_work/train/loss"]) < float(rows[1]["client_work/train/loss"])
    assert (tmp_path / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    resumed = _demo(tmp_path, "--rounds", "2", "--no-progress")  # run again: 2 more rounds
    assert "resuming after round 3" in resumed and "rounds 4-5" in resumed
    assert "training:" not in resumed
    assert [int(r["key"]) for r in _rows(tmp_path)] == [0, 1, 2, 3, 4, 5]

    assert "starting fresh" in _demo(tmp_path, "--rounds", "2", "--fresh")
    assert [int(r["key"]) for r in _rows(tmp_path)] == [0, 1, 2]
