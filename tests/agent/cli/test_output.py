"""What the terminal shows when something goes wrong: one line per warning, never a traceback."""

from __future__ import annotations

import logging

from rich.console import Console

from agent.cli.output import plan_table, terminal_logging
from agent.models import Operation, Plan, PlanItem


def test_a_failed_run_logs_one_line_at_the_terminal_never_a_traceback(capsys):
    terminal_logging()
    terminal_logging()  # once per process, however many commands run
    try:
        raise RuntimeError("the layer registry is unavailable")
    except RuntimeError:
        logging.getLogger("agent.service.agent").exception("run %s failed", "t-1")
    assert capsys.readouterr().err == "error: run t-1 failed\n"


def _plan(pages: int) -> Plan:
    urls = [f"https://shop.example/products/p{n}" for n in range(pages)]
    items = [PlanItem(url=url, site="shop", layer=layer, operation=Operation.PURGE_URL, target=url,
                      reason="requested", requested=True) for url in urls for layer in ("appcache", "varnish", "edge")]
    return Plan(items=items, pages=urls, purge_count=len(items))


def _rendered(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_a_small_plan_shows_every_page_on_every_layer():
    table = plan_table(_plan(2))
    assert table.row_count == 6 and [c.header for c in table.columns] == ["page", "layer", "operation", "why"]
    assert "Plan: 6 purges over 2 pages on 3 layers" in _rendered(table)


def test_a_big_plan_is_grouped_by_page_so_it_fits_on_a_screen():
    table = plan_table(_plan(28))  # 84 rows by page × layer
    assert table.row_count == 28 and [c.header for c in table.columns] == ["page", "layers", "why"]
    shown = _rendered(table)
    assert "Plan: 84 purges over 28 pages on 3 layers" in shown and "appcache, varnish, edge" in shown
