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
