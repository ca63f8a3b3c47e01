"""The console over plain HTTP: the list and its filters, a request's record, escaping, redaction, read-only, the
token. The same pages in a real browser are in test_browser.py."""

from __future__ import annotations

import re

import pytest
from datetime import timedelta

from agent.web.security import COOKIE
from tests.agent.web.conftest import HOSTILE, NOW, SECRET, purge


def listed_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-request="([0-9a-f]+)"', html)


def test_the_list_is_newest_first_and_each_row_says_who_what_and_whether_it_worked(recorded):
    _, client, ids = recorded
    page = client.get("/")
    assert page.status_code == 200
    assert listed_ids(page.text) == [ids["denied"], ids["hostile"], ids["carol"], ids["bob"]]
    row = page.text.split(f'data-request="{ids["carol"]}"')[1].split("</tr>")[0]
    assert "carol" in row and "https://blog.example/post" in row and "NOT verified" in row and "3.0 s" in row
    assert "verified fresh" in page.text.split(f'data-request="{ids["bob"]}"')[1].split("</tr>")[0]


def test_filters_by_url_user_site_status_and_time(recorded):
    _, client, ids = recorded
    assert listed_ids(client.get("/", params={"user": "carol"}).text) == [ids["carol"]]
    assert listed_ids(client.get("/", params={"url": "https://shop.example/pricing"}).text) == [ids["hostile"],
                                                                                               ids["bob"]]
    assert listed_ids(client.get("/", params={"site": "blog"}).text) == [ids["carol"]]
    assert listed_ids(client.get("/", params={"status": "not_verified"}).text) == [ids["carol"]]
    assert listed_ids(client.get("/", params={"status": "denied"}).text) == [ids["denied"]]
    assert listed_ids(client.get("/", params={"since": "30h"}).text) == [ids["denied"], ids["hostile"], ids["carol"]]
    assert listed_ids(client.get("/", params={"until": "2026-11-24"}).text) == [ids["bob"]]
    nonsense = client.get("/", params={"since": "last tuesday-ish"})
    assert nonsense.status_code == 200 and "is not a time" in nonsense.text


def test_the_list_comes_in_pages_of_fifty(open_console):
    storage, client = open_console()
    for n in range(55):
        purge(storage, user="bob", urls=[f"https://shop.example/p{n}"], at=NOW - timedelta(minutes=n))
    first = client.get("/")
    assert len(listed_ids(first.text)) == 50 and "55 requests" in first.text
    assert "https://shop.example/p0" in first.text and "https://shop.example/p54" not in first.text
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text).group(1)
    second = client.get(older.replace("&amp;", "&"))
    assert len(listed_ids(second.text)) == 5 and "https://shop.example/p54" in second.text
    assert 'rel="next"' not in second.text and 'rel="prev"' in second.text


def test_a_request_page_shows_the_plan_results_evidence_and_approval_record(recorded):
    _, client, ids = recorded
    carol = client.get(f"/requests/{ids['carol']}").text
    assert "still HIT, Age: 300" in carol and "you asked for this page" in carol and "NOT verified" in carol
    denied = client.get(f"/requests/{ids['denied']}").text
    approval = denied.split('id="approval"')[1].split("</section>")[0]
    assert "Asked of: alice" in approval
    assert "dave: you may not approve your own request" in approval and "refused" in approval
    assert approval.index("refused") < approval.index("denied")  # in the order they happened
    assert "alice" in approval.split("d-denied")[1]


def test_a_hostile_message_is_shown_as_text_never_run_and_secrets_stay_redacted(recorded):
    _, client, ids = recorded
    for path in ("/", f"/requests/{ids['hostile']}"):
        html = client.get(path).text
        assert "<script>alert" not in html and 'href="javascript:' not in html.lower()
        assert SECRET not in html
    page = client.get(f"/requests/{ids['hostile']}").text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page
    assert "&lt;javascript:alert(document.cookie)|this page&gt;" in page
    assert "[redacted]" in page and HOSTILE.split(" token ")[0][:20] not in page  # the raw text only escaped
    assert re.findall(r"<script[^>]*>", page) == []  # a finished request loads no script at all


def test_the_slack_thread_is_linked_in_the_configured_workspace(recorded):
    _, client, ids = recorded
    page = client.get(f"/requests/{ids['hostile']}").text
    assert 'href="https://acme.slack.com/archives/C0SHOP/p1764072000000100"' in page
    assert "open the Slack thread" not in client.get(f"/requests/{ids['bob']}").text  # a terminal request


