"""`train_model`: TFF's program logic for federated training, resumable from program state."""

from __future__ import annotations

import collections
import datetime
from collections.abc import Callable
from typing import Any

from fed_learning.program import FederatedDataSource, ProgramStateManager

CHECKPOINT_KEY = "training_checkpoint_round_{round_num}"
"""The key `train_model` releases the training state under, every 10 rounds and after the last one."""


async def _resolve(result: Any) -> Any:
    return await result if hasattr(result, "__await__") else result


def _train_metrics(metrics: Any) -> Any:
    """The round's `client_work/train` metrics, kept at that path (what TFF releases)."""
    try:
        train = metrics["client_work"]["train"]
    except (KeyError, TypeError):
        raise KeyError(
            "train_model needs a learning process whose metrics have client_work/train; got "
            f"{type(metrics).__name__} metrics without them."
        ) from None
    return collections.OrderedDict(client_work=collections.OrderedDict(train=train))


async def train_model(
    *,
    train_process: Any,
    train_data_source: FederatedDataSource,
    train_per_round_clients: int,
    train_total_rounds: int,
    program_state_manager: ProgramStateManager,
    model_output_manager: Any,
    initial_train_state: Any = None,
    should_retry_round: Callable[[Any], bool] | None = None,
    train_metrics_manager: Any = None,
    evaluation_manager: Any = None,
    evaluation_periodicity: int | datetime.timedelta | None = None,
) -> None:
    """Trains with `train_process` for `train_total_rounds` rounds of `train_per_round_clients` clients
    selected from `train_data_source`, saving after every round and resuming from the newest save.

    As TFF's: the program state is the training state, the round, the time of the next evaluation and
    the data iterator's position, so a resumed program selects the clients an uninterrupted one would
    have and ends with the same model; a program whose saved round is the last does nothing. Each round's
    `client_work/train` metrics go to `train_metrics_manager` under the round number, and the training
    state to `model_output_manager` under `training_checkpoint_round_N` every 10 rounds and after the
    last. With an `evaluation_manager`, the model is evaluated every `evaluation_periodicity` rounds (an
    int) or when that much time has passed (a `datetime.timedelta`), and after the last round. A round
    for which `should_retry_round(output)` is true is run again from the same data position. A coroutine:
    `await` it, or run it with `asyncio.run`.
    """
    for name, value in (
        ("train_per_round_clients", train_per_round_clients),
        ("train_total_rounds", train_total_rounds),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not (
        callable(getattr(train_process, "initialize", None))
        and callable(getattr(train_process, "next", None))
    ):
        raise TypeError(
            "train_process must be a learning process (with initialize and next), such as one from "
            f"fed.learning.algorithms, got {train_process!r}."
        )
    if not isinstance(train_data_source, FederatedDataSource):
        raise TypeError(
            "train_data_source must be a FederatedDataSource (such as "
            f"fed.program.ClientDataDataSource), got {type(train_data_source).__name__}."
        )
    if evaluation_manager is not None and not (
        isinstance(evaluation_periodicity, datetime.timedelta)
        and evaluation_periodicity.total_seconds() > 0
        or not isinstance(evaluation_periodicity, bool)
        and isinstance(evaluation_periodicity, int)
        and evaluation_periodicity > 0
    ):
        raise ValueError(
            "evaluation_periodicity must be a positive int (rounds) or a positive datetime.timedelta, got "
            f"{evaluation_periodicity!r}."
        )

    if evaluation_manager is not None:
        await evaluation_manager.resume_from_previous_state()
    iterator = train_data_source.iterator()
    state = train_process.initialize() if initial_train_state is None else initial_train_state
    if state is None:
        raise ValueError("The initial train state is None.")
    saved, _ = await program_state_manager.load_latest((state, 0, 0, iterator.to_bytes()))
    if saved is not None:
        state, round_num, next_evaluation_seconds, position = saved
        restore = getattr(iterator, "restore", None)
        iterator = restore(position) if callable(restore) else type(iterator).from_bytes(position)
        if round_num >= train_total_rounds:
            if evaluation_manager is not None:
                await evaluation_manager.wait_for_evaluations_to_finish()
            return
    else:
        round_num, next_evaluation_seconds = 0, 0
        await program_state_manager.save((state, 0, 0, iterator.to_bytes()), 0)

    def should_evaluate(round_num: int, finished: datetime.datetime) -> bool:
        nonlocal next_evaluation_seconds
        if round_num == train_total_rounds:
            return True
        if isinstance(evaluation_periodicity, int):
            return round_num % evaluation_periodicity == 0
        if not next_evaluation_seconds or next_evaluation_seconds < finished.timestamp():
            next_evaluation_seconds = int((finished + evaluation_periodicity).timestamp())  # type: ignore[operator]
            return True
        return False

    round_num += 1
    while round_num <= train_total_rounds:
        position = iterator.to_bytes()
        output = train_process.next(state, iterator.select(train_per_round_clients))
        if should_retry_round is not None and should_retry_round(output):
            restore = getattr(iterator, "restore", None)
            iterator = (
                restore(position) if callable(restore) else type(iterator).from_bytes(position)
            )
            continue
        state = output.state
        finished = datetime.datetime.now()
        if evaluation_manager is not None and should_evaluate(round_num, finished):
            await evaluation_manager.start_evaluation(
                round_num, int(finished.timestamp()), train_process.get_model_weights(state)
            )
        await program_state_manager.save(
            (state, round_num, next_evaluation_seconds, iterator.to_bytes()), round_num
        )
        if train_metrics_manager is not None:
            await _resolve(train_metrics_manager.release(_train_metrics(output.metrics), round_num))
        if round_num % 10 == 0 or round_num == train_total_rounds:
            key = CHECKPOINT_KEY.format(round_num=round_num)
            await _resolve(model_output_manager.release(state, key))
        round_num += 1
    if evaluation_manager is not None:
        await evaluation_manager.wait_for_evaluations_to_finish()
