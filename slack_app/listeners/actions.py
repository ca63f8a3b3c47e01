"""Button clicks: ack, and hand each one on (Approve/Deny as ``ApprovalClick``, an offer's buttons as
``OfferClick``, Request again on an expired card as ``RequestAgainClick``); intake checks who clicked where, and
claims the decision."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from slack_app import blocks as kit
from slack_app.jobs import ApprovalClick, Intake, OfferClick, RequestAgainClick, hand_on

# Every button we render. tests/slack_app/test_manifest.py checks that each has a listener.
ACTION_IDS = kit.ACTION_IDS + kit.OFFER_ACTION_IDS + kit.AGAIN_ACTION_IDS


def register(app: App, intake: Intake) -> None:
    def on_approval(ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        hand_on(intake, lambda: ApprovalClick(body=body, action=action), ack)

    def on_offer(ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        hand_on(intake, lambda: OfferClick(body=body, action=action), ack)

    def on_again(ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        hand_on(intake, lambda: RequestAgainClick(body=body, action=action), ack)

    for action_id in kit.AGAIN_ACTION_IDS:
        app.action(action_id)(on_again)
    for action_id in kit.ACTION_IDS:
        app.action(action_id)(on_approval)
    for action_id in kit.OFFER_ACTION_IDS:
        app.action(action_id)(on_offer)

