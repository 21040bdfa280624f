"""The TensorFlow frontend: `computation` traces a Python function with `tf.function` into a frozen
graph, the payload of a compiled leaf of fed's IR."""

from __future__ import annotations

import dataclasses
import hashlib
import reprlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from fed_core.execution import context_scope
from fed_core.framework import NO_ARGUMENT, CompiledComputation, Computation, make_decorator
from fed_tensorflow._backend import backend, tensorflow_log_silenced, traces_vectorized_forms
from fed_tensorflow._datasets import parameter_dataset, parameter_element_spec, to_variant
from fed_tensorflow._dense import DenseSequence, ReadWholeInputs, count_folds, readable_whole
from fed_tensorflow._payload import GraphPayload
from fed_tensorflow._structure import flatten, leaf_types, pack
from fed_tensorflow._type_conversions import tensor_spec, to_tf_dtype
from fed_tensorflow._variables import call_local_variables
from fed_types import (
    FunctionType,
    SequenceType,
    Struct,
    StructType,
    TensorType,
    Type,
    infer_type,
    to_python_container,
)

FRONTEND = "tensorflow"

# Ops that only read the variable handle they are given.
_READ_ONLY_VARIABLE_OPS = frozenset(
    {"ReadVariableOp", "ResourceGather", "ResourceGatherNd", "VariableShape"}
)
# Stands for every element when building a struct's container one level deep (see `_container`).
_OPAQUE = TensorType(np.bool_)


def _trace(fn: Callable[..., Any], parameter_type: Type | None, spread: bool) -> Computation:
    fn = _python_function(fn)
    name = getattr(fn, "__name__", "computation")
    try:
        inputs = leaf_types(parameter_type)
    except TypeError as e:
        raise TypeError(
            f"The TensorFlow computation {name} cannot take a parameter of type "
            f"{parameter_type}: {e}."
        ) from None
    specs = [
        tf.TensorSpec([], tf.variant) if isinstance(t, SequenceType) else tensor_spec(t)
        for t in inputs
    ]
    result_types: list[Type] = []
    # fed's own errors about the result, raised again as they are: TensorFlow would prefix them with
    # its trace of the function's conversion.
    result_errors: list[Exception] = []

    # Per parameter leaf: for a dataset whose elements can be read whole, the graph's optional
    # inputs that give it read (see `ReadWholeInputs`).
    reads: list[ReadWholeInputs | None] = []

    def graph(*flat_inputs: tf.Tensor) -> list[tf.Tensor]:
        leaves = []
        for position, (x, t) in enumerate(zip(flat_inputs, inputs, strict=True)):
            read = None
            if isinstance(t, SequenceType):
                x = parameter_dataset(x, t.element)
                if readable_whole(x.element_spec):
                    read = ReadWholeInputs(x.element_spec, f"fed_read_whole_{position}")
                    x.read_whole_inputs = read
            reads.append(read)
            leaves.append(x)
        result = _call(fn, parameter_type, spread, leaves)
        try:
            outputs, result_type = _graph_outputs(result, name)
        except (TypeError, NotImplementedError) as error:
            result_errors.append(error)
            raise
        result_types.append(result_type)
        return outputs

    try:
        with count_folds() as folds:
            concrete = tf.function(graph, input_signature=specs).get_concrete_function()
    except Exception:
        if result_errors:
            raise result_errors[0] from None
        raise
    payload = _freeze(concrete, name, len(specs))
    payload = _with_read_whole_inputs(payload, reads)
    result_type = result_types[0]
    if (
        folds.count
        and not any(isinstance(t, SequenceType) for t in leaf_types(result_type))
        and traces_vectorized_forms()
    ):
        vectorized = _vectorized_form(fn, parameter_type, spread, inputs, name)
        payload = dataclasses.replace(payload, vectorized=vectorized)
    leaf = CompiledComputation(
        FRONTEND, payload.encode(), FunctionType(parameter_type, result_type), name
    )
    return Computation(leaf, name)


def _with_read_whole_inputs(
    payload: GraphPayload, reads: list[ReadWholeInputs | None]
) -> GraphPayload:
    """`payload` naming, for each dataset parameter that the computation folds, the optional inputs
    that give it read whole (where freezing kept them, as it does)."""
    if not any(read is not None and read.used for read in reads):
        return payload
    nodes = {node.name for node in payload.graph_def.node}
    names: list[tuple[str, ...] | None] = []
    for read in reads:
        tensors = [] if read is None or not read.used else read.tensors
        found = [t.name for t in tensors if t.name.partition(":")[0] in nodes]
        names.append(tuple(found) if tensors and len(found) == len(tensors) else None)
    if not any(names):
        return payload
    return dataclasses.replace(payload, read_whole=tuple(names))


