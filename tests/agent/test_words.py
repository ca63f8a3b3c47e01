"""The sentences people read: a report counts what its plan counted, says the result in plain words, and
never says "1 pages"."""

from __future__ import annotations

from agent.mapping import count_purges
from agent.models import ItemResult, ItemStatus, Operation, Plan, PlanItem
from agent.words import plan_summary, plural, result_summary

PAGE, HOME = "https://shop.example/pricing", "https://shop.example/"


def _item(url: str, layer: str, operation: Operation = Operation.PURGE_URL, *, target: str | None = None,
          skip: str = "") -> PlanItem:
    return PlanItem(url=url, site="shop", layer=layer, operation=operation, target=target or url,
                    reason="requested", requested=True, skip=skip)


def _result(url: str, layer: str, status: ItemStatus = ItemStatus.PURGED_VERIFIED, **more) -> ItemResult:
    return ItemResult(url=url, layer=layer, status=status, detail="purged", **more)


def test_a_page_purged_by_url_and_by_tag_on_one_layer_is_one_purge_in_the_plan_and_the_report():
    items = [_item(PAGE, "varnish"), _item(PAGE, "varnish", Operation.PURGE_TAG, target="pricing"),
             _item(PAGE, "edge"), _item(PAGE, "cdn", skip="the CDN has no such purge")]
    results = [_result(PAGE, "varnish"), _result(PAGE, "varnish"), _result(PAGE, "edge"),
               _result(PAGE, "cdn", ItemStatus.SKIPPED)]
    assert count_purges(items) == 2
    assert result_summary(results, items) == "All 2 purges done and verified fresh."


def test_one_purge_and_one_page_are_singular():
    assert result_summary([_result(PAGE, "edge")], [_item(PAGE, "edge")]) == "The purge was done and verified fresh."
    plan = Plan(items=[_item(PAGE, "edge")], pages=[PAGE], purge_count=1)
    assert plan_summary(plan) == "1 purge over 1 page on 1 layer (edge)"
    assert plural(1, "page") == "1 page" and plural(0, "page") == "0 pages"


def test_a_page_not_fresh_is_named_with_its_layers_first():
    results = [_result(PAGE, "varnish"), _result(PAGE, "edge", ItemStatus.FAILED), _result(HOME, "edge")]
    assert result_summary(results) == f"1 page NOT fresh on edge: {PAGE}. 2 of 3 purges verified fresh."


def test_deleted_pages_are_said_to_be_gone_not_stale():
    # the origin's status on a result (verification's side of #12) decides the words, whatever layer said it
    gone = [f"https://shop.example/products/old-{n}" for n in range(2)]
    results = [_result(PAGE, "edge"),
               *(ItemResult(url=url, layer="edge", status=ItemStatus.PURGED_VERIFIED, detail="purged")
                 for url in gone)]
    for r in results[1:]:
        r.__dict__["origin_status"] = 404  # ItemResult.origin_status: set by verification (the other side of #12)
    assert result_summary(results) == ("All 3 purges done: 1 page verified fresh; "
                                       "2 deleted pages are gone from every cache.")
