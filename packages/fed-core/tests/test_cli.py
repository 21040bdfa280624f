"""``python -m fed_core plugins``, run as users run it, against the installed test plugins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping

import pytest

from fed_core.plugins import BUILTIN_DISTRIBUTIONS


def fed_core(
    *arguments: str, environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FED_")}
    env.update(environment or {})
    return subprocess.run(
        [sys.executable, "-m", "fed_core", *arguments], env=env, capture_output=True, text=True
    )


def rows(output: str) -> list[list[str]]:
    """The rows of the entry table, split into cells."""
    table = output.split("\n\n")[1]
    return [line.split() for line in table.splitlines()]


def test_plugins_lists_entries_with_kind_name_distribution_and_version() -> None:
    done = fed_core("plugins")
    assert done.returncode == 0
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "fed plugins (entry-point group fed_core.plugins): autoload on; disabled: none"
    )
    table = rows(done.stdout)
    assert table[0] == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "PLUGIN"]
    example = [row for row in table if row[2] == "fed-example-plugin"]
    assert example == [
        ["executors", "example_sequential", "fed-example-plugin", "0.0.1", "example"],
        ["aggregators", "example_mean", "fed-example-plugin", "0.0.1", "example"],
        ["datasets", "example_counting", "fed-example-plugin", "0.0.1", "example"],
        ["intrinsics", "example.federated_median", "fed-example-plugin", "0.0.1", "example"],
        ["data_backends", "example", "fed-example-plugin", "0.0.1", "example"],
    ]


def test_plugins_shows_load_errors_with_their_distributions() -> None:
    output = fed_core("plugins").stdout
    errors = output.split("\n\n")[2].splitlines()
    assert re.fullmatch(r"LOAD ERRORS \(\d+\): these plugins were not loaded, .*", errors[0])
    assert (
        "fed-broken-plugin 0.0.1 (plugin 'broken_import'): cannot import "
        "fed_broken_plugin.import_error: ModuleNotFoundError: "
        "No module named 'fed_missing_dependency'"
    ) in errors
    for plugin in ["broken_unknown_hook", "broken_hook_raises", "broken_invalid_name"]:
        assert any(
            line.startswith(f"fed-broken-plugin 0.0.1 (plugin '{plugin}'): ") for line in errors
        )
    (rival,) = [line for line in errors if "(plugin 'rival')" in line]
    assert "fed-rival-plugin 0.0.2" in rival and "fed-example-plugin 0.0.1" in rival


def test_plugins_verbose_adds_factories_and_tracebacks() -> None:
    output = fed_core("plugins", "--verbose", "--kind", "aggregators").stdout
    table = rows(output)
    assert table[0][-1] == "FACTORY"
    assert [
        "aggregators",
        "example_mean",
        "fed-example-plugin",
        "0.0.1",
        "example",
        "fed_example_plugin:create_mean_aggregator",
    ] in table
    assert all(row[0] == "aggregators" for row in table[1:])
    assert "    Traceback (most recent call last):" in output
    assert "    RuntimeError: the aggregation service is unreachable" in output


def test_plugins_json() -> None:
    done = fed_core("plugins", "--json", environment={"FED_DISABLED_PLUGINS": "fed-broken-plugin"})
    report = json.loads(done.stdout)
    assert report["autoload"] is True
    assert report["disabled"] == ["fed-broken-plugin"]
    assert {
        "kind": "datasets",
        "name": "example_counting",
        "distribution": "fed-example-plugin",
        "version": "0.0.1",
        "plugin": "example",
        "factory": "fed_example_plugin:create_counting_data",
    } in report["entries"]
    assert [(e["plugin"], e["distribution"], e["version"]) for e in report["load_errors"]] == [
        ("rival", "fed-rival-plugin", "0.0.2")
    ]


def test_plugins_follows_the_environment_variables() -> None:
    done = fed_core("plugins", environment={"FED_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == (
        "fed plugins (entry-point group fed_core.plugins): "
        "autoload off (FED_DISABLE_PLUGIN_AUTOLOAD); disabled: none"
    )
    # Only fed's own distributions load: no third-party plugin, and so no load errors.
    assert {row[2] for row in rows(done.stdout)[1:]} <= set(BUILTIN_DISTRIBUTIONS)
    assert ["executors", "local", "fed-core"] in [row[:3] for row in rows(done.stdout)]
    assert "LOAD ERRORS" not in done.stdout
    done = fed_core(
        "plugins",
        environment={
            "FED_DISABLE_PLUGIN_AUTOLOAD": "1",
            "FED_DISABLED_PLUGINS": ",".join(BUILTIN_DISTRIBUTIONS),
        },
    )
    assert "No entries registered." in done.stdout
    output = fed_core("plugins", environment={"FED_DISABLED_PLUGINS": "example"}).stdout
    assert "disabled: example" in output.splitlines()[0]
    sequential = [row for row in rows(output) if row[1] == "example_sequential"]
    assert sequential == [["executors", "example_sequential", "fed-rival-plugin", "0.0.2", "rival"]]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("plugin",), "invalid choice: 'plugin'"),
        (("plugins", "--kind", "models"), "argument --kind: invalid choice: 'models'"),
    ],
)
def test_usage_errors_exit_with_status_2(arguments: tuple[str, ...], complaint: str) -> None:
    done = fed_core(*arguments)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("usage: python -m fed_core")
    assert complaint in done.stderr
