"""Differentially private heavy hitters: noise on the decoded counts, then a threshold (the "private heavy
hitters" tutorial's central DP, with its calibration written out).

The heavy hitters are a histogram over an open set of strings. One client changes it by its own
strings: at most `max_words_per_user` of them (the L0 bound), each by at most 1 without
`multi_contribution` or by at most `max_words_per_user` with it (the L-infinity bound), and by
`max_words_per_user` in all (the L1 bound). Noise calibrated to those bounds makes the counts of the
strings that both neighbouring populations hold private; a string that only one client holds has a
count of at most the L-infinity bound, and the threshold keeps each such string with probability at
most `delta / max_words_per_user`, so that all of that client's strings together appear with
probability at most `delta` (Wilson et al., "Differentially Private SQL with Bounded User
Contribution", and Google's "Delta for thresholding" note).

- Laplace noise of scale `b = L1 / epsilon` is epsilon-DP for the counts; the threshold
  `Linf + b * ln(L0 / (2 * delta))` spends all of `delta`. This is the tutorial's calibration.
- Gaussian noise of standard deviation `sigma = noise_multiplier * L2` (with `L2 = Linf * sqrt(L0)`
  without multi_contribution, `L1` with it) is (epsilon, delta / 2)-DP for the counts (the analytic
  Gaussian mechanism; epsilon from fed_aggregators' dp-accounting accounting); the threshold
  `Linf + sigma * z` (with `z` the normal quantile of `1 - delta / (2 * L0)`) spends the other half.

fed_aggregators.dp accounts for Gaussian noise on Poisson-sampled clients; here every client takes
part (a sampling probability of 1). It has no Laplace mechanism: Laplace noise of scale `b` is
`L1 / b`-DP exactly, which is what this module reports.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, NamedTuple

import numpy as np

MECHANISMS = ("laplace", "gaussian")


class HeavyHittersNoise(NamedTuple):
    """The calibration of private heavy hitters: the `mechanism` ('laplace' or 'gaussian'), its
    `noise_scale` (the Laplace scale, or the Gaussian standard deviation), the `threshold` below which
    a noised count is dropped, and the (`epsilon`, `delta`) of the release."""

    mechanism: str
    noise_scale: float
    threshold: float
    epsilon: float
    delta: float


class PrivateHeavyHitters(NamedTuple):
    """Heavy hitters released with differential privacy: the strings (bytes) whose noised counts reached
    the threshold, most frequent first; their noised counts, rounded (int64); and the `noise` that was
    used (`HeavyHittersNoise`, with the release's epsilon and delta)."""

    heavy_hitters: np.ndarray
    heavy_hitters_counts: np.ndarray
    noise: HeavyHittersNoise


def _check_number(value: Any, name: str, owner: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{owner}: {name} must be a finite {kind} number, got {value}.")
    return value


def calibrate_private_heavy_hitters(
    *,
    max_words_per_user: int,
    delta: float,
    epsilon: float | None = None,
    noise_multiplier: float | None = None,
    mechanism: str = "laplace",
    multi_contribution: bool = False,
) -> HeavyHittersNoise:
    """The noise and threshold that make heavy hitters (epsilon, delta)-DP, for clients that each
    contribute at most `max_words_per_user` strings (as `build_iblt_computation` caps them, with the
    same `multi_contribution`).

    Give the target `epsilon`, or a `noise_multiplier` (noise scale over the mechanism's sensitivity:
    L1 for 'laplace', L2 for 'gaussian') and get the epsilon it spends. `delta` bounds the probability
    that any string only one client holds is released (for 'gaussian', half of it goes to the noise).
    See the module's documentation for the formulas.
    """
    owner = "calibrate_private_heavy_hitters"
    if (
        isinstance(max_words_per_user, bool)
        or not isinstance(max_words_per_user, (int, np.integer))
        or max_words_per_user < 1
    ):
        raise ValueError(
            f"{owner}: max_words_per_user must be an int >= 1, got {max_words_per_user!r}."
        )
    delta = _check_number(delta, "delta", owner)
    if not delta < 1:
        raise ValueError(f"{owner}: delta must be in (0, 1), got {delta}.")
    if mechanism not in MECHANISMS:
        raise ValueError(
            f"{owner}: mechanism must be one of {list(MECHANISMS)}, got {mechanism!r}."
        )
    if not isinstance(multi_contribution, bool):
        raise TypeError(f"{owner}: multi_contribution must be a bool, got {multi_contribution!r}.")
    if (epsilon is None) == (noise_multiplier is None):
        raise ValueError(
            f"{owner}: give exactly one of epsilon and noise_multiplier, got epsilon={epsilon!r} "
            f"and noise_multiplier={noise_multiplier!r}."
        )
    words = int(max_words_per_user)
    per_string = words if multi_contribution else 1  # L-infinity
    l1 = float(words)
    if mechanism == "laplace":
        if epsilon is not None:
            epsilon = _check_number(epsilon, "epsilon", owner)
            scale = l1 / epsilon
        else:
            scale = l1 * _check_number(noise_multiplier, "noise_multiplier", owner)
            epsilon = l1 / scale
        threshold = per_string + scale * math.log(words / (2 * delta))
        return HeavyHittersNoise(mechanism, scale, max(threshold, per_string), epsilon, delta)

    from fed_aggregators import dp

    l2 = l1 if multi_contribution else math.sqrt(words)
    if epsilon is not None:
        from fed_analytics.differential_privacy import analytic_gauss_stddev

        scale = analytic_gauss_stddev(_check_number(epsilon, "epsilon", owner), delta / 2, l2)
    else:
        scale = l2 * _check_number(noise_multiplier, "noise_multiplier", owner)
    # Every client takes part: a sampling probability of 1.
    spent = dp.epsilon(scale / l2, 1, 1, rounds=1, target_delta=delta / 2, accountant="pld")
    z = statistics.NormalDist().inv_cdf(1 - delta / (2 * words))
    return HeavyHittersNoise(mechanism, scale, per_string + scale * z, spent, delta)


def private_heavy_hitters(
    output: Any,
    *,
    max_words_per_user: int,
    delta: float,
    epsilon: float | None = None,
    noise_multiplier: float | None = None,
    mechanism: str = "laplace",
    multi_contribution: bool = False,
    max_heavy_hitters: int | None = None,
    seed: int | np.random.Generator | None = None,
) -> PrivateHeavyHitters:
    """The heavy hitters of an IBLT computation's `output` (its `ServerOutput`), released with
    (epsilon, delta) differential privacy: each count gets noise (`mechanism`, calibrated by
    `calibrate_private_heavy_hitters` from the same parameters), strings whose noised count is below the
    threshold are dropped, and the rest are returned most frequent first (the first
    `max_heavy_hitters`), with their noised counts rounded to integers.

    The computation must have been built with the same `max_words_per_user` and `multi_contribution`,
    without `max_heavy_hitters` and with `k_anonymity=1`: both select strings by their exact counts,
    which no noise added afterwards can hide (select here instead). A sketch that did not decode
    whole (`num_not_decoded > 0`) is refused: which strings decode then depends on the others.

    `seed` (an int or a `numpy.random.Generator`) makes the noise reproducible; by default it is fresh.
    numpy's floating-point samplers are the tutorial's; a deployment should draw its noise with a
    library hardened against floating-point attacks.
    """
    owner = "private_heavy_hitters"
    noise = calibrate_private_heavy_hitters(
        max_words_per_user=max_words_per_user,
        delta=delta,
        epsilon=epsilon,
        noise_multiplier=noise_multiplier,
        mechanism=mechanism,
        multi_contribution=multi_contribution,
    )
    if max_heavy_hitters is not None and (
        isinstance(max_heavy_hitters, bool)
        or not isinstance(max_heavy_hitters, (int, np.integer))
        or max_heavy_hitters < 1
    ):
        raise ValueError(
            f"{owner}: max_heavy_hitters must be an int >= 1 or None, got {max_heavy_hitters!r}."
        )
    fields = (
        "heavy_hitters",
        "heavy_hitters_counts",
        "heavy_hitters_unique_counts",
        "num_not_decoded",
    )
    if not all(hasattr(output, field) for field in fields):
        raise TypeError(
            f"{owner}: expected the ServerOutput of an IBLT heavy-hitters computation, got {output!r}."
        )
    if int(output.num_not_decoded) != 0:
        raise ValueError(
            f"{owner}: the sketch left {int(output.num_not_decoded)} contributions undecoded; the "
            "strings that did decode then depend on the others, which the noise does not cover. "
            "Build the computation with a capacity above the number of distinct strings."
        )
    strings = np.asarray(output.heavy_hitters, dtype=object)
    counts = np.asarray(output.heavy_hitters_counts, dtype=np.float64)
    unique = np.asarray(output.heavy_hitters_unique_counts, dtype=np.float64)
    if not multi_contribution and np.any(counts != unique):
        raise ValueError(
            f"{owner}: some strings count more than the clients that hold them, so the computation "
            "was built with multi_contribution=True; pass multi_contribution=True here too."
        )
    if not (
        seed is None
        or isinstance(seed, np.random.Generator)
        or (isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0)
    ):
        raise TypeError(
            f"{owner}: seed must be None, a non-negative int or a numpy.random.Generator, got "
            f"{seed!r}."
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if noise.mechanism == "laplace":
        noised = counts + rng.laplace(0.0, noise.noise_scale, size=counts.shape)
    else:
        noised = counts + rng.normal(0.0, noise.noise_scale, size=counts.shape)
    kept = np.flatnonzero(noised >= noise.threshold)
    kept = kept[np.argsort(-noised[kept], kind="stable")][:max_heavy_hitters]
    return PrivateHeavyHitters(
        heavy_hitters=strings[kept],
        heavy_hitters_counts=np.rint(noised[kept]).astype(np.int64),
        noise=noise,
    )
