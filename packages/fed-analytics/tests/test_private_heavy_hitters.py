"""Private heavy hitters: the calibration against its formulas and dp-accounting, the release against the
probabilities it promises (statistical tests with fixed seeds and stated tolerances)."""

from __future__ import annotations

import importlib.util
import math
import statistics

import numpy as np
import pytest

import fed as tff
from fed_analytics.heavy_hitters import (
    HeavyHittersNoise,
    calibrate_private_heavy_hitters,
    private_heavy_hitters,
)
from fed_analytics.heavy_hitters.iblt import ServerOutput

needs_dp_accounting = pytest.mark.skipif(
    importlib.util.find_spec("dp_accounting") is None,
    reason="needs dp-accounting (the dp extra)",
)


def output_of(counts, unique_counts=None, num_not_decoded=0):
    counts = np.asarray(counts, np.int64)
    return ServerOutput(
        clients=np.int32(100),
        heavy_hitters=np.array([f"w{i}".encode() for i in range(len(counts))], dtype=object),
        heavy_hitters_unique_counts=counts if unique_counts is None else np.asarray(unique_counts),
        heavy_hitters_counts=counts,
        num_not_decoded=np.int64(num_not_decoded),
        round_timestamp=np.int64(0),
    )


def test_the_laplace_calibration_is_the_tutorials():
    noise = calibrate_private_heavy_hitters(max_words_per_user=8, epsilon=20, delta=0.01)
    assert noise == HeavyHittersNoise(
        "laplace", 8 / 20, 1 + (8 / 20) * math.log(8 / (2 * 0.01)), 20.0, 0.01
    )
    # A noise multiplier (scale over the L1 sensitivity) gives the same release.
    assert calibrate_private_heavy_hitters(
        max_words_per_user=8, noise_multiplier=1 / 20, delta=0.01
    ) == pytest.approx(noise)
    # With multi_contribution, one client may put all its 8 words on one string.
    multi = calibrate_private_heavy_hitters(
        max_words_per_user=8, epsilon=20, delta=0.01, multi_contribution=True
    )
    assert multi.noise_scale == noise.noise_scale and multi.threshold == noise.threshold + 7


@needs_dp_accounting
def test_laplace_epsilon_agrees_with_dp_accounting():
    import dp_accounting

    noise = calibrate_private_heavy_hitters(max_words_per_user=4, epsilon=1.5, delta=1e-3)
    accountant = dp_accounting.pld.PLDAccountant()
    accountant.compose(dp_accounting.LaplaceDpEvent(noise.noise_scale / 4))
    assert accountant.get_epsilon(1e-12) == pytest.approx(noise.epsilon, rel=1e-3)


def test_a_string_one_client_holds_is_released_with_probability_delta_over_its_words():
    # 200,000 strings of count 1 (each held by one client): each is kept with probability exactly
    # delta / max_words_per_user = 1/800 (Laplace tail at the threshold), 250 expected, standard
    # deviation 15.8: tolerance 4 standard deviations.
    noise = calibrate_private_heavy_hitters(max_words_per_user=8, epsilon=20, delta=0.01)
    released = private_heavy_hitters(
        output_of(np.ones(200_000)), max_words_per_user=8, epsilon=20, delta=0.01, seed=0
    )
    assert abs(len(released.heavy_hitters) - 250) < 4 * math.sqrt(250)
    assert np.all(released.heavy_hitters_counts >= math.floor(noise.threshold))


def test_laplace_noise_has_the_scale_it_should_and_counts_come_back_rounded():
    counts = np.full(20_000, 1000)
    released = private_heavy_hitters(
        output_of(counts), max_words_per_user=10, epsilon=2.0, delta=1e-6, seed=1
    )
    assert len(released.heavy_hitters) == 20_000  # far above the threshold
    errors = released.heavy_hitters_counts - 1000
    # Laplace of scale 5: standard deviation 5 * sqrt(2) = 7.07 (plus the rounding's 0.29); the
    # sample's is within 4% with probability above 0.999.
    assert np.std(errors) == pytest.approx(math.sqrt(50 + 1 / 12), rel=0.04)
    assert released.heavy_hitters_counts.dtype == np.int64


