"""`cachebot chat` through typer's runner, on the real stack: a conversation, and the offer after a question about
purging (issue 9, item 10)."""

from __future__ import annotations

from agent.cli.main import app
from tests.agent.cli.helpers import runner, write_config
from tests.agent.conftest import through_edge, warm


def test_chat_conversation(fresh_stack, tmp_path):
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["chat", "--config", config, "--as", "bob"],
                            input="help\nis https://shop.example/pricing cached?\n")
    assert outcome.exit_code == 0, outcome.output
    assert "Sites I manage" in outcome.output
    assert "varnish:" in outcome.output and "edge:" in outcome.output


def test_a_question_in_the_chat_offers_to_purge_and_yes_purges_those_pages(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing", "/about")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["chat", "--config", config, "--as", "bob"],
                            input="is it safe to purge https://shop.example/pricing?\nyes\n")
    assert outcome.exit_code == 0, outcome.output
    assert "nothing was purged" in outcome.output and "Purge these" in outcome.output
    assert "done and verified fresh" in outcome.output
    assert "$12" in through_edge(fresh_stack, "/pricing").text
    assert through_edge(fresh_stack, "/about").headers["X-Cache-Status"] == "HIT"


def test_a_question_in_the_chat_left_unanswered_purges_nothing(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["chat", "--config", config, "--as", "bob"],
                            input="should I purge https://shop.example/pricing?\n\n")
    assert outcome.exit_code == 0, outcome.output
    assert "Nothing was purged." in outcome.output
    assert through_edge(fresh_stack, "/pricing").headers["X-Cache-Status"] == "HIT"


def test_a_check_in_the_chat_gives_the_verdict_first_and_offers_to_purge_the_stale_page(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    fresh_stack.flush_app_cache()
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["chat", "--config", config, "--as", "bob"],
                            input="why is https://shop.example/pricing stale?\nyes\n")
    assert outcome.exit_code == 0, outcome.output
    assert "Stale on varnish and edge: they serve the version from" in outcome.output
    assert "Purge this page? (yes / no, the default)" in outcome.output
    assert "done and verified fresh" in outcome.output
    assert "$12" in through_edge(fresh_stack, "/pricing").text
