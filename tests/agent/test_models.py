"""The status words: what a layer answered (PurgeStatus) and the verdict after verification (ItemStatus)."""

from __future__ import annotations

import pytest

from agent.models import ItemStatus, Operation, PurgeOutcome, PurgeStatus, item_status

P, N, S, F = PurgeStatus.PURGED, PurgeStatus.NOT_CACHED, PurgeStatus.SKIPPED, PurgeStatus.FAILED


@pytest.mark.parametrize(("answer", "fresh", "verdict"), [
    (P, True, ItemStatus.PURGED_VERIFIED),
    (P, None, ItemStatus.PURGED_UNVERIFIED),
    (P, False, ItemStatus.FAILED),  # accepted, still stale: stale_after_purge
    (N, True, ItemStatus.NOT_CACHED),
    (N, None, ItemStatus.PURGED_UNVERIFIED),
    (N, False, ItemStatus.FAILED),
    (S, None, ItemStatus.SKIPPED),
    (S, True, ItemStatus.SKIPPED),  # never sent: what a later look saw does not make it done
    (F, None, ItemStatus.FAILED),
    (F, True, ItemStatus.FAILED),  # the purge did not go through, however the page looks
])
def test_item_status_maps_every_answer_and_look_to_one_verdict(answer, fresh, verdict):
    assert item_status(answer, fresh) == verdict


def test_a_purge_outcome_reads_the_json_a_checkpoint_or_progress_event_held():
    outcome = PurgeOutcome.model_validate({"layer": "edge", "operation": "purge_url", "target": "https://a.example/",
                                           "status": "purged", "detail": "", "attempts": 2})
    assert (outcome.operation, outcome.status, outcome.attempts, outcome.repaired) == (Operation.PURGE_URL, P, 2, False)
    assert outcome.model_dump(mode="json")["status"] == "purged"


def test_the_engine_s_answers_are_the_same_records_and_stay_unchanged():
    built = PurgeOutcome.answer("edge", Operation.PURGE_URL, "https://a.example/", "purged", "", 1)
    assert built == PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target="https://a.example/", status=P,
                                 attempts=1)
    again = built.model_copy(update={"attempts": 3, "repaired": True})
    assert (again.attempts, again.repaired, built.attempts, built.repaired) == (3, True, 1, False)
    assert "repaired" not in PurgeOutcome.answer("edge", Operation.PURGE_URL, "https://b.example/", P).model_fields_set
    with pytest.raises(ValueError):
        built.attempts = 2  # a record of what a layer said
