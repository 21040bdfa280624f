"""Tracing federated computations: decorator forms, parameters, containers, nesting, polymorphism."""

import collections
import dataclasses

import numpy as np
import pytest

import fed_core as fc
from fed_core import framework
from fed_core.testing import python_computation
from fed_types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    StructType,
    TensorType,
    parse_type,
)

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)


@python_computation(np.float32, result_type=np.float32)
def add_one(x):
    return x + np.float32(1)


def test_decorator_with_types_traces_at_definition():
    calls = []

    @fc.federated_computation(FederatedType(np.float32, SERVER))
    def double_broadcast(x):
        calls.append(1)
        return fc.federated_broadcast(x)

    assert calls == [1]
    assert str(double_broadcast.type_signature) == "(float32@SERVER -> float32@CLIENTS)"


def test_plain_call_form_and_no_parameter():
    def body(x):
        return fc.federated_sum(x)

    summed = fc.federated_computation(body, FederatedType(np.int32, CLIENTS))
    assert str(summed.type_signature) == "({int32}@CLIENTS -> int32@SERVER)"
    assert summed([1, 2, 3]) == 6

    @fc.federated_computation
    def hello():
        return "Hello, World!"

    assert hello() == b"Hello, World!"  # strings come back as bytes, as in TFF


def test_several_parameters_become_one_named_struct():
    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def step(model, data):
        return fc.federated_mean(fc.federated_map(add_one, data)), model

    assert str(step.type_signature) == (
        "(<model=float32@SERVER,data={float32}@CLIENTS> -> <float32@SERVER,float32@SERVER>)"
    )
    mean, model = step(np.float32(5.0), [1.0, 2.0, 3.0])
    assert mean == pytest.approx(3.0)
    assert model == pytest.approx(5.0)
    assert step(model=np.float32(1.0), data=[0.0])[1] == pytest.approx(1.0)


def test_single_struct_type_spreads_over_parameters():
    @fc.federated_computation(
        StructType([FederatedType(np.int32, CLIENTS), FederatedType(np.int32, CLIENTS)])
    )
    def add(a, b):
        return fc.federated_sum(a), fc.federated_sum(b)

    assert str(add.type_signature.parameter) == "<a={int32}@CLIENTS,b={int32}@CLIENTS>"
    assert add([1, 2], [10, 20]) == (3, 30)


def test_python_containers_in_and_out():
    Point = collections.namedtuple("Point", ["x", "y"])

    @dataclasses.dataclass
    class Pair:
        first: object
        second: object

    @fc.federated_computation(collections.OrderedDict(a=FederatedType(np.float32, CLIENTS), b=F32))
    def f(arg):
        return {
            "point": Point(fc.federated_mean(arg["a"]), fc.federated_value(arg.b, SERVER)),
            "pair": Pair(arg[1], [arg.b, arg.b]),
        }

    result = f(collections.OrderedDict(a=[1.0, 3.0], b=np.float32(7.0)))
    assert isinstance(result, dict)
    assert isinstance(result["point"], Point)
    assert result["point"].x == pytest.approx(2.0)
    assert result["point"].y == pytest.approx(7.0)
    assert isinstance(result["pair"], Pair)
    assert result["pair"].first == pytest.approx(7.0)
    assert isinstance(result["pair"].second, list)


def test_struct_unpacking_and_selection_inside_the_body():
    @fc.federated_computation(StructType([("x", F32), ("y", I32)]))
    def swap(arg):
        x, y = arg
        return y, x, arg[0], arg.y

    assert str(swap.type_signature.result) == "<int32,float32,float32,int32>"
    assert swap((np.float32(1.5), np.int32(2))) == (2, 1.5, 1.5, 2)


def test_member_wise_selection_of_a_federated_struct():
    member = StructType([("w", F32), ("n", I32)])

    @fc.federated_computation(FederatedType(member, CLIENTS))
    def weights(arg):
        return fc.federated_sum(arg.n), fc.federated_mean(arg.w)

    assert weights([(np.float32(1.0), np.int32(2)), (np.float32(3.0), np.int32(5))]) == (7, 2.0)


def test_computations_call_computations_and_results_are_bound_once():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def inner(x):
        return fc.federated_map(add_one, x)

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def outer(x):
        y = inner(x)
        return fc.federated_sum(y), fc.federated_max(y)

    body = outer.building_block.result
    assert isinstance(body, framework.Block)
    intrinsic_uses = [
        b for b in framework.walk(outer.building_block) if isinstance(b, framework.Intrinsic)
    ]
    # inner's map appears once, however often its result is used.
    assert [b.uri for b in intrinsic_uses].count("federated_map") == 1
    assert outer([1.0, 2.0]) == (5.0, 3.0)


def test_nested_computation_refers_to_enclosing_parameter():
    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def outer(scale, data):
        @fc.federated_computation
        def broadcast_scale():
            return fc.federated_broadcast(scale)

        return fc.federated_sum(fc.federated_map(add_one, data)), broadcast_scale()

    total, scale = outer(np.float32(4.0), [1.0, 2.0])
    assert total == pytest.approx(5.0)
    assert scale == pytest.approx(4.0)


def test_polymorphic_computation_is_traced_once_per_argument_type():
    traces = []

    @fc.federated_computation
    def identity(x):
        traces.append(x.type_signature)
        return x

    assert identity(np.int32(3)) == 3
    assert identity(np.int32(4)) == 4
    assert identity(np.float32(1.5)) == pytest.approx(1.5)
    assert [str(t) for t in traces] == ["int32", "float32"]


def test_python_function_passed_where_a_function_is_expected():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def f(x):
        return fc.federated_sum(fc.federated_map(lambda v: add_one(add_one(v)), x))

    assert f([0.0, 1.0]) == pytest.approx(5.0)


def test_readable_string_of_a_body():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def f(x):
        return fc.federated_mean(fc.federated_map(add_one, x))

    text = str(f)
    assert "federated_map(<comp#python:add_one," in text
    assert "federated_mean(" in text
    assert "let" in f.building_block.formatted_representation()


def test_type_signature_parses_back():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def f(x):
        return fc.federated_mean(x)

    assert parse_type(str(f.type_signature)) == f.type_signature
    assert isinstance(f.type_signature, FunctionType)


def test_symbolic_values_refuse_python_control_flow():
    with pytest.raises(TypeError, match="no truth value"):

        @fc.federated_computation(FederatedType(np.float32, SERVER))
        def f(x):
            if x:
                return x
            return x


def test_returning_none_is_refused():
    with pytest.raises(TypeError, match="returned None"):

        @fc.federated_computation(FederatedType(np.float32, SERVER))
        def f(x):
            fc.federated_broadcast(x)


def test_wrong_number_of_types_is_refused():
    with pytest.raises(TypeError, match="2 parameters"):

        @fc.federated_computation(F32, F32, F32)
        def f(a, b):
            return a


def test_intrinsic_outside_a_computation_is_refused():
    with pytest.raises(RuntimeError, match="inside a federated computation"):
        fc.federated_broadcast(1.0)
