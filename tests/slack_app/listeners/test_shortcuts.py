"""The message shortcut and its modal's submission: acked and handed on untouched."""

from __future__ import annotations

import pytest

from slack_app import blocks as kit
from slack_app.jobs import MessageShortcut, ModalSubmitted
from slack_app.listeners import shortcuts
from tests.slack_app.listeners.conftest import RecordingIntake

SHORTCUT = {"type": "message_action", "callback_id": kit.CLEAR_LINKS_SHORTCUT, "trigger_id": "1.2.3"}
SUBMISSION = {"type": "view_submission", "view": {"id": "V1", "callback_id": kit.CLEAR_LINKS_VIEW}}


def test_the_shortcut_and_its_modal_have_listeners(app, intake):
    shortcuts.register(app, intake)
    assert set(app.message_shortcuts) == {kit.CLEAR_LINKS_SHORTCUT}
    assert set(app.view_submissions) == {kit.CLEAR_LINKS_VIEW}


def test_each_is_handed_on_untouched_before_the_ack(app, intake):
    shortcuts.register(app, intake)
    app.message_shortcuts[kit.CLEAR_LINKS_SHORTCUT](ack=intake.ack, body=SHORTCUT)
    app.view_submissions[kit.CLEAR_LINKS_VIEW](ack=intake.ack, body=SUBMISSION)
    assert intake.jobs == [MessageShortcut(body=SHORTCUT), ModalSubmitted(body=SUBMISSION)]
    assert intake.steps == ["take_in", "ack", "received"] * 2


def test_a_submission_is_acked_even_when_it_cannot_be_handed_on(app):
    failing = RecordingIntake(fail=True)
    shortcuts.register(app, failing)
    with pytest.raises(RuntimeError):
        app.view_submissions[kit.CLEAR_LINKS_VIEW](ack=failing.ack, body=SUBMISSION)
    assert failing.steps == ["take_in", "ack", "received"]  # the modal closes; Slack does not show an error
