"""TFF's tutorial "Federated Reconstruction for Matrix Factorization", run with `import fed as tff`: MovieLens
ratings loaded into pandas DataFrames and explored, one tf.data.Dataset per user, a Keras matrix
factorization whose item embeddings are global and whose user embedding is local
(`tff.learning.models.ReconstructionModel.from_keras_model_and_layers`), trained with
`tff.learning.algorithms.build_fed_recon` and evaluated on unseen users with `build_fed_recon_eval`.

Changed from the notebook (each change is marked `Changed:` where it is):
- MovieLens 1M is a download: a synthetic set in its format (`ml-1m/ratings.dat` and `movies.dat`, `::`
  separated, ISO-8859-1) is written to a temporary directory instead, and the notebook's
  `load_movielens_data` reads it from there. It has 200 users, 80 rated movies (and a few unrated ones,
  which the loader drops) and 20 to 60 ratings per user, from a low-rank model around MovieLens' mean
  rating, rounded to 1..5;
- the model's `num_items` is the synthetic set's 80 movies instead of MovieLens' 3706;
- `UserEmbedding.call` repeats the user embedding for each example of the batch: Keras 3's `Dot` layer
  only multiplies batches of one size, where Keras 2 broadcast the batch of one;
- the pip and download cells are skipped; the plots are drawn with matplotlib's Agg backend.
Everything else (batch size 5, at most 300 examples per user, the 80/10/10 split by user, 50-dimensional
embeddings, the optimizers and learning rates, 50 clients per round and 20 rounds) is as the notebook has
it. The tests check what the notebook prints and that training works: the training loss falls and the
evaluation on unseen users gets far better than before training.
"""

import collections
import functools
import os
import re
from typing import List, Optional, Tuple  # noqa: UP035 (the notebook's annotations)

import matplotlib

matplotlib.use("Agg")  # Changed: no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import fed as tff  # noqa: E402

np.random.seed(42)

