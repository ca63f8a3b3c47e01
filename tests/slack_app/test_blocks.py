"""Block Kit builders: Slack's limits, escaping, failures first, the approval message's shape."""

from __future__ import annotations

import json

from agent.models import Intent, ItemResult, ItemStatus, Operation, PlanItem, Rejection, RunResult
from slack_app import blocks as kit


def _result(n_pages: int, *, failed: set[int] = frozenset(), detail: str = "purged") -> RunResult:
    results = []
    for i in range(n_pages):
        for layer in ("appcache", "varnish", "edge"):
            bad = i in failed and layer == "edge"
            results.append(ItemResult(url=f"https://shop.example/p/{i}", layer=layer,
                                      status=ItemStatus.FAILED if bad else ItemStatus.PURGED_VERIFIED,
                                      detail="connection refused" if bad else detail, evidence="MISS→fresh"))
    return RunResult(thread_id="C1:1.2", intent=Intent.PURGE, reply="", results=results)


def _sections(blocks):
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def test_small_report_fits_without_csv_and_failures_come_first():
    blocks, text, csv_text = kit.report_blocks(_result(5, failed={3}))
    assert csv_text is None
    assert text == "1 page NOT fresh on edge: https://shop.example/p/3. 14 of 15 purges verified fresh."
    assert _sections(blocks)[1].startswith(":x: *`https://shop.example/p/3`*")
    assert "`edge`: FAILED: connection refused" in _sections(blocks)[1].splitlines()[1]


def test_big_report_is_cut_to_slack_limits_and_has_a_csv():
    blocks, _, csv_text = kit.report_blocks(_result(300, failed={299}))
    assert len(blocks) <= kit.MAX_BLOCKS
    assert all(len(s) <= kit.MAX_SECTION_CHARS for s in _sections(blocks))
    assert "/p/299" in _sections(blocks)[1]  # the failure is shown even though it came last
    lines = csv_text.splitlines()
    assert lines[0] == "url,layer,status,detail,evidence,attempts" and len(lines) == 1 + 900
    assert lines[1].startswith("https://shop.example/p/299,edge,failed")


def test_one_huge_section_is_clipped_and_sent_as_csv():
    blocks, _, csv_text = kit.report_blocks(_result(1, detail="x" * 5000))
    assert all(len(s) <= kit.MAX_SECTION_CHARS for s in _sections(blocks)) and csv_text


def test_user_text_is_escaped():
    assert kit.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    blocks = kit.plan_blocks([], [], [Rejection(input="<!here>", reason="not a URL")])
    assert "<!here>" not in json.dumps(blocks) and "&lt;!here&gt;" in json.dumps(blocks)
    assert kit.text_blocks("ask <@UALICE> not <!channel>", keep=("<@UALICE>",))[0]["text"]["text"] == \
        "ask <@UALICE> not &lt;!channel&gt;"


def test_long_plain_text_is_split_into_sections():
    blocks = kit.text_blocks("\n".join("line %d %s" % (i, "y" * 100) for i in range(200)))
    assert len(blocks) > 1 and all(len(s) <= kit.MAX_SECTION_CHARS for s in _sections(blocks))


def test_plan_lists_requested_dependent_and_layers():
    items = [
        PlanItem(url="https://shop.example/products/shoes/runner", site="shop", layer=layer, operation=Operation.PURGE_URL,
                 target="https://shop.example/products/shoes/runner", reason="requested", requested=True)
        for layer in ("varnish", "edge")
    ] + [PlanItem(url="https://shop.example/products/shoes", site="shop", layer="edge", operation=Operation.PURGE_URL,
                  target="https://shop.example/products/shoes", reason="the category listing shows this product",
                  requested=False)]
    text = "\n".join(_sections(kit.plan_blocks(items, [i.url for i in items[1:]], [])))
    assert "*Requested pages (1):*" in text and "*Dependent pages added (1):*" in text
    assert "the category listing shows this product" in text and "`varnish`, `edge`" in text


