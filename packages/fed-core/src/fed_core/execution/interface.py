"""The executor interface: what an executor receives and the helpers every executor needs.

An `Executor` evaluates the IR of a computation on arguments in executor form. `ExecutionContext`
puts any executor behind a context: it checks Python arguments against the computation's type
(`conform`), hands the IR and the converted argument to the executor, and converts the result back to
Python (`to_python`). Intrinsic implementations see one execution through an `ExecutionState`, and call
functions through `FunctionValue`s; a `federated_map` reaches a backend as one batched `map` call.
Executors are registered by name through the `fed_register_executors` hook; `create_context(name)`
builds a context on one.
"""

from __future__ import annotations

import abc
import collections.abc
import contextlib
import warnings
from collections.abc import Callable
from concurrent.futures import Executor as PoolExecutor
from typing import Any

import numpy as np

from fed_core import plugins
from fed_core.execution import failures
from fed_core.execution.backends import LoadedComputation, run_per_member
from fed_core.execution.data import DataDescriptor
from fed_core.execution.values import NO_ARGUMENT, ClientValues, to_executor_form
from fed_core.ir import building_blocks as bb
from fed_types import (
    CLIENTS,
    FederatedType,
    FunctionType,
    SequenceType,
    Struct,
    StructType,
    TensorType,
    Type,
    container_items,
    infer_type,
    to_python_container,
    to_type,
)


class Executor(abc.ABC):
    """Evaluates computations' IR. Implement `execute` (and `close` if it holds resources), register a
    factory of it through the `fed_register_executors` hook, and `create_context(name, **options)` runs
    computations on it: the factory receives the options except `default_num_clients`."""

    @abc.abstractmethod
    def execute(
        self, computation: bb.ComputationBuildingBlock, argument: Any, cardinality: int
    ) -> Any:
        """Evaluates the function `computation` (a `Lambda` or a compiled leaf) on `argument`.

        `argument` is in executor form (see `conform`), or `NO_ARGUMENT` for a function that takes none;
        some of its leaves may be building blocks still to evaluate: computations passed as arguments
        and `Data` blocks (see `map_argument_blocks`). `cardinality` is the number of clients. Returns
        the result in executor form: values at CLIENTS as `ClientValues`, structs as `fed_types.Struct`.
        """

    def close(self) -> None:  # noqa: B027 (optional to override)
        """Releases the executor's resources (threads, workers); the default holds none."""


class ExecutionState(abc.ABC):
    """What intrinsic implementations see of one execution: the number of clients, the pool for client
    work, and the executor's way to map a function over clients."""

    num_clients: int

    @property
    @abc.abstractmethod
    def pool(self) -> PoolExecutor | None:
        """The executor's pool for client work (None if it runs client work in order)."""

    @abc.abstractmethod
    def pool_for_client_work(self) -> PoolExecutor | None:
        """The pool, unless called from client work already running on it (nested waits could deadlock)."""

    @abc.abstractmethod
    def in_client_work(self) -> contextlib.AbstractContextManager[None]:
        """Marks the current thread as running client work for the duration of a `with` block."""

    def map(self, fn: FunctionValue, clients: ClientValues) -> ClientValues:
        """Runs `fn` on every client's member; compiled leaves go to their backend in one call."""
        return fn.map(clients, self)


