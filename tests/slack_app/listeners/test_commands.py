"""The slash command listener acks and hands the command on untouched, nothing else."""

from __future__ import annotations

import pytest

from slack_app.jobs import SlashCommand
from slack_app.listeners import commands
from tests.slack_app.listeners.conftest import RecordingIntake

COMMAND = {"command": "/cachebot", "text": "purge https://shop.example/", "user_id": "UBOB", "channel_id": "C1",
           "trigger_id": "1.2.3", "response_url": "https://hooks.slack.com/commands/T0/1/x"}


def test_cachebot_is_the_command_registered(app, intake):
    commands.register(app, intake)
    assert set(app.commands) == set(commands.COMMANDS) == {"/cachebot"}


def test_a_command_is_handed_on_untouched_before_the_ack(app, intake):
    commands.register(app, intake)
    app.commands["/cachebot"](ack=intake.ack, command=COMMAND)
    assert intake.jobs == [SlashCommand(command=COMMAND)]
    assert intake.steps == ["take_in", "ack", "received"]


def test_a_command_is_acked_even_when_it_cannot_be_handed_on(app):
    failing = RecordingIntake(fail=True)
    commands.register(app, failing)
    with pytest.raises(RuntimeError):
        app.commands["/cachebot"](ack=failing.ack, command=COMMAND)
    assert failing.steps == ["take_in", "ack", "received"]
