"""Every intrinsic: its type signature at trace time, its semantics when run, and its misuse errors."""

import collections

import numpy as np
import pytest

import fed_core as fc
from fed_core import FederatedTypeError
from fed_core.testing import python_computation
from fed_types import CLIENTS, SERVER, FederatedType, SequenceType, Struct, StructType, TensorType

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)


@python_computation(np.float32, result_type=np.float32)
def square(x):
    return x * x


@python_computation(np.float32, np.float32, result_type=np.float32)
def add(a, b):
    return a + b


def clients(member, all_equal=False):
    return FederatedType(member, CLIENTS, all_equal)


def server(member):
    return FederatedType(member, SERVER)


# ---- the tutorial's flows


def test_mean_of_sensor_readings():
    @fc.federated_computation(clients(np.float32))
    def get_average_temperature(sensor_readings):
        return fc.federated_mean(sensor_readings)

    assert str(get_average_temperature.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert get_average_temperature([68.5, 70.3, 69.8]) == pytest.approx(69.5333, abs=1e-4)


def test_broadcast_map_sum():
    @fc.federated_computation(server(np.float32), clients(np.float32))
    def shift_and_sum(offset, readings):
        broadcast = fc.federated_broadcast(offset)
        shifted = fc.federated_map(add, fc.federated_zip((readings, broadcast)))
        return fc.federated_sum(shifted)

    assert shift_and_sum(np.float32(10.0), [1.0, 2.0, 3.0]) == pytest.approx(36.0)


def test_weighted_mean():
    @fc.federated_computation(clients(np.float32), clients(np.float32))
    def weighted(values, weights):
        return fc.federated_mean(values, weights)

    assert weighted([1.0, 4.0], [3.0, 1.0]) == pytest.approx((1 * 3 + 4 * 1) / 4)


def test_weighted_mean_with_integer_weights_of_structs():
    member = StructType([("a", F32), ("b", TensorType(np.float32, [2]))])

    @fc.federated_computation(clients(member), clients(np.int32))
    def weighted(values, weights):
        return fc.federated_mean(values, weights)

    result = weighted(
        [
            (np.float32(1), np.array([0, 2], np.float32)),
            (np.float32(3), np.array([4, 0], np.float32)),
        ],
        [1, 3],
    )
    # A struct type without a Python container comes back as an OrderedDict when all elements are named.
    assert isinstance(result, collections.OrderedDict)
    assert result["a"] == pytest.approx(2.5)
    np.testing.assert_allclose(result["b"], [3.0, 0.5])


def test_min_max_sum_on_structs():
    member = StructType([TensorType(np.int32, [2]), F32])

    @fc.federated_computation(clients(member))
    def stats(values):
        return fc.federated_min(values), fc.federated_max(values), fc.federated_sum(values)

    low, high, total = stats(
        [(np.array([1, 9], np.int32), np.float32(2)), (np.array([5, 3], np.int32), np.float32(-1))]
    )
    np.testing.assert_array_equal(low[0], [1, 3])
    np.testing.assert_array_equal(high[0], [5, 9])
    np.testing.assert_array_equal(total[0], [6, 12])
    assert total[0].dtype == np.int32
    assert (low[1], high[1], total[1]) == (-1.0, 2.0, 1.0)


def test_federated_value_and_eval():
    @python_computation(result_type=np.int32)
    def seven():
        return 7

    @fc.federated_computation
    def placed():
        return (
            fc.federated_value(np.int32(3), SERVER),
            fc.federated_value(np.int32(4), CLIENTS),
            fc.federated_eval(seven, SERVER),
            fc.federated_sum(fc.federated_eval(seven, CLIENTS)),
        )

    assert (
        str(placed.type_signature) == "( -> <int32@SERVER,int32@CLIENTS,int32@SERVER,int32@SERVER>)"
    )
    fc.execution.set_local_execution_context(default_num_clients=5)
    try:
        assert placed() == (3, 4, 7, 35)
    finally:
        fc.execution.set_local_execution_context()


def test_map_of_all_equal_and_server_values():
    @fc.federated_computation(server(np.float32))
    def f(x):
        on_clients = fc.federated_map(square, fc.federated_broadcast(x))
        return fc.federated_map(square, x), on_clients

    assert str(f.type_signature) == "(float32@SERVER -> <float32@SERVER,float32@CLIENTS>)"
    assert f(np.float32(3.0)) == (9.0, 9.0)


def test_zip_named_and_unnamed_at_both_placements():
    @fc.federated_computation(
        clients(np.float32), clients(np.int32), server(np.float32), server(np.int32)
    )
    def zipped(a, b, c, d):
        return fc.federated_zip(collections.OrderedDict(x=a, y=b)), fc.federated_zip([c, d])

    assert (
        str(zipped.type_signature.result)
        == "<{<x=float32,y=int32>}@CLIENTS,<float32,int32>@SERVER>"
    )
    at_clients, at_server = zipped([1.0, 2.0], [3, 4], np.float32(5), np.int32(6))
    assert [tuple(m.values()) for m in at_clients] == [(1.0, 3), (2.0, 4)]
    assert at_server == [5.0, 6]


def test_aggregate_with_zero_accumulate_merge_report():
    accumulator = StructType([("total", F32), ("count", I32)])

    @python_computation(accumulator, np.float32, result_type=accumulator)
    def accumulate(acc, value):
        return Struct([("total", acc.total + value), ("count", acc.count + 1)])

    @python_computation(accumulator, accumulator, result_type=accumulator)
    def merge(a, b):
        return Struct([("total", a.total + b.total), ("count", a.count + b.count)])

    @python_computation(accumulator, result_type=np.float32)
    def report(acc):
        return acc.total / acc.count

    @fc.federated_computation(clients(np.float32))
    def mean_by_aggregate(values):
        zero = collections.OrderedDict(total=np.float32(0), count=np.int32(0))
        return fc.federated_aggregate(values, zero, accumulate, merge, report)

    # 40 clients span several accumulation groups, so merge runs too.
    values = [float(v) for v in range(40)]
    assert mean_by_aggregate(values) == pytest.approx(np.mean(values))


def test_select_sends_each_client_its_keys_values():
    @python_computation(StructType([TensorType(np.int32, [4]), I32]), result_type=np.int32)
    def pick(arg):
        table, key = arg[0], arg[1]
        return table[key] * 10

    @fc.federated_computation(clients(TensorType(np.int32, [2])), server(TensorType(np.int32, [4])))
    def select(keys, table):
        return fc.federated_select(keys, fc.federated_value(np.int32(4), SERVER), table, pick)

    assert str(select.type_signature.result) == "{int32*}@CLIENTS"
    result = select(
        [np.array([0, 3], np.int32), np.array([2, 2], np.int32)], np.array([1, 2, 3, 4], np.int32)
    )
    assert result == [[10, 40], [30, 30]]
    with pytest.raises(ValueError, match=r"client 1 asked for key -1; keys are non-negative"):
        select(
            [np.array([0, 1], np.int32), np.array([-1, 0], np.int32)],
            np.array([1, 2, 3, 4], np.int32),
        )

    @fc.federated_computation(clients(TensorType(np.int32, [2])), server(TensorType(np.int32, [4])))
    def select_below_two(keys, table):
        return fc.federated_select(keys, fc.federated_value(np.int32(2), SERVER), table, pick)

    # TFF does not check max_key (its sparse tutorial passes a smaller one): fed warns and selects.
    with pytest.warns(UserWarning, match="client 1 asked for key 3, not below max_key 2"):
        result = select_below_two(
            [np.array([0, 1], np.int32), np.array([3, 0], np.int32)],
            np.array([1, 2, 3, 4], np.int32),
        )
    assert result == [[10, 20], [40, 10]]


def test_secure_sum_enforces_its_bound():
    @fc.federated_computation(clients(np.int32))
    def secure(values):
        return fc.federated_secure_sum(values, np.int32(10))

    assert secure([1, 10, 0]) == 11
    with pytest.raises(
        ValueError, match=r"client 1 holds \[11\].*outside the allowed range \[0, 10\]"
    ):
        secure([1, 11])
    with pytest.raises(ValueError, match=r"client 0 holds \[-1\]"):
        secure([-1, 1])


def test_secure_sum_bitwidth_wraps_and_bounds():
    @fc.federated_computation(clients(TensorType(np.int32, [2])))
    def secure(values):
        return fc.federated_secure_sum_bitwidth(values, np.int32(3))

    np.testing.assert_array_equal(
        secure([np.array([7, 1], np.int32), np.array([2, 1], np.int32)]), [1, 2]
    )
    with pytest.raises(ValueError, match=r"outside the allowed range \[0, 2\*\*3\)"):
        secure([np.array([8, 0], np.int32)])


def test_secure_modular_sum_wraps():
    @fc.federated_computation(clients(np.int32))
    def modular(values):
        return fc.federated_secure_modular_sum(values, np.int32(5))

    assert modular([4, 3, 2]) == (4 + 3 + 2) % 5
    assert modular([-1, 2]) == ((-1) % 5 + 2) % 5


def test_secure_modular_sum_with_a_huge_modulus_does_not_wrap_int64():
    modulus = 2**62 + 3
    I64 = TensorType(np.int64)

    @fc.federated_computation(clients(I64))
    def modular(values):
        return fc.federated_secure_modular_sum(values, np.int64(modulus))

    assert modular([modulus - 1] * 3) == (3 * (modulus - 1)) % modulus


def test_secure_sum_with_per_element_bounds_on_structs():
    member = StructType([I32, I32])

    @fc.federated_computation(clients(member))
    def secure(values):
        return fc.federated_secure_sum(values, (np.int32(1), np.int32(100)))

    assert secure([(np.int32(1), np.int32(50)), (np.int32(0), np.int32(100))]) == (1, 150)
    with pytest.raises(ValueError, match="tensor 0"):
        secure([(np.int32(2), np.int32(0))])


def test_sequence_map_reduce_sum():
    @fc.federated_computation(SequenceType(np.float32))
    def seq(values):
        squares = fc.sequence_map(square, values)
        return fc.sequence_sum(squares), fc.sequence_reduce(values, np.float32(0), add)

    assert str(seq.type_signature) == "(float32* -> <float32,float32>)"
    assert seq([1.0, 2.0, 3.0]) == (14.0, 6.0)
    assert seq([]) == (0.0, 0.0)


def test_sequence_operators_on_federated_sequences():
    @fc.federated_computation(clients(SequenceType(np.float32)))
    def per_client(values):
        return (
            fc.sequence_sum(values),
            fc.sequence_reduce(values, np.float32(1), add),
            fc.sequence_map(square, values),
        )

    sums, reduced, squares = per_client([[1.0, 2.0], [5.0]])
    assert sums == [3.0, 5.0]
    assert reduced == [4.0, 6.0]
    assert squares == [[1.0, 4.0], [25.0]]


# ---- misuse: trace-time errors naming the operator, both types and the user's line


def _trace_error(fn, *types):
    with pytest.raises(FederatedTypeError) as info:
        fc.federated_computation(fn, *types)
    return str(info.value)


def test_clients_value_where_server_is_needed():
    message = _trace_error(lambda x: fc.federated_broadcast(x), clients(np.float32))
    assert (
        "federated_broadcast: expected a value placed @SERVER, given a value of type {float32}@CLIENTS"
        in message
    )
    assert "test_intrinsics.py" in message


def test_map_of_function_over_wrong_member_type():
    message = _trace_error(lambda x: fc.federated_map(square, x), clients(np.int32))
    assert (
        "federated_map: expected a function accepting int32, given a function of type (float32 -> float32)"
        in message
    )


def test_mean_of_integers():
    message = _trace_error(lambda x: fc.federated_mean(x), clients(np.int32))
    assert "federated_mean: expected {T}@CLIENTS with T a floating-point tensor" in message
    assert "given {int32}@CLIENTS" in message


def test_zip_of_non_structs_and_mixed_placements():
    assert "a non-empty struct of federated values" in _trace_error(
        lambda x: fc.federated_zip(x), clients(np.int32)
    )
    message = _trace_error(
        lambda a, b: fc.federated_zip([a, b]), clients(np.int32), server(np.int32)
    )
    assert "all at the same placement" in message
    assert "<{int32}@CLIENTS,int32@SERVER>" in message


def test_secure_sum_of_floats_and_bad_bound():
    assert "integer tensor" in _trace_error(
        lambda x: fc.federated_secure_sum(x, 5), clients(np.float32)
    )
    message = _trace_error(lambda x: fc.federated_secure_sum(x, 2.5), clients(np.int32))
    assert "max_input that is an integer scalar" in message


def test_weight_must_be_a_numeric_scalar_at_clients():
    message = _trace_error(
        lambda v, w: fc.federated_mean(v, w), clients(np.float32), server(np.float32)
    )
    assert (
        "federated_mean: expected a weight placed @CLIENTS, given a value of type float32@SERVER"
        in message
    )


def test_aggregate_with_mismatched_functions():
    message = _trace_error(
        lambda v: fc.federated_aggregate(v, np.int32(0), add, add, square), clients(np.float32)
    )
    assert (
        "federated_aggregate: expected an accumulate function accepting <int32,float32>" in message
    )


def test_select_with_wrong_key_type():
    message = _trace_error(
        lambda k, t: fc.federated_select(k, fc.federated_value(np.int32(4), SERVER), t, square),
        clients(np.float32),
        server(np.float32),
    )
    assert "client keys of type {int32[n]}@CLIENTS" in message


def test_sequence_sum_of_non_sequence():
    assert "a sequence (T*)" in _trace_error(lambda x: fc.sequence_sum(x), F32)


def test_calling_a_computation_with_the_wrong_type_in_a_trace():
    @fc.federated_computation(server(np.float32))
    def needs_server(x):
        return x

    with pytest.raises(TypeError) as info:

        @fc.federated_computation(clients(np.float32))
        def bad(x):
            return needs_server(x)

    assert "expected float32@SERVER, given {float32}@CLIENTS" in str(info.value)


def test_map_zips_a_struct_of_federated_values_first():
    @fc.federated_computation(clients(np.float32), clients(np.float32))
    def f(a, b):
        return fc.federated_sum(fc.federated_map(add, [a, b]))

    assert f([1.0, 2.0], [10.0, 20.0]) == pytest.approx(33.0)


@python_computation(StructType([F32, F32]), result_type=F32)
def first_times_second(pair):
    return pair[0] * pair[1]


def test_aggregate_zips_a_tuple_of_federated_values():
    @python_computation(F32, StructType([F32, F32]), result_type=F32)
    def accumulate(total, pair):
        return total + pair[0] * pair[1]

    @python_computation(np.float32, result_type=np.float32)
    def report(total):
        return total

    @fc.federated_computation(clients(np.float32), clients(np.float32))
    def dot(values, weights):
        return fc.federated_aggregate((values, weights), np.float32(0), accumulate, add, report)

    assert dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(32.0)


def test_every_operator_on_federated_values_zips_a_python_struct_of_them():
    @fc.federated_computation(clients(np.float32), clients(np.float32), server(np.float32))
    def sums(a, b, s):
        totals = fc.federated_sum(collections.OrderedDict(a=a, b=b))
        means = fc.federated_mean([a, b], fc.federated_map(first_times_second, (a, b)))
        broadcast = fc.federated_broadcast((s, s))
        applied = fc.federated_apply(first_times_second, [s, s])
        products = fc.federated_map(first_times_second, broadcast)
        return totals, means, fc.federated_sum(products), applied

    result = sums.type_signature.result
    assert str(result[0]) == "<a=float32,b=float32>@SERVER"
    assert str(result[2]) == "float32@SERVER"
    totals, means, broadcast_sum, applied = sums([1.0, 2.0], [3.0, 4.0], np.float32(3.0))
    assert (totals["a"], totals["b"]) == (pytest.approx(3.0), pytest.approx(7.0))
    # Weighted by a*b: (1*3, 2*8)/(3+8).
    assert means[0] == pytest.approx((1 * 3 + 2 * 8) / 11)
    assert broadcast_sum == pytest.approx(18.0)
    assert applied == pytest.approx(9.0)


def test_nested_structs_of_federated_values_are_zipped_keeping_their_shape():
    @fc.federated_computation(clients(np.float32), clients(np.int32), clients(np.float32))
    def zipped(a, b, c):
        return fc.federated_zip((a, collections.OrderedDict(b=b, c=c)))

    assert str(zipped.type_signature.result) == "{<float32,<b=int32,c=float32>>}@CLIENTS"
    first, second = zipped([1.0, 2.0], [3, 4], [5.0, 6.0])
    assert (first[0], first[1]["b"], first[1]["c"]) == (1.0, 3, 5.0)
    assert (second[0], second[1]["b"], second[1]["c"]) == (2.0, 4, 6.0)


def test_a_struct_of_values_at_different_placements_is_refused_by_name():
    message = _trace_error(
        lambda a, s: fc.federated_sum((a, s)), clients(np.int32), server(np.int32)
    )
    assert "federated_sum: expected a numeric value placed @CLIENTS" in message
    assert "<{int32}@CLIENTS,int32@SERVER>" in message
