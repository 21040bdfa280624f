"""Clients' datasets from a `DatasetSource`: made only when read, and made inside the backend's looped
graph for a whole cohort at once, with the results of datasets made one by one."""

import collections
import concurrent.futures
import gc
import threading
import weakref

import numpy as np
import pytest
import tensorflow as tf

import fed_tensorflow as ftf
from fed_core.framework import ClientValues
from fed_tensorflow import _backend
from fed_tensorflow._backend import backend
from fed_types import SequenceType, Struct, TensorType

BATCHES = SequenceType(
    collections.OrderedDict(x=TensorType(np.float32, [None, 3]), y=TensorType(np.int32, [None]))
)
WEIGHTS = TensorType(np.float32, [3, 4])


def _train(weights, batches):
    def step(state, batch):
        w, count, loss_sum = state
        with tf.GradientTape() as tape:
            tape.watch(w)
            logits = batch["x"] @ w
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(batch["y"], logits)
            )
        n = tf.shape(batch["y"])[0]
        return w - 0.5 * tape.gradient(loss, w), count + n, loss_sum + loss * tf.cast(n, tf.float32)

    final, count, loss_sum = ftf.fold_dataset(batches, (weights, np.int32(0), np.float32(0)), step)
    return collections.OrderedDict(delta=final - weights, count=count, loss=loss_sum)


train = ftf.computation(_train, WEIGHTS, BATCHES)
WEIGHT_VALUES = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)


class ArraySource:
    """Clients' examples in two arrays, each client a range of rows, as data held in memory is."""

    def __init__(self, sizes, preprocess=lambda d: d.batch(2), seed=0):
        rng = np.random.default_rng(seed)
        total = sum(sizes)
        self.x = rng.normal(size=(total, 3)).astype(np.float32)
        self.y = rng.integers(0, 4, size=total).astype(np.int32)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.preprocess = preprocess
        self.tensors = [tf.constant(self.x), tf.constant(self.y)]

    def rows(self, k):
        start, end = self.offsets[k], self.offsets[k + 1]
        return [self.x[start:end], self.y[start:end]]

    def build(self, x, y):
        return self.preprocess(tf.data.Dataset.from_tensor_slices({"x": x, "y": y}))

    def cohort(self, keys):
        keys = np.asarray(keys, np.int64)
        starts, ends = self.offsets[keys], self.offsets[keys + 1]
        return ftf.Cohort([tf.constant(starts), tf.constant(ends)], self.tensors)

    @staticmethod
    def select(bounds, columns):
        start, end = bounds
        return [column[start:end] for column in columns]

    def source(self, makes_cohorts=True, keep_read=False):
        specs = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)]
        if not makes_cohorts:
            source = ftf.DatasetSource(specs, self.rows, self.build, keep_read=keep_read)
        else:
            source = ftf.DatasetSource(
                specs,
                self.rows,
                self.build,
                cohort=self.cohort,
                select=self.select,
                keep_read=keep_read,
            )
        source.dataset(0)  # the first dataset of a source is made at once
        return source

    def made_one_by_one(self, k):
        return self.build(*self.rows(k))


def _members(datasets):
    return ClientValues([Struct([(None, WEIGHT_VALUES), (None, d)]) for d in datasets])


def _loaded(computation):
    # Loaded anew, not from the backend's cache: a load keeps the loops it traces for sources.
    return _backend.LoadedTensorFlowComputation(computation.building_block, backend())


def _map(strategy, computation, datasets):
    ftf.configure(map_strategy=strategy)
    try:
        loaded = _loaded(computation)
        source = getattr(datasets[0], "source", None)
        if source is not None and all(isinstance(d, ftf.SourcedDataset) for d in datasets):
            # A source is looped over from its second map on.
            loaded.map(_members([source.dataset(d.key) for d in datasets]), None)
        return loaded.map(_members(datasets), None)
    finally:
        ftf.configure()


def _assert_same(got, want):
    for a, b in zip(got.members(), want.members(), strict=True):
        np.testing.assert_allclose(a.delta, b.delta, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5, atol=1e-6)
        assert int(a.count) == int(b.count)


