"""``cachebot``: the terminal front end. It only translates between a person at a terminal and ``Agent``."""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from agent.config import AppConfig, ConfigError, load_config
from agent.models import Intent, Plan, RunResult
from agent.runner import Agent, NothingPending

app = typer.Typer(help="cachebot: purge web caches by asking in plain language, and verify they are fresh.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(highlight=False)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default $CACHEBOT_CONFIG or ./cachebot.yaml)")]
UserOption = Annotated[Optional[str], typer.Option("--as", help="who is asking (default: your login name)")]


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


def current_user(explicit: str | None) -> str:
    return explicit or os.environ.get("CACHEBOT_USER") or getpass.getuser()


def config_or_exit(path: Path | None) -> AppConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@contextmanager
def progress_events(enabled: bool) -> Iterator:
    """A rich progress bar fed by the graph's progress events; silent for machine output."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            if event.get("type") == "step":
                show_step(event["node"], event["update"])
            elif event.get("type") == "progress":
                phase = event["phase"]
                if phase not in tasks:
                    tasks[phase] = bar.add_task(f"{phase}ing", total=event["total"])
                bar.update(tasks[phase], completed=event["done"], total=event["total"])

        yield on_event


@app.command()
def ask(
    message: Annotated[str, typer.Argument(help="what you would write in Slack, URLs included")],
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only; send no purge")] = False,
) -> None:
    """Send one message through the agent and print what it did."""
    terminal_logging()
    settings = config_or_exit(config)
    with Agent(settings) as agent, progress_events(not json_output) as on_event:
        result = agent.ask(message, user=current_user(as_user), dry_run=dry_run, on_event=on_event)
    emit(result, json_output)
    raise typer.Exit(exit_code(result))


@app.command()
def approve(
    thread_id: Annotated[str, typer.Argument(help="the request id printed when approval was asked for")],
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a waiting request (you must be an approver, and not the requester unless self-approval is on)."""
    decide(thread_id, "approve", config, as_user, json_output)


