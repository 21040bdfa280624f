"""Compiler passes: each normalization pass keeps the type signature and the results while changing
the tree, and the MapReduce form of round-shaped computations runs to the same results as the round.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import fed_core as fc
from fed_core.compiler import (
    MapReduceForm,
    get_map_reduce_form,
    inline_blocks,
    inline_lambdas,
    merge_chained_maps,
    normalize,
    run_map_reduce_form,
    simplify_selections,
)
from fed_core.intrinsics import definitions as intrinsics
from fed_core.ir import building_blocks as bb
from fed_core.testing._python_frontend import python_computation
from fed_types import CLIENTS, SERVER, FederatedType, StructType, TensorType

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)


@python_computation(np.float32, result_type=np.float32)
def add_half(x):
    return x + np.float32(0.5)


@python_computation(np.float32, result_type=np.float32)
def double(x):
    return x * np.float32(2)


@python_computation(np.int32, result_type=np.int32)
def add_one(x):
    return x + np.int32(1)


def count(block: bb.ComputationBuildingBlock, predicate) -> int:
    return sum(1 for node in bb.walk(block) if predicate(node))


def intrinsic_calls(block: bb.ComputationBuildingBlock, uri: str | None = None) -> int:
    return count(
        block,
        lambda n: (
            isinstance(n, bb.Call)
            and isinstance(n.function, bb.Intrinsic)
            and (uri is None or n.function.uri == uri)
        ),
    )


def lambda_calls(block: bb.ComputationBuildingBlock) -> int:
    return count(block, lambda n: isinstance(n, bb.Call) and isinstance(n.function, bb.Lambda))


def block_locals(block: bb.ComputationBuildingBlock) -> int:
    return sum(len(n.locals) for n in bb.walk(block) if isinstance(n, bb.Block))


def calls_of(block: bb.ComputationBuildingBlock, leaf: fc.Computation) -> int:
    return count(block, lambda n: isinstance(n, bb.Call) and n.function is leaf.building_block)


def transformed(comp: fc.Computation, compiler_pass) -> fc.Computation:
    """The computation after the pass, checked to keep its type signature exactly."""
    block = compiler_pass(comp.building_block)
    assert block.type_signature.is_identical_to(comp.type_signature)
    return fc.Computation(block, comp.name)


# ---- inline_lambdas


def test_inline_lambdas_substitutes_a_cheap_argument():
    x = bb.Reference("x", F32)
    body = bb.Call(
        bb.Lambda(
            "y",
            F32,
            bb.Struct(
                [bb.Reference("y", F32), bb.Call(add_half.building_block, bb.Reference("y", F32))]
            ),
        ),
        x,
    )
    comp = fc.Computation(bb.Lambda("x", F32, body))

    after = transformed(comp, inline_lambdas)

    assert lambda_calls(comp.building_block) == 1 and lambda_calls(after.building_block) == 0
    assert str(after.building_block) == "(x -> <x,comp#python:add_half(x)>)"
    assert after(np.float32(1.0)) == comp(np.float32(1.0)) == (1.0, 1.5)


def test_inline_lambdas_binds_an_argument_used_twice_instead_of_duplicating_its_call():
    x = bb.Reference("x", F32)
    y = bb.Reference("y", F32)
    body = bb.Call(bb.Lambda("y", F32, bb.Struct([y, y])), bb.Call(add_half.building_block, x))
    comp = fc.Computation(bb.Lambda("x", F32, body))

    after = transformed(comp, inline_lambdas)

    assert lambda_calls(after.building_block) == 0
    assert calls_of(after.building_block, add_half) == 1
    assert str(after.building_block) == "(x -> (let y=comp#python:add_half(x) in <y,y>))"
    assert after(np.float32(1.0)) == comp(np.float32(1.0)) == (1.5, 1.5)


def test_inline_lambdas_does_not_move_a_call_under_a_lambda():
    x = bb.Reference("x", F32)
    inner = bb.Lambda("z", F32, bb.Reference("y", F32))
    body = bb.Call(bb.Lambda("y", F32, bb.Struct([inner])), bb.Call(add_half.building_block, x))

    after = inline_lambdas(bb.Lambda("x", F32, body))

    assert isinstance(after.result, bb.Block)  # type: ignore[attr-defined]
    assert str(after) == "(x -> (let y=comp#python:add_half(x) in <(z -> y)>))"


def test_inline_lambdas_reduces_a_call_without_argument():
    literal = bb.Literal(np.float32(3.0), F32)
    comp = fc.Computation(bb.Lambda(None, None, bb.Call(bb.Lambda(None, None, literal))))

    after = transformed(comp, inline_lambdas)

    assert after.building_block.result is literal  # type: ignore[attr-defined]
    assert after() == 3.0


def test_inline_lambdas_renames_a_parameter_that_would_capture_the_argument():
    # (x -> ((y -> (x -> <x, y>))(x))(2.0)): the inner x must not capture the argument x.
    x = bb.Reference("x", F32)
    capturing = bb.Lambda(
        "y", F32, bb.Lambda("x", F32, bb.Struct([bb.Reference("x", F32), bb.Reference("y", F32)]))
    )
    body = bb.Call(bb.Call(capturing, x), bb.Literal(np.float32(2.0), F32))
    comp = fc.Computation(bb.Lambda("x", F32, body))

    after = transformed(comp, normalize)

    assert lambda_calls(after.building_block) == 0
    assert comp(np.float32(1.0)) == after(np.float32(1.0)) == (2.0, 1.0)


def test_inline_lambdas_inlines_nested_federated_computations():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def shifted_sum(values):
        return fc.federated_sum(fc.federated_map(add_half, values))

    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def outer(values):
        return shifted_sum(values), shifted_sum(fc.federated_map(double, values))

    after = transformed(outer, inline_lambdas)

    assert lambda_calls(outer.building_block) == 2
    assert lambda_calls(after.building_block) == 0
    assert after([1.0, 2.0]) == outer([1.0, 2.0]) == (4.0, 7.0)


# ---- inline_blocks


def test_inline_blocks_inlines_locals_used_once_and_keeps_shared_calls():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def statistics(values):
        shifted = fc.federated_map(add_half, values)
        doubled = fc.federated_map(double, shifted)
        return fc.federated_sum(doubled), fc.federated_mean(shifted)

    after = transformed(statistics, inline_blocks)

    assert block_locals(statistics.building_block) == 4
    assert block_locals(after.building_block) == 1  # `shifted` is used twice: computed once
    assert intrinsic_calls(after.building_block, intrinsics.FEDERATED_MAP) == 2
    assert after([1.0, 3.0]) == statistics([1.0, 3.0]) == (10.0, 2.5)


def test_inline_blocks_duplicates_cheap_locals_and_drops_unused_ones():
    pair_type = StructType([("a", F32), ("b", F32)])
    p = bb.Reference("p", pair_type)
    body = bb.Block(
        [
            ("a", bb.Selection(p, name="a")),
            ("unused", bb.Call(add_half.building_block, bb.Selection(p, name="b"))),
        ],
        bb.Struct([bb.Reference("a", F32), bb.Reference("a", F32)]),
    )
    comp = fc.Computation(bb.Lambda("p", pair_type, body))

    after = transformed(comp, inline_blocks)

    assert str(after.building_block) == "(p -> <p.a,p.a>)"
    assert after((1.0, 2.0)) == comp((1.0, 2.0)) == (1.0, 1.0)


def test_inline_blocks_renames_a_hoisted_local_that_would_capture():
    # let v = (let x = 10 in add_one(x)) in <v, x>: once hoisted, the inner x must not capture the
    # outer one.
    x = bb.Reference("x", I32)
    inner = bb.Block([("x", bb.Literal(np.int32(10), I32))], bb.Call(add_one.building_block, x))
    body = bb.Block(
        [("v", inner), ("w", bb.Call(add_one.building_block, bb.Reference("v", I32)))],
        bb.Struct([bb.Reference("w", I32), bb.Reference("w", I32), x]),
    )
    comp = fc.Computation(bb.Lambda("x", I32, body))

    after = transformed(comp, inline_blocks)

    assert count(after.building_block, lambda n: isinstance(n, bb.Block)) == 1
    assert after(np.int32(1)) == comp(np.int32(1)) == (12, 12, 1)


def test_inline_blocks_keeps_a_binding_whose_value_is_narrower_than_its_references():
    # A parameter declared float32[?] bound to a float32[3]: substituting would change the result
    # type.
    vector = TensorType(np.float32, [None])
    argument = bb.Call(
        bb.Lambda(None, None, bb.Literal(np.zeros(3, np.float32), TensorType(np.float32, [3])))
    )
    body = bb.Call(bb.Lambda("v", vector, bb.Struct([bb.Reference("v", vector)])), argument)
    comp = fc.Computation(bb.Lambda(None, None, body))

    after = transformed(comp, normalize)

    assert str(after.type_signature) == "( -> <float32[?]>)"
    np.testing.assert_array_equal(after()[0], np.zeros(3))


def test_inline_blocks_splits_a_struct_local_that_cannot_be_inlined_whole():
    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def helper(values, unused):
        return fc.federated_sum(values)

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def outer(offset, values):
        # The broadcast value is all-equal, while helper declares {float32}@CLIENTS: the argument
        # struct is
        # narrower than helper's parameter, so it is split into one local per element.
        return helper(fc.federated_map(add_half, values), fc.federated_broadcast(offset))

    after = transformed(outer, normalize)

    assert intrinsic_calls(after.building_block, intrinsics.FEDERATED_BROADCAST) == 0
    assert str(after.building_block).count("federated_sum(federated_map(") == 1
    assert after(1.0, [1.0, 2.0]) == outer(1.0, [1.0, 2.0]) == 4.0


# ---- simplify_selections


def test_simplify_selections_selects_from_structs_built_in_place():
    x = bb.Reference("x", F32)
    built = bb.Struct([("a", x), ("b", bb.Call(add_half.building_block, x))])
    in_block = bb.Block(
        [("y", bb.Call(double.building_block, x))], bb.Struct([bb.Reference("y", F32), x])
    )
    body = bb.Struct([bb.Selection(built, name="b"), bb.Selection(in_block, index=0)])
    comp = fc.Computation(bb.Lambda("x", F32, body))

    after = transformed(comp, simplify_selections)

    assert count(after.building_block, lambda n: isinstance(n, bb.Selection)) == 0
    assert (
        str(after.building_block)
        == "(x -> <comp#python:add_half(x),(let y=comp#python:double(x) in y)>)"
    )
    assert after(np.float32(1.0)) == comp(np.float32(1.0)) == (1.5, 2.0)


# ---- merge_chained_maps


def test_merge_chained_maps_merges_a_traced_chain():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def chain(values):
        return fc.federated_sum(
            fc.federated_map(add_half, fc.federated_map(double, fc.federated_map(add_half, values)))
        )

    after = transformed(chain, merge_chained_maps)

    assert intrinsic_calls(chain.building_block, intrinsics.FEDERATED_MAP) == 3
    assert intrinsic_calls(after.building_block, intrinsics.FEDERATED_MAP) == 1
    assert after([1.0, 2.0]) == chain([1.0, 2.0]) == 9.0


def test_merge_chained_maps_merges_nested_maps_and_server_applies():
    @fc.federated_computation(FederatedType(np.float32, SERVER))
    def on_server(value):
        return fc.federated_map(double, fc.federated_map(add_half, value))

    nested = inline_blocks(on_server.building_block)
    assert intrinsic_calls(nested, intrinsics.FEDERATED_APPLY) == 2

    after = merge_chained_maps(nested)

    assert intrinsic_calls(after, intrinsics.FEDERATED_APPLY) == 1
    assert fc.Computation(after)(np.float32(1.0)) == on_server(np.float32(1.0)) == 3.0


def test_merge_chained_maps_keeps_an_inner_map_whose_result_is_used_elsewhere():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def shared(values):
        shifted = fc.federated_map(add_half, values)
        return fc.federated_sum(fc.federated_map(double, shifted)), fc.federated_sum(shifted)

    after = transformed(shared, merge_chained_maps)

    assert after.building_block is shared.building_block
    assert after([1.0]) == (3.0, 1.5)


def test_merge_chained_maps_merges_member_wise_selections():
    pair = StructType([("a", np.float32), ("b", np.float32)])

    @fc.federated_computation(FederatedType(pair, CLIENTS))
    def pick(values):
        return fc.federated_sum(fc.federated_map(double, values.b))

    after = transformed(pick, merge_chained_maps)

    assert intrinsic_calls(pick.building_block, intrinsics.FEDERATED_MAP) == 2
    assert intrinsic_calls(after.building_block, intrinsics.FEDERATED_MAP) == 1
    assert after([(1.0, 2.0), (3.0, 4.0)]) == 12.0


# ---- normalize


def test_normalize_reaches_a_fixed_point_with_fewer_intrinsic_calls():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def scale(values):
        return fc.federated_map(double, fc.federated_map(add_half, values))

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def round_(state, values):
        scaled = scale(values)
        return fc.federated_map(add_half, state), fc.federated_sum(
            fc.federated_map(add_half, scaled)
        )

    after = transformed(round_, normalize)

    assert normalize(after.building_block) is after.building_block
    assert lambda_calls(after.building_block) == 0
    assert intrinsic_calls(round_.building_block) == 5
    assert intrinsic_calls(after.building_block) == 3
    assert intrinsic_calls(round_.building_block, intrinsics.FEDERATED_MAP) == 3
    assert intrinsic_calls(after.building_block, intrinsics.FEDERATED_MAP) == 1
    assert after(1.0, [1.0, 2.0]) == round_(1.0, [1.0, 2.0]) == (1.5, 9.0)


def tree_depth(block: bb.ComputationBuildingBlock) -> int:
    deepest, stack = 0, [(block, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.children())
    return deepest


def test_normalize_merges_a_long_chain_and_keeps_the_tree_shallow():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def step(values):
        return fc.federated_map(add_half, values)

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def long_round(state, values):
        for _ in range(200):
            values = step(values)
            state = fc.federated_map(add_half, state)
        return state, fc.federated_sum(values)

    after = transformed(long_round, normalize)

    assert intrinsic_calls(long_round.building_block) == 401
    assert intrinsic_calls(after.building_block) == 3  # one map at CLIENTS, one at SERVER, the sum
    # Inlining nests calls only so far, so the result stays as easy to traverse as the traced body.
    assert tree_depth(after.building_block) < 50
    assert after(1.0, [1.0, 2.0]) == long_round(1.0, [1.0, 2.0]) == (101.0, 203.0)


def test_a_nested_computation_inlined_twice_keeps_its_locals_apart():
    @python_computation(np.float32, np.float32, result_type=np.float32)
    def multiply(a, b):
        return a * b

    @fc.federated_computation(
        FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)
    )
    def weighted_total(values, weights):
        products = fc.federated_map(multiply, fc.federated_zip((values, weights)))
        return fc.federated_sum(fc.federated_map(add_half, products))

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def twice(scale, values):
        at_clients = fc.federated_broadcast(scale)
        first = weighted_total(values, at_clients)
        second = weighted_total(fc.federated_map(add_half, values), at_clients)
        return fc.federated_map(multiply, fc.federated_zip((first, second))), first

    arguments = (np.float32(2.0), [1.0, 3.0])
    expected = twice(*arguments)

    assert expected == (99.0, 9.0)
    assert transformed(twice, normalize)(*arguments) == expected
    assert run_map_reduce_form(get_map_reduce_form(twice), *arguments) == expected


@pytest.mark.parametrize(
    "compiler_pass",
    [inline_lambdas, inline_blocks, simplify_selections, merge_chained_maps, normalize],
)
def test_passes_take_building_blocks(compiler_pass):
    with pytest.raises(
        TypeError, match="takes a building block, got a Computation: pass its `building_block`"
    ):
        compiler_pass(add_half)


# ---- MapReduce form

WEIGHTS = TensorType(np.float32, [3])
BATCH = TensorType(np.float32, [None, 3])


@python_computation(WEIGHTS, BATCH, result_type=WEIGHTS)
def client_delta(weights, batch):
    return (batch.mean(axis=0) - weights).astype(np.float32)


@python_computation(BATCH, result_type=np.float32)
def num_examples(batch):
    return np.float32(batch.shape[0])


@python_computation(WEIGHTS, WEIGHTS, result_type=WEIGHTS)
def apply_delta(weights, delta):
    return (weights + np.float32(0.5) * delta).astype(np.float32)


@fc.federated_computation(FederatedType(WEIGHTS, SERVER), FederatedType(BATCH, CLIENTS))
def fed_avg(weights, batches):
    at_clients = fc.federated_broadcast(weights)
    deltas = fc.federated_map(client_delta, fc.federated_zip((at_clients, batches)))
    counts = fc.federated_map(num_examples, batches)
    mean_delta = fc.federated_mean(deltas, counts)
    new_weights = fc.federated_map(apply_delta, fc.federated_zip((weights, mean_delta)))
    return new_weights, fc.federated_sum(counts)


CLIENT_BATCHES = [
    np.ones((2, 3), np.float32),
    np.array([[3.0, 0.0, 1.0], [1.0, 2.0, 3.0], [5.0, 4.0, 2.0], [3.0, 2.0, 2.0]], np.float32),
    np.full((1, 3), -2.0, np.float32),
]


def test_fed_avg_map_reduce_form_parts():
    form = get_map_reduce_form(fed_avg)

    assert isinstance(form, MapReduceForm)
    assert form.type_signature == fed_avg.type_signature
    assert str(form.prepare.type_signature) == "(float32[3] -> <float32[3]>)"
    assert str(form.work.type_signature) == "(<float32[?,3],<float32[3]>> -> <float32[3],float32>)"
    assert (
        str(form.update.type_signature)
        == "(<float32[3],<float32[3],float32>> -> <float32[3],float32>)"
    )
    assert [(a.uri, a.value_index, a.weight_index) for a in form.aggregations] == [
        ("federated_weighted_mean", 0, 1),
        ("federated_sum", 1, None),  # the counts are sent once, for both aggregations
    ]
    for part in (form.prepare, form.work, form.update):
        assert not any(
            isinstance(n.type_signature, FederatedType) for n in bb.walk(part.building_block)
        )
    delta, count_ = form.work(CLIENT_BATCHES[0], (np.zeros(3, np.float32),))
    np.testing.assert_array_equal(delta, [1.0, 1.0, 1.0])
    assert count_ == 2.0


def test_fed_avg_map_reduce_form_runs_like_the_round_for_several_rounds():
    form = get_map_reduce_form(fed_avg)
    state = expected_state = np.zeros(3, np.float32)

    for _ in range(3):
        expected_state, expected_total = fed_avg(expected_state, CLIENT_BATCHES)
        state, total = run_map_reduce_form(form, state, CLIENT_BATCHES)
        np.testing.assert_allclose(state, expected_state, rtol=1e-6)
        assert total == expected_total == 7.0
    assert not np.allclose(state, 0.0)


STATE = StructType(
    [("weights", TensorType(np.float32, [2])), ("round", I32)], collections.OrderedDict
)


@python_computation(np.int32, result_type=np.float32)
def learning_rate(round_number):
    return np.float32(1.0 / (1 + round_number))


@python_computation(TensorType(np.int32, [None]), result_type=np.int32)
def total(values):
    return np.int32(values.sum())


@python_computation(TensorType(np.int32, [None]), result_type=np.int32)
def size(values):
    return np.int32(values.shape[0])


@python_computation(np.int32, result_type=np.int32)
def clip(x):
    return np.int32(min(x, 10))


@python_computation(StructType([I32, I32]), result_type=np.int32)
def larger(pair):
    return np.int32(max(pair[0], pair[1]))


@fc.federated_computation(FederatedType(np.int32, CLIENTS), FederatedType(np.float32, CLIENTS))
def clipped_sums(sums, rate):
    return fc.federated_map(add_one, fc.federated_map(clip, sums))


@fc.federated_computation(
    FederatedType(STATE, SERVER), FederatedType(TensorType(np.int32, [None]), CLIENTS)
)
def analytics_round(state, values):
    rate = fc.federated_broadcast(fc.federated_map(learning_rate, state.round))
    clipped = clipped_sums(fc.federated_map(total, values), rate)
    secure_total = fc.federated_secure_sum(clipped, 11)
    largest = fc.federated_aggregate(
        fc.federated_map(size, values), np.int32(0), larger, larger, add_one
    )
    new_state = fc.federated_zip(
        collections.OrderedDict(weights=state.weights, round=fc.federated_map(add_one, state.round))
    )
    return new_state, fc.federated_zip((secure_total, largest))


ANALYTICS_STATE = collections.OrderedDict(
    weights=np.array([0.5, 1.5], np.float32), round=np.int32(3)
)
ANALYTICS_VALUES = [
    np.array([1, 2, 3], np.int32),
    np.array([9, 9], np.int32),
    np.array([], np.int32),
]


def test_map_reduce_form_of_a_round_with_nested_computations_and_custom_aggregations():
    form = get_map_reduce_form(analytics_round)

    assert [a.uri for a in form.aggregations] == ["federated_secure_sum", "federated_aggregate"]
    secure, folded = form.aggregations
    assert secure.bound is not None and secure.bound() == 11
    assert folded.zero is not None and folded.zero() == 0
    assert folded.accumulate is not None and folded.accumulate((2, 5)) == 5
    assert folded.report is not None and folded.report(np.int32(4)) == 5
    # The broadcast rate is not used by the clients' work, so nothing is broadcast.
    assert str(form.prepare.type_signature) == "(<weights=float32[2],round=int32> -> <>)"
    assert str(form.work.type_signature) == "(<int32[?],<>> -> <int32,int32>)"
    assert form.work(ANALYTICS_VALUES[0], ()) == (7, 3)

    expected = analytics_round(ANALYTICS_STATE, ANALYTICS_VALUES)
    got = run_map_reduce_form(form, ANALYTICS_STATE, ANALYTICS_VALUES)

    assert isinstance(got[0], collections.OrderedDict)
    assert got[0]["round"] == expected[0]["round"] == 4
    np.testing.assert_array_equal(got[0]["weights"], expected[0]["weights"])
    assert got[1] == expected[1] == (7 + 11 + 1, 4)


@python_computation(WEIGHTS, result_type=WEIGHTS)
def scaled_for_clients(weights):
    return (weights * np.float32(2)).astype(np.float32)


@python_computation(WEIGHTS, BATCH, result_type=np.float32)
def loss(weights, batch):
    return np.float32(((batch - weights) ** 2).mean())


@fc.federated_computation(FederatedType(WEIGHTS, SERVER), FederatedType(BATCH, CLIENTS))
def evaluation_round(weights, batches):
    at_clients = fc.federated_broadcast(fc.federated_map(scaled_for_clients, weights))
    losses = fc.federated_map(loss, fc.federated_zip((at_clients, batches)))
    batch_means = fc.federated_map(
        client_delta,
        fc.federated_zip((fc.federated_value(np.zeros(3, np.float32), CLIENTS), batches)),
    )
    return fc.federated_mean(batch_means), fc.federated_zip(
        (fc.federated_max(losses), fc.federated_min(losses), weights)
    )


def test_map_reduce_form_with_server_prepare_and_a_plain_struct_update():
    form = get_map_reduce_form(evaluation_round)
    weights = np.array([1.0, 0.0, -1.0], np.float32)

    (prepared,) = form.prepare(weights)
    np.testing.assert_array_equal(prepared, [2.0, 0.0, -2.0])
    assert [a.uri for a in form.aggregations] == [
        "federated_mean",
        "federated_max",
        "federated_min",
    ]

    expected = evaluation_round(weights, CLIENT_BATCHES)
    got = run_map_reduce_form(form, weights, CLIENT_BATCHES)

    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    assert got[1][0] == expected[1][0] and got[1][1] == expected[1][1]
    np.testing.assert_array_equal(got[1][2], weights)


# ---- what does not have the shape of a round


def test_map_reduce_form_refuses_a_computation_of_another_type():
    @fc.federated_computation(FederatedType(np.float32, CLIENTS))
    def only_clients(values):
        return fc.federated_sum(values)

    with pytest.raises(
        ValueError,
        match=(
            "needs a round of type .*; the parameter of this computation has type "
            "\\{float32\\}@CLIENTS"
        ),
    ):
        get_map_reduce_form(only_clients)

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def one_result(state, values):
        return fc.federated_sum(values)

    with pytest.raises(
        ValueError,
        match=(
            "the result of this computation has type float32@SERVER, not a pair of values at SERVER"
        ),
    ):
        get_map_reduce_form(one_result)


def test_map_reduce_form_refuses_a_round_without_aggregation():
    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def no_aggregation(state, values):
        return state, fc.federated_map(add_half, state)

    with pytest.raises(ValueError, match="no aggregation step was found"):
        get_map_reduce_form(no_aggregation)

    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def unused_aggregation(state, values):
        fc.federated_sum(values)
        return state, state

    with pytest.raises(ValueError, match="the round's result must depend on client values"):
        get_map_reduce_form(unused_aggregation)


def test_map_reduce_form_leaves_out_aggregations_and_broadcasts_the_result_does_not_use():
    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def partly_unused(state, values):
        at_clients = fc.federated_broadcast(state)
        fc.federated_max(fc.federated_map(add_half, at_clients))
        return state, fc.federated_sum(values)

    form = get_map_reduce_form(partly_unused)

    assert [a.uri for a in form.aggregations] == ["federated_sum"]
    assert str(form.prepare.type_signature) == "(float32 -> <>)"
    assert (
        run_map_reduce_form(form, 1.0, [2.0, 3.0]) == partly_unused(1.0, [2.0, 3.0]) == (1.0, 5.0)
    )


def test_map_reduce_form_refuses_a_second_broadcast_after_an_aggregation():
    @fc.federated_computation(FederatedType(np.float32, SERVER), FederatedType(np.float32, CLIENTS))
    def two_stages(state, values):
        first = fc.federated_sum(values)
        second = fc.federated_sum(fc.federated_map(add_half, fc.federated_broadcast(first)))
        return first, second

    with pytest.raises(
        ValueError, match="the broadcast .* sends a value computed from an aggregate"
    ):
        get_map_reduce_form(two_stages)


def test_map_reduce_form_refuses_an_intrinsic_it_cannot_place():
    @python_computation(StructType([F32, I32]), result_type=np.float32)
    def select(pair):
        return pair[0]

    @fc.federated_computation(
        FederatedType(np.float32, SERVER), FederatedType(TensorType(np.int32, [2]), CLIENTS)
    )
    def selecting(state, keys):
        chosen = fc.federated_select(keys, fc.federated_value(np.int32(4), SERVER), state, select)
        return state, fc.federated_sum(fc.sequence_sum(chosen))

    with pytest.raises(
        ValueError, match="the intrinsic federated_select .* has no place in a round"
    ):
        get_map_reduce_form(selecting)


def test_map_reduce_form_refuses_a_compiled_leaf():
    with pytest.raises(ValueError, match="the parameter of this computation has type float32"):
        get_map_reduce_form(add_half)
    with pytest.raises(TypeError, match="takes a Computation, got a Lambda"):
        get_map_reduce_form(fed_avg.building_block)  # type: ignore[arg-type]
