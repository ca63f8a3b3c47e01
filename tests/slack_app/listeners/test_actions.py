"""Button listeners ack and hand on a typed click; who clicked where is checked by intake, not here."""

from __future__ import annotations

import pytest

from slack_app import blocks as kit
from slack_app.jobs import ApprovalClick, OfferClick
from slack_app.listeners import actions
from tests.slack_app.listeners.conftest import RecordingIntake

BODY = {"type": "block_actions", "user": {"id": "UALICE"}, "channel": {"id": "C1"}}


def test_every_button_we_render_has_a_listener(app, intake):
    actions.register(app, intake)
    assert set(app.actions) == set(actions.ACTION_IDS)


@pytest.mark.parametrize("action_id, job_type", [(kit.APPROVE_ACTION, ApprovalClick), (kit.DENY_ACTION, ApprovalClick),
                                                 (kit.OFFER_PURGE_ACTION, OfferClick),
                                                 (kit.OFFER_CHECK_ACTION, OfferClick)])
def test_a_click_is_handed_on_as_its_job_before_the_ack(app, intake, action_id, job_type):
    actions.register(app, intake)
    action = {"action_id": action_id, "value": '{"run": "C1:1.2"}'}
    app.actions[action_id](ack=intake.ack, body=BODY, action=action)
    assert intake.jobs == [job_type(body=BODY, action=action)]
    assert intake.steps == ["take_in", "ack", "received"]


def test_a_click_is_acked_even_when_it_cannot_be_handed_on(app):
    failing = RecordingIntake(fail=True)
    actions.register(app, failing)
    with pytest.raises(RuntimeError):
        app.actions[kit.APPROVE_ACTION](ack=failing.ack, body=BODY, action={"action_id": kit.APPROVE_ACTION})
    assert failing.steps == ["take_in", "ack", "received"]
