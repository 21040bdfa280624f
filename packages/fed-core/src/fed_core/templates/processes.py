"""The templates of stateful processes, checked against their type signatures when built."""

from __future__ import annotations

from typing import Any, NamedTuple

from fed_core.tracing.computation import Computation, PolymorphicComputation
from fed_types import CLIENTS, SERVER, FederatedType, Placement, StructType, Type


class MeasuredProcessOutput(NamedTuple):
    """What the `next` of a `MeasuredProcess` returns: the new state, the step's result, its
    measurements."""

    state: Any
    result: Any
    measurements: Any


def _check_computation(fn: Any, role: str, process: str) -> Computation:
    if isinstance(fn, PolymorphicComputation):
        raise TypeError(
            f"{process}: {role} must be a computation with declared types; {fn.__name__} was "
            "defined without them (give its parameter types to the decorator)."
        )
    if not isinstance(fn, Computation):
        raise TypeError(f"{process}: {role} must be a Computation, got a {type(fn).__qualname__}.")
    return fn


class IterativeProcess:
    """A stateful process: `initialize()` returns the first state and `next(state, ...)` the next
    one.

    `next_fn` takes the state as its whole argument or as its first one (as in `next(state, data)`),
    and returns the new state alone or as its first result. `next_is_multi_arg` says which, when the
    types leave both possible; by default the whole argument is tried first.
    """

    def __init__(
        self,
        initialize_fn: Computation,
        next_fn: Computation,
        next_is_multi_arg: bool | None = None,
    ):
        process = type(self).__name__
        initialize_fn = _check_computation(initialize_fn, "initialize_fn", process)
        next_fn = _check_computation(next_fn, "next_fn", process)
        if initialize_fn.type_signature.parameter is not None:
            raise TypeError(
                f"{process}: initialize_fn must take no argument; it has type "
                f"{initialize_fn.type_signature}."
            )
        initial_state = initialize_fn.type_signature.result
        self._state_type = _state_type(
            process, initial_state, next_fn.type_signature.parameter, next_is_multi_arg
        )
        result = next_fn.type_signature.result
        first_result = result[0] if isinstance(result, StructType) and len(result) > 0 else None
        if not (
            self._state_type.is_assignable_from(result)
            or (first_result is not None and self._state_type.is_assignable_from(first_result))
        ):
            raise TypeError(
                f"{process}: next_fn must return the state it takes, alone or as its first result; "
                f"it takes the state as {self._state_type} and returns {result}."
            )
        self._initialize_fn = initialize_fn
        self._next_fn = next_fn

    @property
    def initialize(self) -> Computation:
        """The no-argument computation that returns the initial state."""
        return self._initialize_fn

    @property
    def next(self) -> Computation:
        """The computation of one step: the current state (and any other arguments) in, the new
        state out."""
        return self._next_fn

    @property
    def state_type(self) -> Type:
        """The type of the state, as `next` accepts it."""
        return self._state_type

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} state={self._state_type} next={self._next_fn.type_signature}>"
        )


def _state_type(
    process: str, initial_state: Type, parameter: Type | None, multi_arg: bool | None
) -> Type:
    """The state type `next` accepts: its whole parameter or its first element, whichever takes the
    state that initialize returns."""
    if parameter is None:
        raise TypeError(
            f"{process}: next_fn must take the state as its argument, but it takes none; "
            f"initialize_fn returns {initial_state}."
        )
    if multi_arg is not True and parameter.is_assignable_from(initial_state):
        return parameter
    first = parameter[0] if isinstance(parameter, StructType) and len(parameter) > 0 else None
    if multi_arg is not False and first is not None and first.is_assignable_from(initial_state):
        return first
    where = {None: "its argument or its first argument", True: "its first argument"}.get(
        multi_arg, "its argument"
    )
    raise TypeError(
        f"{process}: next_fn must accept the state that initialize_fn returns as {where}; "
        f"initialize_fn returns {initial_state}, and next_fn takes {parameter}."
    )


_UNPLACED = "unplaced"
_MIXED = "mixed"


def _placement(t: Type) -> Placement | str:
    """Where values of type `t` live: a placement, "unplaced", or "mixed" for a struct spread over
    both."""
    if isinstance(t, FederatedType):
        return t.placement
    if isinstance(t, StructType):
        placements = {_placement(element) for element in t}
        if len(placements) == 1:
            return placements.pop()
        return _MIXED if placements else _UNPLACED
    return _UNPLACED


def _where(placement: Placement | str) -> str:
    return f"at {placement}" if isinstance(placement, Placement) else placement


