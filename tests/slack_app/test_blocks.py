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
    assert text.startswith("1 of 5 pages NOT confirmed fresh")
    assert _sections(blocks)[1].startswith(":x: *https://shop.example/p/3*")
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
    assert "*Plan:* 2 pages × 2 layers, 2 purges" in text  # the scope once; the skipped layer sends nothing
    assert "*Requested pages (1):*\n• https://shop.example/pricing" in text
    assert ("• every page under https://shop.example/products/ (a wildcard: how many pages is not known) — on varnish; "
            "skipped on edge (nginx's cache_purge has no wildcards)") in text
    assert "• tag pricing: clears the 2 pages of this plan that carry it, and any other cached page carrying it — on varnish" \
        in text
    notes = [e["text"] for b in kit.plan_blocks(items, [], []) if b["type"] == "context" for e in b["elements"]]
    assert notes == ["Notes:\n• https://shop.example/pricing is purged by URL, not by tag: site (listed in broad_tags)"]
