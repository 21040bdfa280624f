"""TFF's tutorial "Sending Different Data To Particular Clients With federated_language.federated_select",
run with `import fed as tff`.

The tutorial imports `federated_language` beside `tensorflow_federated`; fed has those names at its top
level, so `import fed as federated_language` stands in for it. Nothing else is changed: the tutorial needs
no data. Each test checks what the tutorial shows: the strings each client receives for its keys, and a
random server element on each client.
"""

import numpy as np
import pytest
import tensorflow as tf

import fed as federated_language
import fed as tff


@pytest.fixture(autouse=True)
def default_context():
    yield
    tff.backends.native.set_sync_local_cpp_execution_context()


def test_sending_different_values_based_on_client_data():
    list_of_strings_type = federated_language.TensorType(np.str_, [None])
    # We only ever send exactly two values to each client. The number of keys per
    # client must be a fixed number across all clients.
    number_of_keys_per_client = 2
    keys_type = federated_language.TensorType(np.int32, [number_of_keys_per_client])
    get_size = tff.tensorflow.computation(lambda x: tf.size(x))
    select_fn = tff.tensorflow.computation(lambda val, index: tf.gather(val, index))
    client_data_type = np.str_

    # A function from our client data to the indices of the values we'd like to
    # select from the server.
    @tff.tensorflow.computation(client_data_type)
    def keys_for_client(client_string):
        # We assume our client data is a single string consisting of exactly three
        # comma-separated integers indicating which values to grab from the server.
        split = tf.strings.split([client_string], sep=",")[0]
        return tf.strings.to_number([split[0], split[1]], tf.int32)

    @tff.tensorflow.computation(federated_language.SequenceType(np.str_))
    def concatenate(values):
        def reduce_fn(acc, item):
            return tf.cond(
                tf.math.equal(acc, ""),
                lambda: item,
                lambda: tf.strings.join([acc, item], ","),
            )

        return values.reduce("", reduce_fn)

    @federated_language.federated_computation(
        federated_language.FederatedType(list_of_strings_type, federated_language.SERVER),
        federated_language.FederatedType(client_data_type, federated_language.CLIENTS),
    )
    def broadcast_based_on_client_data(list_of_strings_at_server, client_data):
        keys_at_clients = federated_language.federated_map(keys_for_client, client_data)
        max_key = federated_language.federated_map(get_size, list_of_strings_at_server)
        values_at_clients = federated_language.federated_select(
            keys_at_clients, max_key, list_of_strings_at_server, select_fn
        )
        value_at_clients = federated_language.federated_map(concatenate, values_at_clients)
        return value_at_clients

    # Each client's keys have the fixed type the tutorial declares.
    assert keys_for_client.type_signature.result.is_equivalent_to(keys_type)
    assert str(broadcast_based_on_client_data.type_signature) == (
        "(<list_of_strings_at_server=str[?]@SERVER,client_data={str}@CLIENTS> -> {str}@CLIENTS)"
    )

    client_data = ["0,1", "1,2", "2,0"]
    result = broadcast_based_on_client_data(["a", "b", "c"], client_data)
    assert list(result) == [b"a,b", b"b,c", b"c,a"]


def test_sending_a_randomized_element_to_each_client():
    @tff.tensorflow.computation(np.int32)
    def get_random_key(max_key):
        return tf.random.uniform(shape=[1], minval=0, maxval=max_key, dtype=tf.int32)

    list_of_strings_type = federated_language.TensorType(np.str_, [None])
    get_size = tff.tensorflow.computation(lambda x: tf.size(x))
    select_fn = tff.tensorflow.computation(lambda val, index: tf.gather(val, index))

    @tff.tensorflow.computation(federated_language.SequenceType(np.str_))
    def get_last_element(sequence):
        return sequence.reduce("", lambda _initial_state, val: val)

    @federated_language.federated_computation(
        federated_language.FederatedType(list_of_strings_type, federated_language.SERVER)
    )
    def broadcast_random_element(list_of_strings_at_server):
        max_key_at_server = federated_language.federated_map(get_size, list_of_strings_at_server)
        max_key_at_clients = federated_language.federated_broadcast(max_key_at_server)
        key_at_clients = federated_language.federated_map(get_random_key, max_key_at_clients)
        random_string_sequence_at_clients = federated_language.federated_select(
            key_at_clients, max_key_at_server, list_of_strings_at_server, select_fn
        )
        # Even though we only passed in a single key, `federated_select` returns a
        # sequence for each client. We only care about the last (and only) element.
        random_string_at_clients = federated_language.federated_map(
            get_last_element, random_string_sequence_at_clients
        )
        return random_string_at_clients

    tff.backends.native.set_sync_local_cpp_execution_context(default_num_clients=3)

    assert str(broadcast_random_element.type_signature) == "(str[?]@SERVER -> {str}@CLIENTS)"
    result = broadcast_random_element(tf.convert_to_tensor(["foo", "bar", "baz"]))
    assert len(result) == 3
    assert set(result) <= {b"foo", b"bar", b"baz"}

    # "simply re-run the computation to generate different random outputs": over a few runs the
    # clients do not all draw the same element (all 15 draws equal has probability 3 / 3**15).
    drawn = list(result)
    for _ in range(4):
        drawn.extend(broadcast_random_element(tf.convert_to_tensor(["foo", "bar", "baz"])))
    assert len(set(drawn)) > 1
