"""``cachebot graph``: the agent's graph drawn from the code (graphs/ in the repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.output import console


def graph(out: Annotated[Path, typer.Option(help="directory for the drawings")] = Path("graphs")) -> None:
    """Write the agent's graph as Mermaid, DOT and PNG (offline, with graphviz)."""
    from agent.drawing import write_drawings  # the graph, so LangGraph: only when drawing (see agent/cli/ask.py)

    for path in write_drawings(out):
        console.print(f"wrote {path}")
