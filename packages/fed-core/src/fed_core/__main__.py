"""fed-core's command line: ``python -m fed_core plugins`` lists what plugins registered."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from fed_core import plugins


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, TextIO], int] = arguments.run
    try:
        return run(arguments, sys.stdout if out is None else out)
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error of ours
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fed_core", description=__doc__)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "plugins",
        help="list the registered entries, with their distributions, and plugin load errors",
        description=(
            "List every entry registered by fed's plugins (entry-point group "
            f"{plugins.ENTRY_POINT_GROUP}) and the plugins that failed to load. "
            f"{plugins.AUTOLOAD_ENV}=1 turns discovery off; "
            f"{plugins.DISABLED_ENV}=a,b skips plugins by entry-point or distribution name."
        ),
    )
    listing.add_argument("--kind", choices=plugins.KINDS, help="list only entries of this kind")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show each entry's factory and the traceback of each load error",
    )
    listing.set_defaults(run=_list_plugins)
    return parser


def _list_plugins(arguments: argparse.Namespace, out: TextIO) -> int:
    system = plugins.PluginSystem()
    entries = [e for e in system.entries() if arguments.kind in (None, e.kind)]
    errors = system.load_errors()
    if arguments.json:
        json.dump(_as_json(system, entries, errors), out, indent=2)
        out.write("\n")
    else:
        _write_table(system, entries, errors, arguments.verbose, out)
    return 0


def _as_json(
    system: plugins.PluginSystem,
    entries: Sequence[plugins.Entry],
    errors: Sequence[plugins.LoadError],
) -> dict[str, Any]:
    return {
        "entry_point_group": plugins.ENTRY_POINT_GROUP,
        "autoload": system.autoload,
        "disabled": sorted(system.disabled),
        "entries": [
            {
                "kind": e.kind,
                "name": e.name,
                "distribution": e.distribution,
                "version": e.version,
                "plugin": e.plugin,
                "factory": _qualified_name(e.factory),
            }
            for e in entries
        ],
        "load_errors": [
            {
                "plugin": e.plugin,
                "distribution": e.distribution,
                "version": e.version,
                "message": e.message,
            }
            for e in errors
        ],
    }


def _write_table(
    system: plugins.PluginSystem,
    entries: Sequence[plugins.Entry],
    errors: Sequence[plugins.LoadError],
    verbose: bool,
    out: TextIO,
) -> None:
    autoload = "on" if system.autoload else f"off ({plugins.AUTOLOAD_ENV})"
    disabled = ", ".join(sorted(system.disabled)) or "none"
    out.write(
        f"fed plugins (entry-point group {plugins.ENTRY_POINT_GROUP}): "
        f"autoload {autoload}; disabled: {disabled}\n\n"
    )
    if entries:
        header = ["KIND", "NAME", "DISTRIBUTION", "VERSION", "PLUGIN"]
        rows = [
            [e.kind, e.name, e.distribution, e.version or "-", e.plugin]
            + ([_qualified_name(e.factory)] if verbose else [])
            for e in entries
        ]
        out.write(_columns([header + (["FACTORY"] if verbose else []), *rows]))
    else:
        out.write("No entries registered.\n")
    if errors:
        out.write(
            f"\nLOAD ERRORS ({len(errors)}): these plugins were not loaded, "
            "nothing of theirs is registered\n"
        )
        for error in errors:
            out.write(f"{error}\n")
            if verbose:
                lines = traceback.format_exception(error.exception)
                out.write("".join("    " + line for line in "".join(lines).splitlines(True)))


def _columns(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _qualified_name(factory: Callable[..., Any]) -> str:
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None)
    if module is None or name is None:
        return repr(factory)
    return f"{module}:{name}"


if __name__ == "__main__":
    sys.exit(main())
