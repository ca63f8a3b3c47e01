"""``cachebot trace REQUEST``: what one request did and why, step by step, or its path drawn on the graph
(``agent/trace.py`` reads it back from the checkpoints and the audit trail)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from agent.cli.options import ConfigOption, config_or_exit
from agent.cli.output import console


class Format(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


def trace(
    request: Annotated[str, typer.Argument(help="a request id, a thread id, a Slack message link, or `last`")],
    fmt: Annotated[Optional[Format], typer.Option(
        "--format", "-f", help="draw the graph with this run's path instead of listing its steps")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write to this file")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
    brief: Annotated[bool, typer.Option("--brief", help="steps only, without the fields each changed")] = False,
    config: ConfigOption = None,
) -> None:
    """Every step a request took: node, start, duration, what it decided and why, what it changed, and the
    approval it waits at. Works after a restart, for finished, pending and crashed-then-recovered runs."""
    # imported here: the storage drivers are not needed by `cachebot --help` and other commands. LangGraph is not
    # needed at all to list the steps: the checkpoints' tables are read directly (agent.storage.history), and
    # the saver and serializer are made only if that fails (tests/agent/cli/test_startup.py, bench/trace_bench.py)
    from agent.storage import Storage
    from agent.trace import TraceNotFound, draw_trace, load_trace
    from agent.words import trace_text

    settings = config_or_exit(config)
    storage = Storage.open(settings, serde=_checkpoint_serializer, checkpoints_when_needed=True)
    try:
        found = load_trace(storage, request)
    except TraceNotFound as exc:
        console.print(f"[red]Not found:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    finally:
        storage.close()
    if fmt is None:
        text = found.model_dump_json(indent=2) if json_output else trace_text(found, changes=not brief)
    else:
        try:
            text = draw_trace(found, fmt.value)
        except RuntimeError as exc:  # no graphviz for svg/png
            console.print(f"[red]Cannot draw:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
    if output is not None:
        if isinstance(text, bytes):
            output.write_bytes(text)
        else:
            output.write_text(text + ("" if text.endswith("\n") else "\n"))
        console.print(f"wrote {output}", markup=False)
    elif isinstance(text, bytes):
        if sys.stdout.isatty():
            console.print("[red]PNG is binary:[/red] give --output FILE (or pipe it)")
            raise typer.Exit(2)
        sys.stdout.buffer.write(text)
    else:
        typer.echo(text.rstrip("\n"))


def _checkpoint_serializer():
    from agent.state import checkpoint_serializer

    return checkpoint_serializer()
