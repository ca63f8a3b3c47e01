"""Who may approve, and when approval is needed."""

from __future__ import annotations

from agent.config import parse_config
from agent.policy import approval_reason, approval_recipients, refuse_approver
from tests.agent.test_config import minimal


def config(**approval):
    return parse_config(minimal(approval={"threshold": 3, "approvers": ["alice"], "approver_groups": ["S1"], **approval}))


def test_threshold_and_purge_all():
    c = config()
    assert approval_reason("purge", 3, c) == ""
    assert "over the approval threshold of 3" in approval_reason("purge", 4, c)
    assert "always needs approval" in approval_reason("purge_all", 1, c)


def test_approvers_and_groups():
    c = config()
    assert refuse_approver("alice", "bob", set(), c, "approve") is None
    assert refuse_approver("carol", "bob", {"S1"}, c, "approve") is None
    assert "not an approver" in refuse_approver("mallory", "bob", set(), c, "approve")


def test_self_approval_is_off_by_default_but_withdrawing_is_allowed():
    c = config()
    assert "self-approval is turned off" in refuse_approver("alice", "alice", set(), c, "approve")
    assert refuse_approver("alice", "alice", set(), c, "deny") is None
    assert refuse_approver("alice", "alice", set(), config(allow_self_approval=True), "approve") is None


def item(operation, target, url=None, **extra):
    from agent.models import PlanItem

    return PlanItem(url=url or target, site="shop", layer="varnish", operation=operation, target=target,
                    reason="requested", requested=True, **extra)


def test_every_wildcard_needs_approval_by_default_whatever_the_count():
    from agent.models import Operation

    reason = approval_reason("purge", 1, config(), [item(Operation.PURGE_PREFIX, "https://shop.example/blog/2024/*")])
    assert reason == ("https://shop.example/blog/2024/* clears every page under a prefix, and every wildcard purge "
                      "needs approval")


def test_a_configured_depth_lets_deep_prefixes_run_and_still_stops_shallow_ones():
    from agent.models import Operation

    c = config(prefix_min_depth=2)
    deep = item(Operation.PURGE_PREFIX, "https://shop.example/blog/2024/*")
    shallow = item(Operation.PURGE_PREFIX, "https://shop.example/blog/20*")
    assert approval_reason("purge", 1, c, [deep]) == ""
    assert "https://shop.example/blog/20* clears every page under a prefix, and a wildcard shallower than 2 path " \
           "segments needs approval (approval.prefix_min_depth)" in approval_reason("purge", 2, c, [deep, shallow])


def test_a_whole_site_scope_needs_approval_even_inside_a_purge_request():
    from agent.models import Operation

    whole = item(Operation.PURGE_ALL, "shop.example", url="https://shop.example/")
    assert approval_reason("purge", 1, config(prefix_min_depth=1), [whole]) == \
        "purging everything on a site always needs approval"


def test_a_broad_tag_in_a_plan_needs_approval():
    from agent.models import Operation

    data = minimal(approval={"threshold": 50})
    data["sites"][0].update(broad_tags=["all"], broad_tag_pages=3)
    c = parse_config(data)
    assert "tag all clears many pages" in approval_reason("purge", 1, c, [item(Operation.PURGE_TAG, "all", url="u")])
    wide = item(Operation.PURGE_TAG, "product-1", url="u", clears=4)
    assert "tag product-1 clears many pages" in approval_reason("purge", 4, c, [wide])
    assert approval_reason("purge", 3, c, [item(Operation.PURGE_TAG, "product-1", url="u", clears=3)]) == ""


def test_approval_requests_are_copied_to_the_approvers_channel_and_dms_only_when_configured():
    assert approval_recipients(config()) == []
    assert approval_recipients(config(channel="CAPPROVERS")) == ["CAPPROVERS"]
    assert approval_recipients(config(channel="CAPPROVERS"), asked_in="CAPPROVERS") == []  # asked there already
    both = config(channel="CAPPROVERS", dm_approvers=True, approvers=["UALICE", "alice", "WCAROL", "UALICE"])
    assert approval_recipients(both) == ["CAPPROVERS", "UALICE", "WCAROL"]  # names cannot be DMed