def _call(
    fn: Callable[..., Any], parameter_type: Type | None, spread: bool, leaves: list[Any]
) -> Any:
    """Calls the traced function with its parameter's leaves packed into the parameter's containers."""
    with call_local_variables(), context_scope(_NestedCallContext()):
        if parameter_type is None:
            return fn()
        if spread:
            packed = pack(parameter_type, iter(leaves))
            elements = zip(packed, parameter_type, strict=True)  # type: ignore[call-overload]
            return fn(*[_with_containers(value, t) for value, t in elements])
        return fn(_with_containers(pack(parameter_type, iter(leaves)), parameter_type))


def _vectorized_form(
    fn: Callable[..., Any],
    parameter_type: Type | None,
    spread: bool,
    inputs: list[Any],
    name: str,
) -> GraphPayload | None:
    """The computation for a group of clients at once, traced again with each sequence parameter a
    `DenseSequence` (its elements read whole, as `fold_dataset` reads them) and vectorized over the
    clients with `tf.vectorized_map`; the layout of its inputs is in `_payload`. None where that cannot
    be done: the function uses a dataset otherwise than through `fold_dataset`, or folds one twice
    (each fold iterates the dataset anew, and a dataset may shuffle anew), creates variables, or uses
    an op without a vectorized form (a convolution with per-client filters), or an element is not a
    dense tensor of known rank. Traced only where it may be used (see `traces_vectorized_forms`): it makes
    building a linear model's FedAvg 3.7x slower."""
    layout: list[Any] = []  # per parameter leaf: None (a tensor) or the element's tf.nest structure
    specs: list[tf.TensorSpec] = []
    for t in inputs:
        if not isinstance(t, SequenceType):
            layout.append(None)
            specs.append(tensor_spec(t))
            continue
        element_spec = parameter_element_spec(t.element)
        if not readable_whole(element_spec):
            return None
        layout.append(element_spec)
        leaves = tf.nest.flatten(element_spec)
        specs.append(tf.TensorSpec([], tf.int64))
        specs.extend(tf.TensorSpec([None, leaf.shape.rank], tf.int64) for leaf in leaves)
        specs.extend(tf.TensorSpec([None, None, *leaf.shape], leaf.dtype) for leaf in leaves)

    def graph(*flat: tf.Tensor) -> list[tf.Tensor]:
        given = iter(flat)
        parts: list[Any] = []
        stacked: list[tf.Tensor] = []
        for element_spec in layout:
            if element_spec is None:
                parts.append(next(given))
                continue
            n = len(tf.nest.flatten(element_spec))
            count = next(given)
            shapes = tuple(next(given) for _ in range(n))
            stacked.extend(next(given) for _ in range(n))
            parts.append(_DenseParts(element_spec, count, shapes, n))

        def one_client(padded: list[tf.Tensor]) -> list[tf.Tensor]:
            own = iter(padded)
            leaves = [
                DenseSequence(
                    part.element_spec,
                    part.count,
                    part.shapes,
                    tuple(next(own) for _ in range(part.num_leaves)),
                )
                if isinstance(part, _DenseParts)
                else part
                for part in parts
            ]
            outputs, _ = _graph_outputs(_call(fn, parameter_type, spread, leaves), name)
            return outputs

        return tf.vectorized_map(one_client, stacked, fallback_to_while_loop=False)

    try:
        # An op without a vectorized form is expected here: TensorFlow's logged errors about it would
        # only alarm.
        with tensorflow_log_silenced():
            concrete = tf.function(graph, input_signature=specs).get_concrete_function()
            return _freeze(concrete, f"{name} (vectorized)", len(specs))
    except Exception:  # no vectorized form: the clients run one by one
        return None


class _DenseParts(NamedTuple):
    element_spec: Any
    count: tf.Tensor
    shapes: tuple[tf.Tensor, ...]
    num_leaves: int


_decorator = make_decorator(_trace)


def computation(*args: Any) -> Any:
    """Defines a TensorFlow computation: a Python function traced with `tf.function` into a graph.

    `@computation` (polymorphic: traced at first call for each argument type),
    `@computation(type_spec, ...)` (one type per parameter, traced now) or
    `computation(fn, type_spec, ...)`. Parameters and results are tensors, sequences
    (`tf.data.Dataset`s) and structs of them; a struct parameter arrives in its Python container (an
    OrderedDict or tuple if its type has none), and the result's containers are kept in its type.
    Several parameters form one struct parameter.

    Variables created outside the function are read when it is traced: their values are frozen into
    the graph. Variables may be created in it only from parameters, and live for one call. Calls to
    other TensorFlow computations inside the function are inlined.
    """
    if args and _python_function(args[0]) is not args[0]:
        args = (_python_function(args[0]), *args[1:])
    return _decorator(*args)


