"""`fed.simulation`'s realistic clients: a population of clients with compute speeds, availability and
dropouts, a simulated clock, synchronous rounds with over-selection and a deadline, and FedBuff's
asynchronous schedule."""

from fed_learning.simulation._asynchronous import BufferedAsynchronousSimulation
from fed_learning.simulation._clock import SimulatedClock
from fed_learning.simulation._population import (
    AvailabilityTrace,
    ClientPopulation,
    DiurnalAvailability,
    load_availability_trace,
)
from fed_learning.simulation._synchronous import (
    ClientOutcome,
    RoundPlan,
    SynchronousSimulation,
    plan_round,
)

__all__ = [
    "AvailabilityTrace",
    "BufferedAsynchronousSimulation",
    "ClientOutcome",
    "ClientPopulation",
    "DiurnalAvailability",
    "RoundPlan",
    "SimulatedClock",
    "SynchronousSimulation",
    "load_availability_trace",
    "plan_round",
]