def test_a_sourced_dataset_is_made_when_first_read_and_is_a_dataset_like_any_other():
    data = ArraySource([5, 0, 3])
    source = data.source()
    dataset = source.dataset(0)
    assert isinstance(dataset, tf.data.Dataset)
    assert dataset._made is None  # nothing made yet
    assert dataset.element_spec == data.made_one_by_one(0).element_spec
    got = list(dataset.as_numpy_iterator())
    assert dataset._made is not None
    want = list(data.made_one_by_one(0).as_numpy_iterator())
    assert [b["x"].shape for b in got] == [(2, 3), (2, 3), (1, 3)]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y"], b["y"])
    # Transformed, passed to a traced function, and empty, it behaves as any dataset does.
    assert list(source.dataset(2).map(lambda e: e["y"]).unbatch().as_numpy_iterator()) == list(
        data.y[5:8]
    )
    assert int(tf.function(lambda d: d.reduce(0, lambda n, _: n + 1))(source.dataset(2))) == 2
    assert list(source.dataset(1)) == []
    assert int(source.dataset(0).cardinality()) == 3
    # A preprocessed source: its pipeline traced with the preprocessing, its cohorts as before.
    firsts = source.preprocessed(lambda d: d.take(1))
    assert firsts.makes_cohorts
    assert [len(b["y"]) for b in firsts.dataset(0)] == [2]


def test_a_pipeline_that_cannot_be_traced_or_made_fails_when_the_dataset_is_asked_for():
    def untraceable(dataset):
        raise ValueError("no such preprocessing")

    with pytest.raises(ValueError, match="no such preprocessing"):
        ArraySource([2], preprocess=untraceable).source()
    # Traced, but not made (a batch of no elements): the first dataset asked for is made at once.
    data = ArraySource([2, 3], preprocess=lambda d: d.batch(0))
    specs = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)]
    source = ftf.DatasetSource(specs, data.rows, data.build, cohort=data.cohort, select=data.select)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Batch size must be greater than zero"
    ):
        source.dataset(1)


def test_a_made_dataset_keeps_neither_its_source_nor_its_inputs_alive():
    source = ArraySource([4, 2]).source()
    unread, read = source.dataset(0), source.dataset(1)
    assert len(list(read)) == 1
    alive = weakref.ref(source)
    del source
    gc.collect()
    assert alive() is not None  # the unread dataset still needs it
    del unread
    gc.collect()
    assert alive() is None and read.source is None
    assert [len(b["y"]) for b in read] == [2]


def test_threads_reading_one_new_dataset_at_once_get_the_same_elements():
    source = ArraySource([7]).source()
    for _ in range(20):
        dataset = source.dataset(0)
        barrier = threading.Barrier(4)

        def read(dataset=dataset, barrier=barrier):
            barrier.wait()
            return [b["y"].tolist() for b in dataset.as_numpy_iterator()]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: read(), range(4)))
        assert all(r == results[0] for r in results) and len(results[0]) == 4


def test_a_build_that_makes_no_dataset_is_refused_naming_what_it_made():
    data = ArraySource([2])
    specs = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)]
    source = ftf.DatasetSource(specs, data.rows, lambda x, y: x * 2.0)
    with pytest.raises(TypeError, match="must return a tf.data.Dataset, got SymbolicTensor"):
        source.dataset(0)


def test_a_source_takes_cohort_and_select_together():
    data = ArraySource([2])
    with pytest.raises(ValueError, match="both cohort and select"):
        ftf.DatasetSource([], data.rows, data.build, cohort=data.cohort)


def test_a_source_is_looped_over_from_its_second_map_on():
    data = ArraySource([3, 4])
    source = data.source()
    loaded = _loaded(train)
    ftf.configure(map_strategy="looped")
    try:
        first = [source.dataset(k) for k in range(2)]
        loaded.map(_members(first), None)
        assert all(d._made is not None for d in first) and loaded._sourced_loops == 0
        second = [source.dataset(k) for k in range(2)]
        got = loaded.map(_members(second), None)
        assert all(d._made is None for d in second) and loaded._sourced_loops == 1
        # Datasets already made (read, or made for the first map) are made anew in the loop.
        again = loaded.map(_members(first), None)
    finally:
        ftf.configure()
    want = _map("per_client", train, [data.made_one_by_one(k) for k in range(2)])
    _assert_same(got, want)
    _assert_same(again, want)


