"""Client sampling for simulation rounds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import tensorflow as tf

from fed_datasets._client_data import ClientData, check_bool, check_int, check_seed

T = TypeVar("T")


def build_uniform_sampling_fn(
    sample_range: Sequence[T], replace: bool = False, random_seed: int | None = None
) -> Callable[[int, int], list[T]]:
    """Returns `sample(round_num, size)`, drawing `size` items of `sample_range` uniformly.

    With `random_seed`, the draw depends only on (random_seed, round_num): the same round gives
    the same items, different rounds independent draws. Without it, every call draws afresh.
    Items are drawn without replacement unless `replace`.
    """
    if isinstance(sample_range, str | bytes) or not isinstance(sample_range, Iterable):
        raise TypeError(
            "sample_range must be a sequence of items (such as client ids), got "
            f"{type(sample_range).__name__}"
        )
    items = list(sample_range)
    if not items:
        raise ValueError("sample_range must hold at least one item, got none")
    replace = check_bool(replace, "replace")
    seed = check_seed(random_seed, "random_seed")

    def sample(round_num: int, size: int) -> list[T]:
        round_num = check_int(round_num, "round_num", minimum=0)
        size = check_int(size, "size", minimum=0)
        if not replace and size > len(items):
            raise ValueError(
                f"cannot draw {size} items without replacement from {len(items)}; pass "
                "replace=True or a smaller size"
            )
        rng = np.random.default_rng(None if seed is None else [seed, round_num])
        return [items[i] for i in rng.choice(len(items), size=size, replace=replace)]

    return sample


def build_client_selection_fn(
    client_data: ClientData,
    clients_per_round: int,
    *,
    replace: bool = False,
    random_seed: int | None = None,
) -> Callable[[int], list[tf.data.Dataset]]:
    """Returns `select(round_num)`: the datasets of `clients_per_round` clients drawn uniformly.

    The list is what a training process's `next(state, data)` takes. Reproducible as
    `build_uniform_sampling_fn(client_data.client_ids, replace, random_seed)`, which gives the
    ids of the same clients.
    """
    if not isinstance(client_data, ClientData):
        raise TypeError(f"client_data must be a ClientData, got {type(client_data).__name__}")
    count = check_int(clients_per_round, "clients_per_round", minimum=1)
    sample_ids = build_uniform_sampling_fn(client_data.client_ids, replace, random_seed)

    def select(round_num: int) -> list[tf.data.Dataset]:
        return [client_data.create_tf_dataset_for_client(i) for i in sample_ids(round_num, count)]

    return select
