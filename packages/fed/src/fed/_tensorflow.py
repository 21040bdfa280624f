"""`fed.tensorflow`: TensorFlow computations (`fed.tensorflow.computation`, legacy `fed.tf_computation`),
the loop over a client's dataset that lets client work train many clients at once
(`fed.tensorflow.fold_dataset`), and clients' datasets made from data in memory, which the backend
makes for a whole cohort at once (`fed.tensorflow.DatasetSource`)."""

from fed_tensorflow import (
    Cohort,
    DatasetSource,
    SourcedDataset,
    computation,
    configure,
    fold_dataset,
    to_tf_dtype,
    to_tf_spec,
    to_type,
)

__all__ = [
    "Cohort",
    "DatasetSource",
    "SourcedDataset",
    "computation",
    "configure",
    "fold_dataset",
    "to_tf_dtype",
    "to_tf_spec",
    "to_type",
]