def test_the_console_only_reads(recorded):
    _, client, ids = recorded
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, f"/requests/{ids['bob']}").status_code == 405
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_with_a_token_nothing_is_shown_without_it(open_console):
    storage, client = open_console(token="correct-horse")
    request_id = purge(storage, user="bob", urls=["https://shop.example/pricing"], at=NOW)
    for path in ("/", f"/requests/{request_id}", "/waiting", "/stats", "/static/console.css"):
        refused = client.get(path)
        assert refused.status_code == 401 and "bob" not in refused.text
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer correct-horse"}).status_code == 200

    opened = client.get("/", params={"token": "correct-horse", "user": "bob"}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/?user=bob"  # the token leaves the URL
    cookie = opened.headers["set-cookie"]
    assert f"{COOKIE}=correct-horse" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "bob" in client.get("/?user=bob").text  # the cookie from now on


def test_waiting_for_approval_lists_who_may_approve(recorded):
    storage, client, ids = recorded
    audit = storage.audit
    waiting = audit.request_received(thread_id="t-wait", user="erin", interface="cli", channel=None,
                                     text="purge everything", dry_run=False, at=NOW)
    from sqlalchemy import update

    from agent.storage.tables import requests

    with storage.engine.begin() as db:  # what request_updated writes for a pending run, without its checkpoint
        db.execute(update(requests).where(requests.c.id == waiting).values(status="waiting_approval"))
    page = client.get("/waiting").text
    assert listed_ids(page) == [waiting]
    assert "alice" in page and "never the requester themselves" in page
    assert "Nothing is waiting" not in page


def test_stats_are_drawn_as_svg_on_the_server(recorded):
    _, client, _ = recorded
    page = client.get("/stats", params={"since": "7d"}).text
    assert page.count('<svg class="chart"') == 4
    assert "Requests per day" in page and "https://shop.example/pricing" in page
    assert "varnish" in page  # carol's failed layer among the layers most often failing


def test_an_unknown_request_is_a_plain_404(recorded):
    _, client, _ = recorded
    missing = client.get("/requests/0123456789abcdef")
    assert missing.status_code == 404 and "Nothing is recorded" in missing.text
    assert client.get("/nowhere").status_code == 404


def test_a_request_whose_checkpoints_are_gone_still_shows_its_audit_record(recorded):
    _, client, ids = recorded
    page = client.get(f"/requests/{ids['carol']}").text
    assert "its checkpoints are gone" in page and "still HIT, Age: 300" in page
    assert '<figure class="graph">' not in page  # no path to draw


def test_a_running_requests_marker_moves_when_its_record_does(open_console):
    storage, client = open_console()
    audit = storage.audit
    request_id = audit.request_received(thread_id="t-run", user="bob", interface="cli", channel=None,
                                        text="purge https://shop.example/pricing", dry_run=False, at=NOW)
    page = client.get(f"/requests/{request_id}").text
    assert '<script src="/static/live.js" defer></script>' in page and "running" in page
    before = client.get(f"/requests/{request_id}/progress").json()
    assert before["running"] is True and before["marker"] in page
    purge(storage, user="bob", urls=["https://shop.example/pricing"], at=NOW)  # another request: no change
    assert client.get(f"/requests/{request_id}/progress").json() == before
    audit.decision_made(request_id=request_id, thread_id="t-run", user="alice", interface="cli", decision="approve",
                        status="approved", at=NOW)
    assert client.get(f"/requests/{request_id}/progress").json()["marker"] != before["marker"]
    assert client.get("/static/live.js").headers["content-type"].startswith("text/javascript")


def test_a_drawing_with_anything_that_could_run_is_refused():
    from agent.web.app import inline_svg

    drawn = '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<!-- g -->\n<svg><g/></svg>'
    assert inline_svg(drawn) == "<svg><g/></svg>"
    for active in ("<svg><script>x()</script></svg>", '<svg><a href="javascript:x()">a</a></svg>',
                   '<svg onload="x()"></svg>', "<svg><foreignObject><p>x</p></foreignObject></svg>"):
        with pytest.raises(ValueError):
            inline_svg(active)


def test_waiting_for_approval_shows_why_and_the_time_left_of_real_waiting_runs(open_console, database_url, tmp_path):
    """Runs the Agent left waiting at its approval (their checkpoints read in one query), and one decided since."""
    from agent.service.agent import Agent
    from tests.agent.web.conftest import console_config

    config = console_config(database_url, tmp_path)
    with Agent(config) as agent:
        for user in ("erin", "frank", "grace"):
            asked = agent.ask(f"purge https://shop.example/{user} https://shop.example/{user}/2", user=user,
                              thread_id=f"t-{user}")  # two purges: over the threshold of 1
            assert asked.pending, asked.reply
        agent.decide("t-grace", "deny", user="alice")
    storage, client = open_console()
    page = client.get("/waiting").text
    rows = {user: page.split(f"https://shop.example/{user}")[1].split("</tr>")[0] for user in ("erin", "frank")}
    for row in rows.values():
        assert "over the approval threshold" in row, row  # why, from the run's interrupt
        assert re.search(r'<td class="left">(\d+ h )?\d+ min</td>', row), row
    assert "https://shop.example/grace" not in page
    erin = storage.audit.latest_request("t-erin")["id"]
    assert "Waiting: expires" in client.get(f"/requests/{erin}").text
