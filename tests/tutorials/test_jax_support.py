"""TFF's tutorial "JAX support in TFF", its code cells run with `import fed as tff`.

One cell differs: TFF's `serialize_computation` returned a protocol buffer whose leaf was an XLA
HLO module, printed with `jax.lib.xla_client`. fed's returns bytes (its JSON format), whose JAX leaf holds
a StableHLO module; the test checks that instead. The random data is seeded, and the losses are checked
to fall as the tutorial's do.
"""

import collections
import itertools
import json

import jax
import numpy as np

import fed as tff


def test_the_jax_tutorial_runs():
    np.random.seed(0)

    @tff.jax_computation(np.int32, np.int32)
    def add_numbers(x, y):
        return jax.numpy.add(x, y)

    assert str(add_numbers.type_signature) == "(<x=int32,y=int32> -> int32)"
    document = json.loads(tff.framework.serialize_computation(add_numbers))
    [leaf] = [b for b in document["blocks"] if b["kind"] == "compiled"]
    assert leaf["frontend"] == "jax"

    tff.backends.xla.set_local_python_execution_context()
    try:
        _run_the_rest(add_numbers)
    finally:
        tff.backends.native.set_sync_local_execution_context()


def _run_the_rest(add_numbers):
    assert add_numbers(2, 3) == 5

    BATCH_TYPE = collections.OrderedDict(
        [
            ("pixels", tff.TensorType(np.float32, (50, 784))),
            ("labels", tff.TensorType(np.int32, (50,))),
        ]
    )
    MODEL_TYPE = collections.OrderedDict(
        [
            ("weights", tff.TensorType(np.float32, (784, 10))),
            ("bias", tff.TensorType(np.float32, (10,))),
        ]
    )

    def loss(model, batch):
        y = jax.nn.softmax(
            jax.numpy.add(jax.numpy.matmul(batch["pixels"], model["weights"]), model["bias"])
        )
        targets = jax.nn.one_hot(jax.numpy.reshape(batch["labels"], -1), 10)
        return -jax.numpy.mean(jax.numpy.sum(targets * jax.numpy.log(y), axis=1))

    STEP_SIZE = 0.001
    trainer = tff.learning.build_jax_federated_averaging_process(
        BATCH_TYPE, MODEL_TYPE, loss, STEP_SIZE
    )
    initial_model = trainer.initialize()
    assert np.all(initial_model["weights"] == 0) and initial_model["bias"].shape == (10,)

    def random_batch():
        pixels = np.random.uniform(low=0.0, high=1.0, size=(50, 784)).astype(np.float32)
        labels = np.random.randint(low=0, high=9, size=(50,), dtype=np.int32)
        return collections.OrderedDict([("pixels", pixels), ("labels", labels)])

    NUM_CLIENTS = 2
    NUM_BATCHES = 10
    train_data = [[random_batch() for _ in range(NUM_BATCHES)] for _ in range(NUM_CLIENTS)]
    trained_model = trainer.next(initial_model, train_data)

    eval_data = list(itertools.chain.from_iterable(train_data))

    def average_loss(model, data):
        return np.mean([loss(model, batch) for batch in data])

    initial_loss = average_loss(initial_model, eval_data)
    np.testing.assert_allclose(initial_loss, np.log(10), rtol=1e-5)  # the tutorial's 2.3025854
    losses = [average_loss(trained_model, eval_data)]
    assert losses[0] < initial_loss
    NUM_ROUNDS = 5
    for _ in range(NUM_ROUNDS):
        trained_model = trainer.next(trained_model, train_data)
        losses.append(average_loss(trained_model, eval_data))
    assert all(b < a for a, b in zip(losses, losses[1:]))

    @tff.experimental.jax_computation(MODEL_TYPE, BATCH_TYPE)
    def train_on_one_batch(model, batch):
        grads = jax.grad(loss)(model, batch)
        return collections.OrderedDict(
            [(k, model[k] - STEP_SIZE * grads[k]) for k in ["weights", "bias"]]
        )

    sample_batch = random_batch()
    trained_model = train_on_one_batch(initial_model, sample_batch)
    assert average_loss(trained_model, [sample_batch]) < average_loss(initial_model, [sample_batch])

    @tff.federated_computation(MODEL_TYPE, tff.SequenceType(BATCH_TYPE))
    def train_on_one_client(model, batches):
        return tff.sequence_reduce(batches, model, train_on_one_batch)

    sample_dataset = [random_batch() for _ in range(20)]
    trained_model = train_on_one_client(initial_model, sample_dataset)
    assert average_loss(trained_model, sample_dataset) < average_loss(initial_model, sample_dataset)

    @tff.federated_computation(
        tff.FederatedType(MODEL_TYPE, tff.SERVER),
        tff.FederatedType(tff.SequenceType(BATCH_TYPE), tff.CLIENTS),
    )
    def train_one_round(model, federated_data):
        locally_trained_models = tff.federated_map(
            train_on_one_client,
            collections.OrderedDict(
                [("model", tff.federated_broadcast(model)), ("batches", federated_data)]
            ),
        )
        return tff.federated_mean(locally_trained_models)

    trained_model = train_one_round(initial_model, train_data)
    canned = trainer.next(initial_model, train_data)
    assert average_loss(trained_model, eval_data) < average_loss(initial_model, eval_data)
    for key in ["weights", "bias"]:  # the hand-written round is the canned one
        np.testing.assert_allclose(trained_model[key], canned[key], rtol=1e-5, atol=1e-7)