def test_a_cohort_is_made_inside_the_looped_call_with_the_results_of_one_call_per_client():
    sizes = [5, 2, 0, 7, 4, 1]
    data = ArraySource(sizes)
    source = data.source()
    datasets = [source.dataset(k) for k in range(len(sizes))]
    got = _map("looped", train, datasets)
    # No client's dataset was made in Python: the loop made them from the cohort's tensors.
    assert all(d._made is None for d in datasets)
    want = _map("per_client", train, [data.made_one_by_one(k) for k in range(len(sizes))])
    _assert_same(got, want)
    assert [int(m.count) for m in got.members()] == sizes


def test_a_cohort_in_any_order_and_with_repeated_clients():
    data = ArraySource([3, 4, 5, 6])
    source = data.source()
    order = [3, 0, 3, 1]
    got = _map("looped", train, [source.dataset(k) for k in order])
    want = _map("per_client", train, [data.made_one_by_one(k) for k in order])
    _assert_same(got, want)


@pytest.mark.parametrize(
    "preprocess",
    [
        lambda d: d.shuffle(16, seed=3).batch(3),
        lambda d: d.map(lambda e: {"x": e["x"] * 2.0, "y": e["y"]}).batch(2).take(2),
        lambda d: d.filter(lambda e: e["y"] > 0).batch(2),
    ],
    ids=["seeded shuffle", "map and take", "filter"],
)
def test_preprocessing_inside_the_loop_gives_what_datasets_made_one_by_one_give(preprocess):
    sizes = [9, 4, 6]
    data = ArraySource(sizes, preprocess=preprocess)
    source = data.source()
    got = _map("looped", train, [source.dataset(k) for k in range(len(sizes))])
    want = _map("per_client", train, [data.made_one_by_one(k) for k in range(len(sizes))])
    _assert_same(got, want)


@pytest.mark.parametrize(
    "preprocess",
    [
        lambda d: d.shuffle(16, seed=3).batch(3),
        lambda d: d.shuffle(16).batch(3),
        lambda d: d.map(lambda e: {"x": e["x"] + tf.random.uniform([3]), "y": e["y"]}).batch(3),
    ],
    ids=["seeded shuffle", "shuffle", "random map"],
)
def test_datasets_that_draw_anew_on_each_reading_are_read_as_they_are_every_round(preprocess):
    # Made anew in a loop, a dataset that shuffles would give its first order every round, where
    # the dataset handed out reshuffles each time it is read: such pipelines are not looped over.
    def rounds(strategy):
        tf.random.set_seed(7)
        source = ArraySource([9, 6], preprocess=preprocess).source()
        assert not source.replayable and not source.makes_cohorts
        datasets = [source.dataset(k) for k in range(2)]
        ftf.configure(map_strategy=strategy)
        try:
            loaded = _loaded(train)
            return loaded, [loaded.map(_members(datasets), None) for _ in range(3)]
        finally:
            ftf.configure()

    loaded, looped = rounds("looped")
    assert loaded._sourced_loops == 0
    _, per_client = rounds("per_client")
    for got, want in zip(looped, per_client, strict=True):
        _assert_same(got, want)


def test_stateless_pipelines_are_replayable():
    assert ArraySource([2], preprocess=lambda d: d.batch(2).cache().prefetch(1)).source().replayable
    stateless = lambda d: d.map(  # noqa: E731
        lambda e: {"x": e["x"] + tf.random.stateless_uniform([3], seed=[1, 2]), "y": e["y"]}
    )
    assert ArraySource([2], preprocess=stateless).source().replayable


def test_datasets_of_mixed_origin_go_in_one_by_one():
    data = ArraySource([4, 3, 5])
    source = data.source()
    want = _map("per_client", train, [data.made_one_by_one(k) for k in range(3)])
    mixed = [source.dataset(0), data.made_one_by_one(1), source.dataset(2)]
    _assert_same(_map("looped", train, mixed), want)
    # A source that cannot make cohorts: its datasets are made, one each, and go in as usual.
    plain = data.source(makes_cohorts=False)
    _assert_same(_map("looped", train, [plain.dataset(k) for k in range(3)]), want)


def _checked(dataset):
    return dataset.map(
        lambda e: {"x": tf.debugging.assert_all_finite(e["x"], "client data"), "y": e["y"]}
    ).batch(2)