def _python_function(fn: Any) -> Any:
    """The Python function of a `tf.function`, which is traced again here (else `fn` itself)."""
    if isinstance(fn, tf.types.experimental.PolymorphicFunction):
        return fn.python_function
    return fn


@tf.autograph.experimental.do_not_convert
def _with_containers(value: Any, t: Type) -> Any:
    """A packed parameter with each struct in its Python container; a struct without one arrives as an
    OrderedDict (all elements named) or a tuple (none named), which `tf.nest` understands, and as a
    `Struct` only when it mixes named and unnamed elements."""
    if not isinstance(t, StructType):
        return value
    items = zip(t.items(), value, strict=True)
    elements = Struct((name, _with_containers(v, et)) for (name, et), v in items)
    return _container(elements, t)


def _container(elements: Struct, t: StructType) -> Any:
    # The elements are converted already: typing them as opaque tensors keeps the conversion to one
    # level.
    shallow = StructType([(name, _OPAQUE) for name in t.names()], t.python_container)
    return to_python_container(elements, shallow)


@tf.autograph.experimental.do_not_convert
def _graph_outputs(result: Any, name: str) -> tuple[list[tf.Tensor], Type]:
    """The graph's output tensors for what the traced function returned, and the result type."""
    if result is None:
        raise TypeError(
            f"The TensorFlow computation {name} returned None: a computation must return tensors, "
            f"datasets, or containers of them."
        )
    result = tf.nest.map_structure(_as_tensor_if_variable, result)
    try:
        result_type = infer_type(result)
        leaves = leaf_types(result_type)
    except TypeError as e:
        raise TypeError(
            f"The TensorFlow computation {name} returned {reprlib.repr(result)}: expected tensors, "
            f"datasets, or containers of them ({e})."
        ) from None
    outputs = []
    for value, t in zip(flatten(result, result_type), leaves, strict=True):
        if isinstance(t, SequenceType):
            outputs.append(to_variant(value))
        else:
            outputs.append(tf.identity(tf.convert_to_tensor(value, dtype=to_tf_dtype(t.dtype))))
    return outputs, result_type


def _as_tensor_if_variable(value: Any) -> Any:
    if isinstance(value, (tf.RaggedTensor, tf.SparseTensor)):
        raise NotImplementedError(
            f"Ragged and sparse tensors are not supported in results; got {value!r}."
        )
    if isinstance(value, tf.Variable) or (hasattr(value, "value") and hasattr(value, "assign")):
        return tf.convert_to_tensor(value)  # a tf.Variable or a keras.Variable
    return value


def _freeze(concrete: Any, name: str, num_inputs: int) -> GraphPayload:
    """The payload of the traced function: its graph, the variables it reads frozen into
    constants."""
    _check_outer_variables_are_read_only(concrete, name)
    if not concrete.outputs:
        # Nothing to compute (a computation returning `()`): freezing has nothing to keep, and
        # TensorFlow's freezing fails on a function without outputs.
        graph_def = concrete.graph.as_graph_def()
        inputs = tuple(t.name for t in concrete.inputs[:num_inputs])
        return GraphPayload(graph_def, inputs, ())
    try:
        # Keep control flow as functional ops: lowering it breaks loops over dataset iterators.
        # A lookup table made anywhere before leaves a None in TensorFlow's global table_initializer
        # collection, which every later freezing would warn about.
        with tensorflow_log_silenced("Issue encountered when serializing table_initializer"):
            frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    except ValueError as e:
        raise ValueError(
            f"The TensorFlow computation {name} uses variables created outside it in a way that "
            f"cannot be frozen into its graph (a computation may read such variables but not "
            f"change them; return new values instead). TensorFlow said: {e}"
        ) from None
    if len(frozen.inputs) != num_inputs:
        captured = [t.name for t in frozen.inputs[num_inputs:]]
        raise NotImplementedError(
            f"The TensorFlow computation {name} uses TensorFlow resources created outside it (such "
            f"as lookup tables or iterators), which cannot be stored in its graph: create them "
            f"inside the function. Captured: {captured}."
        )
    graph_def = frozen.graph.as_graph_def()
    _restore_control_flow_lowering(graph_def)
    _rename_functions(
        graph_def, hashlib.sha256(graph_def.SerializeToString(deterministic=True)).hexdigest()[:16]
    )
    inputs = tuple(t.name for t in frozen.inputs)
    outputs = tuple(t.name for t in frozen.outputs)
    return GraphPayload(graph_def, inputs, outputs)


_LOWERING = "_lower_using_switch_merge"
_XLA = "_XlaMustCompile"


