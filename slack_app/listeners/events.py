"""Message events: ack, and hand each one on as a ``NewEvent``; intake decides whether it is a request.
``app_home_opened``: ack, and hand it on as a ``HomeOpened`` (intake publishes the Home tab).
``assistant_thread_started``: ack, and hand it on as an ``AssistantThreadStarted`` (suggested prompts)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from slack_app.jobs import AssistantThreadStarted, HomeOpened, Intake, NewEvent, hand_on

# What the app listens to (manifest event -> Bolt event type). tests/slack_app/test_manifest.py keeps
# manifest.yml in step with it.
EVENT_SUBSCRIPTIONS = {"app_mention": "app_mention", "message.im": "message", "message.channels": "message",
                       "app_home_opened": "app_home_opened", "assistant_thread_started": "assistant_thread_started"}
MESSAGE_EVENTS = ("app_mention", "message")


def register(app: App, intake: Intake) -> None:
    """One listener for the message event types, one for the Home tab, one for new assistant threads."""

    def on_event(ack, body: dict[str, Any], event: dict[str, Any], context, request) -> None:
        retry_num = request.headers.get("x-slack-retry-num", [None])[0]
        hand_on(intake, lambda: NewEvent(event=event, event_id=body.get("event_id"),
                                          bot_user_id=context.bot_user_id, retry_num=retry_num), ack)

    def on_home(ack, event: dict[str, Any]) -> None:
        hand_on(intake, lambda: HomeOpened(user=str(event.get("user") or ""), tab=str(event.get("tab") or "")),
                 ack)

    def on_assistant_thread(ack, event: dict[str, Any]) -> None:
        thread = event.get("assistant_thread") or {}
        hand_on(intake, lambda: AssistantThreadStarted(channel=str(thread.get("channel_id") or ""),
                                                        thread_ts=str(thread.get("thread_ts") or ""),
                                                        user=str(thread.get("user_id") or "")), ack)

    for event_type in MESSAGE_EVENTS:
        app.event(event_type)(on_event)
    app.event("app_home_opened")(on_home)
    app.event("assistant_thread_started")(on_assistant_thread)

