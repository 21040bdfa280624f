import numpy as np
import pytest

from fed_types import (
    CLIENTS,
    SERVER,
    UNKNOWN_RANK,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    TypeNotationError,
    parse_type,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int32", TensorType(np.int32)),
        ("float32[10]", TensorType(np.float32, [10])),
        ("float32[?]", TensorType(np.float32, [None])),
        ("float32[10,?]", TensorType(np.float32, [10, None])),
        ("float32[*]", TensorType(np.float32, UNKNOWN_RANK)),
        ("uint8[0]", TensorType(np.uint8, [0])),
        ("complex128[1,2,3]", TensorType(np.complex128, [1, 2, 3])),
        ("str", TensorType(np.str_)),
        ("bool", TensorType(np.bool_)),
        ("int32*", SequenceType(np.int32)),
        ("<x=float32,y=float32>", StructType([("x", np.float32), ("y", np.float32)])),
        ("<int32,float32>", StructType([np.int32, np.float32])),
        ("<>", StructType([])),
        ("<a=int32,float32>", StructType([("a", np.int32), np.float32])),
        ("{int32}@CLIENTS", FederatedType(np.int32, CLIENTS, all_equal=False)),
        ("float32@SERVER", FederatedType(np.float32, SERVER, all_equal=True)),
        ("int32@CLIENTS", FederatedType(np.int32, CLIENTS, all_equal=True)),
        ("{int32}@SERVER", FederatedType(np.int32, SERVER, all_equal=False)),
        ("(int32* -> int32)", FunctionType(SequenceType(np.int32), np.int32)),
        ("( -> int32)", FunctionType(None, np.int32)),
        ("T", AbstractType("T")),
        ("placement", PlacementType()),
        ("<a=int32>@SERVER", FederatedType(StructType([("a", np.int32)]), SERVER)),
        ("int32*@CLIENTS", FederatedType(SequenceType(np.int32), CLIENTS, all_equal=True)),
        ("{int32*}@CLIENTS", FederatedType(SequenceType(np.int32), CLIENTS)),
        ("<int32[2]>*", SequenceType(StructType([(np.int32, [2])]))),
        (
            "<{<a=int32[2]>*}@CLIENTS,(T -> U)>",
            StructType(
                [
                    FederatedType(SequenceType(StructType([("a", (np.int32, [2]))])), CLIENTS),
                    FunctionType(AbstractType("T"), AbstractType("U")),
                ]
            ),
        ),
        (
            "(<(T -> U),{T}@CLIENTS> -> {U}@CLIENTS)",
            FunctionType(
                StructType(
                    [
                        FunctionType(AbstractType("T"), AbstractType("U")),
                        FederatedType(AbstractType("T"), CLIENTS),
                    ]
                ),
                FederatedType(AbstractType("U"), CLIENTS),
            ),
        ),
        (
            "(( -> int32) -> ( -> int32))",
            FunctionType(FunctionType(None, np.int32), FunctionType(None, np.int32)),
        ),
        (
            "<float32=int32,placement=placement>",
            StructType([("float32", np.int32), ("placement", PlacementType())]),
        ),
        ("<T=T>", StructType([("T", AbstractType("T"))])),
        ("<<>,<<>>>", StructType([StructType([]), StructType([StructType([])])])),
    ],
)
def test_parse(text, expected):
    assert parse_type(text) == expected
    assert str(parse_type(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (" int32 ", "int32"),
        ("float32 [ 10 , ? ]", "float32[10,?]"),
        ("float32[ * ]", "float32[*]"),
        ("float32[]", "float32"),
        ("< a = int32 , float32 >", "<a=int32,float32>"),
        ("< >", "<>"),
        ("{ int32 } @ CLIENTS", "{int32}@CLIENTS"),
        ("(int32->int32)", "(int32 -> int32)"),
        ("(->int32)", "( -> int32)"),
        ("\n(\tint32 *\n->\tint32 )\n", "(int32* -> int32)"),
    ],
)
def test_whitespace_is_tolerated(text, canonical):
    assert str(parse_type(text)) == canonical


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "Expected a type, found the end of the text"),
        ("   ", 3, "Expected a type, found the end of the text"),
        ("int32[", 6, r"Expected a dimension \(a non-negative int or '\?'\)"),
        ("float32[1,x]", 10, "Expected a dimension"),
        ("float32[1;2]", 9, "Expected ',' or ']' in a tensor shape, found ';'"),
        ("float32[-1]", 8, "Expected a dimension"),
        ("float32[*,2]", 9, r"Expected '\]' after '\[\*'"),
        ("<a=int32", 8, "Expected ',' or '>' in a struct type, found the end of the text"),
        ("<a=int32 float32>", 9, "Expected ',' or '>' in a struct type, found 'f'"),
        ("<a=>", 3, "Expected a type, found '>'"),
        ("<,>", 1, "Expected a type, found ','"),
        ("{int32}", 7, r"Expected '@' and a placement after '\{...\}'"),
        ("{int32", 6, r"Expected '\}' closing the member type of a federated type"),
        ("{int32}@MARS", 8, "Unknown placement 'MARS': expected CLIENTS or SERVER"),
        ("int32@", 6, r"Expected a placement \(CLIENTS or SERVER\)"),
        ("int32@clients", 6, "Unknown placement 'clients'"),
        ("(int32 int32)", 7, "Expected '->' in a function type, found 'i'"),
        ("(int32 -> int32", 15, "Expected '\\)' closing a function type"),
        ("( -> )", 5, "Expected a type, found '\\)'"),
        ("int32 float32", 6, "Expected the end of the type, found 'f'"),
        ("int32>", 5, "Expected the end of the type, found '>'"),
        ("float33[2]", 0, "Unknown dtype 'float33': expected one of bool, complex128"),
        ("{int32}@CLIENTS*", 0, "Invalid type: A sequence's elements cannot hold FederatedTypes"),
        ("int32**", 0, "Invalid type: A sequence's elements cannot hold SequenceTypes"),
        ("<a=int32,a=int32>", 0, "Invalid type: Duplicate element name 'a'"),
        ("<x={(int32 -> int32)}@CLIENTS>", 3, "member cannot hold FunctionTypes"),
        ("int32@CLIENTS@SERVER", 0, "member cannot hold FederatedTypes"),
        ("#", 0, "Expected a type, found '#'"),
    ],
)
def test_errors_point_at_the_position(text, position, message):
    with pytest.raises(TypeNotationError, match=message) as info:
        parse_type(text)
    assert info.value.position == position
    assert info.value.text == text
    lines = str(info.value).split("\n")
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * position + "^"
    assert isinstance(info.value, ValueError)