def _with_a_bad_client():
    """Three clients of 3 examples; the second's data holds a NaN, which its pipeline refuses."""
    data = ArraySource([3, 3, 3], preprocess=_checked)
    data.x[4, 1] = np.nan
    data.tensors[0] = tf.constant(data.x)
    return data


def test_a_failing_client_made_inside_the_loop_raises_its_own_error():
    data = _with_a_bad_client()
    source = data.source()
    loaded = _loaded(train)
    ftf.configure(map_strategy="looped")
    try:
        loaded.map(_members([source.dataset(k) for k in (0, 2)]), None)
        with pytest.raises(tf.errors.InvalidArgumentError, match="client data"):
            loaded.map(_members([source.dataset(k) for k in range(3)]), None)
        # The good clients still run in the loop.
        good = [source.dataset(k) for k in (0, 2)]
        got = loaded.map(_members(good), None)
    finally:
        ftf.configure()
    assert all(d._made is None for d in good)
    _assert_same(got, _map("per_client", train, [data.made_one_by_one(k) for k in (0, 2)]))


def test_loops_are_traced_for_a_few_sources_and_datasets_of_further_ones_go_in_one_by_one():
    loaded = _loaded(train)
    kept = []  # sources alive: each keeps its loop
    ftf.configure(map_strategy="looped")
    try:
        for seed in range(_backend._SOURCED_LOOPS + 2):
            data = ArraySource([3, 2], seed=seed)
            source = data.source()
            kept.append(source)
            loaded.map(_members([source.dataset(k) for k in range(2)]), None)
            datasets = [source.dataset(k) for k in range(2)]
            got = loaded.map(_members(datasets), None)
            beyond = seed >= _backend._SOURCED_LOOPS
            assert all((d._made is not None) == beyond for d in datasets)
            want = [data.made_one_by_one(k) for k in range(2)]
            _assert_same(got, _map("per_client", train, want))
            ftf.configure(map_strategy="looped")
    finally:
        ftf.configure()
    assert loaded._sourced_loops == _backend._SOURCED_LOOPS


@pytest.mark.parametrize("keep_read", [False, True], ids=["read in the loop", "kept read"])
def test_a_loop_holds_its_source_weakly_and_is_dropped_with_it(keep_read):
    loaded = _loaded(train)
    ftf.configure(map_strategy="looped")
    try:
        for seed in range(_backend._SOURCED_LOOPS + 2):
            source = ArraySource([3, 2], seed=seed).source(keep_read=keep_read)
            alive = weakref.ref(source)
            loaded.map(_members([source.dataset(k) for k in range(2)]), None)
            for _ in range(2):  # data in memory is kept read from a client's second loop on
                datasets = [source.dataset(k) for k in range(2)]
                loaded.map(_members(datasets), None)
            # Every source makes its cohort in the loop: those gone left no loop behind.
            assert all(d._made is None for d in datasets)
            cache = source.read_cache(BATCHES.element)
            assert (cache is not None and len(cache.index) == 2) == keep_read
            del cache
            del source, datasets
            gc.collect()
            assert alive() is None  # the loaded computation does not keep the data alive
    finally:
        ftf.configure()
    assert loaded._sourced_loops == 1


# Sources that keep reads: a recurring client's dataset is read whole once, kept, and handed to the
# computation.


def _read_cache(source, computation=train):
    return source.read_cache(computation.type_signature.parameter[1].element)


def _maps(loaded, source, cohorts):
    ftf.configure(map_strategy="looped")
    try:
        return [loaded.map(_members([source.dataset(k) for k in keys]), None) for keys in cohorts]
    finally:
        ftf.configure()


def _per_client(data, keys, computation=train):
    return _map("per_client", computation, [data.made_one_by_one(k) for k in keys])


