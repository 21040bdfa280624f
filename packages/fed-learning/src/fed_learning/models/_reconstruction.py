"""ReconstructionModel: a model whose variables are split into global ones, trained federatedly and kept
at the server, and local ones, reconstructed on each client from its own data and never sent anywhere
(TFF's `tff.learning.models.ReconstructionModel`, for Federated Reconstruction)."""

from __future__ import annotations

import abc
import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from fed_learning.models._functional import ModelWeights, warn_if_compiled

ReconstructionDatasetSplitFn = Callable[[tf.data.Dataset], tuple[tf.data.Dataset, tf.data.Dataset]]
"""`client_dataset -> (reconstruction_dataset, post_reconstruction_dataset)`: the data a client
reconstructs its local variables on, and the data it then trains (or evaluates) the global variables on."""


class ReconstructionBatchOutput(NamedTuple):
    """What `ReconstructionModel.forward_pass` returns for a batch: the predictions, the labels the loss
    compares them with, and the number of examples."""

    predictions: Any
    labels: Any
    num_examples: Any


class ReconstructionModel(abc.ABC):
    """A model with global and local variables, each trainable or not.

    Global variables come from the server and their updates go back to it; local variables are made afresh
    on each client (by calling the model function there), reconstructed by training on the client's data
    with the global ones frozen, and never leave the client. As with a VariableModel, the model function
    given to the algorithms must build a new model, with new variables, on every call.

    The loss and metrics are not part of the model: `build_fed_recon` and `build_fed_recon_eval` take them.
    """

    @property
    @abc.abstractmethod
    def global_trainable_variables(self) -> Sequence[Any]:
        """Variables trained on clients after reconstruction and aggregated at the server."""

    @property
    @abc.abstractmethod
    def global_non_trainable_variables(self) -> Sequence[Any]:
        """Variables sent by the server and not trained."""

    @property
    @abc.abstractmethod
    def local_trainable_variables(self) -> Sequence[Any]:
        """Variables reconstructed (trained) on each client; never leave it."""

    @property
    @abc.abstractmethod
    def local_non_trainable_variables(self) -> Sequence[Any]:
        """Variables that stay on each client and are not trained."""

    @property
    @abc.abstractmethod
    def input_spec(self) -> Any:
        """The spec of one batch, `(x, y)` or `{'x': ..., 'y': ...}`, with a None batch dimension."""

    @abc.abstractmethod
    def forward_pass(self, batch_input: Any, training: bool = True) -> ReconstructionBatchOutput:
        """Runs the model on a batch (changing no variable the predictions depend on)."""

    @classmethod
    def get_global_variables(cls, model: ReconstructionModel) -> ModelWeights:
        """The model's global variables as `ModelWeights(trainable, non_trainable)`."""
        del cls
        return ModelWeights(
            list(model.global_trainable_variables), list(model.global_non_trainable_variables)
        )

    @classmethod
    def get_local_variables(cls, model: ReconstructionModel) -> ModelWeights:
        """The model's local variables as `ModelWeights(trainable, non_trainable)`."""
        del cls
        return ModelWeights(
            list(model.local_trainable_variables), list(model.local_non_trainable_variables)
        )

    @classmethod
    def has_only_global_variables(cls, model: ReconstructionModel) -> bool:
        """Whether the model has no local variables (it then trains as with federated averaging)."""
        del cls
        return not (
            list(model.local_trainable_variables) or list(model.local_non_trainable_variables)
        )

    @classmethod
    def simple_dataset_split_fn(
        cls, client_dataset: tf.data.Dataset
    ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """A ReconstructionDatasetSplitFn that uses the whole client dataset for both stages."""
        del cls
        return client_dataset, client_dataset

    @classmethod
    def build_dataset_split_fn(
        cls,
        recon_epochs: int = 1,
        recon_steps_max: int | None = None,
        post_recon_epochs: int = 1,
        post_recon_steps_max: int | None = None,
        split_dataset: bool = False,
    ) -> ReconstructionDatasetSplitFn:
        """A ReconstructionDatasetSplitFn: with `split_dataset`, the even-numbered batches of a client's
        dataset go to reconstruction and the odd-numbered ones after it (the dataset must give its batches
        in the same order on every pass), else both stages see every batch. Each stage then repeats its
        data `recon_epochs` (`post_recon_epochs`) times and stops after `recon_steps_max`
        (`post_recon_steps_max`) batches, if given. Zero epochs (or steps) skip the stage."""
        del cls
        for name, value in (
            ("recon_epochs", recon_epochs),
            ("post_recon_epochs", post_recon_epochs),
            ("recon_steps_max", recon_steps_max),
            ("post_recon_steps_max", post_recon_steps_max),
        ):
            if value is None and name.endswith("_max"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}.")
        if not isinstance(split_dataset, bool):
            raise TypeError(f"split_dataset must be a bool, got {split_dataset!r}.")

        def stage(dataset: tf.data.Dataset, epochs: int, steps_max: int | None) -> tf.data.Dataset:
            dataset = dataset.repeat(epochs)
            return dataset if steps_max is None else dataset.take(steps_max)

        def dataset_split_fn(
            client_dataset: tf.data.Dataset,
        ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
            recon_dataset = post_recon_dataset = client_dataset
            if split_dataset:
                numbered = client_dataset.enumerate()
                recon_dataset = numbered.filter(lambda i, _: i % 2 == 0).map(lambda _, batch: batch)
                post_recon_dataset = numbered.filter(lambda i, _: i % 2 == 1).map(
                    lambda _, batch: batch
                )
            return (
                stage(recon_dataset, recon_epochs, recon_steps_max),
                stage(post_recon_dataset, post_recon_epochs, post_recon_steps_max),
            )

        return dataset_split_fn

    @classmethod
    def read_metric_variables(
        cls, metrics: Sequence[Any]
    ) -> collections.OrderedDict[str, list[Any]]:
        """The values of Keras metrics' variables, by metric name."""
        del cls
        values: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()
        for metric in metrics:
            if metric.name in values:
                raise ValueError(
                    f"Duplicate metric name {metric.name!r}; the metrics so far are {list(values)}."
                )
            values[metric.name] = [tf.convert_to_tensor(v) for v in metric.variables]
        return values

    @classmethod
    def from_keras_model_and_layers(
        cls,
        keras_model: Any,
        *,
        global_layers: Iterable[Any],
        local_layers: Iterable[Any],
        input_spec: Any,
    ) -> ReconstructionModel:
        """A ReconstructionModel from a Keras 3 model whose layers are split into global and local ones:
        the weights of `global_layers` are global, those of `local_layers` local, and together they must
        be all of the model's weights, each in one group. The model is built from `input_spec` if it is
        not built yet."""
        _check_keras_model(keras_model)
        _check_input_spec(input_spec)
        if not keras_model.built:
            x_spec = input_spec["x"] if isinstance(input_spec, Mapping) else input_spec[0]
            keras_model.build(tf.nest.map_structure(lambda spec: spec.shape, x_spec))
        groups = []
        for name, layers in (("global_layers", global_layers), ("local_layers", local_layers)):
            layers = _as_list(layers, name)
            for layer in layers:
                if not hasattr(layer, "trainable_weights"):
                    raise TypeError(f"{name} must hold Keras layers, got {layer!r}.")
            groups.append(
                (
                    [v for layer in layers for v in layer.trainable_weights],
                    [v for layer in layers for v in layer.non_trainable_weights],
                )
            )
        return cls.from_keras_model_and_variables(
            keras_model,
            global_trainable_variables=groups[0][0],
            global_non_trainable_variables=groups[0][1],
            local_trainable_variables=groups[1][0],
            local_non_trainable_variables=groups[1][1],
            input_spec=input_spec,
        )

    @classmethod
    def from_keras_model_and_variables(
        cls,
        keras_model: Any,
        *,
        global_trainable_variables: Iterable[Any],
        global_non_trainable_variables: Iterable[Any],
        local_trainable_variables: Iterable[Any],
        local_non_trainable_variables: Iterable[Any],
        input_spec: Any,
    ) -> ReconstructionModel:
        """A ReconstructionModel from a built Keras 3 model and the split of its weights into the four
        groups, which must hold all of the model's weights, each in exactly one group.

        The state of the model's random-seed generators (Dropout) is not a weight in Keras 3: it is left
        out of the groups if given, and each client starts it afresh, as each builds its own model."""
        del cls
        return _KerasReconstructionModel(
            keras_model,
            global_trainable_variables,
            global_non_trainable_variables,
            local_trainable_variables,
            local_non_trainable_variables,
            input_spec,
        )


def _as_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be an iterable, got {values!r}.")
    return list(values)


def _check_keras_model(keras_model: Any) -> None:
    import keras

    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"Expected a Keras 3 model (keras.Model), got {type(keras_model).__name__}."
        )


def _check_input_spec(input_spec: Any) -> None:
    if isinstance(input_spec, Mapping):
        missing = [key for key in ("x", "y") if key not in input_spec]
        if missing or len(input_spec) != 2:
            raise ValueError(
                "An input_spec given as a mapping must have exactly the keys 'x' (the model's input) and "
                f"'y' (the labels), got {list(input_spec)}."
            )
    elif not (isinstance(input_spec, Sequence) and len(input_spec) == 2):
        raise ValueError(
            "input_spec must describe a batch as (x, y) or {'x': ..., 'y': ...}, got "
            f"{input_spec!r}."
        )


def _variable_name(variable: Any) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", variable))


class _KerasReconstructionModel(ReconstructionModel):
    """A Keras 3 model with its weights split into global and local ones."""

    def __init__(
        self,
        keras_model: Any,
        global_trainable_variables: Iterable[Any],
        global_non_trainable_variables: Iterable[Any],
        local_trainable_variables: Iterable[Any],
        local_non_trainable_variables: Iterable[Any],
        input_spec: Any,
    ):
        _check_keras_model(keras_model)
        if not keras_model.built:
            raise ValueError(
                "The Keras model must be built (call its build() method, or use "
                "from_keras_model_and_layers, which builds it from the input_spec)."
            )
        _check_input_spec(input_spec)
        warn_if_compiled(keras_model)
        weights = list(keras_model.trainable_weights) + list(keras_model.non_trainable_weights)
        weight_ids = {id(v) for v in weights}
        seed_states = {id(v) for v in keras_model.non_trainable_variables} - weight_ids
        given = collections.OrderedDict(
            global_trainable_variables=global_trainable_variables,
            global_non_trainable_variables=global_non_trainable_variables,
            local_trainable_variables=local_trainable_variables,
            local_non_trainable_variables=local_non_trainable_variables,
        )
        groups: dict[str, list[Any]] = {}
        owner: dict[int, str] = {}
        for name, variables in given.items():
            group = []
            for variable in _as_list(variables, name):
                if id(variable) in seed_states:
                    continue
                if id(variable) not in weight_ids:
                    raise ValueError(
                        f"{name} holds {_variable_name(variable)!r}, which is not a weight of the Keras "
                        "model (a layer that is not in the model, or not a variable)."
                    )
                if id(variable) in owner:
                    first = owner[id(variable)]
                    where = f"twice in {name}" if first == name else f"in both {first} and {name}"
                    raise ValueError(
                        "The variable groups must be disjoint: "
                        f"{_variable_name(variable)!r} is {where}."
                    )
                owner[id(variable)] = name
                group.append(variable)
            groups[name] = group
        missing = [_variable_name(v) for v in weights if id(v) not in owner]
        if missing:
            raise ValueError(
                "The global and local variables must hold all of the Keras model's weights; missing "
                f"{missing}."
            )
        self._keras_model = keras_model
        self._groups = groups
        self._input_spec = input_spec

    @property
    def keras_model(self) -> Any:
        return self._keras_model

    @property
    def global_trainable_variables(self) -> list[Any]:
        return self._groups["global_trainable_variables"]

    @property
    def global_non_trainable_variables(self) -> list[Any]:
        return self._groups["global_non_trainable_variables"]

    @property
    def local_trainable_variables(self) -> list[Any]:
        return self._groups["local_trainable_variables"]

    @property
    def local_non_trainable_variables(self) -> list[Any]:
        return self._groups["local_non_trainable_variables"]

    @property
    def input_spec(self) -> Any:
        return self._input_spec

    def forward_pass(self, batch_input: Any, training: bool = True) -> ReconstructionBatchOutput:
        if hasattr(batch_input, "_asdict"):
            batch_input = batch_input._asdict()
        if isinstance(batch_input, Mapping):
            missing = [key for key in ("x", "y") if key not in batch_input]
            if missing:
                raise KeyError(
                    f"A batch given as a mapping needs the keys 'x' and 'y'; it has {list(batch_input)}."
                )
            inputs, labels = batch_input["x"], batch_input["y"]
        else:
            inputs, labels = batch_input[0], batch_input[1]
        predictions = self._keras_model(inputs, training=training)
        return ReconstructionBatchOutput(
            predictions=predictions,
            labels=labels,
            num_examples=tf.shape(tf.nest.flatten(inputs)[0])[0],
        )
