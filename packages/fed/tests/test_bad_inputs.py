"""What the umbrella's own entry points do with the inputs a new user gets wrong: TFF's type helpers,
the context setters of `fed.backends`, `fed.simulation`'s composition of a learning process, the lazy
namespace, and `fed train` with bad command lines and configs. Each case names the error type and words
of its message that say what was expected and what was given; a setter that refuses its options leaves
the default context as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fed
from fed._cli import main
from fed_core.execution import get_context


def check(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return raised.value


# ---- fed.type_at_clients and fed.type_at_server

A_TYPE_SPEC = "Expected a type spec (a Type, a dtype, a (dtype, shape) pair, a tensor spec"

TYPE_HELPERS = {
    "None": (lambda: fed.type_at_clients(None), TypeError, [A_TYPE_SPEC, "got None"]),
    "an object": (
        lambda: fed.type_at_server(object()),
        TypeError,
        [A_TYPE_SPEC, "of Python type object"],
    ),
    "a function": (
        lambda: fed.type_at_server(len),
        TypeError,
        [A_TYPE_SPEC, "builtin_function_or_method"],
    ),
    "a misspelt dtype name": (
        lambda: fed.type_at_clients("flaot32"),
        TypeError,
        ["Expected a type spec", "'flaot32', which is not a dtype name"],
    ),
    "a placement": (
        lambda: fed.type_at_server(fed.CLIENTS),
        TypeError,
        [A_TYPE_SPEC, "got CLIENTS"],
    ),
    "a federated member": (
        lambda: fed.type_at_clients(fed.type_at_server(np.float32)),
        TypeError,
        ["member cannot hold FederatedTypes", "float32@SERVER"],
    ),
    "all_equal as a string": (
        lambda: fed.type_at_clients(np.float32, all_equal="yes"),
        TypeError,
        ["all_equal to be True, False or None", "'yes'"],
    ),
}


@pytest.mark.parametrize(("call", "error", "words"), TYPE_HELPERS.values(), ids=TYPE_HELPERS.keys())
def test_the_type_helpers_refuse_what_is_not_a_type(call, error, words):
    check(call, error, words)


def test_the_type_helpers_build_the_types_they_name():
    assert str(fed.type_at_clients("float32")) == "{float32}@CLIENTS"
    assert str(fed.type_at_clients(np.int32, all_equal=True)) == "int32@CLIENTS"
    assert str(fed.type_at_server((np.float32, [2]))) == "float32[2]@SERVER"


# ---- fed.backends: the context setters

native, backends = fed.backends.native, fed.backends
MAX_CONCURRENCY = "max_concurrency must be a positive number of threads, got"
DEFAULT_NUM_CLIENTS = "default_num_clients must be an int >= 0, got"
DEVICES = "devices must be a list of device names such as ['/GPU:0'], got"
RAY_OPTION = "must be an int >= 1, got"

SETTERS = {
    "max_concurrency 0": (
        lambda: native.set_sync_local_execution_context(max_concurrency=0),
        ValueError,
        [f"{MAX_CONCURRENCY} 0."],
    ),
    "max_concurrency as a string": (
        lambda: native.set_sync_local_execution_context(max_concurrency="4"),
        ValueError,
        [f"{MAX_CONCURRENCY} '4'."],
    ),
    "max_concurrency True": (
        lambda: native.set_local_python_execution_context(max_concurrency=True),
        ValueError,
        [f"{MAX_CONCURRENCY} True."],
    ),
    "default_num_clients -1": (
        lambda: native.set_sync_local_execution_context(default_num_clients=-1),
        ValueError,
        [f"{DEFAULT_NUM_CLIENTS} -1."],
    ),
    "default_num_clients 1.5": (
        lambda: native.set_sync_local_execution_context(default_num_clients=1.5),
        ValueError,
        [f"{DEFAULT_NUM_CLIENTS} 1.5."],
    ),
    "devices as one string": (
        lambda: native.set_sync_local_execution_context(devices="/GPU:0"),
        TypeError,
        [f"{DEVICES} '/GPU:0'."],
    ),
    "devices as a number": (
        lambda: native.set_sync_local_execution_context(devices=5),
        TypeError,
        [f"{DEVICES} 5."],
    ),
    "devices as numbers": (
        lambda: native.set_sync_local_execution_context(devices=[0, 1]),
        TypeError,
        [f"{DEVICES} [0, 1]."],
    ),
    "TFF's concurrent calls 2.5": (
        lambda: native.set_sync_local_cpp_execution_context(max_concurrent_computation_calls=2.5),
        ValueError,
        [f"{MAX_CONCURRENCY} 2.5."],
    ),
    "TFF's concurrent calls -2": (
        lambda: native.set_sync_local_cpp_execution_context(max_concurrent_computation_calls=-2),
        ValueError,
        [f"{MAX_CONCURRENCY} -2."],
    ),
    "TFF's concurrent calls 0": (
        lambda: native.set_sync_local_cpp_execution_context(max_concurrent_computation_calls=0),
        ValueError,
        [f"{MAX_CONCURRENCY} 0."],
    ),
    "the test context's clients as a string": (
        lambda: fed.backends.test.set_sync_test_cpp_execution_context(default_num_clients="3"),
        ValueError,
        [f"{DEFAULT_NUM_CLIENTS} '3'."],
    ),
    "the XLA context's clients True": (
        lambda: fed.backends.xla.set_local_execution_context(default_num_clients=True),
        ValueError,
        [f"{DEFAULT_NUM_CLIENTS} True."],
    ),
    "the XLA context's max_concurrency -1": (
        lambda: fed.backends.xla.set_local_python_execution_context(max_concurrency=-1),
        ValueError,
        [f"{MAX_CONCURRENCY} -1."],
    ),
    "an unknown executor": (
        lambda: backends.set_context("nope"),
        LookupError,
        ["no executors named 'nope'", "registered: ", "'local'"],
    ),
    "an executor name that is not a string": (
        lambda: backends.set_context(5),
        LookupError,
        ["no executors named 5", "'local'"],
    ),
    "an option the local executor does not take": (
        lambda: backends.set_context("local", max_concurency=2),
        TypeError,
        ["does not take the options ['max_concurency']", "it takes max_concurrency"],
    ),
    "remote channels as a number": (
        lambda: native.set_remote_python_execution_context(5),
        TypeError,
        ["channels must be a list of channels (one per remote worker), got 5."],
    ),
    "remote channels as a string": (
        lambda: native.set_remote_python_execution_context("localhost:8000"),
        TypeError,
        ["channels must be a list of channels", "got 'localhost:8000'."],
    ),
    "remote channels None": (
        lambda: native.set_remote_python_execution_context(None),
        TypeError,
        ["channels must be a list of channels", "got None."],
    ),
    "no remote channels": (
        lambda: native.set_remote_python_execution_context([]),
        ValueError,
        ["needs at least one channel"],
    ),
    # The Ray executor checks its options before it joins or starts a cluster.
    "Ray: no actors": (
        lambda: backends.ray.set_sync_ray_execution_context(num_actors=0),
        ValueError,
        [f"num_actors {RAY_OPTION} 0."],
    ),
    "Ray: actors as a string": (
        lambda: backends.ray.create_sync_ray_execution_context(num_actors="2"),
        TypeError,
        [f"num_actors {RAY_OPTION} '2' of type str."],
    ),
    "Ray: a misspelt option": (
        lambda: backends.ray.create_sync_ray_execution_context(num_actor=2),
        TypeError,
        ["The Ray executor does not take the options ['num_actor']", "num_actors"],
    ),
}


@pytest.mark.parametrize(("call", "error", "words"), SETTERS.values(), ids=SETTERS.keys())
def test_a_context_setter_refuses_bad_options_and_keeps_the_default_context(call, error, words):
    before = get_context()
    check(call, error, words)
    assert get_context() is before


def test_tffs_concurrent_calls_map_to_threads():
    """TFF's -1 (no limit) is the default, and its tutorial's `16 / 2` is 8 threads."""
    before = get_context()
    try:
        context = native.set_sync_local_cpp_execution_context(
            max_concurrent_computation_calls=16 / 2
        )
        assert context.executor.max_concurrency == 8 and get_context() is context
        context = native.set_sync_local_cpp_execution_context(max_concurrent_computation_calls=-1)
        assert context.executor.max_concurrency >= 1
    finally:
        fed.framework.set_default_context(before)


# ---- fed.simulation and the lazy namespace


def test_composing_a_dataset_computation_needs_a_learning_process():
    @fed.tensorflow.computation(np.str_)
    def make_dataset(name):
        import tensorflow as tf

        return tf.data.Dataset.range(3)

    compose = fed.simulation.compose_dataset_computation_with_learning_process
    check(
        lambda: compose(make_dataset, 5),
        TypeError,
        ["Expected process to be a LearningProcess, got 5 of type int."],
    )
    process = fed.templates.IterativeProcess(
        fed.federated_computation(lambda: fed.federated_value(0, fed.SERVER)),
        fed.federated_computation(lambda state: state, fed.type_at_server(np.int32)),
    )
    check(
        lambda: compose(make_dataset, process),
        TypeError,
        ["Expected process to be a LearningProcess", "of type IterativeProcess"],
    )


@pytest.mark.parametrize(
    ("owner", "name"), [(fed, "nope"), (fed.types, "tensorflow_to_typ"), (fed.backends, "rey")]
)
def test_a_missing_name_says_which_module_lacks_it(owner, name):
    check(lambda: getattr(owner, name), AttributeError, [f"has no attribute {name!r}"])


# ---- the command line: `fed train`

VALID = {
    "model": {"function": "os:getcwd"},
    "data": {"name": "digits"},
    "training": {"rounds": 1},
}


def _config(**changes):
    """VALID with `section.key=value` changes (a value of None removes the key)."""
    config = json.loads(json.dumps(VALID))
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if not key:
            config[section] = value
            continue
        table = config.setdefault(section, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return config


CONFIGS = {
    "rounds missing": (
        _config(training__rounds=None),
        "[training] rounds is missing: it must be a positive int",
    ),
    "rounds as a string": (
        _config(training__rounds="3"),
        "[training] rounds must be a positive int, got '3'",
    ),
    "rounds 1.5": (
        _config(training__rounds=1.5),
        "[training] rounds must be a positive int, got 1.5",
    ),
    "rounds true": (
        _config(training__rounds=True),
        "[training] rounds must be a positive int, got True",
    ),
    "rounds -1": (_config(training__rounds=-1), "[training] rounds must be a positive int, got -1"),
    "no clients per round": (
        _config(training__clients_per_round=0),
        "[training] clients_per_round must be a positive int, got 0",
    ),
    "more clients per round than clients": (
        _config(training__clients_per_round=10**6, data__options={"num_clients": 5}),
        "[training] clients_per_round is 1000000, but digits has 5 clients",
    ),
    "a learning rate as a string": (
        _config(training__client_learning_rate="fast"),
        "[training] client_learning_rate must be a finite positive float, got 'fast'",
    ),
    "a NaN learning rate": (
        _config(training__client_learning_rate=float("nan")),
        "[training] client_learning_rate must be a finite positive float, got nan",
    ),
    "a negative learning rate": (
        _config(training__server_learning_rate=-1.0),
        "[training] server_learning_rate must be a finite positive float, got -1.0",
    ),
    "an unknown algorithm": (
        _config(training__algorithm="fedavg"),
        "[training] algorithm must be one of ['fed_avg', 'unweighted_fed_avg', 'fed_prox', 'fed_sgd'], got 'fedavg'",
    ),
    "fed_prox without its strength": (
        _config(training__algorithm="fed_prox"),
        "[training] proximal_strength is missing: it must be a finite positive float",
    ),
    "a seed 1.5": (_config(training__seed=1.5), "[training] seed must be an int >= 0, got 1.5"),
    "a negative seed": (_config(training__seed=-3), "[training] seed must be an int >= 0, got -3"),
    "a misspelt training key": (
        _config(training__client_learnig_rate=0.5),
        "unknown keys ['client_learnig_rate'] in [training]; it takes ['algorithm', 'rounds'",
    ),
    "a misspelt section": (
        _config(trainig={"rounds": 2}),
        "unknown sections ['trainig']; expected ['model', 'data'",
    ),
    "[output] as a string": (_config(output="out"), "[output] must be a table, got 'out'"),
    "[output] dir as a number": (
        _config(output__dir=5),
        "[output] dir must be a path (a string), got 5",
    ),
    "[model] function without a module": (
        _config(model__function="model_fn"),
        "[model] function must be 'module:function', got 'model_fn'",
    ),
    "[model] function as a number": (
        _config(model__function=5),
        "[model] function must be 'module:function', got 5",
    ),
    "[model] function in no module": (
        _config(model__function="no_such_module_here:model_fn"),
        "[model] function 'no_such_module_here:model_fn' cannot be found: No module named",
    ),
    "[model] function not callable": (
        _config(model__function="os:sep"),
        "[model] function 'os:sep' is not callable",
    ),
    "[data] name unknown": (
        _config(data__name="digit"),
        "[data] name 'digit' is not a registered data set; registered: [",
    ),
    "[data] name missing": (
        _config(data__name=None),
        "[data] name None is not a registered data set",
    ),
    "[data] options as a list": (
        _config(data__options=[20]),
        "[data] options must be a table, got [20]",
    ),
    "[data] an option the data set does not take": (
        _config(data__options={"num_client": 5}),
        "num_client",
    ),
    "[data] preprocess not a function": (
        _config(data__preprocess="os:sep"),
        "[data] preprocess 'os:sep' is not callable",
    ),
    "[training] aggregator unknown": (
        _config(training__aggregator="meen"),
        "no aggregators named 'meen'",
    ),
}


@pytest.mark.parametrize(("config", "message"), CONFIGS.values(), ids=CONFIGS.keys())
def test_fed_train_refuses_a_bad_config_with_status_2(
    tmp_path, monkeypatch, capsys, config, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps(config))
    assert main(["train", "bad.json", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fed train: ") and message in error, error
    assert not (tmp_path / "out").exists()  # nothing was written


FILES = {
    "a missing file": (None, "cannot read missing.toml: No such file or directory"),
    "an empty file": ("", "needs a [model] table"),
    "bad TOML": ("[model\nfunction = 1", "missing.toml is not valid TOML"),
    "a section that is not a table": ("model = 5\n[data]\n[training]\n", "needs a [model] table"),
}


@pytest.mark.parametrize(("text", "message"), FILES.values(), ids=FILES.keys())
def test_fed_train_refuses_an_unreadable_config(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / "missing.toml").write_text(text)
    assert main(["train", "missing.toml"]) == 2
    assert message in capsys.readouterr().err


def test_fed_train_refuses_a_directory_and_bad_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").mkdir()
    assert main(["train", "config.toml"]) == 2
    assert "cannot read config.toml: Is a directory" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"model": ')
    assert main(["train", "bad.json"]) == 2
    assert "bad.json is not valid JSON: Expecting value" in capsys.readouterr().err


COMMAND_LINES = {
    "no command": ([], "the following arguments are required: COMMAND"),
    "an unknown command": (["trian"], "invalid choice: 'trian'"),
    "train without a config": (["train"], "the following arguments are required: config"),
    "rounds that are not a number": (
        ["train", "x.toml", "--rounds", "two"],
        "argument --rounds: invalid int value: 'two'",
    ),
    "an unknown option": (
        ["train", "x.toml", "--epochs", "2"],
        "unrecognized arguments: --epochs 2",
    ),
}


@pytest.mark.parametrize(("argv", "message"), COMMAND_LINES.values(), ids=COMMAND_LINES.keys())
def test_a_bad_command_line_exits_with_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: fed") and message in error, error


def test_a_zero_or_negative_round_override_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.json").write_text(json.dumps(VALID))
    for rounds in ("0", "-2"):
        assert main(["train", "ok.json", "--rounds", rounds]) == 2
        assert f"[training] rounds must be a positive int, got {rounds}" in capsys.readouterr().err
