"""Partitioners: turn a centralized data set (arrays) into federated `ClientData`.

`examples` is what `TestClientData` takes for one client: a dict of arrays, a tuple of arrays, or
an array, whose first dimension indexes the examples. Client ids are '0', '1', ... in order.
Every example goes to exactly one client, and a seed makes the assignment reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from fed_datasets._client_data import (
    TestClientData,
    check_int,
    check_positive_number,
    check_seed,
    leaves_with_paths,
    normalize_examples,
)


def _num_examples(structure: Any) -> int:
    leaves = leaves_with_paths(structure)
    sizes: dict[Any, int | None] = {
        path: leaf.shape[0] if leaf.ndim else None for path, leaf in leaves
    }
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            "every array of examples needs the same first dimension (the number of examples), "
            f"got first dimensions {sizes}"
        )
    (n,) = {size for size in sizes.values() if size is not None}
    if n == 0:
        raise ValueError("examples holds no example")
    return int(n)


def _check_num_clients(num_clients: int, num_examples: int) -> int:
    num_clients = check_int(num_clients, "num_clients")
    if not 1 <= num_clients <= num_examples:
        raise ValueError(
            f"num_clients must be between 1 and the number of examples ({num_examples}), "
            f"got {num_clients}"
        )
    return num_clients


def _column(structure: Any, column: Any, n: int, name: str) -> tuple[Any, np.ndarray]:
    """Resolves `column` (a key of the examples dict, or an array) to an array of length n."""
    if isinstance(column, str):
        if not isinstance(structure, dict) or column not in structure:
            keys = sorted(structure) if isinstance(structure, dict) else "(not a dict)"
            raise KeyError(f"{name}={column!r} is not a key of examples; keys are {keys}")
        values = structure[column]
    else:
        values = np.asarray(column)
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(
            f"{name} must be one value per example (shape [{n}]), got shape {list(values.shape)}"
        )
    return structure, values


def _build(structure: Any, assignment: list[np.ndarray]) -> TestClientData:
    return TestClientData(
        {
            str(i): tf.nest.map_structure(lambda a, idx=idx: a[idx], structure)
            for i, idx in enumerate(assignment)
        }
    )


def partition_iid(examples: Any, num_clients: int, *, seed: int | None = None) -> TestClientData:
    """Shuffles the examples and splits them into `num_clients` clients of (nearly) equal size."""
    structure = normalize_examples(examples)
    n = _num_examples(structure)
    num_clients = _check_num_clients(num_clients, n)
    rng = np.random.default_rng(check_seed(seed))
    return _build(structure, np.array_split(rng.permutation(n), num_clients))


def dirichlet_assignment(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Example indices of each client under Dirichlet label skew; clients have equal sizes.

    Each client draws its label distribution from a Dirichlet with concentration `alpha` times
    the relative frequency of each label (a symmetric Dirichlet(alpha) when labels are balanced),
    then fills its share of examples by drawing labels from it, without replacement; a label
    that runs out is dropped from the draw.
    """
    _, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    pools = [rng.permutation(np.flatnonzero(y == k)) for k in range(len(counts))]
    taken = np.zeros_like(counts)
    concentration = alpha * len(counts) * counts / counts.sum()
    sizes = [len(part) for part in np.array_split(np.arange(len(y)), num_clients)]
    assignment: list[np.ndarray] = [np.empty(0, np.int64)] * num_clients
    for client in rng.permutation(num_clients):
        proportions = rng.dirichlet(concentration)
        need = sizes[client]
        chosen = []
        while need > 0:
            available = counts - taken
            mass = np.where(available > 0, proportions, 0.0)
            if not np.isfinite(mass).all() or mass.sum() <= 0:
                # Every label this client favours has run out (or the draw underflowed to 0).
                mass = available.astype(np.float64)
            draws = rng.multinomial(need, mass / mass.sum())
            take = np.minimum(draws, available)
            for k in np.flatnonzero(take):
                chosen.append(pools[k][taken[k] : taken[k] + take[k]])
            taken += take
            need -= int(take.sum())
        assignment[client] = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    return assignment


def partition_dirichlet(
    examples: Any,
    num_clients: int,
    *,
    alpha: float,
    labels: Any = "label",
    seed: int | None = None,
) -> TestClientData:
    """Splits examples into clients of equal size whose label mixes follow a Dirichlet(alpha).

    Smaller `alpha` gives more skew (alpha=0.1: most clients hold one or two labels); large
    `alpha` approaches an IID split. `labels` is a key of the examples dict or an array with one
    label per example.
    """
    structure = normalize_examples(examples)
    n = _num_examples(structure)
    num_clients = _check_num_clients(num_clients, n)
    alpha = check_positive_number(alpha, "alpha")
    structure, label_values = _column(structure, labels, n, "labels")
    rng = np.random.default_rng(check_seed(seed))
    return _build(structure, dirichlet_assignment(label_values, num_clients, alpha, rng))


def partition_shards(
    examples: Any,
    num_clients: int,
    *,
    shards_per_client: int = 2,
    labels: Any = "label",
    seed: int | None = None,
) -> TestClientData:
    """Sorts examples by label, cuts them into equal shards, and deals shards to clients.

    Each client gets `shards_per_client` random shards, so it sees about that many labels (the
    pathological non-IID split of McMahan et al., 2017).
    """
    structure = normalize_examples(examples)
    n = _num_examples(structure)
    num_clients = _check_num_clients(num_clients, n)
    shards_per_client = check_int(shards_per_client, "shards_per_client")
    num_shards = num_clients * shards_per_client
    if not 1 <= num_shards <= n:
        raise ValueError(
            f"num_clients * shards_per_client must be between 1 and the number of examples "
            f"({n}), got {num_clients} * {shards_per_client} = {num_shards}"
        )
    structure, label_values = _column(structure, labels, n, "labels")
    rng = np.random.default_rng(check_seed(seed))
    _, y = np.unique(label_values, return_inverse=True)
    shuffled = rng.permutation(n)
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    dealt = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return _build(structure, [np.concatenate([shards[s] for s in row]) for row in dealt])


def partition_by_client_id(examples: Any, client_ids: Any) -> TestClientData:
    """Groups examples by a natural client id: one client per distinct id, in sorted order.

    `client_ids` is a key of the examples dict (that column is then left out of the elements)
    or an array with one id per example. Ids become str; examples keep their order.
    """
    structure = normalize_examples(examples)
    n = _num_examples(structure)
    structure, ids = _column(structure, client_ids, n, "client_ids")
    if isinstance(client_ids, str):
        structure = type(structure)((k, v) for k, v in structure.items() if k != client_ids)
        if not structure:
            raise ValueError(f"examples holds nothing but the client id column {client_ids!r}")
    names = np.array(
        [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in ids.tolist()], dtype=object
    )
    unique, inverse = np.unique(names, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    groups = np.split(order, bounds)
    return TestClientData(
        {
            str(name): tf.nest.map_structure(lambda a, idx=idx: a[idx], structure)
            for name, idx in zip(unique, groups, strict=True)
        }
    )
