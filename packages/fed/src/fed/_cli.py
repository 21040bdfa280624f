"""fed's command line: `fed plugins` lists what plugins registered; `fed train CONFIG` runs a training
program from a small TOML or JSON file. `python -m fed` is the same."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pathlib
import sys
import time
import tomllib
from collections.abc import Sequence
from typing import Any, NamedTuple

_ALGORITHMS = ("fed_avg", "unweighted_fed_avg", "fed_prox", "fed_sgd")

EXAMPLE = """\
[model]
function = "demo:model_fn"        # module:function returning a model (the config's folder is importable)

[data]
name = "digits"                   # a registered data set (`fed plugins --kind datasets`)
options = { num_clients = 20, alpha = 0.5, seed = 0 }
preprocess = "demo:preprocess"    # optional: module:function mapping a client's dataset to batches

[training]
algorithm = "fed_avg"             # fed_avg, unweighted_fed_avg, fed_prox (with proximal_strength), fed_sgd
rounds = 30
clients_per_round = 10
client_learning_rate = 0.1
server_learning_rate = 1.0
aggregator = "mean"               # optional: a registered aggregator configuration
seed = 0

[output]
dir = "out"                       # checkpoints/, metrics.csv, tensorboard/, metrics.png
"""


# The keys each section of a config may hold: any other is refused, so that a misspelt one is not
# silently left at its default.
_KEYS = {
    "model": ("function",),
    "data": ("name", "options", "preprocess"),
    "training": (
        "algorithm",
        "rounds",
        "clients_per_round",
        "client_learning_rate",
        "server_learning_rate",
        "proximal_strength",
        "aggregator",
        "seed",
    ),
    "output": ("dir",),
}


class ConfigError(ValueError):
    """A training configuration that is missing something or names something that does not exist."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plugins"]:  # its options are fed-core's
        from fed_core.__main__ import main as plugins_main

        return plugins_main(argv)
    parser = argparse.ArgumentParser(prog="fed", description=__doc__)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    commands.add_parser(
        "plugins",
        help="list registered plugin entries and load errors (options: `fed plugins --help`)",
        add_help=False,
    )
    train = commands.add_parser(
        "train",
        help="run a training program from a config file",
        description="Run a training program from a TOML or JSON config file. Example:\n\n"
        + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", type=pathlib.Path, help="the config file (.toml or .json)")
    train.add_argument("--rounds", type=int, help="override [training] rounds")
    train.add_argument("--out", type=pathlib.Path, help="override [output] dir")
    train.add_argument("--fresh", action="store_true", help="start over, discarding saved state")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except ConfigError as error:
        print(f"fed train: {error}", file=sys.stderr)
        return 2


def load_config(path: pathlib.Path) -> dict[str, Any]:
    """The config file as a dict (TOML, or JSON for a .json file), with a clear error if unreadable."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        config = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {error}"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a table of sections, got {type(config).__name__}")
    for section in ("model", "data", "training"):
        if not isinstance(config.get(section), dict):
            raise ConfigError(
                f"{path} needs a [{section}] table; see `fed train --help` for an example"
            )
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; expected {list(_KEYS)}")
    for section, table in config.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table, got {table!r}")
        unknown = sorted(set(table) - set(_KEYS[section]))
        if unknown:
            raise ConfigError(
                f"{path}: unknown keys {unknown} in [{section}]; it takes {list(_KEYS[section])}"
            )
    return config


def _python_object(path: str, what: str) -> Any:
    module, _, attribute = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not module or not attribute:
        raise ConfigError(f"{what} must be 'module:function', got {path!r}")
    try:
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{what} {path!r} cannot be found: {error}") from None
    if not callable(value):
        raise ConfigError(f"{what} {path!r} is not callable")
    return value


def _number(table: dict[str, Any], key: str, default: Any, kind: type) -> Any:
    value = table.get(key, default)
    expected = f"a {'finite ' if kind is float else ''}positive {kind.__name__}"
    if value is None:
        raise ConfigError(f"[training] {key} is missing: it must be {expected}")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float) if kind is float else int)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"[training] {key} must be {expected}, got {value!r}")
    return value


def _train(arguments: argparse.Namespace) -> int:
    from fed_learning.program import ProgramStateStructureError

    try:
        return _train_from(arguments)
    except ProgramStateStructureError as error:
        raise ConfigError(
            f"the saved state does not fit this program ({error}); run with --fresh to start over"
        ) from None


def _train_from(arguments: argparse.Namespace) -> int:
    config = load_config(arguments.config)
    sys.path.insert(0, str(arguments.config.resolve().parent))
    import fed
    from fed_core.plugins import get_registry

    try:
        setup = _setup(arguments, config, fed, get_registry)
    except ConfigError:
        raise
    except (ValueError, TypeError, LookupError, AttributeError) as error:
        raise ConfigError(f"{arguments.config}: {error}") from None
    return _run(arguments, fed, setup)


class _Program(NamedTuple):
    """A training program as its config describes it, ready to run."""

    out: pathlib.Path
    rounds: int
    per_round: int
    name: str
    train: Any
    process: Any
    sample: Any
    evaluation_fn: Any
    evaluation_selection_fn: Any


def _setup(
    arguments: argparse.Namespace, config: dict[str, Any], fed: Any, get_registry: Any
) -> _Program:
    model, data, training = config["model"], config["data"], config["training"]
    output = config.get("output", {})
    if not isinstance(output.get("dir", "out"), str):
        raise ConfigError(f"[output] dir must be a path (a string), got {output['dir']!r}")
    out = arguments.out or pathlib.Path(output.get("dir", "out"))
    rounds = (
        _number({"rounds": arguments.rounds}, "rounds", None, int)
        if arguments.rounds is not None
        else (_number(training, "rounds", None, int))
    )
    if not isinstance(data.get("options", {}), dict):
        raise ConfigError(f"[data] options must be a table, got {data.get('options')!r}")
    per_round = _number(training, "clients_per_round", 10, int)
    seed = training.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"[training] seed must be an int >= 0, got {seed!r}")
    model_fn = _python_object(model.get("function"), "[model] function")

    datasets = get_registry("datasets")
    name = data.get("name")
    if name not in datasets:
        raise ConfigError(
            f"[data] name {name!r} is not a registered data set; registered: {list(datasets.names())}"
        )
    loaded = datasets.build(name, **data.get("options", {}))
    train, test = (
        (loaded[0], loaded[1] if len(loaded) > 1 else None)
        if isinstance(loaded, tuple)
        else (loaded, None)
    )
    if "preprocess" in data:
        preprocess = _python_object(data["preprocess"], "[data] preprocess")
        train = train.preprocess(preprocess)
        test = test.preprocess(preprocess) if test is not None else None
    if per_round > len(train.client_ids):
        raise ConfigError(
            f"[training] clients_per_round is {per_round}, but {name} has {len(train.client_ids)} clients"
        )

    process = _algorithm(fed, training, model_fn)
    sample = fed.simulation.build_uniform_sampling_fn(train.client_ids, random_seed=seed)
    evaluation_fn = evaluation_selection_fn = None
    if test is not None:
        evaluation = fed.learning.algorithms.build_fed_eval(model_fn)
        test_data = [test.create_tf_dataset_for_client(cid) for cid in test.client_ids]

        def evaluation_fn(state: Any, data: Any) -> Any:
            weights = process.get_model_weights(state)
            eval_state = evaluation.set_model_weights(evaluation.initialize(), weights)
            return evaluation.next(eval_state, data).metrics["client_work"]["eval"][
                "current_round_metrics"
            ]

        def evaluation_selection_fn(round_num: int) -> Any:
            return test_data

    return _Program(
        out, rounds, per_round, name, train, process, sample, evaluation_fn, evaluation_selection_fn
    )


def _run(arguments: argparse.Namespace, fed: Any, program: _Program) -> int:
    out, rounds, per_round, name, train, process, sample, evaluation_fn, evaluation_selection_fn = (
        program
    )
    checkpoints = out / "checkpoints"
    if arguments.fresh:
        import shutil

        for stale in (checkpoints, out / "tensorboard"):
            shutil.rmtree(stale, ignore_errors=True)
    manager = fed.program.FileProgramStateManager(checkpoints, keep_total=3)
    done_before = max(fed.program.run_sync(manager.get_versions()) or [0])
    if done_before >= rounds:
        status = f"already trained {done_before} rounds; --rounds more to continue, --fresh to start over"
    elif done_before:
        status = f"resuming after round {done_before}"
    else:
        status = "starting fresh"
    print(
        f"fed train: {name}, {len(train.client_ids)} clients, {per_round} per round, {rounds} rounds; {status}"
    )
    mode = fed.program.CSVSaveMode.APPEND if done_before else fed.program.CSVSaveMode.WRITE
    memory = fed.program.MemoryReleaseManager()
    release = [
        fed.program.CSVFileReleaseManager(out / "metrics.csv", save_mode=mode),
        fed.program.TensorBoardReleaseManager(out / "tensorboard"),
        memory,
    ]
    start = time.perf_counter()
    fed.simulation.run_training_process(
        process,
        lambda round_num: [
            train.create_tf_dataset_for_client(c) for c in sample(round_num, per_round)
        ],
        rounds,
        evaluation_fn=evaluation_fn,
        evaluation_selection_fn=evaluation_selection_fn,
        program_state_manager=manager,
        metrics_managers=release,
        progress=not arguments.no_progress,
    )
    elapsed = time.perf_counter() - start
    values = memory.values()
    if values:
        last_key = max(k for k in values)
        flat = fed.program.flat_metrics(values[last_key])
        shown = {
            k: v
            for k, v in flat.items()
            if isinstance(v, float) and ("loss" in k or "accuracy" in k)
        }
        print(f"round {last_key}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        try:
            fed.program.plot_metrics(values, out / "metrics.png")
        except (ImportError, ValueError):
            pass  # matplotlib is optional; a run without losses or accuracies has nothing to plot
    print(
        f"{len([k for k in values if k])} rounds trained in {elapsed:.1f} s; metrics in "
        f"{out / 'metrics.csv'}, checkpoints in {checkpoints}"
    )
    return 0


def _algorithm(fed: Any, training: dict[str, Any], model_fn: Any) -> Any:
    algorithm = training.get("algorithm", "fed_avg")
    if algorithm not in _ALGORITHMS:
        raise ConfigError(
            f"[training] algorithm must be one of {list(_ALGORITHMS)}, got {algorithm!r}"
        )
    client_lr = _number(training, "client_learning_rate", 0.1, float)
    server_lr = _number(training, "server_learning_rate", 1.0, float)
    options: dict[str, Any] = {}
    if "aggregator" in training:
        options["model_aggregator"] = fed.aggregators.factory_from_config(training["aggregator"])
    algorithms, optimizers = fed.learning.algorithms, fed.learning.optimizers
    server = optimizers.build_sgdm(learning_rate=server_lr)
    if algorithm == "fed_sgd":
        return algorithms.build_fed_sgd(model_fn, server_optimizer_fn=server, **options)
    client = optimizers.build_sgdm(learning_rate=client_lr)
    if algorithm == "fed_prox":
        strength = _number(training, "proximal_strength", None, float)
        return algorithms.build_weighted_fed_prox(model_fn, strength, client, server, **options)
    build = (
        algorithms.build_unweighted_fed_avg
        if algorithm == "unweighted_fed_avg"
        else algorithms.build_weighted_fed_avg
    )
    return build(model_fn, client, server, **options)