NUM_USERS, NUM_MOVIES, NUM_UNRATED_MOVIES = 200, 80, 6
GENRES = (
    "Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
    "Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def write_synthetic_movielens(directory):
    """Writes `ml-1m/ratings.dat` and `ml-1m/movies.dat` as MovieLens 1M lays them out: user and movie IDs
    from 1 (movie IDs with gaps), ratings 1 to 5 from a rank-3 model plus user and movie biases and noise
    around MovieLens' mean of 3.58, and titles with genres."""
    rng = np.random.default_rng(7)
    movie_ids = np.sort(
        rng.choice(np.arange(1, 200), NUM_MOVIES + NUM_UNRATED_MOVIES, replace=False)
    )
    rated_movies = rng.permutation(movie_ids)[:NUM_MOVIES]
    user_factors = rng.normal(0.0, 0.9, (NUM_USERS, 3))
    movie_factors = {m: rng.normal(0.0, 0.9, 3) for m in rated_movies}
    user_bias = rng.normal(0.0, 0.4, NUM_USERS)
    movie_bias = {m: rng.normal(0.0, 0.4) for m in rated_movies}
    rows = []
    for user in range(NUM_USERS):
        for movie in rng.choice(rated_movies, rng.integers(20, 61), replace=False):
            score = 3.58 + user_bias[user] + movie_bias[movie]
            score += user_factors[user] @ movie_factors[movie] + rng.normal(0.0, 0.3)
            timestamp = 956703932 + int(rng.integers(0, 10**7))
            rows.append(f"{user + 1}::{movie}::{int(np.clip(np.rint(score), 1, 5))}::{timestamp}")
    movies = []
    for movie in movie_ids:
        genres = rng.choice(GENRES, rng.integers(1, 4), replace=False)
        title = "Amélie (2001)" if movie == movie_ids[0] else f"Movie {movie} ({1919 + movie % 80})"
        movies.append(f"{movie}::{title}::{'|'.join(genres)}")
    os.makedirs(os.path.join(directory, "ml-1m"))
    with open(os.path.join(directory, "ml-1m", "ratings.dat"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(directory, "ml-1m", "movies.dat"), "w", encoding="ISO-8859-1") as f:
        f.write("\n".join(movies) + "\n")


def load_movielens_data(
    data_directory: str = "/tmp",
) -> Tuple[pd.DataFrame, pd.DataFrame]:  # noqa: UP006
    """Loads pandas DataFrames for ratings, movies, users from data directory."""
    # Load pandas DataFrames from data directory. Assuming data is formatted as
    # specified in http://files.grouplens.org/datasets/movielens/ml-1m-README.txt.
    ratings_df = pd.read_csv(
        os.path.join(data_directory, "ml-1m", "ratings.dat"),
        sep="::",
        names=["UserID", "MovieID", "Rating", "Timestamp"],
        engine="python",
    )
    movies_df = pd.read_csv(
        os.path.join(data_directory, "ml-1m", "movies.dat"),
        sep="::",
        names=["MovieID", "Title", "Genres"],
        engine="python",
        encoding="ISO-8859-1",
    )

    # Create dictionaries mapping from old IDs to new (remapped) IDs for both
    # MovieID and UserID. Use the movies and users present in ratings_df to
    # determine the mapping, since movies and users without ratings are unneeded.
    movie_mapping = {
        old_movie: new_movie
        for new_movie, old_movie in enumerate(ratings_df.MovieID.astype("category").cat.categories)
    }
    user_mapping = {
        old_user: new_user
        for new_user, old_user in enumerate(ratings_df.UserID.astype("category").cat.categories)
    }

    # Map each DataFrame consistently using the now-fixed mapping.
    ratings_df.MovieID = ratings_df.MovieID.map(movie_mapping)
    ratings_df.UserID = ratings_df.UserID.map(user_mapping)
    movies_df.MovieID = movies_df.MovieID.map(movie_mapping)

    # Remove nulls resulting from some movies being in movies_df but not
    # ratings_df.
    movies_df = movies_df[pd.notnull(movies_df.MovieID)]

    return ratings_df, movies_df


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    # Changed: the synthetic set stands in for `download_movielens_data(...)`, and is read from its own
    # directory instead of /tmp.
    directory = str(tmp_path_factory.mktemp("movielens"))
    write_synthetic_movielens(directory)
    ratings_df, movies_df = load_movielens_data(directory)
    return ratings_df, movies_df


def print_top_genres_for_user(ratings_df, movies_df, user_id):
    """Prints top movie genres for user with ID user_id."""
    user_ratings_df = ratings_df[ratings_df.UserID == user_id]
    movie_ids = user_ratings_df.MovieID

    genre_count = collections.Counter()
    for movie_id in movie_ids:
        genres_string = movies_df[movies_df.MovieID == movie_id].Genres.tolist()[0]
        for genre in genres_string.split("|"):
            genre_count[genre] += 1

    print(f"\nFor user {user_id}:")
    for genre, freq in genre_count.most_common(5):
        print(f"{genre} was rated {freq} times")


def test_exploring_movielens_data(movielens, capsys):
    ratings_df, movies_df = movielens
    assert list(ratings_df.head().columns) == ["UserID", "MovieID", "Rating", "Timestamp"]
    assert list(movies_df.head().columns) == ["MovieID", "Title", "Genres"]
    assert "Amélie (2001)" in movies_df.Title.tolist()

    print("Num users:", len(set(ratings_df.UserID)))
    print("Num movies:", len(set(ratings_df.MovieID)))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Num users: {NUM_USERS}", f"Num movies: {NUM_MOVIES}"]
    # IDs are remapped to 0..n-1, and the movies without ratings are dropped.
    assert sorted(set(ratings_df.UserID)) == list(range(NUM_USERS))
    assert sorted(set(ratings_df.MovieID)) == list(range(NUM_MOVIES))
    assert sorted(movies_df.MovieID.astype(int)) == list(range(NUM_MOVIES))

    ratings = ratings_df.Rating.tolist()

    plt.hist(ratings, bins=5)
    plt.xticks([1, 2, 3, 4, 5])
    plt.ylabel("Count")
    plt.xlabel("Rating")
    plt.show()

    print("Average rating:", np.mean(ratings))
    print("Median rating:", np.median(ratings))
    assert set(ratings) <= {1, 2, 3, 4, 5}
    assert 3.0 < np.mean(ratings) < 4.0

    movie_genres_list = movies_df.Genres.tolist()
    # Count the number of times each genre describes a movie.
    genre_count = collections.defaultdict(int)
    for genres in movie_genres_list:
        curr_genres_list = genres.split("|")
        for genre in curr_genres_list:
            genre_count[genre] += 1
    genre_name_list, genre_count_list = zip(*genre_count.items())

    plt.figure(figsize=(11, 11))
    plt.pie(genre_count_list, labels=genre_name_list)
    plt.title("MovieLens Movie Genres")
    plt.show()
    plt.close("all")
    assert set(genre_name_list) <= set(GENRES)

    capsys.readouterr()
    print_top_genres_for_user(ratings_df, movies_df, user_id=0)
    print_top_genres_for_user(ratings_df, movies_df, user_id=10)
    print_top_genres_for_user(ratings_df, movies_df, user_id=19)
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("For user")] == [
        "For user 0:",
        "For user 10:",
        "For user 19:",
    ]
    assert " was rated " in printed


def create_tf_datasets(
    ratings_df: pd.DataFrame,
    batch_size: int = 1,
    max_examples_per_user: Optional[int] = None,  # noqa: UP045
    max_clients: Optional[int] = None,  # noqa: UP045
) -> List[tf.data.Dataset]:  # noqa: UP006
    """Creates TF Datasets containing the movies and ratings for all users."""
    num_users = len(set(ratings_df.UserID))
    # Optionally limit to `max_clients` to speed up data loading.
    if max_clients is not None:
        num_users = min(num_users, max_clients)

    def rating_batch_map_fn(rating_batch):
        """Maps a rating batch to an OrderedDict with tensor values."""
        # Each example looks like: {x: movie_id, y: rating}.
        # We won't need the UserID since each client will only look at their own
        # data.
        return collections.OrderedDict(
            [
                ("x", tf.cast(rating_batch[:, 1:2], tf.int64)),
                ("y", tf.cast(rating_batch[:, 2:3], tf.float32)),
            ]
        )

    tf_datasets = []
    for user_id in range(num_users):
        # Get subset of ratings_df belonging to a particular user.
        user_ratings_df = ratings_df[ratings_df.UserID == user_id]

        tf_dataset = tf.data.Dataset.from_tensor_slices(user_ratings_df)

        # Define preprocessing operations.
        tf_dataset = (
            tf_dataset.take(max_examples_per_user)
            .shuffle(buffer_size=max_examples_per_user, seed=42)
            .batch(batch_size)
            .map(rating_batch_map_fn, num_parallel_calls=tf.data.experimental.AUTOTUNE)
        )
        tf_datasets.append(tf_dataset)

    return tf_datasets


def split_tf_datasets(
    tf_datasets: List[tf.data.Dataset],  # noqa: UP006
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
) -> Tuple[List[tf.data.Dataset], List[tf.data.Dataset], List[tf.data.Dataset]]:  # noqa: UP006
    """Splits a list of user TF datasets into train/val/test by user."""
    np.random.seed(42)
    np.random.shuffle(tf_datasets)

    train_idx = int(len(tf_datasets) * train_fraction)
    val_idx = int(len(tf_datasets) * (train_fraction + val_fraction))

    # Note that the val and test data contains completely different users, not
    # just unseen ratings from train users.
    return (tf_datasets[:train_idx], tf_datasets[train_idx:val_idx], tf_datasets[val_idx:])


@pytest.fixture(scope="module")
def user_datasets(movielens):
    ratings_df, _ = movielens
    # We limit the number of clients to speed up dataset creation. Feel free to pass
    # max_clients=None to load all clients' data.
    tf_datasets = create_tf_datasets(
        ratings_df=ratings_df, batch_size=5, max_examples_per_user=300, max_clients=2000
    )

    # Split the ratings into training/val/test by client.
    tf_train_datasets, tf_val_datasets, tf_test_datasets = split_tf_datasets(
        tf_datasets, train_fraction=0.8, val_fraction=0.1
    )
    return tf_train_datasets, tf_val_datasets, tf_test_datasets


def count_examples(curr_count, batch):
    return curr_count + tf.size(batch["x"])


def test_preprocessing_movielens_data(movielens, user_datasets, capsys):
    ratings_df, _ = movielens
    tf_train_datasets, tf_val_datasets, tf_test_datasets = user_datasets
    assert [len(tf_train_datasets), len(tf_val_datasets), len(tf_test_datasets)] == [160, 20, 20]

    print(next(iter(tf_train_datasets[0])))
    printed = capsys.readouterr().out
    # (OrderedDict prints as `OrderedDict([('x', ...` before Python 3.12, `OrderedDict({'x': ...` since.)
    assert re.match(r"OrderedDict\(\[?[{(]'x',? <tf.Tensor: shape=\(5, 1\), dtype=int64", printed)
    assert re.search(r"'y',? <tf.Tensor: shape=\(5, 1\), dtype=float32", printed)

    num_examples_list = []
    # Compute number of examples for every other user.
    for i in range(0, len(tf_train_datasets), 2):
        num_examples = tf_train_datasets[i].reduce(tf.constant(0), count_examples).numpy()
        num_examples_list.append(num_examples)

    plt.hist(num_examples_list, bins=10)
    plt.ylabel("Count")
    plt.xlabel("Number of Examples")
    plt.show()
    plt.close("all")
    assert len(num_examples_list) == 80
    assert min(num_examples_list) >= 20 and max(num_examples_list) <= 60
    all_counts = [int(d.reduce(tf.constant(0), count_examples)) for d in sum(user_datasets, [])]
    assert sum(all_counts) == len(ratings_df)


class UserEmbedding(tf.keras.layers.Layer):
    """Keras layer representing an embedding for a single user, used below."""

    def __init__(self, num_latent_factors, **kwargs):
        super().__init__(**kwargs)
        self.num_latent_factors = num_latent_factors

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(1, self.num_latent_factors),
            initializer="uniform",
            dtype=tf.float32,
            name="UserEmbeddingKernel",
        )
        super().build(input_shape)

    def call(self, inputs):
        # Changed: the notebook returns `self.embedding`, a batch of one that Keras 2's Dot broadcast.
        return tf.tile(self.embedding, [tf.shape(inputs)[0], 1])

    def compute_output_shape(self):
        return (1, self.num_latent_factors)


