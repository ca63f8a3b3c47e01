"""`cachebot ask`, `approve` and `deny` through typer's runner, on the real stack."""

from __future__ import annotations

import json

from agent.cli.main import app
from tests.agent.cli.helpers import waiting_request, runner, write_config
from tests.agent.conftest import through_edge, warm


def test_ask_json_gives_the_whole_structure(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["ask", "old price on <https://shop.example/pricing> and ftp://x.example/a",
                                  "--json", "--config", config, "--as", "bob"])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.output)
    assert result["intent"] == "purge"
    assert result["urls"] == ["https://shop.example/pricing"]
    assert result["rejected"][0]["input"].startswith("ftp://")
    assert {(i["url"], i["layer"]) for i in result["plan"]} >= {("https://shop.example/pricing", "varnish")}
    assert all("reason" in i for i in result["plan"])
    assert result["needs_approval"] is False
    assert {r["status"] for r in result["results"] if r["url"].endswith("/pricing")} == {"purged_verified"}
    assert "$12" in through_edge(fresh_stack, "/pricing").text


def test_ask_dry_run_sends_nothing(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--dry-run", "--config", config])
    assert outcome.exit_code == 0, outcome.output
    assert "Dry run" in outcome.output and "Plan:" in outcome.output
    assert through_edge(fresh_stack, "/pricing").headers["X-Cache-Status"] == "HIT"


def test_approval_across_two_commands(fresh_stack, tmp_path):
    config = write_config(fresh_stack, tmp_path, approval={"threshold": 1, "approvers": ["alice"]})
    asked = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--json", "--config", config,
                                "--as", "bob"])
    waiting = json.loads(asked.output)
    assert waiting["needs_approval"] and waiting["pending"]

    refused = runner.invoke(app, ["approve", waiting["thread_id"], "--config", config, "--as", "bob"])
    assert refused.exit_code == 1 and "self-approval" in refused.output

    approved = runner.invoke(app, ["approve", waiting["thread_id"], "--config", config, "--as", "alice"])
    assert approved.exit_code == 0, approved.output
    assert "done and verified fresh" in approved.output

    again = runner.invoke(app, ["approve", waiting["thread_id"], "--config", config, "--as", "alice"])
    assert again.exit_code == 1 and "already approved by alice" in again.output


def test_broken_config_is_a_clear_message(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sites: []\nlayers: []\n")
    outcome = runner.invoke(app, ["ask", "help", "--config", str(path)])
    assert outcome.exit_code == 2
    assert "invalid configuration" in outcome.output and "sites" in outcome.output


def test_brackets_in_what_people_type_are_shown_as_typed_not_as_markup(fresh_stack, tmp_path):
    """rich reads "[/x]" as a closing tag: echoed from a URL it raised MarkupError, a traceback at the terminal."""
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["ask", "purge https://evil.example/[/x] and https://shop.example/[/y]",
                                  "--dry-run", "--config", config, "--as", "bob"])
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome.exception
    # the refused one as typed; the accepted one as it will be purged (brackets percent-encoded by screening)
    assert "evil.example/[/x]" in outcome.output and "shop.example/%5B/y%5D" in outcome.output
    history = runner.invoke(app, ["history", "--config", config])
    assert history.exception is None or isinstance(history.exception, SystemExit), history.exception
    assert "shop.example/%5B/y%5D" in history.output  # recorded as purged: normalised


# --- expired approvals (issue 9, item 8) ----------------------------------------------------------------


def test_approving_an_expired_request_fails_with_a_clear_message(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    # expires 6 ms after it is asked for: long gone when the next command starts
    config, thread = waiting_request(fresh_stack, tmp_path, expiry_minutes=0.0001)
    late = runner.invoke(app, ["approve", thread, "--config", config, "--as", "alice"])
    assert late.exit_code == 1, late.output
    assert "Expired:" in late.output and "nothing was purged" in late.output
    assert through_edge(fresh_stack, "/pricing").headers["X-Cache-Status"] == "HIT"
    again = runner.invoke(app, ["approve", thread, "--config", config, "--as", "alice"])
    assert again.exit_code == 1 and "expired" in again.output


def test_denying_an_expired_request_says_so_too(fresh_stack, tmp_path):
    config, thread = waiting_request(fresh_stack, tmp_path, expiry_minutes=0.0001)
    late = runner.invoke(app, ["deny", thread, "--config", config, "--as", "alice", "--json"])
    assert late.exit_code == 1
    assert json.loads(late.output)["approval"]["status"] == "expired"


def test_what_people_typed_is_never_read_as_terminal_markup(fresh_stack, tmp_path):
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["ask", "purge [link=https://phish.example/]click[/link] "
                                  "https://evil.example/[bold]x[/bold] https://shop.example/[bold]x[/bold]",
                                  "--dry-run", "--config", config])
    assert outcome.exit_code == 0, outcome.output
    assert "✗ https://evil.example/[bold]x[/bold]:" in outcome.output  # Rich would have eaten [bold]
    # an accepted URL is shown as it will be purged (brackets percent-encoded)
    assert "  https://shop.example/%5Bbold%5Dx%5B/bold%5D\n" in outcome.output
    assert "✗ https://phish.example/]click[/link:" in outcome.output