def test_approval_buttons_carry_run_and_interrupt_and_confirm_approve():
    result = RunResult(thread_id="C1:1.2", intent=Intent.PURGE, reply="",
                       pending={"interrupt_id": "abc", "reason": "30 purges is over the approval threshold of 20",
                                "requester": "UBOB", "approvers": "<@UALICE>", "purge_count": 30, "pages": 10,
                                "expires_at": "2026-11-25T13:00:00+00:00"})
    actions = kit.approval_blocks(result)[-1]
    approve, deny = actions["elements"]
    assert json.loads(approve["value"]) == {"run": "C1:1.2", "interrupt": "abc"} == json.loads(deny["value"])
    assert approve["confirm"]["confirm"]["text"] == "Approve" and "confirm" not in deny
    assert "Expires 2026-11-25 13:00 UTC" in json.dumps(kit.approval_blocks(result))


def test_plan_shows_a_wildcard_as_a_scope_with_the_layers_that_skip_it_not_as_a_page():
    prefix = "https://shop.example/products/*"
    items = [
        PlanItem(url=prefix, site="shop", layer="varnish", operation=Operation.PURGE_PREFIX, target=prefix,
                 reason="requested", requested=True),
        PlanItem(url=prefix, site="shop", layer="edge", operation=Operation.PURGE_PREFIX, target=prefix,
                 reason="skipped", requested=True, skip="nginx's cache_purge has no wildcards"),
        PlanItem(url="https://shop.example/pricing", site="shop", layer="varnish", operation=Operation.PURGE_TAG,
                 target="pricing", reason="requested", requested=True, clears=2,
                 note="https://shop.example/pricing is purged by URL, not by tag: site (listed in broad_tags)"),
    ]
    text = "\n".join(_sections(kit.plan_blocks(items, [prefix, "https://shop.example/pricing"], [])))
    assert "*Plan:* 2 purges over 2 pages on 2 layers" in text  # the scope once; the skipped layer sends nothing
    assert "*Requested pages (1):*\n• `https://shop.example/pricing`" in text  # URLs as code: copyable, inert
    assert kit.neutralise("• every page under https://shop.example/products/ (a wildcard: how many pages is not "
                          "known) — on varnish; skipped on edge (nginx's cache_purge has no wildcards)") in text
    assert "• tag pricing: clears the 2 pages of this plan that carry it, and any other cached page carrying it — on varnish" \
        in text
    notes = [e["text"] for b in kit.plan_blocks(items, [], []) if b["type"] == "context" for e in b["elements"]]
    assert notes == ["Notes:\n" + kit.neutralise("• https://shop.example/pricing is purged by URL, not by tag: site "
                                                  "(listed in broad_tags)")]
# --- mrkdwn injection (issue 9, item 9): every user-supplied string, per character ---------------------------

from datetime import datetime, timezone  # noqa: E402

import pytest  # noqa: E402

from slack_app.digest import slack_safe  # noqa: E402
from tests.slack_app.conftest import assert_inert, link_hosts, mrkdwn_objects, outside_code  # noqa: E402

ATTACK = "https://evil.example/`https://phish.example/login`"  # <https://evil.example/`https://phish…`|x> in Slack


def hostile(text: str) -> list[list[dict]]:
    """``text`` in every place a user's words reach a message: rejected input and its reason, requested and
    dependent URLs, tags, report details, the plain reply, approval reason and requester, decider, offers."""
    url = f"https://shop.example/{text}"
    items = [PlanItem(url=url, site="shop", layer="varnish", operation=Operation.PURGE_TAG, target=text,
                      reason="requested", requested=True),
             PlanItem(url=url + "/dep", site="shop", layer="edge", operation=Operation.PURGE_URL, target=url + "/dep",
                      reason=f"listed on {text}", requested=False)]
    rejected = [Rejection(input=text, reason=f"{text} is not a configured site")]
    results = [ItemResult(url=url, layer="edge", status=ItemStatus.FAILED, detail=text, evidence=text)]
    run = RunResult(thread_id="C1:1.2", intent=Intent.ASK, reply=text, plan=items, pages=[url, url + "/dep"],
                    rejected=rejected, results=results, approval_reason=text,
                    pending={"interrupt_id": "i", "reason": text, "requester": text, "approvers": "<@UALICE>",
                             "purge_count": 1, "pages": 1, "expires_at": "2026-11-25T13:00:00+00:00"})
    figures = {"requests": 1, "verified_requests": 0, "failed_requests": 1, "median_seconds_to_verified": None,
               "most_purged": [{"site": "shop", "url": url, "path": "/" + text, "requests": 3}],
               "top_sections": [{"site": "shop", "section": "/" + text, "purged": 1}]}
    from agent.words import digest_text

    return [
        kit.plan_blocks(items, run.pages, rejected),
        kit.report_blocks(run)[0],
        kit.text_blocks(f"✗ {text}: not touched\n{text}", keep=("<@UALICE>",)),
        kit.approval_blocks(run),
        kit.decided_blocks(run, "approved", text, "2026-11-25T12:00:00+00:00"),
        kit.offer_blocks(run, "o1"),
        kit.offer_taken_blocks(run, "purge", text),
        kit.dry_run_blocks(run),
        [kit.section(digest_text(slack_safe(figures), days=7))],
    ]


