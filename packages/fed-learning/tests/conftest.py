import collections
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def map_strategy():
    """Sets the TensorFlow backend's map strategy for one test: `map_strategy("vectorized")`."""
    import fed_tensorflow

    yield lambda strategy: fed_tensorflow.configure(map_strategy=strategy)
    fed_tensorflow.configure()


@pytest.fixture
def counting_distributor():
    """`counting_distributor(weights_type)`: a DistributionProcess that broadcasts the model weights and
    counts the rounds in its state (reported as the measurement `rounds`)."""

    import fed_core as fc
    import fed_tensorflow as ftf
    from fed_core.templates import MeasuredProcessOutput
    from fed_learning import templates
    from fed_types import SERVER, FederatedType

    def build(weights_type):
        @fc.federated_computation
        def initialize():
            return fc.federated_value(np.int32(0), SERVER)

        @ftf.computation(np.int32)
        def increment(n):
            return n + 1

        @fc.federated_computation(
            initialize.type_signature.result, FederatedType(weights_type, SERVER)
        )
        def next_fn(count, weights):
            count = fc.federated_map(increment, count)
            return MeasuredProcessOutput(
                count,
                fc.federated_broadcast(weights),
                fc.federated_zip(collections.OrderedDict(rounds=count)),
            )

        return templates.DistributionProcess(initialize, next_fn)

    return build
