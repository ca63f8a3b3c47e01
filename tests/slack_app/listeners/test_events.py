"""Event listeners ack and hand on a typed job, nothing else (what becomes a request is intake's business)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from slack_app.jobs import AssistantThreadStarted, HomeOpened, NewEvent
from slack_app.listeners import events
from tests.slack_app.listeners.conftest import RecordingIntake

EVENT = {"type": "app_mention", "user": "UBOB", "channel": "C1", "ts": "1.2", "text": "<@UBOT> help"}


def deliver(listener, intake: RecordingIntake, *, retry: str | None = None) -> None:
    headers = {"x-slack-retry-num": [retry]} if retry else {}
    listener(ack=intake.ack, body={"event_id": "Ev1", "event": EVENT}, event=EVENT,
             context=SimpleNamespace(bot_user_id="UBOT"), request=SimpleNamespace(headers=headers))


def test_every_subscribed_event_type_has_the_listener(app, intake):
    events.register(app, intake)
    assert set(app.events) == set(events.EVENT_SUBSCRIPTIONS.values()) == {
        "app_mention", "message", "app_home_opened", "assistant_thread_started"}


def test_an_event_is_handed_on_untouched_before_the_ack(app, intake):
    events.register(app, intake)
    deliver(app.events["app_mention"], intake, retry="1")
    assert intake.jobs == [NewEvent(event=EVENT, event_id="Ev1", bot_user_id="UBOT", retry_num="1")]
    assert intake.steps == ["take_in", "ack", "received"]  # "acked" implies "queued"


def test_a_first_delivery_has_no_retry_number(app, intake):
    events.register(app, intake)
    deliver(app.events["message"], intake)
    assert intake.jobs[0].retry_num is None


def test_an_event_is_acked_even_when_it_cannot_be_handed_on(app):
    failing = RecordingIntake(fail=True)
    events.register(app, failing)
    with pytest.raises(RuntimeError):
        deliver(app.events["app_mention"], failing)
    assert failing.steps == ["take_in", "ack", "received"]  # Slack must not retry a request we choked on


def test_opening_the_home_tab_is_handed_on_as_who_opened_which_tab(app, intake):
    events.register(app, intake)
    app.events["app_home_opened"](ack=intake.ack, event={"type": "app_home_opened", "user": "UBOB", "tab": "home",
                                                         "channel": "DBOB"})
    assert intake.jobs == [HomeOpened(user="UBOB", tab="home")]
    assert intake.steps == ["take_in", "ack", "received"]


def test_a_new_assistant_thread_is_handed_on_as_where_and_who(app, intake):
    events.register(app, intake)
    event = {"type": "assistant_thread_started", "assistant_thread": {"user_id": "UBOB", "channel_id": "DBOB",
                                                                      "thread_ts": "1.2", "context": {}}}
    app.events["assistant_thread_started"](ack=intake.ack, event=event)
    assert intake.jobs == [AssistantThreadStarted(channel="DBOB", thread_ts="1.2", user="UBOB")]
    assert intake.steps == ["take_in", "ack", "received"]
