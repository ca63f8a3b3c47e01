"""The layer interface: the words a backend writes for what it did are the purge statuses."""

from __future__ import annotations

import pytest

from agent.layers.base import Outcome
from agent.models import PurgeStatus


def test_the_words_backends_write_are_purge_statuses_and_a_misspelt_one_fails_at_once():
    words = ("purged", "not_cached", "skipped", "failed")
    assert [Outcome(word).status for word in words] == [PurgeStatus.PURGED, PurgeStatus.NOT_CACHED,
                                                        PurgeStatus.SKIPPED, PurgeStatus.FAILED]
    with pytest.raises(ValueError):
        Outcome("purgd")