class MeasuredProcess(IterativeProcess):
    """An `IterativeProcess` whose `next` returns a `MeasuredProcessOutput`
    `<state=S,result=R,measurements=M>`, with the measurements placed like the state. The result
    may be placed anywhere (a learning process's client work returns its result at CLIENTS).
    """

    def __init__(
        self,
        initialize_fn: Computation,
        next_fn: Computation,
        next_is_multi_arg: bool | None = None,
    ):
        super().__init__(initialize_fn, next_fn, next_is_multi_arg)
        process = type(self).__name__
        output = next_fn.type_signature.result
        if not (isinstance(output, StructType) and output.names() == MeasuredProcessOutput._fields):
            raise TypeError(
                f"{process}: next_fn must return a MeasuredProcessOutput, of type "
                f"<state=S,result=R,measurements=M>; it returns {output}."
            )
        if not self.state_type.is_assignable_from(output.state):
            raise TypeError(
                f"{process}: the state that next_fn returns must be accepted as its state "
                f"argument; it takes the state as {self.state_type} and returns the state as "
                f"{output.state}."
            )
        state_placement = _placement(self.state_type)
        measurements = output["measurements"]
        if _placement(measurements) != state_placement:
            raise TypeError(
                f"{process}: the measurements of next_fn's output must be placed like the state, "
                f"{_where(state_placement)} ({self.state_type}); they have type {measurements}."
            )


class AggregationProcess(MeasuredProcess):
    """A `MeasuredProcess` that aggregates a value placed at CLIENTS.

    `initialize: ( -> S@SERVER)`;
    `next: (<S@SERVER,V@CLIENTS,*extra> -> <state=S@SERVER,result=R@SERVER,measurements=M@SERVER>)`,
    where the extra arguments are placed at CLIENTS or SERVER; a third argument is a weight
    (`is_weighted`).
    """

    def __init__(self, initialize_fn: Computation, next_fn: Computation):
        process = type(self).__name__
        initial_state = _check_computation(
            initialize_fn, "initialize_fn", process
        ).type_signature.result
        if not (isinstance(initial_state, FederatedType) and initial_state.placement == SERVER):
            raise TypeError(
                f"{process}: initialize_fn must return the state placed at SERVER (T@SERVER); it "
                f"returns {initial_state}."
            )
        parameter = _check_computation(next_fn, "next_fn", process).type_signature.parameter
        if not (isinstance(parameter, StructType) and len(parameter) >= 2):
            raise TypeError(
                f"{process}: next_fn must take at least the state and the value to aggregate, "
                f"<S@SERVER,V@CLIENTS,...>; it takes {parameter}."
            )
        super().__init__(initialize_fn, next_fn, next_is_multi_arg=True)
        output = next_fn.type_signature.result
        assert isinstance(output, StructType), "checked as a MeasuredProcess"
        if _placement(output.result) != SERVER:
            raise TypeError(
                f"{process}: the result of next_fn's output (the aggregate) must be placed at "
                f"SERVER; it has type {output.result}."
            )
        value_type = parameter[1]
        if not (isinstance(value_type, FederatedType) and value_type.placement == CLIENTS):
            raise TypeError(
                f"{process}: the value to aggregate (next_fn's second argument) must be placed at "
                f"CLIENTS; it has type {value_type}."
            )
        for index in range(2, len(parameter)):
            if not isinstance(parameter[index], FederatedType):
                raise TypeError(
                    f"{process}: next_fn's argument {index} must be placed at CLIENTS or SERVER; "
                    f"it has type {parameter[index]}."
                )

    @property
    def is_weighted(self) -> bool:
        """True if `next` takes a third argument, the weight of each client's value."""
        parameter = self.next.type_signature.parameter
        return isinstance(parameter, StructType) and len(parameter) == 3


class EstimationProcess(IterativeProcess):
    """An `IterativeProcess` that also reports an estimate from its state:
    `report: (S -> E)`. Aggregators adapt their parameters with one (a clipping norm that follows a
    quantile of the clients' norms, the bounds of a secure sum).

    `map(fn)` gives the process whose report is `fn` applied to this one's estimate.
    """

    def __init__(
        self,
        initialize_fn: Computation,
        next_fn: Computation,
        report_fn: Computation,
        next_is_multi_arg: bool | None = None,
    ):
        super().__init__(initialize_fn, next_fn, next_is_multi_arg)
        process = type(self).__name__
        report_fn = _check_computation(report_fn, "report_fn", process)
        parameter = report_fn.type_signature.parameter
        if parameter is None or not parameter.is_assignable_from(self.state_type):
            raise TypeError(
                f"{process}: report_fn must take the state, {self.state_type}; it takes "
                f"{'no argument' if parameter is None else parameter}."
            )
        self._report_fn = report_fn

    @property
    def report(self) -> Computation:
        """The computation that reads the current estimate from the state."""
        return self._report_fn

    def map(self, map_fn: Computation) -> EstimationProcess:
        """The same process, whose report is `map_fn` applied to this process's report."""
        from fed_core.tracing.tracer import federated_computation

        map_fn = _check_computation(map_fn, "map_fn", type(self).__name__)
        estimate = self._report_fn.type_signature.result
        if map_fn.type_signature.parameter is None or not (
            map_fn.type_signature.parameter.is_assignable_from(estimate)
        ):
            raise TypeError(
                f"{type(self).__name__}.map: map_fn must take the estimate, {estimate}; it has type "
                f"{map_fn.type_signature}."
            )
        report_fn = self._report_fn

        @federated_computation(self.state_type)
        def mapped_report(state):
            return map_fn(report_fn(state))

        return EstimationProcess(self._initialize_fn, self._next_fn, mapped_report)