class FunctionValue:
    """A function inside an executor: a traced lambda, a loaded compiled leaf, or an intrinsic.

    `block` is the closed building block the function evaluates (a compiled leaf, or a lambda with no free
    references), when it has one: what a distributed executor ships to its workers to run the function
    there. A function that closes over values of the executor it was made in has none.
    """

    def __init__(
        self,
        type_signature: Type,
        call: Callable[[Any], Any],
        loaded: LoadedComputation | None = None,
        *,
        block: bb.ComputationBuildingBlock | None = None,
        structural: Callable[[Any], Any] | None = None,
    ):
        self.type_signature = type_signature
        self._call = call
        self._loaded = loaded
        self.block = block
        # `call` as a function that only selects from and regroups its argument, if it is one: it
        # then applies to all clients' values stacked as it does to one client's.
        self._structural = structural

    def __call__(self, argument: Any = None) -> Any:
        return self._call(argument)

    def map(self, clients: ClientValues, state: ExecutionState) -> ClientValues:
        """Runs this function on every client's member; compiled leaves go to their backend in one call.
        Within `handle_client_failures` for this function, each client runs on its own instead (see
        there)."""
        pool = state.pool_for_client_work()
        handler = failures.handler_for(self.block)
        if handler is not None:
            return self._map_handling_failures(clients, state, pool, handler)
        if self._loaded is not None:
            return self._loaded.map(clients, pool)
        if self._structural is not None:
            if clients.is_stacked:
                return ClientValues(stacked=self._structural(clients.stacked()), size=len(clients))
            return ClientValues([self._structural(member) for member in clients.members()])
        return ClientValues(run_per_member(self._call_in_worker(state), clients.members(), pool))

    def _map_handling_failures(
        self,
        clients: ClientValues,
        state: ExecutionState,
        pool: PoolExecutor | None,
        handler: failures.ClientFailureHandler,
    ) -> ClientValues:
        if self._loaded is not None and len(clients) > 1:
            # The backend's one call for all clients first; only if some client's work fails do the
            # clients run one by one, to find which.
            try:
                return self._loaded.map(clients, pool)
            except Exception:  # noqa: S110 (each client's error is found below)
                pass
        call = self._call_in_worker(state)

        def attempt(member: Any) -> tuple[bool, Any]:
            try:
                return True, call(member)
            except Exception as error:  # any failure of one client's work is handled below
                return False, error

        outcomes = run_per_member(attempt, clients.members(), pool)
        failed = [(k, error) for k, (ok, error) in enumerate(outcomes) if not ok]
        if failed and handler.fallback is None:
            k, error = failed[0]
            raise failures.ClientWorkError(handler.name(), k, len(outcomes), error) from error
        results = [value for _, value in outcomes]
        if failed:
            result_type = self.type_signature.result  # type: ignore[attr-defined]
            fallback = conform(handler.fallback(), result_type)  # type: ignore[misc]
            for k, error in failed:
                results[k] = fallback
                handler.failures.append(failures.ClientFailure(k, error))
        return ClientValues(results)

    def _call_in_worker(self, state: ExecutionState) -> Callable[[Any], Any]:
        def call(argument: Any) -> Any:
            with state.in_client_work():
                return self._call(argument)

        return call


class _AllEqualAtClients:
    """An all-equal CLIENTS argument, expanded once the number of clients is known."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _describe(value: Any) -> str:
    try:
        return str(infer_type(value))
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def _mismatch(expected: Type, value: Any, path: str, detail: str = "") -> TypeError:
    where = f" at {path}" if path else ""
    extra = f" ({detail})" if detail else ""
    return TypeError(f"expected {expected}{where}, given {_describe(value)}{extra}")


def _is_native_tensor(value: Any) -> bool:
    return (
        hasattr(value, "dtype")
        and hasattr(value, "shape")
        and not isinstance(value, (np.ndarray, np.generic))
    )


def conform(value: Any, t: Type, path: str = "", counts: list[int] | None = None) -> Any:
    """Checks a Python value against `t` and converts it to executor form; records the number of clients
    of each CLIENTS value in `counts`. Raises TypeError naming the expected and the given type, and where
    (`path`) they differ."""
    if counts is None:
        counts = []
    if isinstance(value, DataDescriptor):
        given = value.type_signature
        if not t.is_assignable_from(given):
            raise _mismatch(t, value, path, f"the data descriptor holds {given}")
        if isinstance(given, FederatedType) and given.placement == CLIENTS:
            if given.all_equal:
                return _AllEqualAtClients(value.to_executor_form())
            counts.append(len(value.uris))
        return value.to_executor_form()
    if isinstance(t, TensorType):
        return _conform_tensor(value, t, path)
    if isinstance(t, StructType):
        items = container_items(value)
        container = t.python_container
        if items is None and container is not None and isinstance(value, container):
            # A framework's value of its type's class (a sparse tensor) is read by the type's
            # element names, as attributes.
            names = [name for name in t.names() if name is not None]
            if len(names) != len(t) or not all(hasattr(value, name) for name in names):
                raise _mismatch(t, value, path)
            items = ([(name, getattr(value, name)) for name in names], container)
        if items is None or len(items[0]) != len(t):
            raise _mismatch(t, value, path)
        elements = []
        for index, ((name, element_type), (given_name, element)) in enumerate(
            zip(t.items(), items[0])
        ):
            if name is not None and given_name is not None and name != given_name:
                raise _mismatch(
                    t, value, path, f"element {index} is named {given_name!r}, not {name!r}"
                )
            step = f"{path}.{name}" if name is not None else f"{path}[{index}]"
            elements.append((name, conform(element, element_type, step, counts)))
        return Struct(elements)
    if isinstance(t, SequenceType):
        return _conform_sequence(value, t, path, counts)
    if isinstance(t, FederatedType):
        if t.placement == CLIENTS and not t.all_equal:
            if not isinstance(value, (list, tuple)):
                raise _mismatch(t, value, path, "a list with one member per client is expected")
            counts.append(len(value))
            return ClientValues(
                [conform(m, t.member, f"{path}[client {k}]", counts) for k, m in enumerate(value)]
            )
        member = conform(value, t.member, path, counts)
        return _AllEqualAtClients(member) if t.placement == CLIENTS else member
    if isinstance(t, FunctionType):
        concrete = getattr(value, "concrete", None)  # a computation traced per parameter type
        if callable(concrete) and not hasattr(value, "building_block"):
            value = concrete(t.parameter)
        block = getattr(value, "building_block", None)
        if not isinstance(block, bb.ComputationBuildingBlock) or not t.is_assignable_from(
            block.type_signature
        ):
            raise _mismatch(t, value, path)
        return block  # evaluated into a function value by the executor
    raise TypeError(f"Values of type {t} cannot be passed from Python.")


def _as_bytes(value: Any) -> bytes:
    """A string tensor's element as bytes: str is encoded as UTF-8."""
    if isinstance(value, bytes):
        return bytes(value)
    return str(value).encode("utf-8")


