"""The ``/cachebot`` slash command: ack, and hand it on as a ``SlashCommand``; intake reads the subcommand.

Slack shows "operation_timeout" when a command is not acked within 3 s, so nothing here waits on anything.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from slack_app.jobs import Intake, SlashCommand, hand_on

# Every slash command the app answers. tests/slack_app/test_manifest.py keeps manifest.yml in step with it.
COMMANDS = ("/cachebot",)


def register(app: App, intake: Intake) -> None:
    def on_command(ack, command: dict[str, Any]) -> None:
        hand_on(intake, lambda: SlashCommand(command=dict(command)), ack)

    for name in COMMANDS:
        app.command(name)(on_command)
