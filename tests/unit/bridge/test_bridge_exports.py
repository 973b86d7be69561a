"""The bridge's public API is exactly what the docs promise."""

from __future__ import annotations

import muster.bridge


def test_public_names_are_pinned() -> None:
    """muster.bridge exports the adapter, context, supervisor and error types, sorted."""
    expected = ["Adapter", "SessionContext", "ToolFailed", "Worker", "WorkerPool", "tool"]
    assert muster.bridge.__all__ == expected
    assert all(hasattr(muster.bridge, name) for name in expected)


def test_cli_entry_points_exist() -> None:
    """The CLI module offers configure_parser and run for the `muster bridge` subcommand."""
    import argparse

    from muster.bridge import cli

    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    args = parser.parse_args(["--port", "0", "--adapter", "pkg.mod.Class", "--session-ttl", "5"])
    assert (args.port, args.adapter, args.session_ttl, args.host) == (0, "pkg.mod.Class", 5.0, "127.0.0.1")
