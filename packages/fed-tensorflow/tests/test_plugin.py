"""fed-tensorflow registers its frontend's backend through fed's entry-point group."""

import pytest

from fed_core import plugins
from fed_tensorflow._backend import TensorFlowBackend, backend


def test_the_tensorflow_backend_is_registered_by_fed_tensorflow():
    [entry] = [e for e in plugins.list_entries() if e.kind == "backends" and e.name == "tensorflow"]
    assert entry.distribution == "fed-tensorflow"
    assert isinstance(entry.factory(), TensorFlowBackend)
    assert entry.factory() is backend()


def test_a_context_given_devices_gets_a_backend_of_its_own():
    own = plugins.get_registry("backends").build("tensorflow", devices=["/CPU:0"])
    assert isinstance(own, TensorFlowBackend)
    assert own is not backend()
    assert own.devices == ["/CPU:0"]
    assert plugins.get_registry("backends").build("tensorflow", devices=["/CPU:0"]) is own


def test_without_tensorflow_the_names_say_what_to_install(monkeypatch):
    import importlib.util

    import fed_tensorflow

    monkeypatch.delattr(fed_tensorflow, "to_type", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tensorflow" else real_find_spec(name, *args),
    )
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fed-framework\[tensorflow\]'"):
        fed_tensorflow.to_type  # noqa: B018 (the attribute lookup is what is tested)
