"""check never calls a page fresh just because it matches an origin that answers from a stale app cache."""

from __future__ import annotations

from agent.models import Intent
from tests.agent.conftest import warm


def test_match_with_an_app_cached_origin_is_not_called_fresh(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")  # Redis still holds the $10 rendering

    result = make_agent().ask("is https://shop.example/pricing cached?", user="bob")

    assert result.intent == Intent.CHECK
    by_layer = {c.layer: c for c in result.checks}
    assert by_layer["appcache"].cached is True
    assert by_layer["varnish"].cached is True and by_layer["varnish"].fresh is None
    assert "may itself be stale" in by_layer["varnish"].detail
