"""Drawing the graph offline: Mermaid text, Graphviz DOT, and a PNG rendered by the local ``dot``."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from agent.graph import build_graph
from agent.words import took_words

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


# --- one run's path on the graph (`cachebot trace --format …`, agent/trace.py) -------------------------------

VISITED_FILL, UNVISITED_FILL, WAITING_FILL = "#bfb6fc", "#eeeeee", "#ffd27f"
VISITED_LINE, UNVISITED_LINE = "#3b2bbf", "#bbbbbb"


@dataclass
class RunPath:
    """What a run did on the graph: nodes it visited, how often it took each edge ("a->b"), time per node."""

    visited: set[str] = field(default_factory=set)
    edge_counts: dict[str, int] = field(default_factory=dict)
    node_seconds: dict[str, float] = field(default_factory=dict)
    waiting_at: str | None = None


@cache
def _shape() -> tuple[tuple[str, ...], tuple[tuple[str, str, bool], ...]]:
    """The graph's nodes and edges (source, target, conditional), as the code builds them. Compiled once per
    process: the graph's shape is code, and compiling it took most of drawing a run's path (the console draws
    one per request page)."""
    drawn = build_graph().compile().get_graph()
    return tuple(drawn.nodes), tuple((e.source, e.target, bool(e.conditional)) for e in drawn.edges)


def _node_label(node: str, path: RunPath) -> str:
    label = node.strip("_")
    if node in path.node_seconds:
        label += f"\\n{took_words(path.node_seconds[node])}"
    if node == path.waiting_at:
        label += "\\nwaiting"
    return label


def _edges_with_loops(edges: tuple[tuple[str, str, bool], ...], path: RunPath) -> list[tuple[str, str, bool]]:
    """The drawn edges plus any the run took that the drawing lacks (approval's refused click loops to itself:
    ``Command`` routes are drawn from their Literal, but a self-loop may be left out)."""
    known = {(s, t) for s, t, _ in edges}
    extra = [(s, t, True) for key in path.edge_counts for s, t in [key.split("->", 1)] if (s, t) not in known]
    return [*edges, *extra]


def dot_with_path(path: RunPath) -> str:
    nodes, edges = _shape()
    lines = [f"digraph {GRAPH_NAME} {{",
             '  rankdir=TB; node [shape=box, style="rounded,filled", fontname="Helvetica"];'
             ' edge [fontname="Helvetica", fontsize=10];']
    for node in nodes:
        shape = ", shape=oval" if node in ("__start__", "__end__") else ""
        if node == path.waiting_at:
            style = f'fillcolor="{WAITING_FILL}", penwidth=2'
        elif node in path.visited:
            style = f'fillcolor="{VISITED_FILL}", penwidth=2'
        else:
            style = f'fillcolor="{UNVISITED_FILL}", fontcolor="#999999", color="#bbbbbb"'
        lines.append(f'  "{node}" [label="{_node_label(node, path)}"{shape}, {style}];')
    for source, target, conditional in _edges_with_loops(edges, path):
        count = path.edge_counts.get(f"{source}->{target}", 0)
        if count:
            attrs = f'color="{VISITED_LINE}", penwidth=2.5, label="{count}×"'
        else:
            attrs = f'color="{UNVISITED_LINE}"' + (", style=dashed" if conditional else "")
        lines.append(f'  "{source}" -> "{target}" [{attrs}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(node: str) -> str:
    return node  # LangGraph's ids as they are: "end" alone is a Mermaid keyword


def mermaid_with_path(path: RunPath) -> str:
    nodes, edges = _shape()
    lines = ["flowchart TD"]
    for node in nodes:
        label = _node_label(node, path).replace("\\n", "<br/>")
        shape = f'(["{label}"])' if node in ("__start__", "__end__") else f'["{label}"]'
        lines.append(f"  {_mermaid_id(node)}{shape}")
    styles = []
    for index, (source, target, conditional) in enumerate(_edges_with_loops(edges, path)):
        count = path.edge_counts.get(f"{source}->{target}", 0)
        arrow = f'-->|"{count}×"|' if count else ("-.->" if conditional else "-->")
        lines.append(f"  {_mermaid_id(source)} {arrow} {_mermaid_id(target)}")
        styles.append(f"  linkStyle {index} stroke:{VISITED_LINE if count else UNVISITED_LINE}"
                      + (",stroke-width:3px" if count else ""))
    lines += styles
    lines.append(f"  classDef visited fill:{VISITED_FILL},stroke:{VISITED_LINE},stroke-width:2px")
    lines.append(f"  classDef waiting fill:{WAITING_FILL},stroke:{VISITED_LINE},stroke-width:2px")
    lines.append(f"  classDef unvisited fill:{UNVISITED_FILL},stroke:#bbbbbb,color:#999999")
    for node in nodes:
        kind = "waiting" if node == path.waiting_at else "visited" if node in path.visited else "unvisited"
        lines.append(f"  class {_mermaid_id(node)} {kind}")
    return "\n".join(lines) + "\n"


def render_dot(text: str, fmt: str) -> bytes | str:
    """SVG (text) or PNG (bytes) from DOT, by the local graphviz ``dot``: offline."""
    if not shutil.which("dot"):
        raise RuntimeError("graphviz's `dot` is not installed (Debian: apt-get install graphviz); "
                           "use --format mermaid or dot")
    drawn = subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True, check=True).stdout
    return drawn.decode() if fmt == "svg" else drawn