def _conform_strings(value: Any, t: TensorType, path: str) -> Any:
    """A value for a string tensor: str, bytes, or (nested lists or arrays of) them. Text stays as
    numpy str; anything holding bytes becomes an array of bytes objects, kept as they are."""
    try:
        array = np.asarray(value, dtype=object)
    except (TypeError, ValueError):
        raise _mismatch(t, value, path) from None
    elements = array.ravel()
    if not all(isinstance(e, (str, bytes)) for e in elements):
        raise _mismatch(t, value, path)
    if any(isinstance(e, bytes) for e in elements):
        array = np.vectorize(_as_bytes, otypes=[object])(array)
    else:
        array = array.astype(np.str_)
    if not t.is_assignable_from(TensorType(np.str_, array.shape)):
        raise _mismatch(t, value, path)
    return array[()] if array.ndim == 0 else array


def _conform_tensor(value: Any, t: TensorType, path: str) -> Any:
    if type(value) is np.ndarray and value.dtype == t.dtype and value.shape == t.shape:
        return value  # the common case, checked without building a type
    # Containers are not tensors, except nested lists spelling out a tensor of rank 1 or more.
    spells_a_tensor = isinstance(value, (list, tuple)) and bool(t.rank)
    if isinstance(value, (Struct, dict, list, tuple)) and not spells_a_tensor:
        raise _mismatch(t, value, path)
    if t.dtype.kind == "U" and not _is_native_tensor(value):
        return _conform_strings(value, t, path)
    if isinstance(value, (np.ndarray, np.generic)) or _is_native_tensor(value):
        given = TensorType(value.dtype, getattr(value, "shape", ()))
        if given.dtype != t.dtype or not t.is_assignable_from(given):
            raise _mismatch(t, value, path)
        return value
    if isinstance(value, bool) and t.dtype != np.bool_:
        raise _mismatch(t, value, path)
    if (isinstance(value, float) and t.dtype.kind in "iub") or value is None:
        raise _mismatch(t, value, path)  # numpy would make None a NaN
    try:
        with np.errstate(over="raise"):  # 1e40 as a float32 would be inf
            array = np.asarray(value, dtype=t.dtype)
    except FloatingPointError:
        raise _mismatch(
            t, value, path, f"{value!r} is beyond the range of {t.dtype.name}"
        ) from None
    except (TypeError, ValueError, OverflowError):
        raise _mismatch(t, value, path) from None
    if t.dtype.kind in "iu" and not np.array_equal(array, np.asarray(value)):
        raise _mismatch(t, value, path, "the value does not fit the dtype")
    if not t.is_assignable_from(TensorType(array.dtype, array.shape)):
        raise _mismatch(t, value, path)
    return array[()] if array.ndim == 0 else array


# Element specs checked against a sequence's element type: (the spec's structure key, the element
# type) -> (the spec's type, whether it is assignable). Clients' datasets made one by one have equal
# element specs in separate objects, so they are compared by value (`structure_key`).
_element_checks: dict[Any, tuple[Type, bool]] = {}


def structure_key(value: Any) -> Any:
    """A hashable key equal for nested lists, tuples and mappings (their classes included) of equal
    hashable leaves, or None where a part is not hashable."""
    if isinstance(value, (list, tuple)):
        parts = tuple(structure_key(v) for v in value)
    elif isinstance(value, collections.abc.Mapping):
        parts = tuple((k, structure_key(v)) for k, v in value.items())
    else:
        try:
            hash(value)
        except TypeError:
            return None
        return type(value), value
    return None if None in parts else (type(value), parts)


