"""The steps of docs/writing-a-frontend.md build a working frontend: its Python examples run in order
(a fresh default plugin system holds the frontend's backend), and the page covers what a frontend needs."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "writing-a-frontend.md"


def test_the_guide_covers_what_a_frontend_registers_and_carries():
    text = DOCS.read_text()
    for needed in [
        "CompiledComputation(frontend, payload, type_signature, name)",
        "fed_register_backends",
        "make_decorator",
        "LoadedComputation",
        "ClientValues(stacked=",
        "fed_plugin_system",
        "never Python code",
    ]:
        assert needed in text, needed


def test_the_guides_examples_build_a_frontend_that_runs(fed_default_plugin_system):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "writing_a_frontend_md"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOCS}:example {number}", "exec"), namespace)  # noqa: S102
    backend = fed_default_plugin_system.registry("backends").build("arith")
    loaded = backend.load(namespace["affine"].building_block)
    assert loaded(namespace["np"].float32(1.0)) == 3.0
