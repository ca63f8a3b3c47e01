"""``cachebot history`` and ``cachebot stats``: the audit trail, read back (agent/audit.py)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.options import ConfigOption, SinceOption, audit_or_exit, since_or_exit
from agent.cli.output import console

# The words (and through them the records, pydantic models) are imported when a command runs, not for `--help`.


def history(
    url: Annotated[Optional[str], typer.Option("--url", help="requests that purged this page (dependents too)")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="requests made by this user")] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(help="at most this many requests")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="print the requests as JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Past purge requests, newest first: who asked, from where, what, whether every layer was verified fresh."""
    from agent.words import describe

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