def memoized_by_structure(
    cache: dict[Any, Any], value: Any, compute: Callable[[], Any], *, extra: Any = None
) -> Any:
    """`compute()`, kept in `cache` under the `structure_key` of `value` (with `extra`) and reused for
    values equal to it; computed anew where `value` has no key. The cache is emptied when it holds 256
    entries."""
    key = structure_key(value)
    if key is None:
        return compute()
    key = (key, extra)
    result = cache.get(key)
    if result is None:
        result = compute()
        if len(cache) >= 256:
            cache.clear()
        cache[key] = result
    return result


def _conform_sequence(value: Any, t: SequenceType, path: str, counts: list[int]) -> Any:
    element_spec = getattr(value, "element_spec", None)
    if (
        element_spec is not None
    ):  # a native dataset, such as a tf.data.Dataset: checked by its element spec

        def check() -> tuple[Type, bool]:
            given = to_type(element_spec)
            return given, t.element.is_assignable_from(given)

        given, assignable = memoized_by_structure(
            _element_checks, element_spec, check, extra=t.element
        )
        if not assignable:
            raise TypeError(f"expected {t}{f' at {path}' if path else ''}, given {given}*")
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Iterable):
        raise _mismatch(t, value, path, "a sequence (a list or a dataset) is expected")
    return [conform(e, t.element, f"{path}[{k}]", counts) for k, e in enumerate(value)]


def expand_all_equal(value: Any, num_clients: int) -> Any:
    """Expands the all-equal CLIENTS values of a conformed argument to `num_clients` members."""
    if isinstance(value, _AllEqualAtClients):
        return ClientValues([value.value] * num_clients)
    if isinstance(value, Struct):
        return Struct((name, expand_all_equal(v, num_clients)) for name, v in value.items())
    return value


def to_python(value: Any, t: Type) -> Any:
    """Converts an executor value of type `t` to Python: arrays (numpy scalars for rank 0; strings as
    `bytes`, in object arrays), the struct's declared containers, lists for sequences and for the
    members of a CLIENTS value (one value if all-equal)."""
    if isinstance(t, TensorType):
        array = np.asarray(value)
        if t.dtype.kind == "U":
            # Strings leave as bytes, as TFF returns them: a string tensor holds bytes, in whatever
            # encoding (or none), so they are given back untouched; arrays hold them as objects.
            array = np.vectorize(_as_bytes, otypes=[object])(array)
        elif array.ndim and not array.flags.writeable:
            # A read-only view of a backend's buffer (a tensor's, a batched map's results): the
            # caller gets an array of its own, which it may change, as TFF gives.
            array = array.copy()
        return array[()] if array.ndim == 0 else array
    if isinstance(t, StructType):
        struct = to_executor_form(value)
        container = t.python_container
        if (
            not isinstance(struct, Struct)
            and container is not None
            and isinstance(value, container)
        ):
            # A value that is already its type's container and not one fed splits, such as a
            # framework's sparse tensor yielded by a dataset, leaves as it is.
            return value
        converted = Struct((name, to_python(v, et)) for (name, et), v in zip(t.items(), struct))
        return to_python_container(converted, t)
    if isinstance(t, SequenceType):
        return [to_python(to_executor_form(e), t.element) for e in value]
    if isinstance(t, FederatedType):
        if isinstance(value, ClientValues):
            members = [to_python(m, t.member) for m in value.members()]
            if t.all_equal:
                return members[0] if members else None
            return members
        return to_python(value, t.member)
    if isinstance(t, FunctionType):
        raise TypeError(f"A function value of type {t} cannot be returned to Python.")
    return value


def _holds_blocks(value: Any) -> bool:
    if isinstance(value, bb.ComputationBuildingBlock):
        return True
    if isinstance(value, Struct):
        return any(_holds_blocks(v) for v in value)
    if isinstance(value, ClientValues) and not value.is_stacked:
        return any(_holds_blocks(m) for m in value.members())
    return False


def map_argument_blocks(value: Any, evaluate: Callable[[bb.ComputationBuildingBlock], Any]) -> Any:
    """`value` with each building block among its leaves (in Structs and in the members of ClientValues)
    replaced by `evaluate(block)`: how an executor turns the computations and `Data` blocks of a conformed
    argument into values."""
    if isinstance(value, bb.ComputationBuildingBlock):
        return evaluate(value)
    if isinstance(value, Struct):
        if not _holds_blocks(value):
            return value
        return Struct((name, map_argument_blocks(v, evaluate)) for name, v in value.items())
    if isinstance(value, ClientValues) and not value.is_stacked:
        members = value.members()
        if any(_holds_blocks(m) for m in members):
            return ClientValues([map_argument_blocks(m, evaluate) for m in members])
    return value


