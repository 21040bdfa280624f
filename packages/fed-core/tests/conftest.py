import pytest


@pytest.fixture(autouse=True)
def _python_frontend(fed_python_frontend):
    """fed-core's own tests run `python_computation`s, whose backend only tests register."""
    return fed_python_frontend
