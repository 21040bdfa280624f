"""fed.program: data sources, program state saved atomically and resumed, release managers (memory, CSV,
TensorBoard, grouping, logging), and the training loop with checkpoints, evaluation and bit-exact resume."""

import collections
import csv
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_core.framework import run_sync
from fed_datasets import TestClientData
from fed_learning import algorithms, models, optimizers, program
from fed_learning.models import ModelWeights
from fed_learning.templates import LearningAlgorithmState
from fed_types import Struct

INPUT_SPEC = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))


def model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        INPUT_SPEC,
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def _client_data(num_clients=6, varied=False):
    rng = np.random.default_rng(0)
    examples = {}
    for k in range(num_clients):
        x = rng.normal(size=(4 + 3 * k if varied else 12, 4)).astype(np.float32)
        examples[f"client_{k}"] = collections.OrderedDict(
            x=x, y=np.argmax(x[:, :3], axis=1).astype(np.int32)
        )
    return TestClientData(examples)


def _datasets(client_data, ids):
    return [
        client_data.create_tf_dataset_for_client(cid).map(lambda e: (e["x"], e["y"])).batch(4)
        for cid in ids
    ]


def _state():
    return LearningAlgorithmState(
        global_model_weights=ModelWeights(
            [np.arange(6, dtype=np.float32).reshape(2, 3)], [np.int64(7)]
        ),
        distributor=(),
        client_work=collections.OrderedDict(step=3, name="sgd", done=False),
        aggregator=Struct([("count", np.int32(2))]),
        finalizer=[tf.constant([1.5, 2.5]), 0.25],
    )


# ---- program state


def _run(coroutine):
    return run_sync(coroutine)


def test_program_state_round_trips_in_its_containers(tmp_path):
    manager = program.FileProgramStateManager(tmp_path, keep_total=3)
    assert _run(manager.load_latest(_state())) == (None, 0)
    state = _state()
    _run(manager.save(state, 4))
    loaded, version = _run(manager.load_latest(_state()))
    assert version == 4
    assert isinstance(loaded, LearningAlgorithmState)
    assert isinstance(loaded.global_model_weights, ModelWeights)
    np.testing.assert_array_equal(
        loaded.global_model_weights.trainable[0], state.global_model_weights.trainable[0]
    )
    assert loaded.client_work == collections.OrderedDict(step=3, name="sgd", done=False)
    assert isinstance(loaded.aggregator, Struct) and int(loaded.aggregator.count) == 2
    np.testing.assert_array_equal(loaded.finalizer[0], [1.5, 2.5])
    assert loaded.finalizer[1] == 0.25 and loaded.distributor == ()


def test_awkward_leaves_and_containers_round_trip(tmp_path):
    import dataclasses

    import attrs
    import ml_dtypes

    @dataclasses.dataclass
    class WithDerived:
        w: object
        derived: object = dataclasses.field(init=False, default=0)

    @attrs.define
    class Private:
        _p: object

    derived = WithDerived(np.ones(2))
    derived.derived = np.int32(3)
    state = {
        "bytes": b"ab\x00\x00",
        "text": "end\x00",
        "none": None,
        "big": 2**70,
        "words": tf.constant(["a", "bb\x00"]),
        "half": np.arange(3, dtype=ml_dtypes.bfloat16),
        "zero_d": np.asarray(2.5),
        "scalar": np.float16(1.5),
        "counts": collections.defaultdict(int, {"x": 2}),
        "derived": derived,
        "private": Private(np.arange(2)),
    }
    manager = program.FileProgramStateManager(tmp_path)
    _run(manager.save(state, 1))
    loaded = _run(manager.load(1, state))
    assert (
        loaded["bytes"] == b"ab\x00\x00" and loaded["text"] == "end\x00" and loaded["none"] is None
    )
    assert loaded["big"] == 2**70
    assert [bytes(x) for x in loaded["words"]] == [b"a", b"bb\x00"]
    assert loaded["half"].dtype == ml_dtypes.bfloat16 and loaded["half"].tolist() == [0, 1, 2]
    assert isinstance(loaded["zero_d"], np.ndarray) and loaded["zero_d"].ndim == 0
    assert loaded["scalar"].dtype == np.float16
    assert isinstance(loaded["counts"], collections.defaultdict) and loaded["counts"]["y"] == 0
    assert loaded["derived"].derived == 3 and loaded["private"]._p.tolist() == [0, 1]