class ExecutionContext:
    """Runs computations on an `Executor`: checks Python arguments against the computation's type, runs it,
    and returns Python values in the containers the type declares.

    `default_num_clients` is the number of clients when no argument says it (a computation whose CLIENTS
    values come only from `federated_value` or `federated_eval`). TFF's form is accepted too:
    `ExecutionContext(executor_fn=factory, compiler_fn=None)`, where `factory.create_executor()` (or
    `factory()`) makes the executor and `compiler_fn(computation)` transforms each computation before it
    runs.
    """

    def __init__(
        self,
        executor: Executor | None = None,
        default_num_clients: int | None = None,
        *,
        executor_fn: Any = None,
        compiler_fn: Callable[[Any], Any] | None = None,
    ):
        if (executor is None) == (executor_fn is None):
            raise TypeError(
                "ExecutionContext takes an executor, or (TFF's form) an executor_fn; not both."
            )
        if executor_fn is not None:
            create = getattr(executor_fn, "create_executor", executor_fn)
            if not callable(create):
                raise TypeError(
                    f"executor_fn must be an executor factory (with create_executor) or a callable "
                    f"returning an Executor, got {executor_fn!r}."
                )
            executor = create()
            default_num_clients = getattr(executor_fn, "default_num_clients", default_num_clients)
        if not callable(getattr(executor, "execute", None)):
            raise TypeError(
                f"ExecutionContext needs a fed_core.execution.Executor (with an execute method), got "
                f"{executor!r}."
            )
        if compiler_fn is not None and not callable(compiler_fn):
            raise TypeError(f"compiler_fn must be callable, got {compiler_fn!r}.")
        self.compiler_fn = compiler_fn
        if default_num_clients is not None and (
            isinstance(default_num_clients, bool)
            or not isinstance(default_num_clients, int)
            or default_num_clients < 0
        ):
            raise ValueError(
                f"default_num_clients must be an int >= 0, got {default_num_clients!r}."
            )
        self.default_num_clients = 1 if default_num_clients is None else default_num_clients
        self.executor: Executor = executor  # type: ignore[assignment]

    def invoke(self, computation: Any, argument: Any) -> Any:
        if self.compiler_fn is not None:
            computation = self.compiler_fn(computation)
        fn_type = computation.type_signature
        counts: list[int] = []
        has_argument = argument is not NO_ARGUMENT
        converted: Any = NO_ARGUMENT
        if has_argument:
            try:
                converted = conform(argument, fn_type.parameter, "", counts)
            except TypeError as e:
                name = f" {computation.name}" if computation.name else ""
                raise TypeError(f"Calling computation{name} of type {fn_type}: {e}.") from None
        if len(set(counts)) > 1:
            raise ValueError(
                f"The CLIENTS arguments of a call must have the same number of clients, got {sorted(set(counts))}."
            )
        num_clients = counts[0] if counts else self.default_num_clients
        if has_argument:
            converted = expand_all_equal(converted, num_clients)
        result = self.executor.execute(computation.building_block, converted, num_clients)
        return to_python(result, fn_type.result)

    def close(self) -> None:
        self.executor.close()


SyncExecutionContext = ExecutionContext
"""TFF's name for a context that runs computations synchronously (every fed context does)."""


def create_context(executor: str, **options: Any) -> Any:
    """A new execution context on the executor plugin registered as `executor`, with its options.

    `default_num_clients` goes to the context; every other option goes to the executor's factory.
    """
    default_num_clients = options.pop("default_num_clients", None)
    registry = plugins.get_registry("executors")
    built = registry.build(executor, **options)
    if not callable(getattr(built, "execute", None)):
        # Executor plugins of the first release registered factories of contexts, which took every option.
        if default_num_clients is not None:
            built = registry.build(executor, default_num_clients=default_num_clients, **options)
        warnings.warn(
            f"The executor plugin {executor!r} builds an execution context rather than a "
            f"fed_core.execution.Executor; register an Executor instead (contexts are made by fed).",
            DeprecationWarning,
            stacklevel=2,
        )
        return built
    try:
        return ExecutionContext(built, default_num_clients)
    except (TypeError, ValueError):
        close = getattr(built, "close", None)
        if callable(close):  # what the executor holds (threads, a cluster's workers) is let go
            close()
        raise
