"""Training loops: TFF's `run_training_process`, resumable from program state and releasing metrics."""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from fed_core.framework import run_sync

ROUND_NUMBER_KEY = "round_number"
"""The key of the round number in the metrics `run_training_process` releases."""
TRAINING_TIME_KEY = "training_time_in_seconds"
"""The key of a round's training time, in seconds, in the released metrics."""
EVALUATION_METRICS_PREFIX = "evaluation/"
"""The prefix of the evaluation metrics' names in the released metrics."""
EVALUATION_TIME_KEY = "evaluation_time_in_seconds"
"""The key of an evaluation's time, in seconds, in the released metrics."""


def _split_output(output: Any) -> tuple[Any, Any]:
    state = getattr(output, "state", None)
    metrics = getattr(output, "metrics", None)
    if state is not None or metrics is not None:
        return state, metrics
    state, metrics = output
    return state, metrics


def _as_dict(metrics: Any) -> collections.OrderedDict[str, Any]:
    if isinstance(metrics, dict):
        return collections.OrderedDict(metrics)
    if hasattr(metrics, "_asdict"):
        return collections.OrderedDict(metrics._asdict())
    return collections.OrderedDict(metrics=metrics)


def _evaluate(
    evaluation_fn: Callable[[Any, Any], Any],
    selection_fn: Callable[[int], Any],
    state: Any,
    round_num: int,
) -> collections.OrderedDict[str, Any]:
    start = time.perf_counter()
    metrics = _as_dict(evaluation_fn(state, selection_fn(round_num)))
    metrics[EVALUATION_TIME_KEY] = time.perf_counter() - start
    return collections.OrderedDict((EVALUATION_METRICS_PREFIX + k, v) for k, v in metrics.items())


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def run_training_process(
    training_process: Any,
    training_selection_fn: Callable[[int], Any],
    total_rounds: int,
    evaluation_fn: Callable[[Any, Any], Any] | None = None,
    evaluation_selection_fn: Callable[[int], Any] | None = None,
    rounds_per_evaluation: int = 1,
    program_state_manager: Any = None,
    rounds_per_saving_program_state: int = 1,
    metrics_managers: Iterable[Any] | None = None,
    *,
    progress: bool = False,
) -> Any:
    """Runs `training_process` for rounds 1 to `total_rounds` and returns its final state (TFF's loop).

    Each round calls `training_process.next(state, training_selection_fn(round_num))`; every
    `rounds_per_evaluation` rounds, `evaluation_fn(state, evaluation_selection_fn(round_num))`, whose
    metrics are prefixed `evaluation/`. The round's metrics, with `round_number` and
    `training_time_in_seconds`, go to every release manager in `metrics_managers` under the round number.

    With a `program_state_manager`, the state is saved as version 0 before training and every
    `rounds_per_saving_program_state` rounds; a run that finds saved state resumes after the newest save
    (so a run stopped and restarted with the same arguments ends with the same state as one that was not
    stopped, when rounds are deterministic), and does not evaluate round 0 again. Managers may be TFF's
    (coroutine methods) or plain. `progress=True` shows a progress bar with the latest metrics (tqdm).
    """
    if not (
        callable(getattr(training_process, "initialize", None))
        and callable(getattr(training_process, "next", None))
    ):
        raise TypeError(
            "training_process must be an iterative process (with initialize and next), such as one "
            f"from fed.learning.algorithms, got {training_process!r}."
        )
    for name, fn in (
        ("training_selection_fn", training_selection_fn),
        ("evaluation_fn", evaluation_fn),
        ("evaluation_selection_fn", evaluation_selection_fn),
    ):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}.")
    total_rounds = _check_positive(total_rounds, "total_rounds")
    rounds_per_evaluation = _check_positive(rounds_per_evaluation, "rounds_per_evaluation")
    rounds_per_saving_program_state = _check_positive(
        rounds_per_saving_program_state, "rounds_per_saving_program_state"
    )
    if (evaluation_fn is None) != (evaluation_selection_fn is None):
        # As TFF's loop: evaluation runs only with both (and one alone is ignored), with a warning here.
        warnings.warn(
            "run_training_process evaluates only when both evaluation_fn and evaluation_selection_fn are "
            "given; the one given is ignored.",
            stacklevel=2,
        )
        evaluation_fn = evaluation_selection_fn = None
    managers = list(metrics_managers or [])

    def release(metrics: Any, key: int) -> None:
        for manager in managers:
            run_sync(manager.release(metrics, key))

    initial_state = training_process.initialize()
    state, version = (None, 0)
    if program_state_manager is not None:
        state, version = run_sync(program_state_manager.load_latest(initial_state))
    if state is not None:
        start_round = version + 1
    else:
        state = initial_state
        start_round = 1
        if evaluation_fn is not None:
            release(_evaluate(evaluation_fn, evaluation_selection_fn, state, 0), 0)  # type: ignore[arg-type]
        if program_state_manager is not None:
            run_sync(program_state_manager.save(state, 0))

    rounds = range(start_round, total_rounds + 1)
    bar = _progress_bar(rounds, total_rounds, start_round) if progress else None
    for round_num in rounds:
        start = time.perf_counter()
        state, training_metrics = _split_output(
            training_process.next(state, training_selection_fn(round_num))
        )
        round_metrics = _as_dict(training_metrics)
        round_metrics[TRAINING_TIME_KEY] = time.perf_counter() - start
        round_metrics[ROUND_NUMBER_KEY] = round_num
        if evaluation_fn is not None and round_num % rounds_per_evaluation == 0:
            round_metrics.update(
                _evaluate(evaluation_fn, evaluation_selection_fn, state, round_num)  # type: ignore[arg-type]
            )
        release(round_metrics, round_num)
        if program_state_manager is not None and round_num % rounds_per_saving_program_state == 0:
            run_sync(program_state_manager.save(state, round_num))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(_summary(round_metrics), refresh=False)
    if bar is not None:
        bar.close()
    return state


