"""Drawing the graph offline: Mermaid text, Graphviz DOT, and a PNG rendered by the local ``dot``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from agent.graph import build_graph

GRAPH_NAME = "cache_purge"


def mermaid() -> str:
    return build_graph().compile().get_graph().draw_mermaid()


def dot() -> str:
    drawn = build_graph().compile().get_graph()
    lines = [f"digraph {GRAPH_NAME} {{", '  rankdir=TB; node [shape=box, style="rounded,filled", fillcolor="#f2f0ff"];']
    for node in drawn.nodes:
        if node in ("__start__", "__end__"):
            lines.append(f'  "{node}" [label="{node.strip("_")}", shape=oval, fillcolor="#bfb6fc"];')
        else:
            lines.append(f'  "{node}";')
    for edge in drawn.edges:
        style = ' [style=dashed]' if edge.conditional else ""
        lines.append(f'  "{edge.source}" -> "{edge.target}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_drawings(directory: Path) -> list[Path]:
    """Write ``.mmd``, ``.dot`` and (when graphviz is installed) ``.png``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".mmd", mermaid()), (".dot", dot())):
        path = directory / f"{GRAPH_NAME}{suffix}"
        path.write_text(text)
        written.append(path)
    if shutil.which("dot"):
        png = directory / f"{GRAPH_NAME}.png"
        subprocess.run(["dot", "-Tpng", "-o", str(png), str(directory / f"{GRAPH_NAME}.dot")], check=True)
        written.append(png)
    return written