def test_the_release_keeps_the_frequent_strings_most_frequent_first_and_is_reproducible():
    output = output_of([500, 3, 400, 1, 60])
    options = {"max_words_per_user": 5, "epsilon": 1.0, "delta": 1e-5}
    released = private_heavy_hitters(output, seed=3, max_heavy_hitters=2, **options)
    assert released.heavy_hitters.tolist() == [b"w0", b"w2"]
    assert np.all(np.abs(released.heavy_hitters_counts - [500, 400]) < 60)
    again = private_heavy_hitters(output, seed=3, max_heavy_hitters=2, **options)
    np.testing.assert_array_equal(again.heavy_hitters_counts, released.heavy_hitters_counts)
    fresh = [private_heavy_hitters(output, **options).heavy_hitters_counts[0] for _ in range(5)]
    assert len(set(fresh)) > 1
    everything = private_heavy_hitters(output, seed=3, **options)
    assert b"w1" not in everything.heavy_hitters and b"w3" not in everything.heavy_hitters


@needs_dp_accounting
def test_the_gaussian_calibration_spends_the_epsilon_asked_for():
    noise = calibrate_private_heavy_hitters(
        max_words_per_user=9, epsilon=1.0, delta=1e-4, mechanism="gaussian"
    )
    assert noise.epsilon == pytest.approx(1.0, rel=1e-2)
    z = statistics.NormalDist().inv_cdf(1 - 1e-4 / (2 * 9))
    assert noise.threshold == pytest.approx(1 + noise.noise_scale * z)
    # The same noise given as a multiplier of the L2 sensitivity, sqrt(9), spends the same.
    back = calibrate_private_heavy_hitters(
        max_words_per_user=9,
        noise_multiplier=noise.noise_scale / 3,
        delta=1e-4,
        mechanism="gaussian",
    )
    assert back.epsilon == pytest.approx(1.0, rel=1e-2)
    from fed_aggregators import dp

    assert back.epsilon == pytest.approx(
        dp.epsilon(noise.noise_scale / 3, 1, 1, 1, 0.5e-4, accountant="pld")
    )


@needs_dp_accounting
def test_gaussian_releases_a_single_clients_string_with_probability_half_delta_over_its_words():
    # Each count-1 string is kept with probability delta / (2 * 4) = 1/800: 250 of 200,000 expected.
    released = private_heavy_hitters(
        output_of(np.ones(200_000)),
        max_words_per_user=4,
        epsilon=3.0,
        delta=0.01,
        mechanism="gaussian",
        seed=2,
    )
    assert abs(len(released.heavy_hitters) - 250) < 4 * math.sqrt(250)
    big = private_heavy_hitters(
        output_of(np.full(20_000, 10_000)),
        max_words_per_user=4,
        epsilon=3.0,
        delta=0.01,
        mechanism="gaussian",
        seed=4,
    )
    sigma = released.noise.noise_scale
    assert np.std(big.heavy_hitters_counts - 10_000) == pytest.approx(
        math.sqrt(sigma**2 + 1 / 12), rel=0.04
    )


@pytest.mark.parametrize(
    "output, options, error, message",
    [
        (output_of([5], num_not_decoded=3), {}, ValueError, "left 3 contributions undecoded"),
        (output_of([5], [2]), {}, ValueError, "pass multi_contribution=True"),
        (output_of([5]), {"noise_multiplier": 1.0}, ValueError, "exactly one of epsilon"),
        (output_of([5]), {"mechanism": "other"}, ValueError, "mechanism must be one of"),
        (output_of([5]), {"delta": 1.0}, ValueError, r"delta must be in \(0, 1\)"),
        (output_of([5]), {"max_words_per_user": 0}, ValueError, "max_words_per_user must be"),
        ("not an output", {}, TypeError, "expected the ServerOutput"),
    ],
)
def test_bad_arguments_are_refused(output, options, error, message):
    arguments = {"max_words_per_user": 3, "epsilon": 1.0, "delta": 1e-5, **options}
    with pytest.raises(error, match=message):
        private_heavy_hitters(output, **arguments)


def test_fed_analytics_exposes_the_private_release():
    assert tff.analytics.heavy_hitters.private_heavy_hitters is private_heavy_hitters


@needs_dp_accounting
def test_analytic_gauss_stddev_scales_dp_accountings_sigma_by_the_sensitivity():
    from fed_aggregators import dp

    stddev = tff.analytics.differential_privacy.analytic_gauss_stddev(1.0, 1e-5, 2.0)
    assert dp.epsilon(stddev / 2.0, 1, 1, 1, 1e-5, accountant="pld") == pytest.approx(1.0, rel=1e-2)
    assert tff.analytics.differential_privacy.analytic_gauss_stddev(1.0, 1e-5, 0.0) == 0.0
    with pytest.raises(ValueError, match="epsilon must be non-negative"):
        tff.analytics.differential_privacy.analytic_gauss_stddev(-1.0, 1e-5, 1.0)
