"""What every HTTP cache shares (agent/layers/http.py): judging a layer's answer against the origin's (also when a
body was bigger than the byte cap, or a look ran out of time), and refusing a password in an endpoint."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config
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


def test_a_weak_etag_of_a_cache_that_inflated_the_body_is_neither_proof_nor_alarm():
    """Varnish gunzips a gzip object for an identity look and weakens its tag ("…-gzip"): the other headers decide."""
    inflated = capped(cache_status="HIT", etag='W/"v2-gzip"', content_length=None)
    found = judge("varnish", inflated, capped())
    assert found.verified is True and "the first 64 KiB and Last-Modified match origin" in found.evidence
    older = judge("varnish", capped(cache_status="HIT", etag='W/"v1-gzip"', last_modified="Tue, 24 Nov 2026 "
                                                                                          "12:00:00 GMT"), capped())
    assert older.verified is False and "Last-Modified" in older.evidence
    assert judge("varnish", capped(cache_status="HIT", etag='W/"v2-gzip"', last_modified=None, content_length=None),
                 capped()).verified is None


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


def test_judge() -> None:
    origin = Observation(True, 200, None, '"new"', None, "h-new")
    stale = judge("varnish", Observation(True, 200, "HIT", '"old"', None, "h-old"), origin)
    assert stale.verified is False and stale.evidence == 'still stale: HIT, ETag "old"≠"new"'
    fresh = judge("varnish", Observation(True, 200, "MISS", '"new"', None, "h-new"), origin)
    assert fresh.verified is True and fresh.evidence == 'MISS→fresh (ETag "new" matches origin)'
    assert judge("varnish", Observation(False, error="timed out"), origin).verified is None
    assert judge("varnish", Observation(True, 503, "MISS"), origin).verified is None
    assert judge("varnish", Observation(True, 200, "MISS"), None).verified is True
    assert judge("varnish", Observation(True, 200, "HIT"), None).verified is None


HTTP_LAYERS = [
    {"kind": "varnish"},
    {"kind": "nginx"},
    {"kind": "webhook", "options": {"url_template": "{endpoint}/purge{path}"}},
    {"kind": "fastly", "credentials": {"api_key": "k"}, "options": {"service_id": "S1"}},
    {"kind": "cloudflare", "credentials": {"api_token": "t"}, "options": {"zone_id": "Z1"}},
]


@pytest.mark.parametrize("layer", HTTP_LAYERS, ids=lambda layer: layer["kind"])
def test_a_password_in_an_http_layers_endpoint_is_a_config_error(layer: dict) -> None:
    # httpx turned user:pw@ into Basic auth, aiohttp then refused the request: every purge failed at run time
    config = {"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["l"]}],
              "layers": [{"name": "l", "endpoint": "http://hookuser:s3cret@127.0.0.1:9", **layer}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.endpoint: must not contain a user name or password") as caught:
        parse_config(config)
    assert "s3cret" not in str(caught.value)


def test_judge_compares_whatever_status_the_origin_answers() -> None:
    gone = Observation(True, 404)
    assert judge("edge", Observation(True, 404, "MISS"), gone).evidence == \
        "deleted page: gone from edge (HTTP 404, as at the origin)"
    assert judge("edge", Observation(True, 404, "MISS"), gone).origin_status == 404
    stale = judge("edge", Observation(True, 200, "HIT", body_hash="old"), Observation(True, 410))
    assert stale.verified is False and "deleted page (HTTP 410 at the origin)" in stale.evidence

    moved = Observation(True, 301, location="/new")
    assert judge("edge", Observation(True, 301, "HIT", location="/new"), moved).verified is True
    elsewhere = judge("edge", Observation(True, 301, "HIT", location="/old"), moved)
    assert elsewhere.verified is False and "redirects to /old; the origin to /new" in elsewhere.evidence
    assert judge("edge", Observation(True, 200, "HIT", body_hash="x"), moved).verified is False

    failing = judge("edge", Observation(True, 502, "MISS"), Observation(True, 502))
    assert (failing.verified, failing.evidence) == (None, "unverified: the origin itself is failing: 502")
    down = judge("edge", Observation(True, 200, "MISS"), Observation(False, error="connection refused"))
    assert down.verified is None and "the origin itself is unreachable (connection refused)" in down.evidence
    cached_404 = judge("edge", Observation(True, 404, "HIT"), Observation(True, 200, body_hash="new"))
    assert cached_404.verified is False and "serves HTTP 404, the origin HTTP 200" in cached_404.evidence
