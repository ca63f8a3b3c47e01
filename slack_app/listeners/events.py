"""Message events: ack, and hand each one on as a ``NewEvent``; intake decides whether it is a request."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from slack_app.jobs import Intake, NewEvent

# What the app listens to (manifest event -> Bolt event type). tests/slack_app/test_manifest.py keeps
# manifest.yml in step with it.
EVENT_SUBSCRIPTIONS = {"app_mention": "app_mention", "message.im": "message", "message.channels": "message"}


def register(app: App, intake: Intake) -> None:
    """One listener for every event type we subscribe to."""

    def on_event(ack, body: dict[str, Any], event: dict[str, Any], context, request) -> None:
        # queued before the ack (so "acked" implies "queued"); acked whatever happens
        try:
            retry_num = request.headers.get("x-slack-retry-num", [None])[0]
            intake.take_in(NewEvent(event=event, event_id=body.get("event_id"), bot_user_id=context.bot_user_id,
                                    retry_num=retry_num))
        finally:
            ack()
            intake.count_received()

    for event_type in sorted(set(EVENT_SUBSCRIPTIONS.values())):
        app.event(event_type)(on_event)