def test_a_save_that_does_not_fit_the_template_raises_and_is_never_skipped(tmp_path):
    manager = program.FileProgramStateManager(tmp_path)
    _run(manager.save({"w": np.ones((2, 3), np.float32)}, 3))
    with pytest.raises(
        program.ProgramStateStructureError, match=r"float32\[2, 3\], not float32\[5\]"
    ):
        _run(manager.load_latest({"w": np.zeros(5, np.float32)}))
    with pytest.raises(ValueError, match="older than the newest save"):
        _run(manager.save({"w": np.ones((2, 3), np.float32)}, 1))
    (tmp_path / "program_state_9.npz").write_bytes(b"not a save")  # a damaged file is skipped
    state, version = _run(manager.load_latest({"w": np.zeros((2, 3), np.float32)}))
    assert version == 3 and state["w"].shape == (2, 3)


def test_temporary_files_of_killed_saves_are_removed_later(tmp_path, monkeypatch):
    manager = program.FileProgramStateManager(tmp_path)
    stale = tmp_path / ".saving-leftover.npz"
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (0, 0))
    fresh = tmp_path / ".saving-in-progress.npz"
    fresh.write_bytes(b"x")
    _run(manager.save({"a": 1}, 0))
    assert not stale.exists() and fresh.exists()


def test_only_the_newest_saves_and_the_first_are_kept(tmp_path):
    manager = program.FileProgramStateManager(tmp_path, keep_total=2, keep_first=True)
    for version in range(6):
        _run(manager.save({"v": np.int32(version)}, version))
    assert _run(manager.get_versions()) == [0, 4, 5]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".saving-")]
    latest, version = _run(manager.load_latest({"v": np.int32(0)}))
    assert (int(latest["v"]), version) == (5, 5)


def test_a_save_of_another_structure_is_refused_and_bad_input_is_clear(tmp_path):
    manager = program.FileProgramStateManager(tmp_path)
    _run(manager.save({"a": np.zeros(2)}, 1))
    with pytest.raises(program.ProgramStateStructureError, match="not the expected"):
        _run(manager.load_latest({"b": np.zeros(2)}))
    with pytest.raises(ValueError, match="version must be an int >= 0"):
        _run(manager.save({"a": 1}, -1))
    with pytest.raises(TypeError, match="cannot be saved"):
        _run(manager.save({"a": object()}, 2))
    with pytest.raises(ValueError, match="keep_total"):
        program.FileProgramStateManager(tmp_path, keep_total=-1)