def test_a_dry_run_reports_the_same_needs_approval_as_the_real_run(fresh_stack, tmp_path):
    config = write_config(fresh_stack, tmp_path)
    dry = json.loads(runner.invoke(app, ["ask", "purge everything on shop", "--dry-run", "--json", "--config", config,
                                         "--as", "bob"]).output)
    real = json.loads(runner.invoke(app, ["ask", "purge everything on shop", "--json", "--config", config,
                                          "--as", "bob"]).output)
    assert dry["needs_approval"] is True and real["needs_approval"] is True
    assert dry["pending"] is None and dry["results"] == []  # a dry run still asks nobody and sends nothing
    assert real["pending"]


def test_a_failing_origin_exits_3_saying_the_purges_went_through_but_freshness_is_unknown(fresh_stack, tmp_path):
    """Exit 3, not 1: nothing failed on our side or in the caches, but nobody can say the pages are fresh yet."""
    warm(fresh_stack, "/about")
    config = write_config(fresh_stack, tmp_path)
    content = fresh_stack.content.path
    content.rename(content.with_suffix(".away"))  # the origin answers HTTP 500 for every page
    try:
        outcome = runner.invoke(app, ["ask", "purge https://shop.example/about", "--config", config, "--as", "bob"])
    finally:
        content.with_suffix(".away").rename(content)

    assert outcome.exit_code == 3, outcome.output
    said = " ".join(outcome.output.split())  # the terminal wraps long lines
    assert ("verify done All 3 purges done; 1 page NOT verified because the origin itself is failing: 500 "
            "(https://shop.example/about). Nothing failed on our side") in said, said


def test_a_stale_page_beside_a_failing_origin_still_exits_1():
    from agent.cli.output import exit_code
    from agent.models import Intent, ItemResult, ItemStatus, RunResult

    unknown = ItemResult(url="https://shop.example/a", layer="edge", status=ItemStatus.PURGED_UNVERIFIED,
                         origin_problem="failing: 502")
    stale = ItemResult(url="https://shop.example/b", layer="edge", status=ItemStatus.FAILED, stale_after_purge=True)
    fresh = ItemResult(url="https://shop.example/c", layer="edge", status=ItemStatus.PURGED_VERIFIED)
    timed_out = ItemResult(url="https://shop.example/d", layer="edge", status=ItemStatus.PURGED_UNVERIFIED)

    def code(*results):
        return exit_code(RunResult(thread_id="t", intent=Intent.PURGE, reply="", results=list(results)))

    assert code(fresh) == 0
    assert code(fresh, unknown) == 3
    assert code(unknown, stale) == 1 and code(unknown, timed_out) == 1


def test_with_the_consoles_address_configured_the_report_ends_with_its_page(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    config = write_config(fresh_stack, tmp_path, web={"base_url": "https://cachebot.example.internal/"})
    outcome = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--config", config, "--as", "bob"])
    assert outcome.exit_code == 0, outcome.output
    last = outcome.output.strip().splitlines()[-1]
    assert last.startswith("What this request did, step by step: https://cachebot.example.internal/requests/")
    request_id = last.rsplit("/", 1)[1]
    history = json.loads(runner.invoke(app, ["history", "--json", "--config", config]).output)
    assert history[0]["request_id"] == request_id  # the page of this very request


def test_without_the_consoles_address_there_is_no_link(fresh_stack, tmp_path):
    config = write_config(fresh_stack, tmp_path)
    outcome = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--config", config, "--as", "bob"])
    assert "step by step" not in outcome.output
