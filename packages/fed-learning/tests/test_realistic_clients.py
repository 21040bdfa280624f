"""Realistic clients: the population model's statistics, trace files (good and bad), dropouts, the
simulated clock, and synchronous rounds with over-selection and a deadline, worked out by hand."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fed_learning import algorithms, models, optimizers
from fed_learning.simulation import (
    ClientOutcome,
    ClientPopulation,
    DiurnalAvailability,
    SimulatedClock,
    SynchronousSimulation,
    load_availability_trace,
    plan_round,
)

IDS = [str(i) for i in range(20_000)]


def test_lognormal_speeds_have_the_median_and_spread_asked_for():
    mu, sigma = math.log(0.05), 0.7
    population = ClientPopulation.sample(IDS, seed=1, speed_mu=mu, speed_sigma=sigma)
    speeds = population.seconds_per_example
    # The median of 20,000 draws is within ~1.5% of exp(mu) (its standard error is ~0.9% here).
    assert np.median(speeds) == pytest.approx(math.exp(mu), rel=0.03)
    assert np.std(np.log(speeds)) == pytest.approx(sigma, rel=0.03)


def test_a_population_is_reproducible_from_its_seed():
    def draw(seed):
        population = ClientPopulation.sample(IDS[:50], seed=seed, diurnal=DiurnalAvailability())
        return population.seconds_per_example, population.online(3600.0)

    speeds, online = draw(4)
    speeds_again, online_again = draw(4)
    np.testing.assert_array_equal(speeds, speeds_again)
    np.testing.assert_array_equal(online, online_again)
    assert not np.array_equal(speeds, draw(5)[0])


@pytest.mark.parametrize("hour", [0, 6, 12, 18, 21])
def test_the_fraction_online_follows_the_diurnal_sinusoid(hour):
    model = DiurnalAvailability(mean=0.5, amplitude=0.4, phase_spread=0.0)
    population = ClientPopulation.sample(IDS, seed=2, diurnal=model)
    t = hour * 3600.0
    expected = 0.5 + 0.4 * math.sin(2 * math.pi * hour / 24)
    standard_error = math.sqrt(expected * (1 - expected) / len(IDS))
    assert abs(population.online(t).mean() - expected) < 4 * standard_error


def test_spread_phases_average_the_sinusoid_out():
    model = DiurnalAvailability(mean=0.4, amplitude=0.3, phase_spread=1.0)
    population = ClientPopulation.sample(IDS, seed=3, diurnal=model)
    for hour in (0, 6, 12, 18):
        assert population.online(hour * 3600.0).mean() == pytest.approx(0.4, abs=0.02)


def test_a_diurnal_client_stays_online_until_the_time_it_is_given():
    population = ClientPopulation.sample(IDS[:200], seed=6, diurnal=DiurnalAvailability())
    checked = 0
    for client in range(200):
        until = population.online_until(client, 1000.0)
        if until is None:
            assert not population.online(1000.0)[client]
            continue
        if math.isinf(until):
            continue
        assert until > 1000.0
        assert population.online(until - 1.0)[client]
        assert not population.online(until + 1.0)[client]
        checked += 1
    assert checked > 50


CSV = "client_id,start,end\na,0,100\nb,50,60\na,200,300\n"


def test_a_csv_trace_gives_each_client_its_intervals(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(CSV)
    trace = load_availability_trace(path)
    assert trace.client_ids == ["a", "b"]
    assert trace.intervals == [[(0.0, 100.0), (200.0, 300.0)], [(50.0, 60.0)]]
    population = ClientPopulation.from_trace(path, seed=0)
    assert population.online(55.0).tolist() == [True, True]
    assert population.online(150.0).tolist() == [False, False]
    assert population.online(300.0).tolist() == [False, False]  # intervals are [start, end)
    assert population.online_until(0, 250.0) == 300.0
    assert population.online_until(1, 70.0) is None


def test_a_json_trace_can_give_speeds(tmp_path):
    path = tmp_path / "trace.json"
    document = {
        "clients": [
            {"id": "x", "online": [[10, 20]], "seconds_per_example": 0.25},
            {"id": "y", "online": [[0, 5], [30, 40]]},
        ]
    }
    path.write_text(json.dumps(document))
    population = ClientPopulation.from_trace(path, seed=0, speed_mu=math.log(2.0), speed_sigma=0.0)
    np.testing.assert_allclose(population.seconds_per_example, [0.25, 2.0])
    assert population.online(35.0).tolist() == [False, True]
    assert population.training_seconds(0, 8) == 2.0


BAD_TRACES = [
    ("t.csv", "client,start,end\na,0,1\n", "expected the header 'client_id,start,end'"),
    ("t.csv", "client_id,start,end\na,0,x\n", "line 2): end must be a number of seconds, got 'x'"),
    ("t.csv", "client_id,start,end\na,5,5\n", "line 2): end (5.0) must be after start (5.0)"),
    ("t.csv", "client_id,start,end\na,0,1,2\n", "line 2): expected 3 fields, got 4"),
    ("t.csv", "client_id,start,end\na,-1,1\n", "start must be a finite number >= 0, got -1.0"),
    ("t.csv", "client_id,start,end\na,0,10\na,5,20\n", "client 'a' is online over [0.0, 10.0)"),
    ("t.csv", "client_id,start,end\n", "it lists no clients"),
    ("t.json", '{"clients": [', "not valid JSON"),
    ("t.json", '{"users": []}', 'expected an object {"clients": [...]}'),
    ("t.json", '{"clients": [{"id": "a"}]}', 'expected keys "id", "online"'),
    (
        "t.json",
        '{"clients": [{"id": "a", "online": []}, {"id": "a", "online": []}]}',
        "clients[1]): client 'a' is listed twice",
    ),
    ("t.json", '{"clients": [{"id": "a", "online": [[1]]}]}', "expected [start, end], got [1]"),
    (
        "t.json",
        '{"clients": [{"id": "a", "online": [], "seconds_per_example": 0}]}',
        "seconds_per_example must be a finite number > 0, got 0",
    ),
    ("t.txt", "a,0,1\n", "must be a .csv or .json file"),
]


@pytest.mark.parametrize(
    "name, text, fragment", BAD_TRACES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD_TRACES)]
)
def test_a_bad_trace_is_refused_naming_the_file_and_the_place(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        load_availability_trace(path)
    assert fragment in str(raised.value)
    if name != "t.txt":
        assert str(path) in str(raised.value)


def test_dropout_probability_and_hazard_rate_drop_the_expected_fractions():
    rng = np.random.default_rng(0)
    draws = 20_000
    by_chance = ClientPopulation(["a"], 1.0, dropout_probability=0.3)
    times = [by_chance.dropout_after(0, 0.0, 10.0, rng) for _ in range(draws)]
    dropped = [t for t in times if t is not None]
    assert len(dropped) / draws == pytest.approx(0.3, abs=4 * math.sqrt(0.21 / draws))
    assert np.mean(dropped) == pytest.approx(5.0, rel=0.03)  # uniform over the training
    by_hazard = ClientPopulation(["a"], 1.0, dropout_rate=0.05)
    times = [by_hazard.dropout_after(0, 0.0, 10.0, rng) for _ in range(draws)]
    expected = 1 - math.exp(-0.05 * 10.0)
    fraction = sum(t is not None for t in times) / draws
    assert fraction == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / draws))


def test_a_client_that_goes_offline_mid_training_drops_out(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("client_id,start,end\na,0,10\n")
    population = ClientPopulation.from_trace(path)
    rng = np.random.default_rng(0)
    assert population.dropout_after(0, 4.0, 8.0, rng) == 6.0
    assert population.dropout_after(0, 1.0, 8.0, rng) is None


def test_the_clock_only_moves_forward():
    clock = SimulatedClock()
    clock.advance_to(5.0)
    assert clock.now == 5.0
    with pytest.raises(ValueError, match="cannot go back: it is at 5.0 s, asked for 4.0 s"):
        clock.advance_to(4.0)
    assert clock.now == 5.0


def test_a_round_takes_the_first_reports_before_the_deadline():
    outcomes = [
        ClientOutcome(0, 12.0, False),
        ClientOutcome(1, 15.0, False),
        ClientOutcome(2, 22.0, False),  # misses the deadline (10 + 10)
        ClientOutcome(3, 17.0, False),
        ClientOutcome(4, 19.0, False),  # in time, but the cohort is full at 17
        ClientOutcome(5, 13.0, True),
    ]
    plan = plan_round(outcomes, start=10.0, cohort_size=3, deadline=10.0)
    assert plan.reported == [0, 1, 3]
    assert plan.close == 17.0
    assert plan.dropped == [5]
    assert plan.stragglers == [2, 4]
    short = plan_round(outcomes, start=10.0, cohort_size=3, deadline=6.0)
    assert (short.reported, short.close, short.stragglers) == ([0, 1], 16.0, [2, 3, 4])


SPEC = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32))


def model_fn():
    keras.utils.set_random_seed(0)
    return models.from_keras_model(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        keras.losses.MeanSquaredError(),
        SPEC,
    )


def _client(i):
    x = np.arange(8, dtype=np.float32).reshape(4, 2) * (i + 1) / 10
    return tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(2)


DATA = {str(i): _client(i) for i in range(5)}


@pytest.fixture(scope="module")
def fed_avg():
    return algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(0.1))


def _simulation(process, deadline, latency=0.0, **kwargs):
    # Four examples per client: clients take 4, 8, 12, 16 and 20 seconds (plus the latency).
    population = ClientPopulation(list(DATA), [1.0, 2.0, 3.0, 4.0, 5.0], network_latency=latency)
    arguments = dict(cohort_size=2, over_selection=1.5, deadline=deadline, seed=0)
    arguments.update(kwargs)
    return SynchronousSimulation(process, population, DATA, **arguments)


def _trainable(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def test_a_synchronous_round_trains_on_the_reporting_clients_only(fed_avg):
    simulation = _simulation(fed_avg, deadline=10.0)
    state, metrics = simulation.next(fed_avg.initialize())
    # ceil(2 * 2.5) = 5 selected; clients 0 and 1 report at 4 and 8 s; 2, 3, 4 are stragglers.
    assert (metrics["selected"], metrics["reported"], metrics["dropped"]) == (5, 2, 0)
    assert metrics["stragglers"] == 3
    assert metrics["round_seconds"] == 8.0 and simulation.clock.now == 8.0
    assert metrics["train"]["client_work"]["train"]["num_examples"] == 8
    direct = fed_avg.next(fed_avg.initialize(), [DATA["0"], DATA["1"]]).state
    for a, b in zip(_trainable(fed_avg, state), _trainable(fed_avg, direct)):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    state, metrics = simulation.next(state)
    assert metrics["simulated_seconds"] == 16.0


def test_a_round_short_of_reports_closes_at_the_deadline(fed_avg):
    simulation = _simulation(fed_avg, deadline=6.0, latency=1.0)
    _, metrics = simulation.next(fed_avg.initialize())
    # Only client 0 (4 s + 1 s of latency) reports before the deadline.
    assert (metrics["reported"], metrics["stragglers"], metrics["round_seconds"]) == (1, 4, 6.0)


def test_over_selection_is_capped_by_the_online_clients(fed_avg, tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("client_id,start,end\n0,0,100\n1,0,100\n2,50,100\n3,0,100\n4,200,300\n")
    population = ClientPopulation.from_trace(path, speed_mu=0.0, speed_sigma=0.0)
    simulation = SynchronousSimulation(
        fed_avg, population, DATA, cohort_size=3, over_selection=1.0, deadline=30.0, seed=0
    )
    _, metrics = simulation.next(fed_avg.initialize())
    assert metrics["selected"] == 3  # six wanted, three online at 0
    assert metrics["reported"] == 3 and metrics["round_seconds"] == 4.0


def test_the_same_seed_gives_the_same_rounds(fed_avg):
    def run(seed):
        population = ClientPopulation.sample(
            list(DATA), seed=0, speed_sigma=1.0, dropout_probability=0.3
        )
        simulation = SynchronousSimulation(
            fed_avg, population, DATA, cohort_size=2, deadline=10.0, seed=seed
        )
        state = fed_avg.initialize()
        rows = []
        for _ in range(3):
            state, metrics = simulation.next(state)
            rows.append(
                {k: v for k, v in metrics.items() if k not in ("train", "wall_clock_seconds")}
            )
        return rows, _trainable(fed_avg, state)

    rows, weights = run(1)
    rows_again, weights_again = run(1)
    assert rows == rows_again
    for a, b in zip(weights, weights_again):
        np.testing.assert_array_equal(a, b)


def test_rounds_without_online_clients_wait_out_the_deadline_or_say_why(fed_avg, tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("client_id,start,end\n0,100,200\n")
    population = ClientPopulation.from_trace(path)
    data = {"0": DATA["0"]}
    waiting = SynchronousSimulation(fed_avg, population, data, cohort_size=1, deadline=60.0)
    state = fed_avg.initialize()
    state, metrics = waiting.next(state)
    assert (metrics["selected"], metrics["reported"], waiting.clock.now) == (0, 0, 60.0)
    state, metrics = waiting.next(state)
    assert metrics["selected"] == 0 and waiting.clock.now == 120.0
    _, metrics = waiting.next(state)
    assert metrics["reported"] == 1
    stuck = SynchronousSimulation(fed_avg, population, data, cohort_size=1)
    with pytest.raises(RuntimeError, match="No client is online at 0.0 s"):
        stuck.next(state)
