"""Failures of one client's work in a federated_map: named by `ClientWorkError`, or replaced by a fallback,
within `handle_client_failures`; outside it, the client's own error ends the call."""

from __future__ import annotations

import numpy as np
import pytest

import fed_core as fc
from fed_core.execution import ClientFailure, ClientWorkError, handle_client_failures
from fed_core.testing import python_computation
from fed_types import at_clients


@python_computation(np.float32, result_type=np.float32)
def inverse(x):
    if x == 0:
        raise ZeroDivisionError("0 has no inverse")
    return np.float32(1.0) / x


@python_computation(np.float32, result_type=np.float32)
def double(x):
    return x * np.float32(2.0)


@fc.federated_computation(at_clients(np.float32))
def inverses(values):
    return fc.federated_map(inverse, values)


def test_outside_the_handling_the_clients_own_error_ends_the_call():
    with pytest.raises(ZeroDivisionError, match="0 has no inverse"):
        inverses([1.0, 0.0, 2.0])


def test_without_a_fallback_the_error_names_the_failing_client():
    with handle_client_failures(inverse) as failures:
        with pytest.raises(ClientWorkError) as raised:
            inverses([1.0, 0.0, 2.0, 0.0])
    error = raised.value
    assert (error.client_index, error.num_clients, error.computation) == (1, 4, "inverse")
    assert str(error).startswith("The work of client 1 (of 4,")
    assert "in inverse: ZeroDivisionError: 0 has no inverse" in str(error)
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert failures == []


def test_with_a_fallback_the_failing_clients_get_it_and_the_others_keep_their_results():
    with handle_client_failures(inverse, fallback=lambda: -1.0) as failures:
        result = inverses([4.0, 0.0, 2.0, 0.0])
    np.testing.assert_allclose(result, [0.25, -1.0, 0.5, -1.0])
    assert [f.client_index for f in failures] == [1, 3]
    assert all(isinstance(f, ClientFailure) for f in failures)
    assert all(isinstance(f.error, ZeroDivisionError) for f in failures)


def test_the_handling_applies_to_its_computation_only_and_ends_with_the_block():
    with handle_client_failures(double, fallback=lambda: 0.0):
        with pytest.raises(ZeroDivisionError):
            inverses([0.0])
    with handle_client_failures(inverse, fallback=lambda: 0.0):
        pass
    with pytest.raises(ZeroDivisionError):
        inverses([0.0])


def test_a_fallback_of_another_type_and_bad_arguments_are_refused():
    with handle_client_failures(inverse, fallback=lambda: "none"):
        with pytest.raises(TypeError, match="expected float32"):
            inverses([0.0])
    with pytest.raises(TypeError, match="Expected a computation, got 3"):
        with handle_client_failures(3):
            pass
    with pytest.raises(TypeError, match="fallback must be a function"):
        with handle_client_failures(inverse, fallback=-1.0):
            pass
