"""HTTP mode: request verification (401 and nothing done), health, paths; the Web API base URL from the env."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from slack_app.server import SetupError, SlackSettings
from slack_app.slack_api import make_client
from tests.fakes.slack import event_payload, mention, post
from tests.slack_app.conftest import CHANNEL, new_ts


@pytest.fixture
def h(slack):
    return slack()


def _mention_body() -> str:
    return json.dumps(event_payload(mention("help", user="UBOB", channel=CHANNEL, ts=new_ts())))


def test_forged_signature_is_401_and_nothing_is_posted(h):
    status, _, _ = h.sender.event(mention("help", user="UBOB", channel=CHANNEL, ts=new_ts()), secret="not-the-secret")
    assert status == 401
    h.idle()
    assert not h.fake.calls_to("chat.postMessage")


def test_unsigned_request_is_401(h):
    assert post(h.sender.url, _mention_body(), {}, "application/json")[0] == 401
    h.idle()
    assert not h.fake.calls_to("chat.postMessage")


def test_stale_request_is_401_even_when_correctly_signed(h):
    stale = int(time.time()) - 6 * 60
    status, _, _ = h.sender.event(mention("help", user="UBOB", channel=CHANNEL, ts=new_ts()), timestamp=stale)
    assert status == 401
    h.idle()
    assert not h.fake.calls_to("chat.postMessage")


def test_tampered_body_is_401(h):
    body = _mention_body()
    from tests.fakes.slack import sign

    headers = sign("8f742231b10e8888abcd99yyyzzz85a5", body)
    assert post(h.sender.url, body.replace("help", "purge everything on shop"), headers, "application/json")[0] == 401
    h.idle()
    assert not h.fake.calls_to("chat.postMessage")


def test_forged_button_click_is_401(h):
    from tests.fakes.slack import block_actions

    payload = block_actions(user="UALICE", channel=CHANNEL, message_ts="1.2", thread_ts="1.2",
                            action_id="cachebot_approve", value=json.dumps({"run": f"{CHANNEL}:1.2", "interrupt": "x"}))
    assert h.sender.interaction(payload, secret="wrong")[0] == 401
    h.idle()
    assert not h.fake.calls_to("chat.postEphemeral")


def test_url_verification_and_health(h):
    status, body, _ = h.sender.event({}, payload={"type": "url_verification", "challenge": "abc123", "token": "t"})
    assert status == 200 and "abc123" in body
    with urllib.request.urlopen(h.server.url + "/healthz", timeout=5) as response:
        assert response.status == 200 and json.loads(response.read()) == {"ok": True}
    assert post(h.server.url + "/elsewhere", "{}", {}, "application/json")[0] == 404


def test_ack_is_fast_even_while_a_run_is_going(h):
    statuses = [h.sender.event(mention("help", user="UBOB", channel=CHANNEL, ts=new_ts())) for _ in range(5)]
    assert all(s == 200 and seconds < 1.0 for s, _, seconds in statuses)
    h.wait_received(5)
    h.idle()


def test_settings_from_the_environment(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SetupError, match="SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET"):
        SlackSettings.from_env(socket_mode=False)
    with pytest.raises(SetupError, match="SLACK_APP_TOKEN"):
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
        SlackSettings.from_env(socket_mode=True)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:1/api")
    settings = SlackSettings.from_env(socket_mode=False)
    assert make_client(settings.bot_token, settings.api_url).base_url == "http://127.0.0.1:1/api/"
    assert "xoxb-1" not in repr(settings) and "http://127.0.0.1:1/api" in repr(settings)
