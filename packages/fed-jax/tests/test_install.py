"""fed-jax installs on its own beside fed-core and fed-types, without TensorFlow, and runs there: a real
install into a new virtual environment (from the packages in this repository and the registry, as a
user's `pip install` would), then a federated computation with a JAX leaf run in it."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UV = ROOT / ".tools" / "bin" / "uv"  # bootstrapped by ./dev with hatch


@pytest.mark.slow
def test_fed_jax_installs_and_runs_without_tensorflow(tmp_path):
    assert UV.exists(), f"the test installs with uv, which ./dev bootstraps into {UV.parent}"
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = [str(ROOT / "packages" / name) for name in ("fed-types", "fed-core", "fed-jax")]
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(python), *packages], check=True
    )
    program = textwrap.dedent(
        """
        import importlib.metadata, importlib.util
        import numpy as np
        import fed_core as fc
        import fed_jax
        from fed_types import CLIENTS, FederatedType

        @fed_jax.computation(np.float32)
        def square(x):
            return x * x

        @fc.federated_computation(FederatedType(np.float32, CLIENTS))
        def mean_of_squares(values):
            return fc.federated_mean(fc.federated_map(square, values))

        installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
        print(mean_of_squares([1.0, 2.0, 3.0]), sorted(n for n in installed if "tensorflow" in n))
        """
    )
    done = subprocess.run([str(python), "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "4.6666665 []"