@pytest.mark.parametrize("char", ["`", "<", ">", "&", "*", "_", "~"])
def test_each_markup_character_from_a_user_stays_inert(char):
    payload = f"Q{char}Q {char}word{char} <!here> <https://phish.example/x|click>"
    for blocks in hostile(payload):
        objects = mrkdwn_objects(blocks)
        assert objects
        for obj in objects:
            text = obj["text"]
            assert obj.get("verbatim") is True, obj
            assert_inert(obj)
            if char in "`<>&":  # never reaches Slack as written: escaped, or a look-alike
                assert f"Q{char}Q" not in text, text
            else:  # formats nothing: only ever inside a code span, where it is inert
                assert f"Q{char}Q" not in outside_code(text) and f"{char}word{char}" not in outside_code(text), text
            assert "phish.example" not in link_hosts(obj), text  # a bare URL in a reason is not linked: verbatim


def test_neutralise_per_character():
    assert kit.neutralise("<&>") == "&lt;&amp;&gt;"
    for char in "`*_~":
        shown = kit.neutralise(f"a{char}b")
        assert char not in shown and len(shown) == 3  # a look-alike, same length, nothing formats
    assert kit.neutralise("a*b_c~d`e", in_code=True) == "a*b_c~d\N{MODIFIER LETTER GRAVE ACCENT}e"  # exact in code
    assert kit.code("https://shop.example/red_shoes~v2") == "`https://shop.example/red_shoes~v2`"  # copyable
    assert kit.code("line\nbreak") == "`line break`"  # a line break would end the span


def test_the_phishing_attack_makes_no_live_link_in_any_block():
    for blocks in hostile(ATTACK):
        for obj in mrkdwn_objects(blocks):
            assert "phish.example" not in link_hosts(obj), obj["text"]
            assert "phish.example" not in link_hosts(obj, assume_autolink=True), obj["text"]  # even without verbatim
            assert_inert(obj)


def test_only_slack_user_ids_become_mentions():
    assert kit.mention("UALICE") == "<@UALICE>"
    assert kit.mention("alice> <!channel") == "alice&gt; &lt;!channel"
    assert kit.mention("") == "someone"


def test_people_and_channels_from_records_are_named_and_anything_else_is_inert():
    [block] = kit.naming_people(lambda who, place: f"{who('UALICE')} denied; {who('<!channel> bob')} asked in "
                                                   f"{place('CWEB')} and {place('<!here>')}; typed: <@UMALLORY>")
    text = block["text"]["text"]
    assert text.startswith("<@UALICE> denied;") and "in <#CWEB> and" in text
    assert "<!channel>" not in text and "<!here>" not in text and "<@UMALLORY>" not in text


def test_a_report_ends_with_the_consoles_page_when_its_address_is_configured():
    result = _result(2)
    assert "step by step" not in json.dumps(kit.report_blocks(result)[0])
    result.web_url = "https://cachebot.example.internal/requests/abc"
    blocks, _, _ = kit.report_blocks(result)
    assert blocks[-1] == {"type": "context", "elements": [{
        "type": "mrkdwn", "verbatim": True,
        "text": "<https://cachebot.example.internal/requests/abc|What this request did, step by step>"}]}
    big = _result(300, failed={299})
    big.web_url = result.web_url
    blocks, _, _ = kit.report_blocks(big)
    assert len(blocks) <= kit.MAX_BLOCKS and "step by step" in blocks[-1]["elements"][0]["text"]
