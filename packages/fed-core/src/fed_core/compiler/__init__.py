"""Compiler passes over the IR: substitution and inlining (`transformations`), merging chained maps and
the fixed point of all rewrites (`normalization`), and the MapReduce form that distributed executors
run (`map_reduce`)."""

from fed_core.compiler.map_reduce import (
    MapReduceAggregation,
    MapReduceForm,
    get_map_reduce_form,
    run_map_reduce_form,
)
from fed_core.compiler.normalization import merge_chained_maps, normalize
from fed_core.compiler.transformations import inline_blocks, inline_lambdas, simplify_selections

__all__ = [
    "MapReduceAggregation",
    "MapReduceForm",
    "get_map_reduce_form",
    "inline_blocks",
    "inline_lambdas",
    "merge_chained_maps",
    "normalize",
    "run_map_reduce_form",
    "simplify_selections",
]
