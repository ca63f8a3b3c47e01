"""The ``cachebot`` command: which commands there are (each in its own module), and those plug-ins add."""

from __future__ import annotations

import typer

from agent.cli.ask import approve, ask, deny
from agent.cli.chat import chat
from agent.cli.db import db_app
from agent.cli.draw import graph
from agent.cli.history import history, stats
from agent.cli.plugins import add_plugin_commands
from agent.cli.recover import recover
from agent.cli.trace import trace
from agent.cli.web import web
from agent.demo.commands import demo_app

app = typer.Typer(help="cachebot: purge web caches by asking in plain language, and verify they are fresh.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)

for command in (ask, approve, deny, chat, graph, history, stats, recover, trace, web):
    app.command()(command)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
add_plugin_commands(app)  # the Slack app's `slack` and `digest` (slack_app/cli.py), through entry points

