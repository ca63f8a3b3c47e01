"""The console in a real headless browser: Debian's chromium, driven by playwright, on requests the real Agent ran
against the real cache stack (one needed approval, was refused once and had a repair pass; one is hostile).

playwright cannot download a browser here, so it is pointed at the system's (``scripts/install-system-deps.sh``
installs ``chromium``; ``$CACHEBOT_CHROMIUM`` names another). The tests skip, saying so, only when there is none.
``CACHEBOT_SCREENSHOTS=docs`` keeps the screenshots the README shows; otherwise they go to the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.drawing import UNVISITED_FILL, VISITED_FILL, VISITED_LINE
from agent.service.agent import Agent
from agent.state import AgentContext, checkpoint_serializer
from agent.storage import Storage
from agent.web.app import Console, create_app
from tests.agent.conftest import warm
from tests.agent.nodes.test_verify import racing_layers

PRICING = "https://shop.example/pricing"
HOSTILE = ("<script>window.owned = 1; alert('owned')</script><img src=x onerror=\"window.owned = 2\"> "
           "and the page behind <javascript:window.owned=3|this link>")


def system_browser() -> str:
    for candidate in (os.environ.get("CACHEBOT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    pytest.skip("no chromium to drive: run scripts/install-system-deps.sh (Debian's chromium) or set "
                "CACHEBOT_CHROMIUM; playwright cannot download its own browser without the internet")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = system_browser()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: "
                                                                "pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def aside(call, *args, **kwargs):
    """Run an Agent call on a thread of its own: playwright's sync API keeps an event loop running on this one,
    and the Agent runs each graph on a loop of its own (asyncio.run)."""
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(call, *args, **kwargs).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ran(fresh_stack, tmp_path, clock):
    """Three requests run by the real Agent: bob's (approval refused once, then approved, a repair pass), carol's
    check, and mallory's hostile question-that-purges, left waiting for approval."""
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    data = fresh_stack.config_dict()
    data["approval"] = {**data["approval"], "approvers": ["alice"], "threshold": 1}
    data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite"),
                       "database_url": f"sqlite:///{tmp_path / 'audit.sqlite'}"}
    config = parse_config(data)
    agent = Agent(config, context=AgentContext(config=config, now=clock, layer_factory=racing_layers))
    aside(agent.ask, f"the old price still shows on {PRICING}", user="bob", thread_id="t-bob")
    aside(agent.decide, "t-bob", "approve", user="bob")  # their own request: refused
    clock.advance(minutes=1)
    aside(agent.decide, "t-bob", "approve", user="alice")
    clock.advance(minutes=5)
    aside(agent.ask, "is https://shop.example/ stale?", user="carol", thread_id="t-carol")
    clock.advance(minutes=5)
    hostile = aside(agent.ask, f"purge {PRICING} {HOSTILE}", user="mallory", thread_id="t-mallory")
    assert hostile.pending, hostile.reply  # waiting for approval: the page that updates itself
    try:
        yield agent, {"bob": agent.audit.latest_request("t-bob")["id"],
                      "mallory": agent.audit.latest_request("t-mallory")["id"]}
    finally:
        agent.close()


@pytest.fixture
def console_url(ran, clock) -> Iterator[str]:
    """The console as its own server on loopback, on its own Storage (as `cachebot web` opens it)."""
    import uvicorn

    agent, _ = ran
    storage = Storage.open(agent.config, serde=checkpoint_serializer())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Console(agent.config, storage, now=clock)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        storage.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


def screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("CACHEBOT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def node_fill(page, node: str) -> str:
    return page.locator("figure.graph g.node", has=page.locator(f"title:text-is('{node}')")) \
        .locator("path, polygon, ellipse").first.get_attribute("fill")


def test_from_the_list_to_a_request_that_was_refused_once_and_repaired(page, console_url, ran, tmp_path):
    _, ids = ran
    page.goto(console_url + "/")
    assert page.locator("table.requests tbody tr").count() == 3
    screenshot(page, "console-requests", tmp_path)

    page.fill("input[name=user]", "bob")
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.requests tbody tr")
    assert rows.count() == 1 and "verified fresh" in rows.first.inner_text()
    rows.first.locator("a.what").click()
    page.wait_for_url(f"**/requests/{ids['bob']}")

    # the path: the nodes this run visited are highlighted, the one it never took is grey
    for visited in ("understand", "plan", "approval", "execute", "verify", "report"):
        assert node_fill(page, visited) == VISITED_FILL, visited
    assert node_fill(page, "check") == UNVISITED_FILL
    repair = page.locator("figure.graph g.edge", has=page.locator("title:text-is('verify->execute')"))
    assert repair.locator("path").first.get_attribute("stroke") == VISITED_LINE and "1×" in repair.text_content()

    steps = page.locator("table.timeline tr.step")
    assert [steps.nth(i).get_attribute("data-node") for i in range(steps.count())] == [
        "understand", "resolve", "plan", "approval", "approval", "execute", "verify", "execute", "verify", "report"]
    timeline = page.locator("table.timeline").inner_text()
    assert "refused: bob may not approve their own request" in timeline
    assert "approved by alice" in timeline and "one repair pass" in timeline

    approval = page.locator("#approval").inner_text()
    assert "Asked of: alice" in approval and "refused" in approval and "denied" not in approval
    assert approval.index("bob") < approval.index("approved")

    edge = page.locator("table.results tr.result", has=page.locator("td.url:text-is('https://shop.example/pricing')")) \
        .filter(has=page.locator("code:text-is('edge')"))
    assert "stale after purge, repaired" in edge.inner_text()
    assert "fresh" in edge.locator("td.evidence").inner_text()
    assert "the home page shows the prices" in page.locator("#plan").inner_text()
    screenshot(page, "console-request", tmp_path)


def test_a_hostile_message_renders_inert_and_a_waiting_request_updates_itself(page, console_url, ran, tmp_path):
    agent, ids = ran
    page.goto(console_url + "/waiting")
    waiting = page.locator("table.waiting tbody tr")
    assert waiting.count() == 1 and "mallory" in waiting.inner_text() and "min" in waiting.inner_text()

    waiting.first.locator("a").first.click()
    page.wait_for_url(f"**/requests/{ids['mallory']}")
    message = page.locator("pre.message").inner_text()
    assert "<script>window.owned = 1" in message and "<javascript:window.owned=3|this link>" in message
    assert page.evaluate("window.owned") is None and page.dialogs == []
    assert page.locator("a[href^='javascript:' i]").count() == 0 and page.locator("main img").count() == 0
    assert "waiting for approval" in page.locator("h1").inner_text()

    aside(agent.decide, "t-mallory", "approve", user="alice")  # elsewhere (Slack, the CLI): the open page follows
    page.wait_for_selector("h1 .badge.ok", timeout=30_000)
    assert "verified fresh" in page.locator("h1").inner_text()
    assert page.evaluate("window.owned") is None and page.dialogs == []

    page.goto(console_url + "/stats")
    assert page.locator("svg.chart").count() == 4
    screenshot(page, "console-stats", tmp_path)
