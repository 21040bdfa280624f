"""The learning templates' building blocks: the optimizer finalizer and what it rejects."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from fed_learning import models, optimizers, templates
from fed_types import to_type

WEIGHTS_TYPE = to_type(
    models.ModelWeights(
        trainable=[tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.float32)],
        non_trainable=[tf.TensorSpec([1], tf.float32)],
    )
)
WEIGHTS = models.ModelWeights(
    [np.array([1.0, 2.0], np.float32), np.float32(3.0)], [np.array([7.0], np.float32)]
)


def _trainable(weights):
    return [np.asarray(w) for w in weights.trainable]


def test_the_finalizer_applies_a_finite_update_and_measures_it_finite():
    finalizer = templates.build_apply_optimizer_finalizer(
        optimizers.build_sgdm(0.5, momentum=0.9), WEIGHTS_TYPE
    )
    assert str(finalizer.next.type_signature.result.measurements) == (
        "<update_non_finite=int32,model_non_finite=int32>@SERVER"
    )
    state = finalizer.initialize()
    output = finalizer.next(state, WEIGHTS, [np.array([1.0, -2.0], np.float32), np.float32(4.0)])
    np.testing.assert_allclose(output.result.trainable[0], [0.5, 3.0])
    assert output.result.trainable[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(output.result.non_trainable[0], [7.0])
    assert output.measurements == collections.OrderedDict(update_non_finite=0, model_non_finite=0)
    # The momentum accumulator took the update in.
    np.testing.assert_allclose(output.state["accumulator"][0], [1.0, -2.0])


def test_a_non_finite_update_is_rejected_keeping_weights_and_optimizer_state():
    finalizer = templates.build_apply_optimizer_finalizer(
        optimizers.build_sgdm(0.5, momentum=0.9), WEIGHTS_TYPE
    )
    state = finalizer.initialize()
    output = finalizer.next(state, WEIGHTS, [np.array([np.nan, 1.0], np.float32), np.float32(1.0)])
    for got, want in zip(_trainable(output.result), _trainable(WEIGHTS)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(output.state["accumulator"][0], [0.0, 0.0])
    # The update was refused for being non-finite, not for what it would do to the model.
    assert output.measurements == collections.OrderedDict(update_non_finite=1, model_non_finite=0)
    inf = finalizer.next(state, WEIGHTS, [np.zeros(2, np.float32), np.float32(np.inf)])
    assert inf.measurements["update_non_finite"] == 1
    assert float(inf.result.trainable[1]) == 3.0


def test_a_custom_rejection_rule_and_its_measurements():
    def reject_large(state, update):
        del state
        norm = tf.linalg.global_norm(tf.nest.flatten(update))
        return norm > 10.0, collections.OrderedDict(update_norm=norm)

    finalizer = templates.build_apply_optimizer_finalizer(
        optimizers.build_sgdm(1.0), WEIGHTS_TYPE, should_reject_update=reject_large
    )
    state = finalizer.initialize()
    small = finalizer.next(state, WEIGHTS, [np.array([3.0, 0.0], np.float32), np.float32(4.0)])
    assert small.measurements["update_norm"] == pytest.approx(5.0)
    np.testing.assert_allclose(small.result.trainable[0], [-2.0, 2.0])
    large = finalizer.next(state, WEIGHTS, [np.array([30.0, 0.0], np.float32), np.float32(40.0)])
    assert large.measurements["update_norm"] == pytest.approx(50.0)
    np.testing.assert_array_equal(large.result.trainable[0], [1.0, 2.0])

    no_measurements = templates.build_apply_optimizer_finalizer(
        optimizers.build_sgdm(1.0), WEIGHTS_TYPE, should_reject_update=lambda s, u: (False, None)
    )
    assert str(no_measurements.next.type_signature.result.measurements) == (
        "<model_non_finite=int32>@SERVER"
    )


def test_a_bad_rejection_rule_is_refused_saying_what_it_must_be():
    with pytest.raises(TypeError, match="should_reject_update must be a function"):
        templates.build_apply_optimizer_finalizer(
            optimizers.build_sgdm(1.0), WEIGHTS_TYPE, should_reject_update=True
        )
    with pytest.raises(
        TypeError, match=r"must return a scalar bool as its first value, got float32\."
    ):
        templates.build_apply_optimizer_finalizer(
            optimizers.build_sgdm(1.0),
            WEIGHTS_TYPE,
            should_reject_update=lambda s, u: (tf.constant(1.0), None),
        )
