"""Who may approve, and when approval is needed."""

from __future__ import annotations

from agent.config import parse_config
from agent.policy import approval_reason, refuse_approver
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
