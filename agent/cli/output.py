"""What a person at the terminal sees: replies, the plan as a table, a progress bar while the graph runs,
the agent's warnings as one line each, and the exit code (1 when any page was not confirmed fresh, 3 when
only because the origin itself is failing)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from agent.models import Plan, RunResult
    from agent.service.events import ProgressEvent

# Every command imports this module, `cachebot --help` included, so the records (pydantic models: a third of a
# second to build) and the words are imported by the functions that show them (tests/agent/cli/test_startup.py).

console = Console(highlight=False)


class TerminalLog(logging.Handler):
    """The agent's warnings for a person at a terminal: one line each on stderr, never a traceback (the reply
    already says what failed; ``cachebot slack`` logs in full for operators)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{record.levelname.lower()}: {record.getMessage()}\n")  # stderr of the moment
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def terminal_logging() -> None:
    """Send the agent's warnings to ``TerminalLog`` (once per process) instead of Python's last-resort handler,
    which prints tracebacks."""
    logger = logging.getLogger("agent")
    if not any(isinstance(handler, TerminalLog) for handler in logger.handlers):
        logger.addHandler(TerminalLog(logging.WARNING))


@contextmanager
def progress_events(enabled: bool) -> Iterator:
    """A rich progress bar fed by the graph's progress events; silent for machine output."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from agent.service.events import Progress as BatchProgress  # rich has a Progress too

    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        tasks: dict[str, int] = {}

        def on_event(event: ProgressEvent) -> None:
            if isinstance(event, BatchProgress):
                if event.phase not in tasks:
                    tasks[event.phase] = bar.add_task(f"{event.phase}ing", total=event.total)
                bar.update(tasks[event.phase], completed=event.done, total=event.total)
            else:
                show_step(event)

        yield on_event


ORIGIN_FAILING = 3  # every purge went through, but the origin itself is failing: freshness is unknown


def exit_code(result: RunResult) -> int:
    """0: every page confirmed fresh (or gone, or redirecting as the origin does). 1: something failed or is not
    confirmed fresh. 3: nothing failed, but some pages could not be verified because the origin itself is failing
    (5xx or no answer): a script can tell "fix the origin, check again later" from "the purge did not work".
    (2 is an unusable configuration.)"""
    failed = result.error is not None or any(r.status in ("failed", "purged_unverified") for r in result.results)
    if not failed:
        return 0
    from agent.words import origin_failing

    return ORIGIN_FAILING if result.error is None and origin_failing(result.results) else 1


def emit(result: RunResult, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        render(result)


STEP_WORDS = {"purged": "execute", "verified": "verify"}  # what the narration has always called the steps


def show_step(event: ProgressEvent) -> None:
    """Live narration while the graph runs: what was understood, then the plan, before anything is purged."""
    from agent.service.events import PlanReady, StepDone, UrlsFound

    if isinstance(event, UrlsFound) and event.urls:
        urls = event.urls
        console.print(f"[bold]Understood {len(urls)} URL(s):[/bold]")
        for url in urls[:50]:
            console.print(f"  {url}", markup=False)
        if len(urls) > 50:
            console.print(f"  … and {len(urls) - 50} more")
    elif isinstance(event, PlanReady):
        console.print(plan_table(event.plan))
    elif isinstance(event, StepDone):
        console.print(f"[dim]· {STEP_WORDS[event.step]} done[/dim]")


def render(result: RunResult) -> None:
    """The reply as written: it quotes what people typed, so it is never read as Rich markup."""
    from agent.words import details_line

    if result.pending:
        console.print(f"[yellow]Waiting for approval[/yellow] (request id [cyan]{result.thread_id}[/cyan]): ", end="")
        console.print(f"{result.pending['reason']}. Approvers: {result.pending['approvers']}.", markup=False)
        if result.web_url:
            console.print(details_line(result.web_url), markup=False, soft_wrap=True)
        return
    console.print(result.reply, markup=False)
    if result.web_url:
        console.print(details_line(result.web_url), markup=False, soft_wrap=True)


GROUP_BY_PAGE_ABOVE = 20  # rows: a bigger plan shows one row per page, so it does not fill the screen


def plan_table(plan: Plan) -> Table:
    """The plan before anything is sent: one row per page × layer when small, one row per page when big."""
    from agent.words import plural

    layers = list(dict.fromkeys(i.layer for i in plan.items))
    title = (f"Plan: {plural(plan.purge_count, 'purge')} over {plural(len(plan.pages), 'page')} on "
             f"{plural(len(layers), 'layer')}")
    if len(plan.items) > GROUP_BY_PAGE_ABOVE:
        return page_table(plan, title)
    table = Table(title=title, show_lines=False)
    for column in ("page", "layer", "operation", "why"):
        table.add_column(column)
    for item in plan.items:  # Text, not markup: URLs, tags and reasons come from people and origins
        table.add_row(Text(item.url), Text(item.layer),
                      Text(f"{item.operation.value} {item.target if item.target != item.url else ''}"),
                      Text(item.reason))
    return table


def page_table(plan: Plan, title: str, limit: int = 200) -> Table:
    """One row per page: the layers it is purged on (and how, when not by URL), and why it is in the plan."""
    by_page: dict[str, list] = {}
    for item in plan.items:
        by_page.setdefault(item.url, []).append(item)
    table = Table(title=title, show_lines=False)
    for column in ("page", "layers", "why"):
        table.add_column(column)
    for url, items in list(by_page.items())[:limit]:
        layers = ", ".join(dict.fromkeys(
            i.layer + ("" if i.operation.value == "purge_url" else f" ({i.operation.value.removeprefix('purge_')})")
            for i in items))
        table.add_row(Text(url), Text(layers), Text(items[0].reason))
    if len(by_page) > limit:
        table.caption = f"… {len(by_page) - limit} more pages (use --json for all)"
    return table
