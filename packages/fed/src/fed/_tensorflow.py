"""`fed.tensorflow`: TensorFlow computations (`fed.tensorflow.computation`, legacy `fed.tf_computation`)
and the loop over a client's dataset that lets client work train many clients at once
(`fed.tensorflow.fold_dataset`)."""

from fed_tensorflow import computation, configure, fold_dataset, to_tf_dtype, to_tf_spec, to_type

__all__ = ["computation", "configure", "fold_dataset", "to_tf_dtype", "to_tf_spec", "to_type"]
