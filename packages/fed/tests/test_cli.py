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
    assert "1 rounds trained" in second.stdout  # rounds 1-2 were not run again
    with (tmp_path / "run" / "metrics.csv").open() as f:
        assert [int(r["key"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "metrics.png").exists()
    widened = (tmp_path / "demo.py").read_text().replace("Dense(32", "Dense(48")
    (tmp_path / "demo.py").write_text(widened)
    changed = _fed("train", "train.toml", "--rounds", "4", "--no-progress", cwd=tmp_path)
    assert changed.returncode == 2 and "run with --fresh to start over" in changed.stderr


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
        (
            "[model]\nfunction='os:getcwd'\n[data]\nname='digits'\noptions=5\n[training]\nrounds=1\n",
            "options must be a table",
        ),
        (
            "[model]\nfunction='os:getcwd'\n[data]\nname='digits'\n[training]\nrounds=1\nseed='abc'\n",
            "[training] seed must be an int >= 0, got 'abc'",
        ),
        (
            "[model]\nfunction='os:getcwd'\n[data]\nname='digits'\n[training]\nrounds=1\naggregator='nope'\n",
            "no aggregators named 'nope'",
        ),
    ],
)
def test_fed_train_refuses_bad_configs_clearly(tmp_path, monkeypatch, capsys, config, message):
    from fed._cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(config)
    assert main(["train", "bad.toml"]) == 2
    assert message in capsys.readouterr().err


def test_fed_train_refuses_a_json_list_and_a_zero_round_count(tmp_path, monkeypatch, capsys):
    from fed._cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["train", "list.json"]) == 2
    assert "must hold a table of sections" in capsys.readouterr().err
    (tmp_path / "ok.toml").write_text(
        "[model]\nfunction='os:getcwd'\n[data]\nname='digits'\n[training]\nrounds=1\n"
    )
    assert main(["train", "ok.toml", "--rounds", "0"]) == 2
    assert "rounds must be a positive int" in capsys.readouterr().err