def _restore_control_flow_lowering(graph_def: Any) -> None:
    """Lets TensorFlow lower the frozen graph's conditionals and loops into dataflow again, as it does
    those of a traced function. Freezing marks every one of them to stay a functional op (its graph
    optimization needs that), and a loop left functional runs its body as a separate function, with
    generic kernels where a lowered one gets oneDNN's: a CNN client's training took 1.3x as long.
    Functions compiled by XLA (`jit_compile`), and those they call, keep their control flow as it is:
    XLA compiles the functional ops."""
    functions = {f.signature.name: f for f in graph_def.library.function}

    def called(nodes: Any) -> set[str]:
        names = set()
        for node in nodes:
            if node.op in functions:
                names.add(node.op)
            for value in node.attr.values():
                if value.HasField("func"):
                    names.add(value.func.name)
                elif value.HasField("list"):
                    names.update(f.name for f in value.list.func)
        return names & set(functions)

    def jit_compiled(attrs: Any) -> bool:
        # (Reading a missing key of a proto map would add it.)
        return _XLA in attrs and attrs[_XLA].b

    compiled = {name for name, f in functions.items() if jit_compiled(f.attr)}
    compiled |= {
        name
        for nodes in [graph_def.node, *(f.node_def for f in functions.values())]
        for node in nodes
        if jit_compiled(node.attr)
        for name in called([node])
    }
    pending = list(compiled)
    while pending:
        for name in called(functions[pending.pop()].node_def):
            if name not in compiled:
                compiled.add(name)
                pending.append(name)
    for nodes in [
        graph_def.node,
        *(f.node_def for name, f in functions.items() if name not in compiled),
    ]:
        for node in nodes:
            if _LOWERING in node.attr:
                node.attr[_LOWERING].b = True


def _check_outer_variables_are_read_only(concrete: Any, name: str) -> None:
    captured = {id(internal): external for external, internal in concrete.graph.captures}
    variables = {id(v.handle): v for v in concrete.graph.variables}
    for op in concrete.graph.get_operations():
        if op.type in _READ_ONLY_VARIABLE_OPS:
            continue
        for tensor in op.inputs:
            if tensor.dtype == tf.resource and id(tensor) in captured:
                variable = variables.get(id(captured[id(tensor)]))
                what = f"the variable {variable.name!r}" if variable is not None else "a variable"
                raise ValueError(
                    f"The TensorFlow computation {name} changes {what}, created outside it "
                    f"(with {op.type}): a computation cannot keep state between calls. Take the "
                    f"value as a parameter and return the new value."
                )


def _rename_functions(graph_def: Any, suffix: str) -> None:
    """Gives the graph's library functions names unique to this graph: TensorFlow numbers them per
    process, so graphs traced in different processes could otherwise clash when loaded into one."""
    renamed = {f.signature.name: f"{f.signature.name}_{suffix}" for f in graph_def.library.function}
    if not renamed:
        return

    def rename_in_attr(attr: Any) -> None:
        if attr.HasField("func"):
            rename_in_name_attr_list(attr.func)
        elif attr.HasField("list"):
            for func in attr.list.func:
                rename_in_name_attr_list(func)

    def rename_in_name_attr_list(func: Any) -> None:
        func.name = renamed.get(func.name, func.name)
        for value in func.attr.values():
            rename_in_attr(value)

    def rename_in_node(node: Any) -> None:
        node.op = renamed.get(node.op, node.op)
        for value in node.attr.values():
            rename_in_attr(value)

    for node in graph_def.node:
        rename_in_node(node)
    for function in graph_def.library.function:
        function.signature.name = renamed[function.signature.name]
        for node in function.node_def:
            rename_in_node(node)
    for gradient in graph_def.library.gradient:
        gradient.function_name = renamed.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = renamed.get(gradient.gradient_func, gradient.gradient_func)


class _NestedCallContext:
    """The fed context while a TensorFlow computation is traced: calling another TensorFlow
    computation inlines its graph."""

    def invoke(self, computation: Computation, argument: Any) -> Any:
        block = computation.building_block
        fn_type = computation.type_signature
        label = f"{computation.name or 'a computation'} of type {fn_type}"
        if not (isinstance(block, CompiledComputation) and block.frontend == FRONTEND):
            raise TypeError(
                f"Only TensorFlow computations can be called inside a TensorFlow computation; "
                f"{label} is not one."
            )
        if argument is NO_ARGUMENT:
            argument = None
        else:
            given = _describe(argument)
            expected = fn_type.parameter
            assert expected is not None
            if not isinstance(given, Type) or not expected.is_assignable_from(given):
                raise TypeError(f"calling {label}: expected {fn_type.parameter}, given {given}.")
        result = backend().load_for_graph(block).call_in_graph(argument)
        return to_python_container(result, fn_type.result)


def _describe(value: Any) -> Type | str:
    try:
        return infer_type(tf.nest.map_structure(_as_tensor_if_variable, value))
    except TypeError:
        return f"a {type(value).__name__}"
