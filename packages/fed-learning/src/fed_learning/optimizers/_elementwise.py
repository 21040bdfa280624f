"""The shared machinery of optimizers that update each weight from its own gradient and slots."""

from __future__ import annotations

import abc
import collections
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from fed_learning.optimizers import _nest
from fed_learning.optimizers._hparams import HPARAM_DTYPE, Bound, checked, scalar
from fed_learning.optimizers._optimizer import Float, Hparams, Optimizer, State

STEP_KEY = "step"


class ElementwiseOptimizer(Optimizer):
    """An optimizer whose state is hyperparameters, an optional step count and per-weight slots.

    The state is an OrderedDict: the hyperparameters in the order given, then `step` (an int64
    count of the steps taken) if the update needs it, then one structure of tensors per slot, shaped
    as the weights. Subclasses define the update of one weight in `_update`.
    """

    def __init__(
        self,
        name: str,
        hparams: Mapping[str, tuple[Float, Bound]],
        slots: Sequence[str] = (),
        counts_steps: bool = False,
    ) -> None:
        self._name = name
        self._bounds = {key: bound for key, (_, bound) in hparams.items()}
        self._hparams = {
            key: checked(name, key, value, bound) for key, (value, bound) in hparams.items()
        }
        self._slots = tuple(slots)
        self._counts_steps = counts_steps

    def __repr__(self) -> str:
        hparams = ", ".join(f"{key}={value!r}" for key, value in self._hparams.items())
        return f"{self._name}({hparams})"

    @abc.abstractmethod
    def _update(
        self,
        scalars: Mapping[str, tf.Tensor],
        weight: tf.Tensor,
        gradient: tf.Tensor,
        slots: Mapping[str, tf.Tensor],
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """One weight's new value and new slots, given `_scalars` for the weight's dtype."""

    def _scalars(
        self, hparams: Mapping[str, tf.Tensor], step: tf.Tensor | None, dtype: tf.DType
    ) -> dict[str, tf.Tensor]:
        """The scalars `_update` uses for weights of `dtype`: the hyperparameters, cast to it."""
        del step
        return {key: tf.cast(value, dtype) for key, value in hparams.items()}

    def _initial_slot(self, slot: str, spec: tf.TensorSpec) -> tf.Tensor:
        del slot
        return tf.zeros(spec.shape, spec.dtype)

    def initialize(self, specs: Any) -> State:
        # Only slots are built from the specs; an optimizer without any (plain SGD) does not read them,
        # as TensorFlow Federated's does not (its tutorials pass `lambda x: tf.TensorSpec` there).
        if self._slots:
            for path, spec in _nest.flatten_with_paths(specs):
                _check_spec(path, spec)
        state: State = collections.OrderedDict(
            (key, scalar(value, HPARAM_DTYPE)) for key, value in self._hparams.items()
        )
        if self._counts_steps:
            state[STEP_KEY] = tf.constant(0, tf.int64)
        for slot in self._slots:
            state[slot] = tf.nest.map_structure(functools.partial(self._initial_slot, slot), specs)
        return state

    def next(self, state: State, weights: Any, gradients: Any) -> tuple[State, Any]:
        self._check_state(state)
        weight_leaves = [
            (path, _weight(path, value)) for path, value in _nest.flatten_with_paths(weights)
        ]
        _nest.assert_same_structure(weights, gradients, "weights", "gradients")
        gradient_leaves = [
            _gradient(path, value, weight)
            for (path, weight), (_, value) in zip(
                weight_leaves, _nest.flatten_with_paths(gradients), strict=True
            )
        ]
        slot_leaves = {
            slot: self._slot_leaves(state, slot, weights, weight_leaves) for slot in self._slots
        }

        hparams = {key: tf.convert_to_tensor(state[key]) for key in self._hparams}
        step = tf.convert_to_tensor(state[STEP_KEY]) + 1 if self._counts_steps else None
        scalars_by_dtype: dict[tf.DType, dict[str, tf.Tensor]] = {}
        new_weights: list[tf.Tensor] = []
        new_slots: dict[str, list[tf.Tensor]] = {slot: [] for slot in self._slots}
        for index, ((_, weight), gradient) in enumerate(
            zip(weight_leaves, gradient_leaves, strict=True)
        ):
            if weight.dtype not in scalars_by_dtype:
                scalars_by_dtype[weight.dtype] = self._scalars(hparams, step, weight.dtype)
            new_weight, updated_slots = self._update(
                scalars_by_dtype[weight.dtype],
                weight,
                gradient,
                {slot: leaves[index] for slot, leaves in slot_leaves.items()},
            )
            new_weights.append(new_weight)
            for slot, value in updated_slots.items():
                new_slots[slot].append(value)

        new_state: State = collections.OrderedDict(hparams)
        if step is not None:
            new_state[STEP_KEY] = step
        for slot in self._slots:
            new_state[slot] = tf.nest.pack_sequence_as(state[slot], new_slots[slot])
        return new_state, tf.nest.pack_sequence_as(weights, new_weights)

    def get_hparams(self, state: State) -> Hparams:
        self._check_state(state)
        return collections.OrderedDict((key, state[key]) for key in self._hparams)

    def set_hparams(self, state: State, hparams: Any) -> State:
        self._check_state(state)
        if not isinstance(hparams, Mapping):
            raise TypeError(
                f"{self._name} hyperparameters must be a mapping of names to values, "
                f"got {_nest.describe(hparams)}."
            )
        unknown = [key for key in hparams if key not in self._bounds]
        if unknown:
            raise ValueError(
                f"{self._name} has no hyperparameters {unknown}; "
                f"its hyperparameters are {list(self._bounds)}."
            )
        new_state: State = collections.OrderedDict(state)
        for key, value in hparams.items():
            new_state[key] = scalar(
                checked(self._name, key, value, self._bounds[key]), HPARAM_DTYPE
            )
        return new_state

    def _check_state(self, state: Any) -> None:
        keys = list(self._hparams)
        if self._counts_steps:
            keys.append(STEP_KEY)
        keys.extend(self._slots)
        if not isinstance(state, Mapping) or set(state) != set(keys):
            raise ValueError(
                f"{self._name} expects a state with keys {keys}, got {_nest.describe(state)}; "
                "pass the state returned by this optimizer's initialize() or next()."
            )

    def _slot_leaves(
        self, state: State, slot: str, weights: Any, weight_leaves: list[tuple[str, tf.Tensor]]
    ) -> list[tf.Tensor]:
        name = f"state[{slot!r}]"
        try:
            _nest.assert_same_structure(weights, state[slot], "weights", name)
            return [
                _like_weight(name, path, value, weight)
                for (path, weight), (_, value) in zip(
                    weight_leaves, _nest.flatten_with_paths(state[slot]), strict=True
                )
            ]
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{error} (Was initialize() given the specs of these weights?)"
            ) from None


