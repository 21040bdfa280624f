"""The vectorized form of client work: a computation that reads its datasets only through
`fold_dataset` also runs a whole group of clients as one batched call, with the results of one call
per client."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_tensorflow as ftf
from fed_core.framework import ClientValues
from fed_tensorflow._backend import backend
from fed_tensorflow._payload import GraphPayload
from fed_types import SequenceType, Struct, TensorType

BATCHES = SequenceType(
    collections.OrderedDict(x=TensorType(np.float32, [None, 3]), y=TensorType(np.int32, [None]))
)
WEIGHTS = TensorType(np.float32, [3, 4])


def _train_step(state, batch):
    w, count, loss_sum, hits = state
    with tf.GradientTape() as tape:
        tape.watch(w)
        logits = batch["x"] @ w
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["y"], logits))
    n = tf.shape(batch["y"])[0]
    hits += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, tf.int32), batch["y"]), tf.int32))
    return (
        w - 0.5 * tape.gradient(loss, w),
        count + n,
        loss_sum + loss * tf.cast(n, tf.float32),
        hits,
    )


def _train(weights, batches):
    final, count, loss_sum, hits = ftf.fold_dataset(
        batches, (weights, np.int32(0), np.float32(0), np.int32(0)), _train_step
    )
    return collections.OrderedDict(delta=final - weights, count=count, loss=loss_sum, hits=hits)


def _traced_with_vectorized_forms(fn, *types):
    # Vectorized forms are traced where they may be used: with the map strategy "vectorized" (or
    # "auto" on an accelerator).
    ftf.configure(map_strategy="vectorized")
    try:
        return ftf.computation(fn, *types)
    finally:
        ftf.configure()


train = _traced_with_vectorized_forms(_train, WEIGHTS, BATCHES)
train_on_cpu_auto = ftf.computation(_train, WEIGHTS, BATCHES)


def _train_with_reduce(weights, batches):
    final, count, _, _ = batches.reduce(
        (weights, np.int32(0), np.float32(0), np.int32(0)), _train_step
    )
    return collections.OrderedDict(delta=final - weights, count=count)


def _train_then_count_hits(weights, batches):
    # Two folds over one dataset: each iterates it anew, so a dataset that shuffles anew on every
    # iteration gives the second another order, which reading it once for a vectorized form would not.
    final, count, _, _ = ftf.fold_dataset(
        batches, (weights, np.int32(0), np.float32(0), np.int32(0)), _train_step
    )
    hits = ftf.fold_dataset(
        batches,
        np.int32(0),
        lambda total, b: (
            total
            + tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(b["x"] @ final, 1, tf.int32), b["y"]), tf.int32)
            )
        ),
    )
    return collections.OrderedDict(delta=final - weights, count=count, hits=hits)


train_with_reduce = _traced_with_vectorized_forms(_train_with_reduce, WEIGHTS, BATCHES)
train_then_count_hits = _traced_with_vectorized_forms(_train_then_count_hits, WEIGHTS, BATCHES)


def datasets(sizes, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    result = []
    for size in sizes:
        x = rng.normal(size=(size, 3)).astype(np.float32)
        y = rng.integers(0, 4, size=size).astype(np.int32)
        result.append(tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(batch))
    return result


WEIGHT_VALUES = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)


def _members(data, weights=WEIGHT_VALUES):
    return ClientValues([Struct([(None, weights), (None, d)]) for d in data])


def _run(strategy, computation, members):
    ftf.configure(map_strategy=strategy)
    loaded = backend().load(computation.building_block)
    return loaded, loaded.map(members, None)


def _assert_same(got, want):
    for a, b in zip(got.members(), want.members(), strict=True):
        np.testing.assert_allclose(a.delta, b.delta, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5, atol=1e-6)
        assert (int(a.count), int(a.hits)) == (int(b.count), int(b.hits))


def test_a_computation_folding_its_datasets_carries_a_vectorized_form(map_strategy):
    payload = GraphPayload.decode(train.building_block.payload)
    assert payload.vectorized is not None
    assert GraphPayload.decode(payload.encode()).vectorized.outputs == payload.vectorized.outputs
    # A dataset reduced otherwise has none, and its payload stays the first version.
    assert GraphPayload.decode(train_with_reduce.building_block.payload).vectorized is None
    assert b'"version":1' in train_with_reduce.building_block.payload[:200]
    # Traced with "auto" on CPUs (which never use it), a computation has none either.
    assert GraphPayload.decode(train_on_cpu_auto.building_block.payload).vectorized is None
    # Nor does one that folds a dataset twice.
    assert GraphPayload.decode(train_then_count_hits.building_block.payload).vectorized is None


def test_a_dataset_folded_twice_is_iterated_twice_as_one_call_per_client_does(map_strategy):
    def shuffled():
        # Made anew for each run: the dataset object's shuffle order moves on with each iteration.
        return [d.unbatch().shuffle(8, seed=3).batch(2) for d in datasets([8, 8, 8], seed=5)]

    results = {}
    for strategy in ("vectorized", "per_client"):
        _, result = _run(strategy, train_then_count_hits, _members(shuffled()))
        results[strategy] = result
    for a, b in zip(results["vectorized"].members(), results["per_client"].members(), strict=True):
        np.testing.assert_allclose(a.delta, b.delta, rtol=1e-5, atol=1e-6)
        assert int(a.hits) == int(b.hits)


def test_elements_of_unknown_rank_are_iterated_and_have_no_vectorized_form():
    from fed_types import UNKNOWN_RANK

    def total(values):
        return ftf.fold_dataset(values, np.float32(0), lambda acc, x: acc + tf.reduce_sum(x))

    computation = _traced_with_vectorized_forms(
        total, SequenceType(TensorType(np.float32, UNKNOWN_RANK))
    )
    assert GraphPayload.decode(computation.building_block.payload).vectorized is None
    assert computation([np.ones((2, 2), np.float32), np.ones(3, np.float32)]) == 7.0


@pytest.mark.parametrize(
    "sizes",
    [
        [6, 6, 6, 6, 6],  # one group
        [5, 6, 5, 1, 0, 6, 9],  # groups by element shapes, one client alone, an empty dataset
    ],
)
def test_vectorized_clients_get_the_results_of_one_call_each(sizes, map_strategy):
    members = _members(datasets(sizes))
    loaded, vectorized = _run("vectorized", train, members)
    assert vectorized.is_stacked
    assert loaded._vectorized is not None
    _, one_by_one = _run("per_client", train, members)
    _assert_same(vectorized, one_by_one)
    assert [int(m.count) for m in vectorized.members()] == sizes


def test_clients_with_models_of_their_own_or_unreadable_data_run_one_by_one(map_strategy):
    own = ClientValues(
        [Struct([(None, WEIGHT_VALUES * k), (None, d)]) for k, d in enumerate(datasets([4, 4]))]
    )
    loaded, result = _run("vectorized", train, own)
    assert not result.is_stacked
    _assert_same(result, _run("per_client", train, own)[1])
    # A dataset whose cardinality is unknown (after filter) is iterated by the per-client calls.
    filtered = [d.filter(lambda b: tf.reduce_sum(b["y"]) >= 0) for d in datasets([4, 6])]
    loaded, result = _run("vectorized", train, _members(filtered))
    assert not result.is_stacked
    assert [int(m.count) for m in result.members()] == [4, 6]


def test_auto_times_every_way_on_parts_of_its_first_maps_then_keeps_the_fastest(
    map_strategy, monkeypatch
):
    import fed_tensorflow._backend as tf_backend

    # On CPUs "auto" leaves the vectorized form out; on an accelerator it times it too.
    assert not tf_backend._tries_vectorized(["/job:localhost/replica:0/task:0/device:CPU:0"])
    assert tf_backend._tries_vectorized(["/CPU:0", "/GPU:0"])
    monkeypatch.setattr(tf_backend, "_tries_vectorized", lambda devices: True)
    members = _members(datasets([4] * 12))
    ftf.configure(map_strategy="auto")
    loaded = backend().load(train.building_block)
    results = [loaded.map(members, None) for _ in range(3)]
    assert sorted(loaded._trials) == ["looped", "per_client", "vectorized"]
    assert all(len(times) == 2 for times in loaded._trials.values())
    want = _run("per_client", train, members)[1]
    for result in results:
        _assert_same(result, want)


def test_elements_of_varying_shapes_and_scalars():
    sequence = SequenceType(collections.OrderedDict(v=TensorType(np.float32, [None]), s=np.int64))

    def weighted_fn(scale, elements):
        return ftf.fold_dataset(
            elements,
            np.float32(0),
            lambda acc, e: acc * 2.0 + scale * tf.reduce_sum(e["v"]) + tf.cast(e["s"], tf.float32),
        )

    weighted = _traced_with_vectorized_forms(weighted_fn, np.float32, sequence)

    def client(lengths):
        return tf.data.Dataset.from_generator(
            lambda: ({"v": np.arange(n, dtype=np.float32), "s": np.int64(n)} for n in lengths),
            output_signature={
                "v": tf.TensorSpec([None], tf.float32),
                "s": tf.TensorSpec([], tf.int64),
            },
        ).apply(tf.data.experimental.assert_cardinality(len(lengths)))

    scale = np.float32(0.5)
    members = ClientValues(
        [Struct([(None, scale), (None, client(c))]) for c in [[1, 3], [1, 3], [2]]]
    )
    _, vectorized = _run("vectorized", weighted, members)
    assert vectorized.is_stacked
    _, one_by_one = _run("per_client", weighted, members)
    np.testing.assert_allclose(vectorized.stacked(), one_by_one.stacked(), rtol=1e-6)
    # ((0 * 2 + 0.5 * 0 + 1) * 2 + 0.5 * 3 + 3) = 6.5, and 0.5 * 1 + 2 = 2.5.
    np.testing.assert_allclose(vectorized.stacked(), [6.5, 6.5, 2.5])


def test_clients_datasets_are_read_whole_in_one_call_as_each_alone_reads():
    from fed_tensorflow._backend import _split_reads
    from fed_tensorflow._dense import read_if_readable

    sequence = SequenceType(
        collections.OrderedDict(
            v=TensorType(np.float32, [None, 2]), s=np.int64, w=TensorType(np.str_, [None])
        )
    )
    batches = _traced_with_vectorized_forms(
        lambda elements: ftf.fold_dataset(elements, np.int64(0), lambda n, e: n + e["s"]),
        sequence,
    )

    def client(lengths):
        return tf.data.Dataset.from_generator(
            lambda: (
                {
                    "v": np.full((n, 2), n, np.float32),
                    "s": np.int64(n),
                    "w": np.array(["ab"] * n),
                }
                for n in lengths
            ),
            output_signature={
                "v": tf.TensorSpec([None, 2], tf.float32),
                "s": tf.TensorSpec([], tf.int64),
                "w": tf.TensorSpec([None], tf.string),
            },
        ).apply(tf.data.experimental.assert_cardinality(len(lengths)))

    clients = [client(lengths) for lengths in ([1, 3], [], [2], [4, 1, 2])]
    ftf.configure(map_strategy="vectorized")
    try:
        reader = backend().load(batches.building_block)._reader(0, sequence)
    finally:
        ftf.configure()
    reads = _split_reads(reader(tf.stack([c._variant_tensor for c in clients])))
    assert [count for count, _, _ in reads] == [2, 0, 1, 3]
    for (count, shapes, padded), dataset in zip(reads, clients, strict=True):
        want_count, want_shapes, want_padded = read_if_readable(dataset)
        assert count == int(want_count)
        for got, want in zip([*shapes, *padded], [*want_shapes, *want_padded], strict=True):
            assert got.shape == tuple(want.shape) and got.dtype == want.numpy().dtype
            np.testing.assert_array_equal(got, want.numpy())
    # Each client's sum of its elements' `s`, the empty dataset's 0 included.
    _, one_call = _run("vectorized", batches, ClientValues(clients))
    assert one_call.is_stacked and one_call.stacked().tolist() == [4, 0, 2, 7]


def test_a_client_whose_dataset_cannot_be_read_whole_sends_all_one_by_one():
    from fed_tensorflow._backend import _split_reads

    sequence = SequenceType(TensorType(np.int64))
    total = _traced_with_vectorized_forms(
        lambda elements: ftf.fold_dataset(elements, np.int64(0), lambda n, e: n + e), sequence
    )
    # A filtered dataset's cardinality is unknown: it cannot be read whole.
    unreadable = tf.data.Dataset.range(4).filter(lambda k: k >= 0)
    clients = [tf.data.Dataset.range(3), unreadable, tf.data.Dataset.range(2)]
    ftf.configure(map_strategy="vectorized")
    try:
        loaded = backend().load(total.building_block)
        reader = loaded._reader(0, sequence)
        assert _split_reads(reader(tf.stack([c._variant_tensor for c in clients]))) is None
        assert loaded._map_vectorized(ClientValues(clients), None) is None
        assert loaded.map(ClientValues(clients), None).stacked().tolist() == [3, 6, 1]
    finally:
        ftf.configure()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda h: h.update(graph_bytes=10**9), "graph_bytes"),
        (lambda h: h.update(graph_bytes=h["graph_bytes"] + 10**9), "cut short"),
        (lambda h: h.update(graph_bytes="12"), "graph_bytes"),
        (lambda h: h.update(vectorized=[]), "vectorized"),
        (lambda h: h["vectorized"].update(inputs="x:0"), "vectorized inputs"),
    ],
)
def test_a_corrupt_vectorized_header_is_refused(change, message):
    import json
    import struct

    from fed_tensorflow._payload import MAGIC

    data = train.building_block.payload
    start = len(MAGIC) + 4
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    header = json.loads(data[start : start + length])
    change(header)
    encoded = json.dumps(header).encode()
    corrupt = MAGIC + struct.pack("<I", len(encoded)) + encoded + data[start + length :]
    with pytest.raises(ValueError, match=message):
        GraphPayload.decode(corrupt)


def test_a_failing_client_in_a_vectorized_group_raises_its_own_error_and_the_form_stays():
    def checked_total(values):
        def add(acc, x):
            with tf.control_dependencies([tf.debugging.assert_non_negative(x)]):
                return acc + x

        return ftf.fold_dataset(values, np.float32(0), add)

    computation = _traced_with_vectorized_forms(checked_total, SequenceType(np.float32))
    ftf.configure(map_strategy="vectorized")
    try:
        loaded = backend().load(computation.building_block)
        with pytest.raises(tf.errors.InvalidArgumentError):
            loaded.map(ClientValues([[1.0], [-2.0], [3.0]]), None)
        result = loaded.map(ClientValues([[1.0, 2.0], [2.0, 5.0]]), None)
    finally:
        ftf.configure()
    assert result.is_stacked and result.stacked().tolist() == [3.0, 7.0]
    assert loaded._vectorized_graph is not None


def test_fold_dataset_refuses_what_is_not_a_dataset_and_a_step_of_another_structure():
    with pytest.raises(TypeError, match="folds a tf.data.Dataset .* got list"):
        ftf.fold_dataset([1.0, 2.0], np.float32(0), lambda acc, x: acc + x)
    with pytest.raises(
        TypeError, match=r"structure of its initial value, '\.'; it returned \('\.', '\.'\)"
    ):
        ftf.computation(
            lambda ds: ftf.fold_dataset(ds, np.float32(0), lambda acc, x: (acc, x)),
            SequenceType(np.float32),
        )
    total = ftf.computation(
        lambda ds: ftf.fold_dataset(ds, np.float32(0), lambda acc, x: acc + x),
        SequenceType(np.float32),
    )
    assert total([]) == 0.0
    # Longer than what is read whole: iterated, same sum.
    assert total(np.ones(20_000, np.float32)) == 20_000.0
