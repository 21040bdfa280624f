"""The allowed values of the secure aggregations' bounds, checked where they are known: at trace time
for constants, when the aggregation runs for bounds computed in the computation.

- `federated_secure_sum(value, max_input)`: `max_input >= 0`, as each client value lies in
  `[0, max_input]`;
- `federated_secure_sum_bitwidth(value, bitwidth)`: `1 <= bitwidth <= B`, where B is the number of value
  bits of the values' dtype (31 for int32, 32 for uint32), so that the sum modulo `2**bitwidth` fits in it;
- `federated_secure_modular_sum(value, modulus)`: `1 <= modulus <= 2**B - 1`: a value of the values'
  dtype, as secure aggregation protocols take it, so that the sum modulo it fits in that dtype too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _value_bits(dtype: np.dtype) -> int:
    info = np.iinfo(dtype)
    return info.bits - 1 if info.min < 0 else info.bits


def bound_problem(kind: str, bound: int, dtype: np.dtype) -> str | None:
    """What is wrong with `bound` as a secure aggregation's `kind` of bound ("max_input", "bitwidth" or
    "modulus") for values of `dtype`, or None if it is allowed."""
    name = np.dtype(dtype).name
    if kind == "max_input":
        if bound < 0:
            return (
                f"expected a max_input of at least 0 (each client's {name} values lie in "
                f"[0, max_input]), given {bound}"
            )
        return None
    bits = _value_bits(dtype)
    if kind == "bitwidth" and not 1 <= bound <= bits:
        return (
            f"expected a bitwidth in [1, {bits}] (the sum of {name} values, taken modulo "
            f"2**bitwidth, must fit in {name}), given {bound}"
        )
    if kind == "modulus" and not 1 <= bound < 2**bits:
        return (
            f"expected a modulus in [1, 2**{bits} - 1] (a {name}, as the values are), given {bound}"
        )
    return None


def bounds_problem(kind: str, bounds: Sequence[int], dtypes: Sequence[np.dtype]) -> str | None:
    """`bound_problem` of the first bound that is not allowed, each bound paired with the dtype of the
    value tensor it bounds."""
    for bound, dtype in zip(bounds, dtypes):
        problem = bound_problem(kind, int(bound), dtype)
        if problem is not None:
            return problem
    return None
