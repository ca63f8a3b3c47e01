"""What the terminal shows when something goes wrong: one line per warning, never a traceback."""

from __future__ import annotations

import logging

from agent.cli.output import terminal_logging


def test_a_failed_run_logs_one_line_at_the_terminal_never_a_traceback(capsys):
    terminal_logging()
    terminal_logging()  # once per process, however many commands run
    try:
        raise RuntimeError("the layer registry is unavailable")
    except RuntimeError:
        logging.getLogger("agent.service.agent").exception("run %s failed", "t-1")
    assert capsys.readouterr().err == "error: run t-1 failed\n"
