"""fed-types: the types, placements and structures of the fed federated language."""

from fed_types import structure, types
from fed_types.__about__ import __version__
from fed_types._containers import container_items
from fed_types._conversion import (
    from_python_container,
    infer_type,
    to_python_container,
    type_to_py_container,
)
from fed_types._notation import TypeNotationError, parse_type
from fed_types._placements import (
    CLIENTS,
    SERVER,
    Placement,
    placement_from_name,
    placement_from_uri,
)
from fed_types._serialization import deserialize_type, serialize_type
from fed_types._struct import Struct
from fed_types._types import (
    MAX_NESTING,
    UNKNOWN_RANK,
    AbstractType,
    FederatedType,
    FunctionType,
    NamedTupleType,
    PlacementType,
    SequenceType,
    StructType,
    StructWithPythonType,
    TensorType,
    Type,
    TypeNotAssignableError,
    at_clients,
    at_server,
    to_dtype,
    to_type,
)
from fed_types.types import is_structure_of

__all__ = [
    "CLIENTS",
    "MAX_NESTING",
    "SERVER",
    "UNKNOWN_RANK",
    "AbstractType",
    "FederatedType",
    "FunctionType",
    "NamedTupleType",
    "Placement",
    "PlacementType",
    "SequenceType",
    "Struct",
    "StructType",
    "StructWithPythonType",
    "TensorType",
    "Type",
    "TypeNotAssignableError",
    "TypeNotationError",
    "__version__",
    "at_clients",
    "at_server",
    "container_items",
    "deserialize_type",
    "from_python_container",
    "infer_type",
    "is_structure_of",
    "parse_type",
    "placement_from_name",
    "placement_from_uri",
    "serialize_type",
    "structure",
    "to_dtype",
    "to_python_container",
    "to_type",
    "type_to_py_container",
    "types",
]
