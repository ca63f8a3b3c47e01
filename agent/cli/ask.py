"""``cachebot ask`` (one message through the agent) and ``approve`` / ``deny`` (a decision on a waiting request,
from any process: the request waits in the checkpointer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agent.cli.options import ConfigOption, UserOption, config_or_exit, current_user
from agent.cli.output import console, emit, exit_code, progress_events, terminal_logging

# The agent (LangGraph, the storage, the layers) is imported inside each command, when it runs: `cachebot --help`,
# `history` and the other light commands import this module too (tests/agent/cli/test_startup.py).

ThreadArgument = Annotated[str, typer.Argument(help="the request id printed when approval was asked for")]


def ask(
    message: Annotated[str, typer.Argument(help="what you would write in Slack, URLs included")],
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only; send no purge")] = False,
) -> None:
    """Send one message through the agent and print what it did."""
    from agent.service.agent import Agent

    terminal_logging()
    settings = config_or_exit(config)
    with Agent(settings) as agent, progress_events(not json_output) as on_event:
        result = agent.ask(message, user=current_user(as_user), dry_run=dry_run, on_event=on_event)
    emit(result, json_output)
    raise typer.Exit(exit_code(result))


def approve(
    thread_id: ThreadArgument,
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a waiting request (you must be an approver, and not the requester unless self-approval is on)."""
    decide(thread_id, "approve", config, as_user, json_output)


def deny(
    thread_id: ThreadArgument,
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deny a waiting request."""
    decide(thread_id, "deny", config, as_user, json_output)


def decide(thread_id: str, choice: str, config: Path | None, as_user: str | None, json_output: bool) -> None:
    from agent.service.agent import Agent, NothingPending

    terminal_logging()
    settings = config_or_exit(config)
    with Agent(settings) as agent, progress_events(not json_output) as on_event:
        try:
            result = agent.decide(thread_id, choice, user=current_user(as_user), on_event=on_event)
        except NothingPending as exc:
            console.print(f"[yellow]Nothing to {choice}:[/yellow] {escape(str(exc))}")
            raise typer.Exit(1) from None
    if result.approval.status == "expired":  # the decision came too late: it was not applied
        if json_output:
            emit(result, json_output)
        else:
            console.print(f"[red]Expired:[/red] this approval request expired before it was decided, so your "
                          f"{choice} was not applied and nothing was purged. Ask again if it is still needed.")
        raise typer.Exit(1)
    if result.notice and not json_output:
        console.print("[red]Refused:[/red] ", end="")
        console.print(result.notice, markup=False)
    emit(result, json_output)
    raise typer.Exit(1 if result.notice else exit_code(result))
