"""Jobs cross process boundaries (worker mode) and are shared between threads: picklable and immutable."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from slack_app.jobs import (
    AnswerRequest,
    ApplyDecision,
    ApprovalClick,
    NewEvent,
    OfferClick,
    RecoverRuns,
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
]


@pytest.mark.parametrize("job", JOBS, ids=lambda job: type(job).__name__)
def test_a_job_survives_pickling_and_cannot_be_changed(job):
    assert pickle.loads(pickle.dumps(job)) == job
    field = dataclasses.fields(job)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(job, field, None)
