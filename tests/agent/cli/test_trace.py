"""`cachebot trace`: a request's steps at the terminal, as JSON, and its path drawn (Mermaid, DOT, SVG, PNG)."""

from __future__ import annotations

import json

from agent.cli.main import app
from tests.agent.cli.helpers import runner, write_config


def traced(fresh_stack, tmp_path, database_url):
    """A config on the real stack and a request waiting for alice's approval, then approved."""
    config = write_config(fresh_stack, tmp_path, approval={"threshold": 1, "approvers": ["alice"]},
                          storage={"sqlite_path": str(tmp_path / "cli.sqlite"), "database_url": database_url})
    asked = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--json", "--config", config,
                                "--as", "bob"])
    thread_id = json.loads(asked.output)["thread_id"]
    return config, thread_id


def test_trace_lists_the_steps_of_a_waiting_then_approved_request(fresh_stack, tmp_path, database_url):
    config, thread_id = traced(fresh_stack, tmp_path, database_url)
    waiting = runner.invoke(app, ["trace", thread_id, "--config", config])
    assert waiting.exit_code == 0, waiting.output
    assert "waiting for approval" in waiting.output.splitlines()[0]
    assert "plan → approval: " in waiting.output and "Waiting at approval: approval: " in waiting.output

    runner.invoke(app, ["approve", thread_id, "--config", config, "--as", "alice"])
    done = runner.invoke(app, ["trace", "last", "--config", config])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert f"on thread {thread_id}: finished" in lines[0] and "bob asked" in lines[1]
    order = [next(i for i, line in enumerate(lines) if f" {node} " in line and ("→" in line or "↺" in line))
             for node in ("understand", "resolve", "plan", "approval", "execute", "verify", "report")]
    assert order == sorted(order)
    assert "approval → execute: approved by alice" in done.output
    assert "Time per step: " in done.output

    as_json = json.loads(runner.invoke(app, ["trace", thread_id, "--json", "--config", config]).output)
    assert as_json["thread_id"] == thread_id and as_json["status"] == "done"
    assert [s["node"] for s in as_json["steps"]][-1] == "report"


def test_trace_draws_the_path_offline(fresh_stack, tmp_path, database_url):
    config, thread_id = traced(fresh_stack, tmp_path, database_url)
    dot = runner.invoke(app, ["trace", thread_id, "--format", "dot", "--config", config])
    assert dot.exit_code == 0, dot.output
    assert '"check" [label="check", fillcolor="#eeeeee"' in dot.output  # not visited: greyed out
    assert '"plan" -> "approval" [color="#3b2bbf", penwidth=2.5, label="1×"]' in dot.output
    mermaid = runner.invoke(app, ["trace", thread_id, "-f", "mermaid", "--config", config])
    assert mermaid.output.startswith("flowchart TD") and "class approval waiting" in mermaid.output

    svg, png = tmp_path / "run.svg", tmp_path / "run.png"
    for fmt, path in (("svg", svg), ("png", png)):
        drawn = runner.invoke(app, ["trace", thread_id, "--format", fmt, "--output", str(path), "--config", config])
        assert drawn.exit_code == 0 and f"wrote {path}" in drawn.output
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_request_exits_2_with_one_line(fresh_stack, tmp_path, database_url):
    config, _ = traced(fresh_stack, tmp_path, database_url)
    missing = runner.invoke(app, ["trace", "no-such-thread", "--config", config])
    assert missing.exit_code == 2
    assert missing.output.startswith("Not found: no request or thread 'no-such-thread' is recorded")
