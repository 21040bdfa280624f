"""Conversions between fed types and TensorFlow specs."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fed_tensorflow as ftf
from fed_types import SequenceType, StructType, TensorType

Point = collections.namedtuple("Point", ["y", "x"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (tf.float32, "float32"),
        (tf.string, "str"),
        (tf.TensorSpec([None, 3], tf.int64), "int64[?,3]"),
        (tf.TensorSpec(None, tf.float32), "float32[*]"),
        ((tf.float32, tf.TensorShape([2])), "float32[2]"),
        (tf.data.DatasetSpec(tf.TensorSpec([2], tf.float32)), "float32[2]*"),
        (
            collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32), y=tf.int32),
            "<x=float32[?,784],y=int32>",
        ),
        (Point(tf.float32, tf.TensorSpec([2], tf.bool)), "<y=float32,x=bool[2]>"),
        (tf.Variable(np.zeros((2, 3), np.float32)), "float32[2,3]"),
        (keras.Variable(np.zeros((4,), np.float64)), "float64[4]"),
    ],
)
def test_to_type(spec, expected):
    assert str(ftf.to_type(spec)) == expected


def test_to_type_keeps_containers_and_reads_dataset_element_specs():
    dataset = tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(x=np.zeros((4, 2), np.float32))
    )
    t = ftf.to_type(dataset.element_spec)
    assert t.python_container is collections.OrderedDict
    assert ftf.to_type(dataset) == SequenceType(t)
    assert ftf.to_type(Point(tf.float32, tf.float32)).python_container is Point


def test_to_type_refuses_what_fed_cannot_type():
    with pytest.raises(TypeError, match="variant"):
        ftf.to_type(tf.TensorSpec([], tf.variant))


def test_to_tf_dtype():
    assert ftf.to_tf_dtype(np.float32) is tf.float32
    assert ftf.to_tf_dtype("int64") is tf.int64
    assert ftf.to_tf_dtype(TensorType(np.str_)) is tf.string


@pytest.mark.parametrize(
    "t",
    [
        TensorType(np.float32, [None, 10]),
        TensorType(np.int32),
        SequenceType(StructType([("x", TensorType(np.float32, [2])), ("y", TensorType(np.int64))])),
        StructType([TensorType(np.bool_), TensorType(np.uint8, [3])]),
        StructType([("w", TensorType(np.float32, [2, 2])), ("b", SequenceType(np.int32))]),
    ],
)
def test_to_tf_spec_round_trips(t):
    assert ftf.to_type(ftf.to_tf_spec(t)) == t


def test_to_tf_spec_builds_the_struct_containers():
    named = StructType([("a", np.int32), ("b", np.float32)])
    assert ftf.to_tf_spec(named) == collections.OrderedDict(
        a=tf.TensorSpec([], tf.int32), b=tf.TensorSpec([], tf.float32)
    )
    assert ftf.to_tf_spec(StructType([np.int32])) == (tf.TensorSpec([], tf.int32),)
    point = ftf.to_tf_spec(ftf.to_type(Point(tf.float32, tf.int32)))
    assert isinstance(point, Point) and point.x == tf.TensorSpec([], tf.int32)
    with pytest.raises(NotImplementedError, match="mixes named and unnamed"):
        ftf.to_tf_spec(StructType([("a", np.int32), np.int32]))
