"""Jobs cross process boundaries (worker mode) and are shared between threads: picklable and immutable."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from slack_app.jobs import (
    AnswerPrivately,
    AnswerRequest,
    ApplyDecision,
    ApprovalClick,
    AssistantThreadStarted,
    HomeOpened,
    MessageShortcut,
    ModalSubmitted,
    NewEvent,
    OfferClick,
    RecoverRuns,
    SlashCommand,
    TakeOffer,
)

JOBS = [
    NewEvent(event={"type": "app_mention", "text": "help"}, event_id="Ev1", bot_user_id="UBOT", retry_num="1"),
    ApprovalClick(body={"user": {"id": "UALICE"}}, action={"action_id": "cachebot_approve"}),
    OfferClick(body={"user": {"id": "UBOB"}}, action={"action_id": "cachebot_offer_check"}),
    AnswerRequest(channel="C1", thread_ts="1.2", thread_id="C1:1.2", user="UBOB", message="help", status_ts="1.3"),
    ApplyDecision(channel="C1", thread_ts="1.2", thread_id="C1:1.2", interrupt_id="i1", decision="approve",
                  clicker="UALICE", message_ts="1.4", claim="decision:C1:1.2:i1"),
    TakeOffer(channel="C1", thread_ts="1.2", thread_id="C1:1.2", offer_id="o1", choice="purge", clicker="UBOB",
              status_ts=None),
    RecoverRuns(resume=False),
    SlashCommand(command={"command": "/cachebot", "text": "help", "user_id": "UBOB"}),
    HomeOpened(user="UBOB", tab="home"),
    AssistantThreadStarted(channel="DBOB", thread_ts="1.2", user="UBOB"),
    MessageShortcut(body={"type": "message_action", "callback_id": "cachebot_clear_links"}),
    ModalSubmitted(body={"type": "view_submission", "view": {"id": "V1"}}),
    AnswerRequest(channel="C1", thread_ts="1.2", thread_id="C1:1.2", user="UBOB", message="purge x",
                  status_ts="1.3", intent="purge"),
    AnswerPrivately(channel="C1", thread_id="C1:command-1", user="UBOB", message="check x", intent="check",
                    response_url="https://hooks.slack.com/commands/T0/1/x"),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda job: type(job).__name__)
def test_a_job_survives_pickling_and_cannot_be_changed(job):
    assert pickle.loads(pickle.dumps(job)) == job
    field = dataclasses.fields(job)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(job, field, None)
