"""``cachebot recover``: finish (or mark interrupted) the purges a process was sending when it died."""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.options import ConfigOption, config_or_exit
from agent.cli.output import console
from agent.cli.plugins import recovery_notifications


def recover(
    config: ConfigOption = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume",
                                         help="finish interrupted runs from their last checkpoint (default), "
                                              "or only mark them interrupted")] = True,
) -> None:
    """Finish (or mark interrupted) the purges a process was sending when it died. `cachebot slack` does this on
    start; Slack threads are told when SLACK_BOT_TOKEN is set. Pending approvals stay pending."""
    from agent.service.agent import Agent  # the agent, when it runs (see agent/cli/ask.py)
    from agent.service.recovery import recover as recover_runs

    settings = config_or_exit(config)
    with Agent(settings) as agent, recovery_notifications(agent) as notify:
        done = recover_runs(agent, resume=resume, notify=notify)
    if not done:
        console.print("Nothing to recover.")
    for item in done:
        console.print(f"{item.thread_id}: {item.outcome}" + (f" ({item.error})" if item.error else ""), soft_wrap=True,
                      markup=False)
