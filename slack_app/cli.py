"""The Slack app's commands for ``cachebot``: ``slack`` (run the app) and ``digest`` (the weekly digest, printed
or posted), and telling Slack threads about recovered runs (``cachebot recover``). They plug into the terminal
front end through entry points (pyproject.toml: ``cachebot.commands``, ``cachebot.recovery_notifiers``), so
``agent`` never imports ``slack_app``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agent.cli.options import ConfigOption, audit_or_exit, config_or_exit, storage_or_exit
from agent.cli.output import console

if TYPE_CHECKING:
    from agent.service.recovery import Notify
    from agent.service.agent import Agent

# `cachebot` loads this module to list its commands, `--help` included, so Bolt, the Slack SDK and the agent are
# imported by the command that runs (tests/agent/cli/test_startup.py).


def register(app: typer.Typer) -> None:
    """Add ``slack`` and ``digest`` to ``cachebot`` (entry point ``cachebot.commands``)."""
    app.command()(slack)
    app.command()(digest)


def slack(
    config: ConfigOption = None,
    socket: Annotated[bool, typer.Option("--socket", help="Socket Mode (needs SLACK_APP_TOKEN)")] = False,
    http: Annotated[bool, typer.Option("--http", help="HTTP mode: events and interactivity at /slack/events")] = False,
    port: Annotated[int, typer.Option(help="HTTP mode port")] = 3000,
    host: Annotated[str, typer.Option(help="HTTP mode address")] = "0.0.0.0",
    workers: Annotated[int | None, typer.Option(help="agent runs in this many worker processes (0: threads in the "
                                                     "app process; default: one per core, up to 4, on more than "
                                                     "one core)", min=0)] = None,
    intake_workers: Annotated[int, typer.Option(help="with worker processes: processes for intake (claims, first "
                                                     "reply)", min=1)] = 1,
    worker_nice: Annotated[int, typer.Option(help="with worker processes: CPU niceness added to the run workers, "
                                                  "so runs yield to acks", min=0, max=19)] = 19,
) -> None:
    """Run the Slack app. Tokens come from SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, SLACK_API_URL."""
    if socket == http:
        console.print("[red]Choose one:[/red] --socket or --http")
        raise typer.Exit(2)
    from slack_app.server import SetupError, run_http, run_socket_mode

    settings = config_or_exit(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = {"workers": workers, "intake_processes": intake_workers, "worker_nice": worker_nice}
        run_socket_mode(settings, **options) if socket else run_http(settings, host, port, **options)
    except SetupError as exc:
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def digest(
    config: ConfigOption = None,
    post: Annotated[bool, typer.Option("--post", help="post it to the digest channel (SLACK_BOT_TOKEN, SLACK_API_URL)")] = False,
) -> None:
    """The weekly usage digest (config `digest`): printed, or posted to Slack with --post."""
    from agent.config import DigestConfig
    from agent.words import digest_text
    from slack_app.digest import digest_figures, post_digest
    from slack_app.slack_api import make_client

    settings, url = storage_or_exit(config)
    wanted = settings.digest if settings and settings.digest else None
    if post and wanted is None:
        console.print("[red]Cannot post:[/red] no `digest: {channel: ...}` in the config")
        raise typer.Exit(2)
    store = audit_or_exit(config)
    try:
        if post:
            if not os.environ.get("SLACK_BOT_TOKEN"):
                console.print("[red]Cannot post:[/red] set SLACK_BOT_TOKEN")
                raise typer.Exit(2)
            client = make_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
            text = post_digest(store, client, wanted)
            console.print(f"posted the digest to {wanted.channel}")
        else:
            shown = wanted or DigestConfig(channel="-")
            text = digest_text(digest_figures(store, shown), days=shown.days)
            console.print(text, soft_wrap=True, markup=False)
    finally:
        store.close()


@contextmanager
def recovery_notifier(agent: Agent) -> Iterator[Notify | None]:
    """Tell each recovered run's Slack thread what became of it, when SLACK_BOT_TOKEN is set (entry point
    ``cachebot.recovery_notifiers``)."""
    if not os.environ.get("SLACK_BOT_TOKEN"):
        yield None
        return
    from slack_app.app import SlackFrontEnd
    from slack_app.slack_api import make_client

    front = SlackFrontEnd(agent, make_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL")),
                          signing_secret=os.environ.get("SLACK_SIGNING_SECRET", "unused"), token_verification=False)
    try:
        yield front.tell_recovered
    finally:
        front.close()
