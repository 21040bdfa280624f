"""Evaluation during a training program (TFF's `EvaluationManager`, run synchronously)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def _resolve(result: Any) -> Any:
    return await result if hasattr(result, "__await__") else result


class EvaluationManager:
    """Evaluates the model of a training round on clients from `data_source` (TFF's interface).

    `create_process_fn(name)` returns `(evaluation_process, metrics_manager or None)`, the process being a
    `build_fed_eval` process. `start_evaluation(train_round, start_timestamp_seconds, model_weights)` runs
    one round of it on `cohort_size` clients and releases its metrics to `aggregated_metrics_manager`
    under the training round (and to the evaluation's own manager under 0). TFF runs each evaluation for
    a `duration`, concurrently with training; fed runs one evaluation round at once, so
    `wait_for_evaluations_to_finish` and `resume_from_previous_state` have nothing left to do.
    """

    def __init__(
        self,
        data_source: Any,
        aggregated_metrics_manager: Any,
        create_state_manager_fn: Callable[[str], Any] | None,
        create_process_fn: Callable[[str], tuple[Any, Any]],
        cohort_size: int,
        duration: Any = None,
    ):
        if isinstance(cohort_size, bool) or not isinstance(cohort_size, int) or cohort_size < 1:
            raise ValueError(f"cohort_size must be a positive int, got {cohort_size!r}.")
        if not callable(create_process_fn):
            raise TypeError(f"create_process_fn must be callable, got {create_process_fn!r}.")
        if not callable(getattr(data_source, "iterator", None)):
            raise TypeError(
                "data_source must be a FederatedDataSource (such as "
                f"fed.program.ClientDataDataSource), got {type(data_source).__name__}."
            )
        self._iterator = data_source.iterator()
        self._metrics_manager = aggregated_metrics_manager
        self._create_process_fn = create_process_fn
        self._cohort_size = cohort_size
        self.evaluated_rounds: list[int] = []

    async def resume_from_previous_state(self) -> None:
        """Nothing to resume: evaluations finish when they start."""

    async def start_evaluation(
        self, train_round: int, start_timestamp_seconds: int, model_weights: Any
    ) -> None:
        process, own_manager = self._create_process_fn(
            f"evaluation_of_train_round_{train_round:05d}"
        )
        state = process.set_model_weights(process.initialize(), model_weights)
        metrics = process.next(state, self._iterator.select(self._cohort_size)).metrics
        if self._metrics_manager is not None:
            await _resolve(self._metrics_manager.release(metrics, train_round))
        if own_manager is not None:
            await _resolve(own_manager.release(metrics, 0))
        self.evaluated_rounds.append(train_round)

    async def wait_for_evaluations_to_finish(self) -> None:
        """Nothing to wait for: evaluations finish when they start."""
