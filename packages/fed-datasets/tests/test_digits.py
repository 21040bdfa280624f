import sys

import numpy as np
import pytest
import tensorflow as tf

from fed_datasets import digits


def _arrays(client_data):
    """client id -> (labels, pixels), each client read in one batch."""
    out = {}
    for cid in client_data.client_ids:
        dataset = client_data.create_tf_dataset_for_client(cid).batch(10_000)
        batch = next(dataset.as_numpy_iterator(), None)
        out[cid] = (batch["label"], batch["pixels"]) if batch else (np.zeros(0), np.zeros(0))
    return out


def test_every_image_lands_once_in_train_or_test_with_the_same_clients():
    train, test = digits.load_data(num_clients=10, alpha=0.5, seed=0)
    assert train.client_ids == test.client_ids == [str(i) for i in range(10)]
    assert train.element_type_structure == {
        "label": tf.TensorSpec((), tf.int32),
        "pixels": tf.TensorSpec((8, 8), tf.float32),
    }
    train_arrays, test_arrays = _arrays(train), _arrays(test)
    sizes = [len(train_arrays[c][0]) + len(test_arrays[c][0]) for c in train.client_ids]
    assert sum(sizes) == 1797 and max(sizes) - min(sizes) <= 1
    test_share = sum(len(a[0]) for a in test_arrays.values()) / 1797
    assert test_share == pytest.approx(0.2, abs=0.01)
    pixels = np.concatenate([a[1] for a in [*train_arrays.values(), *test_arrays.values()]])
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    expected = np.sort(digits.load_arrays()[0].reshape(1797, -1), axis=0)
    np.testing.assert_array_equal(np.sort(pixels.reshape(1797, -1), axis=0), expected)


def test_the_shipped_images_are_scikit_learns_scaled_to_unit_range():
    from sklearn.datasets import load_digits  # scikit-learn is a test dependency only

    pixels, labels = digits.load_arrays()
    reference = load_digits()
    assert pixels.dtype == np.float32 and pixels.shape == (1797, 8, 8)
    assert labels.dtype == np.int32 and labels.shape == (1797,)
    np.testing.assert_array_equal(pixels, (reference.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(labels, reference.target)
    pixels[0] = -1.0  # each call returns its own copy
    assert digits.load_arrays()[0].min() == 0.0


def test_loading_needs_no_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # any import of scikit-learn now fails
    train, test = digits.load_data(num_clients=3, seed=1)
    assert len(train.client_ids) == len(test.client_ids) == 3


def test_same_seed_same_split_and_alpha_controls_skew():
    first = _arrays(digits.load_data(num_clients=8, alpha=0.1, seed=3)[0])
    again = _arrays(digits.load_data(num_clients=8, alpha=0.1, seed=3)[0])
    assert all(np.array_equal(first[c][0], again[c][0]) for c in first)

    def top_label_share(arrays):
        return np.mean([np.bincount(y, minlength=10).max() / len(y) for y, _ in arrays.values()])

    skewed = top_label_share(first)
    near_iid = top_label_share(_arrays(digits.load_data(num_clients=8, alpha=1000.0, seed=3)[0]))
    assert skewed > 0.5 > 0.2 > near_iid


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, "between 1 and 1797"),
        ({"alpha": -1.0}, "alpha must be a finite positive number"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits.load_data(**kwargs)
