"""Socket Mode, proven like HTTP mode: Bolt's Socket Mode handler (``slack_app.server.socket_mode_handler``) against a
loopback Socket Mode server speaking the real protocol (``apps.connections.open`` with the app token → websocket
URL → ``hello`` → envelopes acked by ``envelope_id``), the same front end and the real cache stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slack_app.blocks import APPROVE_ACTION
from slack_app.server import SlackSettings, socket_mode_handler
from tests.fakes.slack import block_actions, event_payload, mention, slash_command
from tests.fakes.socket_mode import FakeSocketMode
from tests.slack_app.conftest import APPROVERS, BIG, CHANNEL, SECRET, SMALL, buttons, new_ts

ACK_DEADLINE = 3.0


@pytest.fixture
def socket_mode(slack, fake_slack) -> Iterator:
    """(harness, loopback Socket Mode server, connected handler): the harness's front end over Socket Mode."""
    server = FakeSocketMode(fake_slack)
    h = slack(approval={"threshold": 10})  # SMALL (6 purges) runs at once, BIG asks for approval
    settings = SlackSettings(bot_token="xoxb-test-token", signing_secret=SECRET, app_token="xapp-1-A0CACHEBOT-test",
                             api_url=fake_slack.api_url)
    handler = socket_mode_handler(h.front.app, settings)
    handler.connect()
    server.wait_connected()
    yield h, server, handler
    handler.close()
    server.close()


def deliver(h, server: FakeSocketMode, kind: str, payload: dict, **options) -> float:
    """Push an envelope, wait for its ack and for the work it started; seconds to the ack."""
    before = h.front.received
    envelope_id = server.send(kind, payload, **options)
    seconds, ack = server.ack(envelope_id)
    assert ack["envelope_id"] == envelope_id
    h.wait_received(before + 1)
    h.idle()
    return seconds


def test_the_handshake_uses_the_app_token_and_gets_hello(socket_mode):
    h, server, _ = socket_mode
    opened = h.fake.calls_to("apps.connections.open")
    assert opened and opened[-1].args["_token_type"] == "app" and opened[-1].response["ok"]
    assert server.hellos == 1


def test_a_mention_envelope_is_acked_at_once_and_runs(socket_mode, fresh_stack):
    h, server, _ = socket_mode
    ts = new_ts()
    seconds = deliver(h, server, "events_api", event_payload(mention(SMALL, user="UBOB", channel=CHANNEL, ts=ts)))
    assert seconds < ACK_DEADLINE
    assert h.reports(ts), "the request ran and reported in its thread, as in HTTP mode"


def test_a_redelivered_envelope_runs_once(socket_mode):
    h, server, _ = socket_mode
    ts = new_ts()
    payload = event_payload(mention(SMALL, user="UBOB", channel=CHANNEL, ts=ts), event_id="EvSOCKET1")
    deliver(h, server, "events_api", payload)
    deliver(h, server, "events_api", payload, retry_attempt=1, retry_reason="timeout")
    assert len(h.reports(ts)) == 1
    assert len(h.front.agent.audit.dump()["audit_requests"]) == 1


def test_an_approval_click_arrives_as_an_interactive_envelope(socket_mode):
    h, server, _ = socket_mode
    ts = new_ts()
    deliver(h, server, "events_api", event_payload(mention(BIG, user="UBOB", channel=CHANNEL, ts=ts)))
    card = h.approval_message(ts)
    approve = next(e for e in buttons(card) if e["action_id"] == APPROVE_ACTION)
    click = block_actions(user=APPROVERS[0], channel=CHANNEL, message_ts=card["ts"], thread_ts=ts,
                          action_id=APPROVE_ACTION, value=approve["value"])
    assert deliver(h, server, "interactive", click) < ACK_DEADLINE
    assert h.reports(ts)


def test_a_slash_command_arrives_as_a_slash_commands_envelope(socket_mode):
    h, server, _ = socket_mode
    fields = slash_command("help", user="UBOB", channel=CHANNEL, response_url=h.fake.response_url())
    assert deliver(h, server, "slash_commands", fields) < ACK_DEADLINE
    assert "/cachebot purge URL…" in str(h.fake.responses()[0]["blocks"])


def test_after_a_refresh_the_client_reconnects_and_goes_on(socket_mode):
    h, server, _ = socket_mode
    server.disconnect()
    server.wait_connected()
    h.fake.wait_for(lambda: server.hellos >= 2, timeout=20, what="a second hello after the refresh")
    ts = new_ts()
    deliver(h, server, "events_api", event_payload(mention(SMALL, user="UBOB", channel=CHANNEL, ts=ts)))
    assert h.reports(ts)