def _progress_bar(rounds: range, total: int, start: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: a line per round instead
        return _TextProgress(total, start - 1)
    return tqdm(total=total, initial=start - 1, desc="training", unit="round")


class _TextProgress:
    """A line per round on stderr, where tqdm is not installed."""

    def __init__(self, total: int, done: int):
        self._total, self._done = total, done
        self._postfix: dict[str, Any] = {}
        self._start = time.perf_counter()

    def update(self, count: int) -> None:
        self._done += count

    def set_postfix(self, postfix: dict[str, str], refresh: bool = False) -> None:
        import sys

        shown = "  ".join(f"{k}={v}" for k, v in postfix.items())
        print(f"training: round {self._done}/{self._total}  {shown}", file=sys.stderr)

    def close(self) -> None:
        pass


def _summary(metrics: dict[str, Any]) -> dict[str, str]:
    """A few scalar metrics for the progress bar: losses and accuracies, and the round's time."""
    from fed_learning.program._release import flat_metrics

    shown = {}
    for name, value in flat_metrics(metrics).items():
        short = name.rsplit("/", 1)[-1]
        if isinstance(value, float) and (
            "loss" in short or "accuracy" in short or short == TRAINING_TIME_KEY
        ):
            label = "s/round" if short == TRAINING_TIME_KEY else name.replace("client_work/", "")
            shown[label] = f"{value:.4g}"
    return dict(list(shown.items())[:4])


def plot_metrics(values: dict[Any, Any], path: Any, names: Iterable[str] | None = None) -> Any:
    """A PNG plot of released metrics by round (the values a `MemoryReleaseManager` kept): one panel per
    metric name (the scalar ones with 'loss' or 'accuracy' in their names, or `names`). Needs matplotlib
    (an optional dependency); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fed_learning.program._release import flat_metrics

    series: dict[str, list[tuple[Any, float]]] = collections.defaultdict(list)
    for key, value in values.items():
        for name, metric in flat_metrics(value).items():
            if isinstance(metric, (int, float)) and not isinstance(metric, bool):
                series[name].append((key, float(metric)))
    wanted = (
        list(names)
        if names is not None
        else [n for n in series if any(w in n.rsplit("/", 1)[-1] for w in ("loss", "accuracy"))]
    )
    if not wanted:
        raise ValueError(f"No metrics to plot among {sorted(series)}.")
    figure, axes = plt.subplots(1, len(wanted), figsize=(4 * len(wanted), 3.5), squeeze=False)
    for axis, name in zip(axes[0], wanted):
        points = series.get(name)
        if not points:
            raise ValueError(f"No released metric named {name!r}; released: {sorted(series)}.")
        axis.plot([k for k, _ in points], [v for _, v in points])
        axis.set(title=name, xlabel="round")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
