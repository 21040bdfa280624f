"""The `fed` command line: `fed plugins` (fed-core's listing) and `fed train CONFIG`, a training program
from a config file that saves checkpoints, releases metrics (CSV, TensorBoard) and resumes."""

import csv
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _fed(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fed", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )


def test_fed_plugins_is_fed_cores_listing():
    ours = _fed("plugins", "--kind", "executors", "--json")
    theirs = subprocess.run(
        [sys.executable, "-m", "fed_core", "plugins", "--kind", "executors", "--json"],
        capture_output=True,
        text=True,
    )
    assert ours.returncode == 0 and ours.stdout == theirs.stdout
    assert '"local"' in ours.stdout


@pytest.mark.slow
def test_fed_train_runs_a_program_from_a_config_and_resumes(tmp_path):
    shutil.copy(ROOT / "examples" / "demo.py", tmp_path / "demo.py")
    config = (
        (ROOT / "examples" / "train_digits.toml").read_text().replace("out/train_digits", "run")
    )
    (tmp_path / "train.toml").write_text(config)
    first = _fed("train", "train.toml", "--rounds", "2", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "starting fresh" in first.stdout and "round 2:" in first.stdout
    second = _fed("train", "train.toml", "--rounds", "3", "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after round 2" in second.stdout
    with (tmp_path / "run" / "metrics.csv").open() as f:
        assert [int(r["key"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "metrics.png").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[model]\nfunction = 'demo:model_fn'\n", "needs a [data] table"),
        (
            "[model]\nfunction='demo:nope'\n[data]\nname='digits'\n[training]\nrounds=1\n",
            "cannot be found",
        ),
        (
            "[model]\nfunction='os:getcwd'\n[data]\nname='nope'\n[training]\nrounds=1\n",
            "not a registered data set",
        ),
        (
            "[model]\nfunction='os:getcwd'\n[data]\nname='digits'\n[training]\nrounds=0\n",
            "rounds must be a positive int",
        ),
        ("not toml [", "is not valid TOML"),
    ],
)
def test_fed_train_refuses_bad_configs_clearly(tmp_path, config, message):
    (tmp_path / "bad.toml").write_text(config)
    done = _fed("train", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
