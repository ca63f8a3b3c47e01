"""``cachebot chat``: a conversation in the terminal, as it would be in Slack. Over-threshold plans prompt for an
approver; after a question about purging, the person is offered to purge or check exactly those pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from agent.cli.options import ConfigOption, UserOption, config_or_exit, current_user
from agent.cli.output import console, progress_events, render, terminal_logging

if TYPE_CHECKING:
    from agent.models import RunResult
    from agent.service.agent import Agent

# The agent and its records are imported when the conversation starts, not with this module (see agent/cli/ask.py).


def chat(config: ConfigOption = None, as_user: UserOption = None) -> None:
    """A conversation with the agent in the terminal, as it would be in Slack. Ctrl-D to leave."""
    from agent.models import Intent
    from agent.service.agent import Agent

    terminal_logging()
    settings = config_or_exit(config)
    user = current_user(as_user)
    console.print(f"[bold]cachebot[/bold] — talking as [cyan]{user}[/cyan]. Paste URLs, ask 'is <url> stale?', "
                  "or say 'help'. Ctrl-D to leave.")
    with Agent(settings) as agent:
        while True:
            try:
                message = console.input("[bold green]you>[/bold green] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if not message.strip():
                continue
            with progress_events(True) as on_event:
                result = agent.ask(message, user=user, on_event=on_event)
            render(result)
            while result.pending:
                result = prompt_for_decision(agent, result)
            if result.intent in (Intent.ASK, Intent.CHECK):
                result = prompt_for_offer(agent, result, user)
                while result.pending:
                    result = prompt_for_decision(agent, result)


def prompt_for_offer(agent: Agent, result: RunResult, user: str) -> RunResult:
    """After a question about purging: purge exactly those pages, check them, or leave it (the default)."""
    from agent.models import Intent

    offer = agent.offer(result.thread_id)
    if offer is None:
        return result
    pages = "this page" if offer.pages == 1 else f"these {offer.pages} pages"
    choices = "yes / no, the default" if result.intent == Intent.CHECK else "yes / check / no, the default"
    answer = console.input(f"[bold]Purge {pages}?[/bold] ({choices}) ").strip().lower()
    if answer not in ("y", "yes", "c", "check"):
        console.print("Nothing was purged.")
        return result
    with progress_events(True) as on_event:
        taken = agent.take_offer(result.thread_id, offer.id, "purge" if answer.startswith("y") else "check",
                                 user=user, on_event=on_event)
    render(taken)
    return taken


def prompt_for_decision(agent: Agent, result: RunResult) -> RunResult:
    """Ask who approves at this terminal; the graph still decides whether that person may."""
    from agent.service.agent import NothingPending

    answer = console.input(
        "[bold]approver>[/bold] type 'approve NAME' or 'deny NAME', or press Enter to leave it waiting: "
    ).split()
    if len(answer) != 2 or answer[0] not in ("approve", "deny"):
        console.print(f"Left waiting. Later: [cyan]cachebot approve {result.thread_id} --as NAME[/cyan]")
        return result.model_copy(update={"pending": None})
    with progress_events(True) as on_event:
        try:
            decided = agent.decide(result.thread_id, answer[0], user=answer[1], on_event=on_event)
        except NothingPending as exc:
            console.print(f"[yellow]{escape(str(exc))}[/yellow]")
            return result.model_copy(update={"pending": None})
    if decided.notice:
        console.print("[red]Refused:[/red] ", end="")
        console.print(decided.notice, markup=False)
    else:
        render(decided)
    return decided
