"""`train_model`: TFF's program logic for federated training, resumable from program state."""

from __future__ import annotations

import datetime
import time
from typing import Any

from fed_core.framework import run_sync
from fed_learning.program import FederatedDataSource, ProgramStateManager

FINAL_MODEL_KEY = "final_training_checkpoint"
"""The key `train_model` releases the final model weights under."""


async def _resolve(result: Any) -> Any:
    return await result if hasattr(result, "__await__") else result


async def train_model(
    *,
    train_process: Any,
    train_data_source: FederatedDataSource,
    train_per_round_clients: int,
    train_total_rounds: int,
    program_state_manager: ProgramStateManager,
    model_output_manager: Any,
    initial_train_state: Any = None,
    train_metrics_manager: Any = None,
    evaluation_manager: Any = None,
    evaluation_periodicity: Any = None,
) -> None:
    """Trains with `train_process` for `train_total_rounds` rounds of `train_per_round_clients` clients
    selected from `train_data_source`, saving after every round and resuming from the newest save.

    The program state is the training state, the round number and the data iterator's position, so a
    resumed program selects the clients an uninterrupted one would have, and ends with the same model.
    Each round's metrics go to `train_metrics_manager` under the round number; the final model weights go
    to `model_output_manager` under `FINAL_MODEL_KEY`. With an `evaluation_manager`, the model is
    evaluated after round 0 and then every `evaluation_periodicity` rounds (an int) or whenever that much
    time has passed (a `datetime.timedelta`). A coroutine, as in TFF: `await` it, or run it with
    `asyncio.run`.
    """
    if evaluation_manager is not None:
        if isinstance(evaluation_periodicity, datetime.timedelta):
            if evaluation_periodicity.total_seconds() <= 0:
                raise ValueError(
                    f"evaluation_periodicity must be positive, got {evaluation_periodicity!r}."
                )
        elif (
            isinstance(evaluation_periodicity, bool)
            or not isinstance(evaluation_periodicity, int)
            or evaluation_periodicity < 1
        ):
            raise ValueError(
                "evaluation_periodicity must be a positive int (rounds) or a datetime.timedelta, got "
                f"{evaluation_periodicity!r}."
            )
    for name, value in (
        ("train_per_round_clients", train_per_round_clients),
        ("train_total_rounds", train_total_rounds),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(train_data_source, FederatedDataSource):
        raise TypeError(
            f"train_data_source must be a FederatedDataSource, got {train_data_source!r}."
        )

    initial_state = (
        train_process.initialize() if initial_train_state is None else initial_train_state
    )
    iterator = train_data_source.iterator()
    template = (initial_state, 0, iterator.to_bytes())
    saved, _ = await program_state_manager.load_latest(template)
    last_evaluation = time.monotonic()

    async def evaluate(round_num: int) -> None:
        nonlocal last_evaluation
        last_evaluation = time.monotonic()
        await evaluation_manager.start_evaluation(
            round_num, int(time.time()), train_process.get_model_weights(state)
        )

    def evaluation_due(round_num: int) -> bool:
        if evaluation_manager is None:
            return False
        if isinstance(evaluation_periodicity, datetime.timedelta):
            return time.monotonic() - last_evaluation >= evaluation_periodicity.total_seconds()
        return round_num % evaluation_periodicity == 0

    if evaluation_manager is not None:
        await evaluation_manager.resume_from_previous_state()
    if saved is None:
        state, round_num = initial_state, 0
        await program_state_manager.save(template, 0)
        if evaluation_manager is not None:
            await evaluate(0)
    else:
        state, round_num, position = saved
        restore = getattr(iterator, "restore", None)
        iterator = restore(position) if callable(restore) else type(iterator).from_bytes(position)

    while round_num < train_total_rounds:
        round_num += 1
        output = train_process.next(state, iterator.select(train_per_round_clients))
        state = output.state
        if train_metrics_manager is not None:
            await _resolve(train_metrics_manager.release(output.metrics, round_num))
        await program_state_manager.save((state, round_num, iterator.to_bytes()), round_num)
        if evaluation_due(round_num):
            await evaluate(round_num)

    if evaluation_manager is not None:
        await evaluation_manager.wait_for_evaluations_to_finish()
    await _resolve(
        model_output_manager.release(train_process.get_model_weights(state), FINAL_MODEL_KEY)
    )


def train_model_sync(**arguments: Any) -> None:
    """`train_model` run to completion from synchronous code."""
    run_sync(train_model(**arguments))