def _check_spec(path: str, spec: Any) -> None:
    if not isinstance(spec, tf.TensorSpec):
        raise TypeError(
            f"specs at {_nest.where(path)} must be a tf.TensorSpec, got {_nest.describe(spec)} "
            "(tf.TensorSpec.from_tensor(weight) makes one)."
        )
    if not spec.dtype.is_floating:
        raise TypeError(
            f"specs at {_nest.where(path)} have dtype {spec.dtype.name}; "
            "optimizers update floating-point weights only."
        )
    if not spec.shape.is_fully_defined():
        raise ValueError(
            f"specs at {_nest.where(path)} have shape {spec.shape}; "
            "the optimizer state needs fully known shapes."
        )


def _tensor(what: str, path: str, value: Any) -> tf.Tensor:
    try:
        return tf.convert_to_tensor(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{what} at {_nest.where(path)} must be a tensor, got {_nest.describe(value)}."
        ) from error


def _weight(path: str, value: Any) -> tf.Tensor:
    weight = _tensor("weights", path, value)
    if not weight.dtype.is_floating:
        raise TypeError(
            f"weights at {_nest.where(path)} must be floating-point, got dtype {weight.dtype.name}."
        )
    return weight


def _gradient(path: str, value: Any, weight: tf.Tensor) -> tf.Tensor:
    if value is None:
        raise TypeError(
            f"gradients at {_nest.where(path)} is None; every weight needs a gradient tensor "
            "(tf.zeros_like(weight) for a weight the loss does not depend on)."
        )
    return _like_weight("gradients", path, value, weight)


def _like_weight(what: str, path: str, value: Any, weight: tf.Tensor) -> tf.Tensor:
    """`value` as a tensor, checked to have the dtype and shape of the weight at `path`."""
    tensor = _tensor(what, path, value)
    if tensor.dtype != weight.dtype:
        raise TypeError(
            f"{what} at {_nest.where(path)} has dtype {tensor.dtype.name}, but the weight there "
            f"has dtype {weight.dtype.name}."
        )
    if not tensor.shape.is_compatible_with(weight.shape):
        raise ValueError(
            f"{what} at {_nest.where(path)} has shape {tensor.shape}, but the weight there has "
            f"shape {weight.shape}."
        )
    return tensor
