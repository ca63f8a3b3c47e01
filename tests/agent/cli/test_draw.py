"""`cachebot graph`: the drawings are written from the code."""

from __future__ import annotations

from agent.cli.main import app
from tests.agent.cli.helpers import runner


def test_graph_command_writes_drawings(tmp_path):
    outcome = runner.invoke(app, ["graph", "--out", str(tmp_path)])
    assert outcome.exit_code == 0
    assert (tmp_path / "cache_purge.mmd").exists() and (tmp_path / "cache_purge.png").exists()
