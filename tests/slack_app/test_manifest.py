"""manifest.yml and the code agree: events, actions, scopes, interactivity — statically and by behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slack_app import blocks as kit
from slack_app.listeners.actions import ACTION_IDS
from slack_app.listeners.commands import COMMANDS
from slack_app.listeners.events import EVENT_SUBSCRIPTIONS
from slack_app.listeners.shortcuts import MESSAGE_SHORTCUTS
from slack_app.server import EVENTS_PATH
from tests.fakes.slack import (
    assistant_thread_started,
    block_actions,
    home_opened,
    mention,
    message,
    message_action,
    slash_command,
)
from tests.slack_app.conftest import CHANNEL, new_ts

MANIFEST = yaml.safe_load((Path(__file__).parents[2] / "slack_app" / "manifest.yml").read_text())
SCOPES = {"app_mentions:read", "assistant:write", "chat:write", "commands", "im:history", "channels:history",
          "groups:history", "files:write", "usergroups:read", "users:read"}


def test_events_and_scopes_match_the_code():
    settings = MANIFEST["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == set(EVENT_SUBSCRIPTIONS)
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == SCOPES
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith(EVENTS_PATH)
    assert settings["event_subscriptions"]["request_url"].endswith(EVENTS_PATH)
    assert "socket_mode_enabled" in settings
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True  # app_home_opened publishes it
    assert "assistant_view" in MANIFEST["features"]  # assistant_thread_started needs the agent view on


def test_the_slash_command_and_the_shortcut_match_the_code():
    features = MANIFEST["features"]
    assert {c["command"] for c in features["slash_commands"]} == set(COMMANDS)
    assert all(c["url"].endswith(EVENTS_PATH) for c in features["slash_commands"])
    assert {s["callback_id"] for s in features["shortcuts"] if s["type"] == "message"} == set(MESSAGE_SHORTCUTS)
    assert not [s for s in features["shortcuts"] if s["type"] != "message"]  # no global shortcut: none listened to


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_listener_and_unknown_ones_do_not(slack, fake_slack, command):
    h = slack()
    url = fake_slack.response_url()
    assert h.sender.command(slash_command("help", user="UBOB", channel=CHANNEL, response_url=url,
                                          command=command))[0] == 200
    h.wait_received(1)
    assert h.sender.command(slash_command("help", user="UBOB", channel=CHANNEL, response_url=url,
                                          command="/notcachebot"))[0] == 404
    h.idle()


@pytest.mark.parametrize("callback_id", MESSAGE_SHORTCUTS)
def test_every_shortcut_has_a_listener_and_unknown_ones_do_not(slack, callback_id):
    h = slack()
    known = message_action(user="UBOB", channel=CHANNEL, message_ts=new_ts(), text="hi", callback_id=callback_id)
    assert h.sender.interaction(known)[0] == 200
    h.wait_received(1)
    unknown = message_action(user="UBOB", channel=CHANNEL, message_ts=new_ts(), text="hi", callback_id="not_ours")
    assert h.sender.interaction(unknown)[0] == 404
    h.idle()


def test_every_button_we_render_has_a_registered_action():
    from agent.models import Intent, RunResult

    result = RunResult(thread_id=f"{CHANNEL}:1.2", intent=Intent.PURGE, reply="",
                       pending={"interrupt_id": "i1", "reason": "r", "requester": "UBOB", "approvers": "<@UALICE>",
                                "expires_at": "2026-11-25T12:30:00+00:00", "purge_count": 30, "pages": 10})
    offer = RunResult(thread_id=f"{CHANNEL}:1.2", intent=Intent.ASK, reply="", pages=["https://shop.example/"])
    rendered = {e["action_id"] for blocks in (kit.approval_blocks(result), kit.offer_blocks(offer, "o1"),
                                              kit.expired_blocks(result, None, "r1"))
                for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert rendered == set(ACTION_IDS)


def _event_for(kind: str) -> dict:
    ts = new_ts()
    if kind == "app_mention":
        return mention("help", user="UBOB", channel=CHANNEL, ts=ts)
    if kind == "app_home_opened":
        return home_opened("UBOB")
    if kind == "assistant_thread_started":
        return assistant_thread_started(user="UBOB", channel="DBOB", thread_ts=ts)
    channel_type = {"message.im": "im", "message.channels": "channel"}[kind]
    return message("help", user="UBOB", channel="DBOB" if channel_type == "im" else CHANNEL, ts=ts,
                   channel_type=channel_type)


@pytest.mark.parametrize("kind", sorted(EVENT_SUBSCRIPTIONS))
def test_every_manifest_event_has_a_listener(slack, kind):
    h = slack()
    assert h.send_event(_event_for(kind)) == 200  # Bolt answers 404 when no listener matches
    h.idle()


@pytest.mark.parametrize("action_id", ACTION_IDS)
def test_every_action_has_a_listener_and_unknown_ones_do_not(slack, action_id):
    h = slack()
    value = json.dumps({"run": f"{CHANNEL}:1.2", "interrupt": "nope", "offer": "nope", "request": "nope"})
    payload = block_actions(user="UALICE", channel=CHANNEL, message_ts="1.2", thread_ts="1.2", action_id=action_id,
                            value=value)
    assert h.sender.interaction(payload)[0] == 200
    h.wait_received(1)
    unknown = block_actions(user="UALICE", channel=CHANNEL, message_ts="1.2", thread_ts="1.2",
                            action_id="not_ours", value=value)
    assert h.sender.interaction(unknown)[0] == 404
    h.idle()
    assert "Nothing to" in h.ephemerals("UALICE")[0]  # no run at 1.2: a clear answer, nothing done
