"""fed-types and fed-core never import TensorFlow: they stay light to install and to import."""

from __future__ import annotations

import json
import subprocess
import sys

IMPORT_AND_LIST_TENSORFLOW_MODULES = """
import json, sys
import fed_types, fed_core
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""


def test_importing_fed_types_and_fed_core_does_not_import_tensorflow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_LIST_TENSORFLOW_MODULES],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == []


LOAD_PLUGINS_AND_LIST_HEAVY_MODULES = """
import json, sys
from fed_core import plugins
plugins.list_entries()  # loads every installed plugin: fed-jax's, fed-ray's, fed-tensorflow's
import fed_jax, fed_ray
heavy = {"tensorflow", "keras", "jax", "ray"}
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)))
"""


def test_loading_plugins_and_importing_fed_jax_or_fed_ray_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_PLUGINS_AND_LIST_HEAVY_MODULES],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