def test_error_message_in_full():
    with pytest.raises(TypeNotationError) as info:
        parse_type("<a=int32 float32>")
    assert str(info.value) == (
        "Expected ',' or '>' in a struct type, found 'f' (at position 9):\n"
        "  <a=int32 float32>\n"
        "           ^"
    )


def test_parse_needs_a_string():
    with pytest.raises(TypeError, match="as a str, got 5"):
        parse_type(5)


# ---- the formatted representation (TFF's multi-line form)


@pytest.mark.parametrize(
    "text",
    ["int32", "float32[2,?]", "<>", "int32*", "(int32 -> float32)", "( -> int32)", "T@SERVER"],
)
def test_formatted_representation_of_types_without_structs_is_the_compact_notation(text):
    assert parse_type(text).formatted_representation() == text


def test_formatted_representation_puts_struct_elements_on_indented_lines():
    t = parse_type(
        "(<s=<w=float32[2],o=<>>@SERVER,d={<x=float32,int32>*}@CLIENTS> -> <float32>@SERVER)"
    )
    assert t.formatted_representation() == "\n".join(
        [
            "(<",
            "  s=<",
            "    w=float32[2],",
            "    o=<>",
            "  >@SERVER,",
            "  d={<",
            "    x=float32,",
            "    int32",
            "  >*}@CLIENTS",
            "> -> <",
            "  float32",
            ">@SERVER)",
        ]
    )


def test_formatted_representation_reads_back_as_the_same_type():
    t = parse_type("(<a=<b=int32[3],c=str>,d={<x=bool>*}@CLIENTS> -> <y=float64>@SERVER)")
    assert parse_type(t.formatted_representation()) == t
