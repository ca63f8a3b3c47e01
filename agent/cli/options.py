"""What the commands share: their options, who is asking, and loading the config or the audit trail — each
``…_or_exit`` says what is wrong in one line and exits 2 instead of raising."""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from agent.cli.output import console
from agent.periods import parse_since

if TYPE_CHECKING:
    from agent.config import AppConfig
    from agent.storage.audit import AuditStore

# The configuration (pydantic, and each configured layer's backend) and the audit store (SQLAlchemy, Alembic) are
# imported where they are used, not here: every command module imports this one, and `cachebot --help` should not
# pay for them (tests/agent/cli/test_startup.py keeps it so).

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default $CACHEBOT_CONFIG or ./cachebot.yaml)")]
UserOption = Annotated[Optional[str], typer.Option("--as", help="who is asking (default: your login name)")]
SinceOption = Annotated[Optional[str], typer.Option("--since", help="24h, 7d, 30m, 2w, or a date (2026-11-01)")]


def current_user(explicit: str | None) -> str:
    return explicit or os.environ.get("CACHEBOT_USER") or getpass.getuser()


def config_or_exit(path: Path | None) -> AppConfig:
    from agent.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def storage_or_exit(path: Path | None) -> tuple[AppConfig | None, str]:
    """(config or None, database URL). Without a config file, $CACHEBOT_DATABASE_URL alone is enough."""
    from agent.config import ConfigError, StorageConfig, load_config
    from agent.storage.database import ENV_VAR, Database

    try:
        settings = load_config(path)
    except ConfigError as exc:
        if path is None and os.environ.get(ENV_VAR):
            return None, os.environ[ENV_VAR]
        console.print(f"[red]Cannot start:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    return settings, Database.choose(settings.storage or StorageConfig()).url


def audit_or_exit(path: Path | None) -> AuditStore:
    from agent.storage.audit import AuditStore

    settings, url = storage_or_exit(path)
    return AuditStore.open(url, config=settings)


def since_or_exit(value: str | None) -> datetime | None:
    try:
        return parse_since(value)
    except ValueError as exc:
        console.print(f"[red]--since:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