def get_matrix_factorization_model(
    num_items: int, num_latent_factors: int
) -> tff.learning.models.ReconstructionModel:
    """Defines a Keras matrix factorization model."""
    # Layers with variables will be partitioned into global and local layers.
    # We'll pass this to `tff.learning.models.ReconstructionModel.from_keras_model_and_layers`.
    global_layers = []
    local_layers = []

    # Extract the item embedding.
    item_input = tf.keras.layers.Input(shape=[1], name="Item")
    item_embedding_layer = tf.keras.layers.Embedding(
        num_items, num_latent_factors, name="ItemEmbedding"
    )
    global_layers.append(item_embedding_layer)
    flat_item_vec = tf.keras.layers.Flatten(name="FlattenItems")(item_embedding_layer(item_input))

    # Extract the user embedding.
    user_embedding_layer = UserEmbedding(num_latent_factors, name="UserEmbedding")
    local_layers.append(user_embedding_layer)

    # The item_input never gets used by the user embedding layer,
    # but this allows the model to directly use the user embedding.
    flat_user_vec = user_embedding_layer(item_input)

    # Compute the dot product between the user embedding, and the item one.
    pred = tf.keras.layers.Dot(1, normalize=False, name="Dot")([flat_user_vec, flat_item_vec])

    input_spec = collections.OrderedDict(
        x=tf.TensorSpec(shape=[None, 1], dtype=tf.int64),
        y=tf.TensorSpec(shape=[None, 1], dtype=tf.float32),
    )

    model = tf.keras.Model(inputs=item_input, outputs=pred)

    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model=model,
        global_layers=global_layers,
        local_layers=local_layers,
        input_spec=input_spec,
    )


