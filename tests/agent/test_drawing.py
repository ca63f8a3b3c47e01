"""The committed drawings in graphs/ must be the graph the code builds."""

from __future__ import annotations

from pathlib import Path

from agent.drawing import GRAPH_NAME, dot, mermaid, write_drawings

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def test_committed_mermaid_matches_the_code():
    assert (GRAPHS / f"{GRAPH_NAME}.mmd").read_text() == mermaid(), "run `make graph` and commit graphs/"


def test_committed_dot_matches_the_code():
    assert (GRAPHS / f"{GRAPH_NAME}.dot").read_text() == dot(), "run `make graph` and commit graphs/"


def test_drawing_shows_every_route():
    text = mermaid()
    for edge in ("plan -.-> approval", "approval -.-> execute", "approval -.-> report", "approval -.-> approval",
                 "resolve -.-> check", "execute --> verify", "verify -.-> report", "verify -.-> execute"):
        assert edge in text


def test_png_is_rendered_offline(tmp_path):
    written = write_drawings(tmp_path)
    png = tmp_path / f"{GRAPH_NAME}.png"
    assert png in written and png.read_bytes().startswith(b"\x89PNG")


def test_studio_graph_runs_with_the_config_from_the_environment(tmp_path, monkeypatch):
    """`langgraph dev` loads agent/graph.py:graph with no front end: the config comes from $CACHEBOT_CONFIG.
    The nodes are async, and so is the platform's way of running a graph."""
    import asyncio

    import yaml

    import agent.state
    from agent.graph import graph
    from tests.agent.test_config import minimal

    path = tmp_path / "cachebot.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    monkeypatch.setenv("CACHEBOT_CONFIG", str(path))
    monkeypatch.setattr(agent.state, "_studio_context", None)
    result = asyncio.run(graph.ainvoke({"message": "help", "user": "studio"}))
    assert "Sites I manage: shop (shop.example)" in result["reply"]