def test_clients_kept_read_are_read_whole_once_and_later_maps_read_no_dataset():
    sizes = [5, 2, 0, 7, 4, 1]
    data = ArraySource(sizes)
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    everyone = list(range(len(sizes)))
    first, second, third = _maps(loaded, source, [everyone] * 3)
    cache = _read_cache(source)
    # The first map runs no loop; the second reads the datasets in it; the third, a second round
    # for each client, reads them whole into the cache first, and the computation reads none.
    assert sorted(cache.index) == everyone
    # The cache holds what reading each dataset whole gives: 3, 1, 0, 4, 2 and 1 batches of 2.
    count, start = cache.rows(everyone)[:2]
    assert count.numpy().tolist() == [3, 1, 0, 4, 2, 1]
    assert start.numpy().tolist() == [0, 3, 4, 4, 8, 10]
    # The second and third maps ran the loop that takes the datasets read whole (where the cache
    # has them), and no other.
    assert [len(k) for k in loaded._batched if k[0] == "sequences" and any(k[2])] == [4]
    want = _per_client(data, everyone)
    for got in (first, second, third):
        _assert_same(got, want)
    assert [int(m.count) for m in third.members()] == sizes
    # Clients in another order, and repeated, from the same cache.
    order = [3, 0, 3, 5]
    _assert_same(_maps(loaded, source, [order])[0], _per_client(data, order))


def test_a_source_keeps_reads_only_where_it_says_so_and_makes_cohorts():
    source = ArraySource([3, 4]).source()
    assert _read_cache(source) is None
    assert ArraySource([3]).source(makes_cohorts=False, keep_read=True).read_cache(None) is None


def test_sampled_clients_are_kept_read_from_their_second_round_on(monkeypatch):
    from fed_tensorflow import _sources

    monkeypatch.setattr(_sources, "_CLIENTS_TO_MEASURE", 10**6)  # rounds_to_keep stays 2
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 9, size=40).tolist()
    data = ArraySource(sizes, seed=3)
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    cohorts = [rng.choice(40, size=6, replace=False).tolist() for _ in range(14)]
    _maps(loaded, source, cohorts[:1])  # the source's first map: no loop yet
    cache = _read_cache(source)
    looped = set()  # clients in a loop so far
    results = []
    ftf.configure(map_strategy="looped")
    try:
        for keys in cohorts[1:]:
            before = set(cache.index)
            results.append(loaded.map(_members([source.dataset(k) for k in keys]), None))
            # Read are the clients it lacked that were in an earlier loop, and only those.
            assert set(cache.index) - before == (set(keys) & looped) - before
            looped |= set(keys)
    finally:
        ftf.configure()
    assert 0 < len(cache.index) < len(looped)
    for keys, got in zip(cohorts[1:], results, strict=True):
        _assert_same(got, _per_client(data, keys))
    # The arrays grew by doubling: their capacity is less than twice what they hold.
    for rows in cache._shared:
        assert rows.size <= len(rows.array) < 2 * max(rows.size, 1) + 64


def test_a_client_is_due_for_keeping_after_as_many_rounds_as_keeping_costs_reading():
    from fed_tensorflow import _sources

    cache = _sources.ReadCache()
    cache.rounds_to_keep = 3
    assert cache.due(["a", "b"]) == []
    assert cache.due(["a", "c"]) == []
    assert cache.due(["a", "b", "c"]) == ["a"]
    assert cache.due(["b", "d"]) == ["b"]
    cache.full = True
    assert cache.due(["c", "d"]) == []


def test_reading_many_clients_measures_once_the_rounds_a_client_is_read_before_it_is_kept():
    sizes = [3] * 24
    data = ArraySource(sizes)
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    *_, got = _maps(loaded, source, [range(12)] * 3)
    cache = _read_cache(source)
    assert len(cache.index) == 12 and cache.measured
    assert 2 <= cache.rounds_to_keep <= 16
    _assert_same(got, _per_client(data, range(12)))
    # Later reads (which may grow the arrays, a cost spread over all clients) measure nothing.
    cache.rounds_to_keep = 2
    *_, got = _maps(loaded, source, [range(12, 24)] * 2)
    assert len(cache.index) == 24 and cache.rounds_to_keep == 2
    _assert_same(got, _per_client(data, range(12, 24)))


def test_clients_kept_later_fill_the_room_left_by_the_first_read_without_copying():
    data = ArraySource([3] * 14)
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    _maps(loaded, source, [range(12)] * 3)
    cache = _read_cache(source)
    arrays = [rows.array for rows in cache._shared]
    # A quarter more room than the first read needed: two more clients fit in it.
    *_, got = _maps(loaded, source, [[12, 13]] * 2)
    assert len(cache.index) == 14
    assert all(rows.array is array for rows, array in zip(cache._shared, arrays, strict=True))
    _assert_same(got, _per_client(data, [12, 13]))


