"""``Agent`` beyond runs: screening a text without starting one (what a front end may offer to purge)."""

from __future__ import annotations


def test_screen_splits_a_message_into_our_urls_and_the_rest_with_why(make_agent):
    agent = make_agent()
    urls, rejected = agent.screen("prices: <https://shop.example/pricing> <https://evil.example/x> "
                                  "<https://shop.example/pricing#top> <http://127.0.0.1/admin>")
    assert urls == ["https://shop.example/pricing"]
    assert [r.input for r in rejected] == ["https://evil.example/x", "http://127.0.0.1/admin"]
    assert all(r.reason for r in rejected)
    assert not agent.audit.dump()["audit_requests"]  # nothing was run or recorded
