"""Datasets passed to computations: their element specs are checked and put in plain order once per
distinct spec, however many dataset objects share it, and never mistaken for another spec."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fed_tensorflow as ftf
from fed_core.execution.interface import structure_key
from fed_tensorflow._datasets import _in_plain_order
from fed_types import SequenceType, TensorType

Point = collections.namedtuple("Point", ["x", "y"])


def test_equal_structures_share_a_key_and_different_containers_do_not():
    spec = tf.TensorSpec([None, 2], tf.float32)
    same = tf.TensorSpec([None, 2], tf.float32)
    assert structure_key((spec, spec)) == structure_key((same, same))
    assert hash(structure_key({"a": [spec]})) == hash(structure_key({"a": [same]}))
    keys = [
        structure_key(value)
        for value in (
            (spec, spec),
            [spec, spec],
            Point(spec, spec),
            {"x": spec, "y": spec},
            collections.OrderedDict(x=spec, y=spec),
            collections.OrderedDict(y=spec, x=spec),
            (spec, tf.TensorSpec([None, 2], tf.int32)),
            (spec, tf.TensorSpec([None, 3], tf.float32)),
            (spec, tf.TensorSpec(None, tf.float32)),
            (1, 2),
            (1.0, 2),
            (True, 2),
        )
    ]
    assert len(set(keys)) == len(keys)
    assert structure_key((spec, [np.zeros(2)])) is None  # an unhashable leaf: no key


def _dataset(dtype, n=3):
    return tf.data.Dataset.from_tensor_slices(np.arange(2 * n).reshape(n, 2).astype(dtype)).batch(2)


@ftf.computation(SequenceType(TensorType(np.float32, [None, 2])))
def total(dataset):
    return dataset.reduce(tf.constant(0.0), lambda s, x: s + tf.reduce_sum(x))


def test_datasets_with_equal_specs_run_and_a_different_spec_is_still_refused():
    for _ in range(3):  # separate dataset objects, equal element specs
        assert float(total(_dataset(np.float32))) == 15.0
    with pytest.raises(TypeError, match=r"expected float32\[\?,2\]\*.*given int32\[\?,2\]\*"):
        total(_dataset(np.int32))
    with pytest.raises(TypeError, match=r"given float64\[\?,2\]\*"):
        total(_dataset(np.float64))
    assert float(total(_dataset(np.float32, n=2))) == 6.0


YX = collections.namedtuple("YX", ["y", "x"])
ELEMENT = collections.OrderedDict(y=TensorType(np.float32), x=TensorType(np.float32))


@ftf.computation(SequenceType(ELEMENT))
def y_minus_x(dataset):
    return dataset.reduce(tf.constant(0.0), lambda s, e: s + e["y"] - e["x"])


def test_elements_in_another_order_than_plain_are_reordered_each_time():
    x, y = np.array([1.0, 2.0], np.float32), np.array([5.0, 7.0], np.float32)
    # TensorFlow orders a mapping's components by key (x, y), a namedtuple's by field (y, x).
    as_tuple = tf.data.Dataset.from_tensor_slices(YX(y, x))
    as_mapping = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(y=y, x=x))
    assert not _in_plain_order(as_tuple.element_spec)
    assert _in_plain_order(as_mapping.element_spec)
    for _ in range(2):
        assert float(y_minus_x(tf.data.Dataset.from_tensor_slices(YX(y, x)))) == 9.0
        assert float(y_minus_x(tf.data.Dataset.from_tensor_slices({"y": y, "x": x}))) == 9.0