# This will be used to produce our training process.
# User and item embeddings will be 50-dimensional.
model_fn = functools.partial(
    get_matrix_factorization_model,
    num_items=NUM_MOVIES,  # Changed: the notebook's 3706 movies of MovieLens 1M
    num_latent_factors=50,
)


class RatingAccuracy(tf.keras.metrics.Mean):
    """Keras metric computing accuracy of reconstructed ratings."""

    def __init__(self, name: str = "rating_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(
        self,
        y_true: tf.Tensor,
        y_pred: tf.Tensor,
        sample_weight: Optional[tf.Tensor] = None,  # noqa: UP045
    ):
        absolute_diffs = tf.abs(y_true - y_pred)
        # A [batch_size, 1] tf.bool tensor indicating correctness within the
        # threshold for each example in a batch. A 0.5 threshold corresponds
        # to correctness when predictions are rounded to the nearest whole
        # number.
        example_accuracies = tf.less_equal(absolute_diffs, 0.5)
        super().update_state(example_accuracies, sample_weight=sample_weight)


loss_fn = lambda: tf.keras.losses.MeanSquaredError()  # noqa: E731
metrics_fn = lambda: [RatingAccuracy()]  # noqa: E731


def test_training_and_evaluation(user_datasets, capsys):
    tf_train_datasets, tf_val_datasets, tf_test_datasets = user_datasets

    # We'll use this by doing:
    # state = training_process.initialize()
    # state, metrics = training_process.next(state, federated_train_data)
    training_process = tff.learning.algorithms.build_fed_recon(
        model_fn=model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0),
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.5),
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
    )

    evaluation_process = tff.learning.algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
    )

    state = training_process.initialize()
    model = training_process.get_model_weights(state)
    print(model)
    print("Item variables shape:", model.trainable[0].shape)
    printed = capsys.readouterr().out
    assert printed.startswith("ModelWeights(trainable=[array([[")
    assert printed.endswith(f"Item variables shape: ({NUM_MOVIES}, 50)\n")
    # The server holds the item embeddings alone; Keras' "uniform" initializer draws them from
    # [-0.05, 0.05].
    assert [w.shape for w in model.trainable] == [(NUM_MOVIES, 50)] and model.non_trainable == []
    assert np.abs(model.trainable[0]).max() <= 0.05

    # We shouldn't expect good evaluation results here, since we haven't trained
    # yet!
    eval_state = evaluation_process.initialize()
    eval_state = evaluation_process.set_model_weights(
        eval_state, training_process.get_model_weights(state)
    )
    _, eval_metrics = evaluation_process.next(eval_state, tf_val_datasets)
    print("Initial Eval:", eval_metrics["client_work"]["eval"])
    initial_eval = eval_metrics["client_work"]["eval"]["current_round_metrics"]
    assert list(eval_metrics["client_work"]["eval"]) == [
        "current_round_metrics",
        "total_rounds_metrics",
    ]
    assert list(initial_eval) == ["rating_accuracy", "loss"]

    federated_train_data = np.random.choice(tf_train_datasets, size=50, replace=False).tolist()
    state, metrics = training_process.next(state, federated_train_data)
    print("Train metrics:", metrics["client_work"]["train"])
    assert list(metrics["client_work"]["train"]) == ["rating_accuracy", "loss"]

    NUM_ROUNDS = 20

    train_losses = []
    train_accs = []

    state = training_process.initialize()

    # This may take a couple minutes to run.
    for i in range(NUM_ROUNDS):
        federated_train_data = np.random.choice(tf_train_datasets, size=50, replace=False).tolist()
        state, metrics = training_process.next(state, federated_train_data)
        print(f"Train round {i}:", metrics["client_work"]["train"])
        train_losses.append(metrics["client_work"]["train"]["loss"])
        train_accs.append(metrics["client_work"]["train"]["rating_accuracy"])

    eval_state = evaluation_process.set_model_weights(
        eval_state, training_process.get_model_weights(state)
    )
    _, eval_metrics = evaluation_process.next(eval_state, tf_val_datasets)
    print("Final Eval:", eval_metrics["client_work"]["eval"])
    final_eval = eval_metrics["client_work"]["eval"]["current_round_metrics"]

    plt.plot(range(NUM_ROUNDS), train_losses)
    plt.ylabel("Train Loss")
    plt.xlabel("Round")
    plt.title("Train Loss")
    plt.show()

    plt.plot(range(NUM_ROUNDS), train_accs)
    plt.ylabel("Train Accuracy")
    plt.xlabel("Round")
    plt.title("Train Accuracy")
    plt.show()
    plt.close("all")

    eval_state = evaluation_process.set_model_weights(
        eval_state, training_process.get_model_weights(state)
    )
    _, eval_metrics = evaluation_process.next(eval_state, tf_test_datasets)
    print("Final Test:", eval_metrics["client_work"]["eval"])
    final_test = eval_metrics["client_work"]["eval"]["current_round_metrics"]

    printed = capsys.readouterr().out
    assert printed.count("Train round ") == NUM_ROUNDS
    assert re.search(r"Final Eval: OrderedDict\(\[?[{(]'current_round_metrics',? ", printed)
    # Before training the predictions are near 0, every rating is missed and the loss is about the mean
    # squared rating; after it, the ratings of unseen users (reconstructed from half their data) are
    # predicted far better.
    assert initial_eval["rating_accuracy"] < 0.05 and initial_eval["loss"] > 8.0
    assert final_eval["loss"] < 0.3 * initial_eval["loss"]
    assert final_eval["rating_accuracy"] > initial_eval["rating_accuracy"] + 0.15
    assert final_test["loss"] < 0.3 * initial_eval["loss"]
    assert final_test["rating_accuracy"] > 0.15
    assert np.mean(train_losses[-3:]) < 0.3 * np.mean(train_losses[:3])