def test_clients_whose_datasets_are_not_read_whole_are_read_by_the_computation():
    # After `filter` a dataset's size is unknown: the cache marks such clients (count -1) and the
    # computation iterates their datasets itself.
    data = ArraySource([9, 4, 6, 0], preprocess=lambda d: d.filter(lambda e: e["y"] > 0).batch(2))
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    *_, got = _maps(loaded, source, [range(4)] * 3)
    assert _read_cache(source).rows(list(range(4)))[0].numpy().tolist() == [-1] * 4
    _assert_same(got, _per_client(data, range(4)))


def _fold_and_iterate(weights, batches):
    # Folds its dataset, and also reads it otherwise: the dataset is still given whole.
    result = _train(weights, batches)
    total = tf.constant(0, tf.int32)
    for batch in batches:
        total += tf.size(batch["y"])
    result["count"] = result["count"] + 100 * total
    return result


fold_and_iterate = ftf.computation(_fold_and_iterate, WEIGHTS, BATCHES)


def test_a_computation_that_also_iterates_its_dataset_reads_it_as_given():
    sizes = [5, 2, 7]
    data = ArraySource(sizes)
    source = data.source(keep_read=True)
    loaded = _loaded(fold_and_iterate)
    *_, got = _maps(loaded, source, [range(3)] * 3)
    assert len(_read_cache(source, fold_and_iterate).index) == 3
    _assert_same(got, _per_client(data, range(3), fold_and_iterate))
    assert [int(m.count) for m in got.members()] == [101 * n for n in sizes]


def test_strings_and_scalars_read_whole_are_kept_and_handed_over():
    # Elements of scalars (rank 0), one a string.
    element = collections.OrderedDict(word=TensorType(np.str_), w=TensorType(np.float32))

    def weigh(examples):
        return ftf.fold_dataset(
            examples,
            np.float32(0),
            lambda acc, e: acc + e["w"] * tf.cast(tf.strings.length(e["word"]), tf.float32),
        )

    computation = ftf.computation(weigh, SequenceType(element))
    words = np.array(["a", "bb", "ccc", "dddd", "", "ff"])
    offsets = [0, 3, 3, 6]

    def build(word, w):
        return tf.data.Dataset.from_tensor_slices({"word": word, "w": w})

    weights = np.arange(6, dtype=np.float32)
    tensors = [tf.constant(words), tf.constant(weights)]
    source = ftf.DatasetSource(
        [tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.float32)],
        lambda k: [words[offsets[k] : offsets[k + 1]], weights[offsets[k] : offsets[k + 1]]],
        build,
        cohort=lambda keys: ftf.Cohort(
            [
                tf.constant([offsets[k] for k in keys], tf.int64),
                tf.constant([offsets[k + 1] for k in keys], tf.int64),
            ],
            tensors,
        ),
        select=ArraySource.select,
        keep_read=True,
    )
    source.dataset(0)
    loaded = _backend.LoadedTensorFlowComputation(computation.building_block, backend())
    ftf.configure(map_strategy="looped")
    try:
        results = [
            loaded.map(ClientValues([source.dataset(k) for k in (2, 0, 1)]), None) for _ in range(3)
        ]
    finally:
        ftf.configure()
    assert len(source.read_cache(computation.type_signature.parameter.element).index) == 3
    # Client 2: words "dddd", "", "ff" weighing 3, 4, 5; client 0: "a", "bb", "ccc" weighing 0-2.
    want = [3 * 4 + 4 * 0 + 5 * 2, 0 * 1 + 1 * 2 + 2 * 3, 0]
    for result in results:
        assert [float(v) for v in result.members()] == want


def test_a_cache_holds_at_most_its_bytes_and_clients_beyond_are_read_in_the_loop(monkeypatch):
    from fed_tensorflow import _sources

    data = ArraySource([4, 4, 4, 4])
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    # A client: 4 examples of 3 floats and 4 labels (64 bytes), in 2 batches whose shapes take
    # 48 bytes: room for two clients.
    monkeypatch.setattr(_sources, "READ_CACHE_BYTES", 300)
    first = _maps(loaded, source, [[0, 1]] * 3)[-1]
    cache = _read_cache(source)
    assert sorted(cache.index) == [0, 1] and not cache.full and cache.nbytes == 224
    more = _maps(loaded, source, [[0, 1, 2, 3]] * 3)[-1]
    assert cache.full and sorted(cache.index) == [0, 1]
    _assert_same(first, _per_client(data, [0, 1]))
    _assert_same(more, _per_client(data, range(4)))


