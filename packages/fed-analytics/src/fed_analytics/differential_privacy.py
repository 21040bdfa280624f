"""Differential privacy for federated analytics (TFF's `tff.analytics.differential_privacy`); needs
dp-accounting (the `dp` extra)."""

from __future__ import annotations

import math
import numbers

__all__ = ["analytic_gauss_stddev"]


def analytic_gauss_stddev(
    epsilon: float, delta: float, norm_bound: float, tol: float = 1.0e-12
) -> float:
    """The standard deviation of Gaussian noise that makes a query of L2 sensitivity `norm_bound`
    (epsilon, delta)-differentially private, by the analytic Gaussian mechanism (Balle and Wang 2018),
    found by dp-accounting to within `tol`. Zero sensitivity needs no noise."""
    for name, value in (
        ("epsilon", epsilon),
        ("delta", delta),
        ("norm_bound", norm_bound),
        ("tol", tol),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"analytic_gauss_stddev: {name} must be a number, got {value!r}.")
    if not epsilon >= 0:
        raise ValueError(f"analytic_gauss_stddev: epsilon must be non-negative, got {epsilon}.")
    if not 0 <= delta <= 1:
        raise ValueError(f"analytic_gauss_stddev: delta must be in [0, 1], got {delta}.")
    if not norm_bound >= 0 or math.isinf(norm_bound):
        raise ValueError(
            f"analytic_gauss_stddev: norm_bound must be a non-negative number, got {norm_bound}."
        )
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"analytic_gauss_stddev: tol must be a positive number, got {tol}.")
    if norm_bound == 0:
        return 0.0
    from fed_aggregators._dp import import_dp_accounting

    dp_accounting = import_dp_accounting()
    return norm_bound * dp_accounting.get_sigma_gaussian(epsilon, delta, tol / norm_bound)
