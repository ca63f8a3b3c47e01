"""Commands and hooks that other packages add to ``cachebot``, found through entry points, so the terminal front
end never imports them (the Slack app's are declared in pyproject.toml):

- ``cachebot.commands``: ``register(app)`` adds commands to the ``cachebot`` typer app (``slack``, ``digest``);
- ``cachebot.recovery_notifiers``: ``notifier(agent)`` is a context manager giving a function that tells a
  request's people about its recovered run (``agent.service.recovery.Notify``), or None when it cannot (no token).

Entry points are read from the installed package's metadata: after changing them, ``pip install -e .`` again
(``make install`` does when pyproject.toml changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the agent itself is imported by the commands that run it (agent/cli/ask.py)
    from agent.service.agent import Agent
    from agent.service.recovery import Notify, Recovered

COMMANDS = "cachebot.commands"
RECOVERY_NOTIFIERS = "cachebot.recovery_notifiers"

RecoveryNotifier = Callable[["Agent"], AbstractContextManager["Notify | None"]]


def add_plugin_commands(app: typer.Typer) -> None:
    for entry in sorted(entry_points(group=COMMANDS), key=lambda e: e.name):
        register: Callable[[typer.Typer], None] = entry.load()
        register(app)


@contextmanager
def recovery_notifications(agent: Agent) -> Iterator[Notify | None]:
    """One ``Notify`` telling every plug-in that can tell (Slack threads, with SLACK_BOT_TOKEN), or None; each
    plug-in's notifier is closed on leaving."""
    with ExitStack() as opened:
        tellers = []
        for entry in sorted(entry_points(group=RECOVERY_NOTIFIERS), key=lambda e: e.name):
            notifier: RecoveryNotifier = entry.load()
            notify = opened.enter_context(notifier(agent))
            if notify is not None:
                tellers.append(notify)
        yield tell_each(tellers) if tellers else None


def tell_each(tellers: list[Notify]) -> Notify:
    def tell(item: Recovered) -> None:
        for notify in tellers:
            notify(item)

    return tell
