"""fed_types recognises TensorFlow's dtypes, specs, tensors and datasets by duck typing, never
importing it.

TensorFlow is imported inside the tests that need it; they are skipped where it is not installed.
"""

import collections
import subprocess
import sys

import numpy as np
import pytest

from fed_types import SequenceType, StructType, TensorType, infer_type, to_dtype, to_type

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def test_importing_fed_types_does_not_import_tensorflow():
    code = (
        "import sys, fed_types, fed_types.types, fed_types.testing; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@slow
def test_tf_dtypes(tf):
    pairs = [
        (tf.bool, np.bool_),
        (tf.int8, np.int8),
        (tf.int16, np.int16),
        (tf.int32, np.int32),
        (tf.int64, np.int64),
        (tf.uint8, np.uint8),
        (tf.uint16, np.uint16),
        (tf.uint32, np.uint32),
        (tf.uint64, np.uint64),
        (tf.float16, np.float16),
        (tf.float32, np.float32),
        (tf.float64, np.float64),
        (tf.complex64, np.complex64),
        (tf.complex128, np.complex128),
        (tf.string, np.str_),
    ]
    for tf_dtype, np_dtype in pairs:
        assert to_dtype(tf_dtype) == np.dtype(np_dtype)
        assert to_type(tf_dtype) == TensorType(np_dtype)
    with pytest.raises(TypeError, match="Unsupported dtype"):
        to_type(tf.resource)


@slow
def test_tensor_specs_and_shapes(tf):
    assert to_type(tf.TensorSpec([None, 28], tf.float32)) == TensorType(np.float32, [None, 28])
    assert str(to_type(tf.TensorSpec(None, tf.int32))) == "int32[*]"
    assert str(to_type(tf.TensorSpec([], tf.string))) == "str"
    assert to_type((tf.int32, [2])) == TensorType(np.int32, [2])
    assert to_type((tf.int32, tf.TensorShape([None, 3]))) == TensorType(np.int32, [None, 3])
    assert str(TensorType(tf.float32, tf.TensorShape(None))) == "float32[*]"
    spec = {"x": tf.TensorSpec([None, 784], tf.float32), "y": tf.TensorSpec([None, 1], tf.int64)}
    assert str(to_type(spec)) == "<x=float32[?,784],y=int64[?,1]>"
    assert to_type(spec).python_container is dict


@slow
def test_dataset_element_specs(tf):
    dataset = tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(x=np.zeros((4, 2), np.float32), y=np.zeros((4,), np.int32))
    ).batch(2)
    element = to_type(dataset.element_spec)
    assert str(element) == "<x=float32[?,2],y=int32[?]>"
    assert element.python_container is collections.OrderedDict
    assert to_type(tf.data.DatasetSpec(dataset.element_spec)) == SequenceType(element)
    assert infer_type(dataset) == SequenceType(element)
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros(3, np.float64), np.array(["a", "b", "c"])))
    assert to_type(pairs.element_spec) == StructType([np.float64, np.str_])


@slow
def test_tensors(tf):
    assert infer_type(tf.constant([[1.0, 2.0]])) == TensorType(np.float32, [1, 2])
    assert infer_type(tf.Variable(3, dtype=tf.int64)) == TensorType(np.int64)
    assert infer_type(tf.constant("text")) == TensorType(np.str_)
    assert infer_type({"w": tf.zeros([2, 3]), "b": [tf.zeros([3])]}) == to_type(
        {"w": (np.float32, [2, 3]), "b": [(np.float32, [3])]}
    )


@slow
def test_ragged_and_sparse_specs_are_typed_as_in_tff(tf):
    ragged = to_type(tf.RaggedTensorSpec([None, None], tf.int32))
    assert str(ragged) == "<flat_values=int32[?],nested_row_splits=<int64[?]>>"
    assert ragged.python_container is tf.RaggedTensor
    sparse = to_type(tf.SparseTensorSpec([None, 3], tf.float32))
    assert str(sparse) == "<indices=int64[?,2],values=float32[?],dense_shape=int64[2]>"
    assert sparse.python_container is tf.SparseTensor
    # A ragged spec without ragged dimensions is a dense tensor's.
    assert to_type(tf.RaggedTensorSpec([None, 2], tf.int32, ragged_rank=0)) == TensorType(
        np.int32, [None, 2]
    )