@app.command()
def deny(
    thread_id: Annotated[str, typer.Argument(help="the request id printed when approval was asked for")],
    config: ConfigOption = None,
    as_user: UserOption = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deny a waiting request."""
    decide(thread_id, "deny", config, as_user, json_output)


def decide(thread_id: str, choice: str, config: Path | None, as_user: str | None, json_output: bool) -> None:
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


@app.command()
def chat(config: ConfigOption = None, as_user: UserOption = None) -> None:
    """A conversation with the agent in the terminal, as it would be in Slack. Ctrl-D to leave."""
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
            if result.intent == Intent.ASK:
                result = prompt_for_offer(agent, result, user)
                while result.pending:
                    result = prompt_for_decision(agent, result)


def prompt_for_offer(agent: Agent, result: RunResult, user: str) -> RunResult:
    """After a question about purging: purge exactly those pages, check them, or leave it (the default)."""
    offer = agent.offer(result.thread_id)
    if offer is None:
        return result
    pages = "this page" if offer.pages == 1 else f"these {offer.pages} pages"
    answer = console.input(f"[bold]Purge {pages}?[/bold] (yes / check / no, the default) ").strip().lower()
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


@app.command()
def graph(out: Annotated[Path, typer.Option(help="directory for the drawings")] = Path("graphs")) -> None:
    """Write the agent's graph as Mermaid, DOT and PNG (offline, with graphviz)."""
    from agent.drawing import write_drawings

    for path in write_drawings(out):
        console.print(f"wrote {path}")


@app.command()
def slack(
    config: ConfigOption = None,
    socket: Annotated[bool, typer.Option("--socket", help="Socket Mode (needs SLACK_APP_TOKEN)")] = False,
    http: Annotated[bool, typer.Option("--http", help="HTTP mode: events and interactivity at /slack/events")] = False,
    port: Annotated[int, typer.Option(help="HTTP mode port")] = 3000,
    host: Annotated[str, typer.Option(help="HTTP mode address")] = "0.0.0.0",
    workers: Annotated[int, typer.Option(help="agent runs in this many worker processes (0: threads in the app "
                                              "process)", min=0)] = 0,
    intake_workers: Annotated[int, typer.Option(help="with --workers: processes for intake (claims, first reply)",
                                                min=1)] = 1,
    worker_nice: Annotated[int, typer.Option(help="with --workers: CPU niceness added to worker processes, so "
                                                  "runs yield to acks", min=0, max=19)] = 19,
) -> None:
    """Run the Slack app. Tokens come from SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, SLACK_API_URL."""

    from slack_app.server import SetupError, run_http, run_socket_mode

    if socket == http:
        console.print("[red]Choose one:[/red] --socket or --http")
        raise typer.Exit(2)
    settings = config_or_exit(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = {"workers": workers, "intake_processes": intake_workers, "worker_nice": worker_nice}
        run_socket_mode(settings, **options) if socket else run_http(settings, host, port, **options)
    except SetupError as exc:
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def exit_code(result: RunResult) -> int:
    failed = result.error is not None or any(r.status in ("failed", "purged_unverified") for r in result.results)
    return 1 if failed else 0


def emit(result: RunResult, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        render(result)


def show_step(node: str, update: dict) -> None:
    """Live narration while the graph runs: what was understood, then the plan, before anything is purged."""
    if node == "resolve" and update.get("urls"):
        urls = update["urls"]
        console.print(f"[bold]Understood {len(urls)} URL(s):[/bold]")
        for url in urls[:50]:
            console.print(f"  {url}", markup=False)
        if len(urls) > 50:
            console.print(f"  … and {len(urls) - 50} more")
    elif node == "plan" and update.get("plan"):
        plan = Plan.model_validate(update["plan"])
        console.print(plan_table(plan))
    elif node in ("execute", "verify"):
        console.print(f"[dim]· {node} done[/dim]")


def render(result: RunResult) -> None:
    """The reply as written: it quotes what people typed, so it is never read as Rich markup."""
    if result.pending:
        console.print(f"[yellow]Waiting for approval[/yellow] (request id [cyan]{result.thread_id}[/cyan]): ", end="")
        console.print(f"{result.pending['reason']}. Approvers: {result.pending['approvers']}.", markup=False)
        return
    console.print(result.reply, markup=False)


def plan_table(plan: Plan) -> Table:
    title = f"Plan: {len(plan.pages)} pages × layers, {plan.purge_count} purges"
    table = Table(title=title, show_lines=False)
    for column in ("page", "layer", "operation", "why"):
        table.add_column(column)
    for item in plan.items[:200]:  # Text, not markup: URLs, tags and reasons come from people and origins
        table.add_row(Text(item.url), Text(item.layer),
                      Text(f"{item.operation.value} {item.target if item.target != item.url else ''}"),
                      Text(item.reason))
    if len(plan.items) > 200:
        table.caption = f"… {len(plan.items) - 200} more rows (use --json for all)"
    return table


# --- the audit trail: history, stats, and the database (agent/audit.py, agent/storage.py) ---------------------

db_app = typer.Typer(help="The database: create/migrate the schema, prune old audit rows.", no_args_is_help=True)
app.add_typer(db_app, name="db")
SinceOption = Annotated[Optional[str], typer.Option("--since", help="24h, 7d, 30m, 2w, or a date (2026-11-01)")]


def storage_or_exit(path: Path | None):
    """(config or None, database URL). Without a config file, $CACHEBOT_DATABASE_URL alone is enough."""
    from agent.config import StorageConfig
    from agent.storage import ENV_VAR, resolve_database_url

    try:
        settings = load_config(path)
    except ConfigError as exc:
        if path is None and os.environ.get(ENV_VAR):
            return None, os.environ[ENV_VAR]
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    return settings, resolve_database_url(settings.storage or StorageConfig())


def audit_or_exit(path: Path | None):
    from agent.audit import AuditStore

    settings, url = storage_or_exit(path)
    return AuditStore.open(url, config=settings)


def since_or_exit(value: str | None):
    from agent.audit import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        console.print(f"[red]--since:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command()
def history(
    url: Annotated[Optional[str], typer.Option("--url", help="requests that purged this page (dependents too)")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="requests made by this user")] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(help="at most this many requests")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="print the requests as JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Past purge requests, newest first: who asked, from where, what, whether every layer was verified fresh."""
    from agent.audit import describe

    since_at = since_or_exit(since)
    store = audit_or_exit(config)
    try:
        entries = store.history(url=url, user=user, since=since_at, limit=limit)
    except ValueError as exc:
        console.print(f"[red]--url:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        console.print("No purge requests recorded" + (" for that query." if url or user or since else "."))
        return
    for entry in entries:
        console.print(describe(entry), soft_wrap=True, markup=False)
        if entry.not_confirmed and entry.match is None:
            console.print(f"    not confirmed fresh: {', '.join(entry.not_confirmed[:5])}", soft_wrap=True,
                          markup=False)


@app.command()
def stats(
    since: SinceOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Purges per site and layer, most-purged pages, layers most often stale/failing, median time to verified."""
    since_at = since_or_exit(since)
    store = audit_or_exit(config)
    try:
        figures = store.stats(since=since_at)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps(figures, indent=2))
        return
    median = figures["median_seconds_to_verified"]
    console.print(f"[bold]{figures['requests']} requests[/bold]" + (f" since {figures['since']}" if since else "")
                  + f": {figures['verified_requests']} verified fresh, {figures['failed_requests']} not confirmed; "
                  + f"median request → verified: {'n/a' if median is None else f'{median:.1f} s'}")
    table = Table(title="Purges per site and layer")
    for column in ("site", "layer", "purged", "verified", "unverified", "failed", "stale", "not cached"):
        table.add_column(column)
    for row in figures["per_site_layer"]:
        table.add_row(row["site"], row["layer"], *(str(row[k]) for k in
                      ("purged", "verified", "unverified", "failed", "stale", "not_cached")))
    console.print(table)
    if figures["most_purged"]:
        console.print("[bold]Most purged pages:[/bold]")
        for row in figures["most_purged"]:
            console.print(f"  {row['requests']:>4}× {row['url']}", soft_wrap=True, markup=False)
    if figures["problem_layers"]:
        console.print("[bold]Layers most often stale or failing:[/bold]")
        for row in figures["problem_layers"]:
            console.print(f"  {row['site']}/{row['layer']}: {row['stale']} stale after purge, {row['failed']} failed, "
                          f"{row['unverified']} unverified")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the schema (audit tables via Alembic; PostgreSQL checkpoint tables). Idempotent."""
    from agent.checkpointing import open_checkpointer
    from agent.storage import display_url, head_revision, is_postgres, upgrade

    settings, url = storage_or_exit(config)
    upgrade(url)
    if is_postgres(url):
        open_checkpointer(url, "").close()  # PostgresSaver.setup()
    console.print(f"{display_url(url)}: schema at revision {head_revision()}", soft_wrap=True)


@db_app.command("prune")
def db_prune(
    days: Annotated[Optional[float], typer.Option("--days", help="default: storage.retention_days (90)")] = None,
    config: ConfigOption = None,
) -> None:
    """Delete audit rows older than the retention period (also done on every start)."""
    from agent.config import StorageConfig

    settings, _ = storage_or_exit(config)
    keep = days if days is not None else (settings.storage if settings else StorageConfig()).retention_days
    store = audit_or_exit(config)
    try:
        removed = store.prune(older_than_days=keep)
    finally:
        store.close()
    console.print(f"deleted {removed} request(s) older than {keep:g} days, with their plans, decisions and results")


@app.command()
def recover(
    config: ConfigOption = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume",
                                         help="finish interrupted runs from their last checkpoint (default), "
                                              "or only mark them interrupted")] = True,
) -> None:
    """Finish (or mark interrupted) the purges a process was sending when it died. `cachebot slack` does this on
    start; Slack threads are told when SLACK_BOT_TOKEN is set. Pending approvals stay pending."""
    from agent.recovery import recover as recover_runs

    settings = config_or_exit(config)
    notify, front = None, None
    with Agent(settings) as agent:
        if os.environ.get("SLACK_BOT_TOKEN"):
            from slack_app.app import SlackFrontEnd
            from slack_app.slack_api import make_client

            front = SlackFrontEnd(agent, make_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL")),
                                  signing_secret=os.environ.get("SLACK_SIGNING_SECRET", "unused"),
                                  token_verification=False)
            notify = front.tell_recovered
        try:
            done = recover_runs(agent, resume=resume, notify=notify)
        finally:
            if front is not None:
                front.close()
    if not done:
        console.print("Nothing to recover.")
    for item in done:
        console.print(f"{item.thread_id}: {item.outcome}" + (f" ({item.error})" if item.error else ""), soft_wrap=True,
                      markup=False)


@app.command()
def digest(
    config: ConfigOption = None,
    post: Annotated[bool, typer.Option("--post", help="post it to the digest channel (SLACK_BOT_TOKEN, SLACK_API_URL)")] = False,
) -> None:
    """The weekly usage digest (config `digest`): printed, or posted to Slack with --post."""
    from agent.audit import digest_text
    from agent.config import DigestConfig
    from slack_app.digest import digest_figures, post_digest

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
            from slack_app.slack_api import make_client

            client = make_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
            text = post_digest(store, client, wanted)
            console.print(f"posted the digest to {wanted.channel}")
        else:
            shown = wanted or DigestConfig(channel="-")
            text = digest_text(digest_figures(store, shown), days=shown.days)
            console.print(text, soft_wrap=True, markup=False)
    finally:
        store.close()


from agent.demo import demo_app  # noqa: E402  (registered last: the demo is an add-on of the CLI)

app.add_typer(demo_app, name="demo")


if __name__ == "__main__":  # python -m agent.cli …
    app()