def test_a_client_whose_pipeline_fails_raises_its_error_and_others_are_still_kept_read():
    data = _with_a_bad_client()
    source = data.source(keep_read=True)
    loaded = _loaded(train)
    _maps(loaded, source, [[0, 2]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="client data"):
        _maps(loaded, source, [[0, 1, 2]])
    got = _maps(loaded, source, [[0, 2]] * 2)[-1]
    assert sorted(_read_cache(source).index) == [0, 2]
    _assert_same(got, _per_client(data, [0, 2]))


def test_a_folding_computation_names_its_read_whole_inputs_in_its_payload():
    from fed_tensorflow._payload import GraphPayload

    payload = GraphPayload.decode(train.building_block.payload)
    assert payload.read_whole is not None
    weights_input, dataset_input = payload.read_whole
    # The count, then the shapes and the padded values of the element's two leaves.
    assert weights_input is None and len(dataset_input) == 5
    assert GraphPayload.decode(payload.encode()).read_whole == payload.read_whole

    def iterate(batches):
        total = tf.constant(0, tf.int32)
        for batch in batches:
            total += tf.size(batch["y"])
        return total

    assert (
        GraphPayload.decode(ftf.computation(iterate, BATCHES).building_block.payload).read_whole
        is None
    )


@pytest.mark.parametrize(
    "value", [3, ["x:0"], [None, ["x:0", 1]], [None, []]], ids=["number", "short", "name", "empty"]
)
def test_a_payload_with_a_bad_read_whole_entry_is_refused(value):
    import json
    import struct

    from fed_tensorflow._payload import MAGIC, GraphPayload

    data = train.building_block.payload
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(data[start : start + length])
    header["read_whole"] = value
    encoded = json.dumps(header).encode()
    changed = MAGIC + struct.pack("<I", len(encoded)) + encoded + data[start + length :]
    with pytest.raises(ValueError, match="read_whole"):
        GraphPayload.decode(changed)


def test_a_payload_naming_a_read_whole_input_its_graph_lacks_fails_its_check():
    import dataclasses

    from fed_tensorflow._payload import GraphPayload

    payload = GraphPayload.decode(train.building_block.payload)
    names = list(payload.read_whole[1])
    names[0] = "no_such_node:0"
    broken = dataclasses.replace(payload, read_whole=(None, tuple(names)))
    with pytest.raises(ValueError, match="no_such_node"):
        broken.check(train.type_signature)


def test_a_vectorized_map_cuts_kept_clients_from_what_the_source_keeps_and_reads_the_rest():
    sizes = [5, 2, 0, 7, 4, 1]
    data = ArraySource(sizes)
    source = data.source(keep_read=True)
    # Vectorized forms are traced where they may be used.
    ftf.configure(map_strategy="vectorized")
    try:
        vectorized_train = ftf.computation(_train, WEIGHTS, BATCHES)
        loaded = _loaded(vectorized_train)
        read = []  # how many clients' datasets each map read itself
        reader = loaded._reader

        def counting_reader(position, t):
            function = reader(position, t)

            def counted(variants):
                read.append(int(variants.shape[0]))
                return function(variants)

            return counted

        loaded._reader = counting_reader
        everyone = list(range(len(sizes)))
        cohorts = [everyone, everyone, [3, 0, 3, 5, 2]]
        results = [
            loaded.map(_members([source.dataset(k) for k in keys]), None) for keys in cohorts
        ]
    finally:
        ftf.configure()
    # The first map reads every dataset; in the second, each client's second, the source reads and
    # keeps them all, and the map reads only the empty one's (its padded shape is reading's own).
    assert read == [6, 1, 1]
    assert sorted(_read_cache(source).index) == everyone
    for keys, got in zip(cohorts, results, strict=True):
        assert got.is_stacked
        _assert_same(got, _per_client(data, keys))
    assert [int(m.count) for m in results[1].members()] == sizes
