"""What every HTTP cache shares (agent/layers/http.py): judging a layer's answer against the origin's when a
body was bigger than the byte cap, or a look ran out of time. (Plain judging is in test_base.py.)"""

from __future__ import annotations

from agent.layers.base import Observation
from agent.layers.http import judge

CAP = 64 * 1024
BIG = dict(reachable=True, status_code=200, etag='"v2"', last_modified="Wed, 25 Nov 2026 12:00:00 GMT",
           content_length="3145728", body_hash="first-64k", body_bytes=CAP, body_capped=True)


def capped(**changes) -> Observation:
    return Observation(**{**BIG, **changes})


def test_a_capped_body_is_fresh_when_its_first_bytes_and_headers_match_and_the_evidence_says_so():
    found = judge("edge", capped(cache_status="MISS"), capped())
    assert found.verified is True
    assert found.evidence == ("MISS→fresh (the first 64 KiB and ETag, Last-Modified, Content-Length match origin; "
                              "only the first 64 KiB compared (limits.max_body_bytes))")


def test_a_capped_body_is_stale_when_any_known_part_differs():
    origin = capped()
    assert judge("edge", capped(cache_status="HIT", body_hash="other"), origin).evidence == \
        "still stale: HIT, the first 64 KiB differ from origin"
    longer = judge("edge", capped(cache_status="HIT", content_length="4000000"), origin)
    assert longer.verified is False and "Content-Length 4000000≠3145728" in longer.evidence
    older = judge("edge", capped(cache_status="HIT", etag='"v1"'), origin)
    assert older.verified is False and 'ETag "v1"≠"v2"' in older.evidence


def test_a_capped_body_against_a_small_one_differs():
    small = Observation(True, 200, None, '"v2"', None, "whole", body_bytes=1000, body_capped=False)
    found = judge("edge", capped(cache_status="HIT"), small)
    assert found.verified is False and "body size differs from origin" in found.evidence


def test_a_capped_body_without_headers_to_compare_is_not_called_fresh():
    bare = dict(etag=None, last_modified=None, content_length=None)
    found = judge("edge", capped(cache_status="HIT", **bare), capped(**bare))
    assert found.verified is None and "cannot tell if fresh" in found.evidence


def test_a_look_that_ran_out_of_time_is_unverified_not_unreachable():
    seen = Observation(False, error="timed out: no complete answer within 2 s (the request's deadline "
                                    "(limits.deadline_seconds))")
    found = judge("edge", seen, capped())
    assert found.verified is None and found.evidence.startswith("unverified: edge timed out")
