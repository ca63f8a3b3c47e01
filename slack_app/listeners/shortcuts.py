"""The message shortcut "Clear caches for links in this message" and the modal it opens: ack, and hand each on
(``MessageShortcut``, ``ModalSubmitted``). Intake opens the modal (its ``trigger_id`` lasts 3 s) and starts
the run; the ack of a submission closes the modal."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from slack_app import blocks as kit
from slack_app.jobs import Intake, MessageShortcut, ModalSubmitted, hand_on

# Every shortcut we offer (callback ids). tests/slack_app/test_manifest.py keeps manifest.yml in step with it.
MESSAGE_SHORTCUTS = (kit.CLEAR_LINKS_SHORTCUT,)
VIEWS = (kit.CLEAR_LINKS_VIEW,)


def register(app: App, intake: Intake) -> None:
    def on_shortcut(ack, body: dict[str, Any]) -> None:
        hand_on(intake, lambda: MessageShortcut(body=body), ack)

    def on_submission(ack, body: dict[str, Any]) -> None:
        hand_on(intake, lambda: ModalSubmitted(body=body), ack)

    for callback_id in MESSAGE_SHORTCUTS:
        app.message_shortcut(callback_id)(on_shortcut)
    for callback_id in VIEWS:
        app.view_submission(callback_id)(on_submission)