SAVE_FOREVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fed_learning import program
    from fed_core.framework import run_sync

    manager = program.FileProgramStateManager(sys.argv[1], keep_total=3)
    version = 0
    while True:
        state = {"weights": np.full((1_500_000,), version, np.float32), "round": version}
        run_sync(manager.save(state, version))
        print(version, flush=True)
        version += 1
    """
)


def test_a_process_killed_while_saving_leaves_the_newest_complete_save_readable(tmp_path):
    template = {"weights": np.zeros(1_500_000, np.float32), "round": 0}
    for attempt in range(3):
        directory = tmp_path / f"run{attempt}"
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(directory)], stdout=subprocess.PIPE, text=True
        )
        try:
            for _ in range(
                3 + attempt
            ):  # let a few saves complete, then kill it during a later one
                assert saver.stdout.readline()
            time.sleep(0.01 * attempt)
        finally:
            saver.send_signal(signal.SIGKILL)
            saver.wait()
        manager = program.FileProgramStateManager(directory, keep_total=3)
        for listed in _run(
            manager.get_versions()
        ):  # every save that has its final name is complete
            assert _run(manager.load(listed, template))["round"] == listed
        state, version = _run(manager.load_latest(template))
        assert version >= 2 + attempt
        assert state["round"] == version
        assert state["weights"].shape == (1_500_000,) and np.all(state["weights"] == version)


# ---- release managers


def test_memory_logging_and_grouping_release_managers(caplog):
    memory = program.MemoryReleaseManager()
    group = program.GroupingReleaseManager([memory, program.LoggingReleaseManager()])
    with caplog.at_level(logging.INFO, logger="fed_learning.program._release"):
        _run(group.release({"loss": 0.5}, 1))
        _run(group.release({"loss": 0.25}, 2))
    assert memory.values() == collections.OrderedDict([(1, {"loss": 0.5}), (2, {"loss": 0.25})])
    assert "Released under key 2" in caplog.text
    with pytest.raises(TypeError, match="Expected release managers"):
        program.GroupingReleaseManager([object()])


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_csv_file_gets_a_row_per_round_and_no_duplicates_after_a_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    manager = program.CSVFileReleaseManager(path)
    for key in (1, 2, 3):
        _run(manager.release({"train": {"loss": 1.0 / key}, "round": key}, key))
    resumed = program.CSVFileReleaseManager(path)  # a run resumed from the save of round 2
    _run(resumed.release({"train": {"loss": 0.3, "accuracy": 0.9}, "round": 3}, 3))
    _run(resumed.release({"train": {"loss": 0.2, "accuracy": 0.95}, "round": 4}, 4))
    rows = _read_csv(path)
    assert [r["key"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == ["key", "train/loss", "round", "train/accuracy"]
    assert rows[2]["train/loss"] == "0.3" and rows[0]["train/accuracy"] == ""
    _run(resumed.release({"weights": np.arange(2000.0)}, 5))
    assert json.loads(_read_csv(path)[-1]["weights"]) == list(range(2000))  # in full
    with pytest.raises(ValueError, match="the CSV file's key column"):
        _run(resumed.release({"key": 99}, 6))
    fresh = program.CSVFileReleaseManager(path, save_mode=program.CSVSaveMode.WRITE)
    _run(fresh.release({"loss": 1.0}, 1))
    assert [r["key"] for r in _read_csv(path)] == ["1"]


def test_tensorboard_summaries_are_readable_by_tensorboard(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    manager = program.TensorBoardReleaseManager(tmp_path)
    for step in range(3):
        _run(
            manager.release(
                {"train": {"loss": 1.0 - 0.25 * step}, "weights": np.arange(4.0) * step}, step
            )
        )
    with pytest.raises(TypeError, match="integer key"):
        _run(manager.release({"loss": 1.0}, "round one"))
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert {"train/loss", "weights"} <= set(accumulator.Tags()["tensors"])
    losses = [
        (e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors("train/loss")
    ]
    assert losses == [(0, 1.0), (1, 0.75), (2, 0.5)]


# ---- data sources


def test_a_client_data_source_selects_reproducibly_and_resumes_at_its_position():
    client_data = _client_data()
    source = program.ClientDataDataSource(client_data, seed=3)
    assert program.Capability.RANDOM_UNIFORM in source.capabilities
    assert str(source.federated_type) == "{<x=float32[4],y=int32>*}@CLIENTS"
    iterator = source.iterator()
    first = [list(d.as_numpy_iterator()) for d in iterator.select(2)]
    saved = iterator.to_bytes()
    second = [list(d.as_numpy_iterator()) for d in iterator.select(2)]
    restored = source.iterator().restore(saved)
    assert restored.position == 1
    again = [list(d.as_numpy_iterator()) for d in restored.select(2)]
    assert _same(second, again) and not _same(first, second)
    with pytest.raises(ValueError, match=r"num_clients must be an int in \[1, 6\]"):
        iterator.select(7)


def _same(a, b):
    flat_a = [np.concatenate([e["x"].ravel() for e in client]) for client in a]
    flat_b = [np.concatenate([e["x"].ravel() for e in client]) for client in b]
    return len(flat_a) == len(flat_b) and all(np.array_equal(x, y) for x, y in zip(flat_a, flat_b))


# ---- the training loop


def _loop_arguments(tmp_path, total_rounds, managers):
    client_data = _client_data()
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    evaluation = algorithms.build_fed_eval(model_fn)

    def evaluate(state, data):
        eval_state = evaluation.set_model_weights(
            evaluation.initialize(), process.get_model_weights(state)
        )
        return evaluation.next(eval_state, data).metrics["client_work"]["eval"][
            "current_round_metrics"
        ]

    ids = client_data.client_ids
    return dict(
        training_process=process,
        training_selection_fn=lambda r: _datasets(client_data, [ids[r % 6], ids[(r + 2) % 6]]),
        total_rounds=total_rounds,
        evaluation_fn=evaluate,
        evaluation_selection_fn=lambda r: _datasets(client_data, ids[:2]),
        rounds_per_evaluation=2,
        program_state_manager=program.FileProgramStateManager(tmp_path / "state", keep_total=2),
        rounds_per_saving_program_state=1,
        metrics_managers=managers,
    )


def test_the_training_loop_releases_metrics_evaluates_and_saves(tmp_path):
    memory = program.MemoryReleaseManager()
    state = program.run_training_process(**_loop_arguments(tmp_path, 4, [memory]))
    values = memory.values()
    assert list(values) == [0, 1, 2, 3, 4]
    assert set(values[0]) == {
        "evaluation/loss",
        "evaluation/sparse_categorical_accuracy",
        "evaluation/num_examples",
        "evaluation/num_batches",
        "evaluation/evaluation_time_in_seconds",
    }
    assert values[1]["round_number"] == 1 and values[1]["training_time_in_seconds"] > 0
    assert "evaluation/loss" in values[2] and "evaluation/loss" not in values[3]
    assert values[4]["client_work"]["train"]["num_examples"] == 24
    saved = program.FileProgramStateManager(tmp_path / "state", keep_total=2)
    assert _run(saved.get_versions()) == [0, 3, 4]
    loaded, version = _run(saved.load_latest(state))
    assert version == 4
    for a, b in zip(loaded.global_model_weights.trainable, state.global_model_weights.trainable):
        np.testing.assert_array_equal(a, b)


def test_a_stopped_run_resumes_and_ends_bit_for_bit_where_an_uninterrupted_one_does(tmp_path):
    whole = program.run_training_process(**_loop_arguments(tmp_path / "whole", 5, []))
    program.run_training_process(**_loop_arguments(tmp_path / "stopped", 2, []))
    after = program.MemoryReleaseManager()
    arguments = _loop_arguments(tmp_path / "stopped", 5, [after])
    rounds_run = []
    process = arguments["training_process"]

    class Counting:
        initialize = process.initialize

        def next(self, state, data):
            rounds_run.append(len(rounds_run))
            return process.next(state, data)

    resumed = program.run_training_process(**{**arguments, "training_process": Counting()})
    assert len(rounds_run) == 3 and list(after.values()) == [
        3,
        4,
        5,
    ]  # rounds 0-2 are not run again
    for a, b in zip(resumed.global_model_weights.trainable, whole.global_model_weights.trainable):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_the_loop_checks_its_arguments_and_shows_progress(tmp_path, capsys):
    arguments = _loop_arguments(tmp_path, 2, [])
    with pytest.raises(ValueError, match="total_rounds must be a positive int"):
        program.run_training_process(**{**arguments, "total_rounds": 0})
    with pytest.warns(UserWarning, match="the one given is ignored"):
        program.run_training_process(**{**arguments, "evaluation_fn": None})
    program.run_training_process(**arguments, progress=True)
    assert "training" in capsys.readouterr().err


def test_released_metrics_plot_to_a_png(tmp_path):
    memory = program.MemoryReleaseManager()
    for key in range(1, 4):
        _run(memory.release({"train": {"loss": 1.0 / key, "accuracy": 0.3 * key}}, key))
    path = program.plot_metrics(memory.values(), tmp_path / "metrics.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="No released metric named 'nope'"):
        program.plot_metrics(memory.values(), tmp_path / "x.png", names=["nope"])


# ---- train_model (TFF's program logic)


def _train_model_arguments(tmp_path, rounds, metrics):
    from fed_learning import programs

    client_data = _client_data(varied=True).preprocess(
        lambda d: d.map(lambda e: (e["x"], e["y"])).batch(4)
    )
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))
    return programs, dict(
        train_process=process,
        train_data_source=program.ClientDataDataSource(client_data, seed=5),
        train_per_round_clients=2,
        train_total_rounds=rounds,
        program_state_manager=program.FileProgramStateManager(tmp_path / "state"),
        model_output_manager=metrics[0],
        train_metrics_manager=metrics[1],
    )


def test_train_model_trains_releases_and_resumes_where_it_would_have_been(tmp_path):
    import asyncio

    whole_models, whole_metrics = program.MemoryReleaseManager(), program.MemoryReleaseManager()
    programs, arguments = _train_model_arguments(
        tmp_path / "whole", 4, (whole_models, whole_metrics)
    )
    asyncio.run(programs.train_model(**arguments))
    assert list(whole_metrics.values()) == [1, 2, 3, 4]
    [(key, whole_state)] = whole_models.values().items()  # the state, after the last round
    assert key == "training_checkpoint_round_4"
    whole_weights = whole_state.global_model_weights

    models_, first = program.MemoryReleaseManager(), program.MemoryReleaseManager()
    programs, arguments = _train_model_arguments(tmp_path / "stopped", 2, (models_, first))
    asyncio.run(programs.train_model(**arguments))
    after = program.MemoryReleaseManager()
    _, arguments = _train_model_arguments(tmp_path / "stopped", 4, (models_, after))
    asyncio.run(programs.train_model(**arguments))
    assert list(first.values()) == [1, 2] and list(after.values()) == [
        3,
        4,
    ]  # 1-2 are not run again
    resumed = models_.values()["training_checkpoint_round_4"].global_model_weights
    assert list(models_.values()) == ["training_checkpoint_round_2", "training_checkpoint_round_4"]
    for a, b in zip(resumed.trainable, whole_weights.trainable):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    counts = [
        m["client_work"]["train"]["num_examples"]
        for m in [*first.values().values(), *after.values().values()]
    ]
    whole_counts = [
        m["client_work"]["train"]["num_examples"] for m in whole_metrics.values().values()
    ]
    assert counts == whole_counts and len(set(counts)) > 1  # the same clients, and not all alike


def test_train_model_evaluates_every_k_rounds_with_an_evaluation_manager(tmp_path):
    import asyncio

    programs, arguments = _train_model_arguments(
        tmp_path, 4, (program.MemoryReleaseManager(), None)
    )
    evaluation_data = program.ClientDataDataSource(
        arguments["train_data_source"]._client_data, seed=9
    )
    evaluated = program.MemoryReleaseManager()
    own = program.MemoryReleaseManager()
    manager = programs.EvaluationManager(
        data_source=evaluation_data,
        aggregated_metrics_manager=evaluated,
        create_state_manager_fn=None,
        create_process_fn=lambda name: (algorithms.build_fed_eval(model_fn), own),
        cohort_size=3,
    )
    asyncio.run(
        programs.train_model(**arguments, evaluation_manager=manager, evaluation_periodicity=3)
    )
    assert list(evaluated.values()) == [3, 4]  # every 3 rounds, and the last
    eval_metrics = evaluated.values()[4]["client_work"]["eval"]["current_round_metrics"]
    assert eval_metrics["num_examples"] > 0 and np.isfinite(eval_metrics["loss"])
    with pytest.raises(ValueError, match="evaluation_periodicity must be a positive int"):
        asyncio.run(
            programs.train_model(**arguments, evaluation_manager=manager, evaluation_periodicity=0)
        )
    with pytest.raises(ValueError, match="train_total_rounds must be a positive int"):
        asyncio.run(programs.train_model(**{**arguments, "train_total_rounds": 0}))


def test_progress_without_tqdm_prints_a_line_per_round(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    program.run_training_process(**_loop_arguments(tmp_path, 2, []), progress=True)
    err = capsys.readouterr().err
    assert "training: round 1/2" in err and "training: round 2/2" in err
