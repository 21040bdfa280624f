"""Federated handwritten digits: 1,797 8x8 digit images, split non-IID over clients.

The images are the test set of the UCI "Optical Recognition of Handwritten Digits" data set
(E. Alpaydin and C. Kaynak, 1998; https://doi.org/10.24432/C50P49, CC BY 4.0), the same array that
scikit-learn's `load_digits` returns. They ship inside this package (a 45 KB file), so the data set
needs no download and no scikit-learn. Elements are `OrderedDict(label=int32[],
pixels=float32[8, 8])` with pixels scaled to [0, 1] (1.0 the ink), the same structure as federated
EMNIST at a smaller size.
"""

from __future__ import annotations

import collections
import numbers
from importlib import resources

import numpy as np

from fed_datasets._client_data import (
    ClientData,
    TestClientData,
    check_int,
    check_positive_number,
    check_seed,
)
from fed_datasets._partition import dirichlet_assignment

NUM_EXAMPLES = 1797
_MAX_PIXEL = 16  # each pixel counts the inked cells of a 4x4 block


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Returns all the images as (pixels, labels): float32[1797, 8, 8] in [0, 1], and int32[1797].

    A fresh copy on every call, in the data set's order.
    """
    with resources.files("fed_datasets").joinpath("_data/digits.npz").open("rb") as file:
        with np.load(file) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    return (images / np.float32(_MAX_PIXEL)).astype(np.float32), labels.astype(np.int32)


def load_data(
    num_clients: int = 10,
    alpha: float = 0.5,
    seed: int | None = 0,
    test_fraction: float = 0.2,
) -> tuple[ClientData, ClientData]:
    """Returns (train, test) `ClientData` over the same `num_clients` client ids '0', '1', ...

    The images are dealt to clients of equal size with Dirichlet(`alpha`) label skew (smaller
    `alpha`, more skew), then each client's images are split into train and test, about
    `test_fraction` of them to test (each client keeps at least one train image). The same
    `seed` gives the same split.
    """
    num_clients = check_int(num_clients, "num_clients", 1, NUM_EXAMPLES)
    alpha = check_positive_number(alpha, "alpha")
    if isinstance(test_fraction, bool | np.bool_) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a number in [0, 1), got {test_fraction!r} of type "
            f"{type(test_fraction).__name__}"
        )
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    pixels, labels = load_arrays()
    rng = np.random.default_rng(check_seed(seed))
    assignment = dirichlet_assignment(labels, num_clients, alpha, rng)
    train, test = {}, {}
    for i, indices in enumerate(assignment):
        shuffled = rng.permutation(indices)
        num_test = min(int(round(len(shuffled) * test_fraction)), len(shuffled) - 1)
        for split, rows in ((test, shuffled[:num_test]), (train, shuffled[num_test:])):
            split[str(i)] = collections.OrderedDict(label=labels[rows], pixels=pixels[rows])
    return TestClientData(train), TestClientData(test)
