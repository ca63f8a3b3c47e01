"""``/cachebot`` through real HTTP: signed form-encoded commands in, Web API calls and response_url answers out,
purges on the real stack (slack_app/handlers.py, the command part)."""

from __future__ import annotations

from tests.agent.conftest import through_edge, warm
from tests.fakes.slack import slash_command
from tests.slack_app.conftest import APPROVERS, CHANNEL, all_text, assert_inert, buttons, mrkdwn_objects

ACK_DEADLINE = 3.0  # Slack shows "operation_timeout" when a command is not acked within 3 s
PRICING = "https://shop.example/pricing"


def test_help_is_acked_at_once_and_answered_to_the_asker_only(slack):
    h = slack()
    status, seconds = h.command("help")
    assert status == 200 and seconds < ACK_DEADLINE
    [answer] = h.fake.responses()
    assert answer["response_type"] == "ephemeral"
    assert "/cachebot purge URL…" in all_text(answer) and "/cachebot check URL…" in all_text(answer)
    assert not h.fake.calls_to("chat.postMessage")  # nothing in the channel


def test_an_empty_command_is_help_too(slack):
    h = slack()
    h.command("")
    assert "/cachebot history URL" in all_text(h.fake.responses()[0])


def test_purge_runs_in_a_thread_under_a_message_saying_who_asked_what(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $14/month.")
    h = slack(approval={"threshold": 20})
    status, seconds = h.command(f"purge {PRICING}")
    assert status == 200 and seconds < ACK_DEADLINE

    [root] = h.channel_messages()
    assert "<@UBOB> asked: `/cachebot purge https://shop.example/pricing`" in all_text(root)
    status_message, progress, report = h.thread(root["ts"])
    assert "*Plan:* 6 purges over 2 pages on 3 layers" in all_text(status_message)
    assert report["text"] == "All 6 purges done and verified fresh."
    assert "$14/month" in through_edge(fresh_stack, "/pricing").text
    [request] = h.front.agent.audit.dump()["audit_requests"]
    assert request["thread_id"] == f"{CHANNEL}:{root['ts']}" and request["interface"] == "slack"
    assert request["understood_by"] == "choice"  # the command said "purge": not left to interpretation
    assert not h.fake.responses()


def test_a_big_purge_asks_for_approval_in_its_thread_and_the_card_works(slack, fresh_stack):
    h = slack()  # threshold 2
    urls = " ".join(f"https://shop.example/products/shoes/{p}" for p in ("runner", "hiker", "loafer"))
    h.command(f"purge {urls}")
    [root] = h.channel_messages()
    card = h.approval_message(root["ts"])
    assert len(buttons(card)) == 2
    h.click(root["ts"], APPROVERS[0])
    assert h.reports(root["ts"]), "approved from the card: purged and reported in the command's thread"
    assert h.front.agent.result(f"{CHANNEL}:{root['ts']}").approval.by == APPROVERS[0]


def test_check_answers_only_the_asker_and_posts_nothing(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack()
    status, seconds = h.command(f"check {PRICING}")
    assert status == 200 and seconds < ACK_DEADLINE
    [answer] = h.fake.responses()
    assert answer["response_type"] == "ephemeral" and "pricing" in all_text(answer)
    assert not h.fake.calls_to("chat.postMessage")
    [request] = h.front.agent.audit.dump()["audit_requests"]
    assert request["intent"] == "check" and request["purge_count"] == 0


def test_history_is_answered_in_the_channel(slack, fresh_stack):
    h = slack(approval={"threshold": 20})
    h.command(f"purge {PRICING}")
    h.command(f"history {PRICING}")
    first, second = h.channel_messages()
    said = h.thread(second["ts"])[-1]["text"]
    assert "https://shop.example/pricing — 1 request," in said and "UBOB" in said and "verified fresh" in said
    assert f"<@UBOB> (slack <#{CHANNEL}>)" in all_text(h.thread(second["ts"])[-1])  # Slack shows their names


def test_unknown_verbs_and_missing_urls_get_help_not_a_run(slack):
    h = slack()
    h.command("obliterate everything")
    h.command("purge")
    unknown, missing = h.fake.responses()
    assert "I do not know `/cachebot obliterate`" in all_text(unknown)
    assert "needs at least one URL" in all_text(missing)
    assert not h.fake.calls_to("chat.postMessage") and not h.front.agent.audit.dump()["audit_requests"]


def test_user_text_in_the_channel_message_is_inert(slack):
    h = slack(approval={"threshold": 20})
    h.command("purge <!here> *now* `x <https://evil.example/|click> https://shop.example/pricing")
    [root] = h.channel_messages()
    for obj in mrkdwn_objects(root):
        assert_inert(obj)
    assert "<!here>" not in all_text(root)


def test_a_command_delivered_twice_runs_once(slack, fresh_stack):
    h = slack(approval={"threshold": 20})
    h.command(f"purge {PRICING}", trigger_id="111.222.abc")
    h.command(f"purge {PRICING}", trigger_id="111.222.abc")
    assert len(h.channel_messages()) == 1
    assert len(h.front.agent.audit.dump()["audit_requests"]) == 1


def test_a_forged_or_stale_command_is_refused_before_any_work(slack):
    h = slack()
    fields = slash_command(f"purge {PRICING}", user="UBOB", channel=CHANNEL, response_url=h.fake.response_url())
    assert h.sender.command(fields, secret="not-the-secret")[0] == 401
    assert h.sender.command(fields, timestamp=1_000_000_000)[0] == 401
    h.idle()
    assert h.front.received == 0
    assert {c.method for c in h.fake.calls} <= {"auth.test"}  # Bolt's start-up check, nothing after


def test_a_channel_the_bot_is_not_in_gets_told_how_to_invite_it(slack):
    h = slack()
    h.fake.closed_channels.add("CPRIVATE")
    h.command(f"purge {PRICING}", channel="CPRIVATE")
    [answer] = h.fake.responses()
    assert "invite me" in all_text(answer) and answer["response_type"] == "ephemeral"
    assert not h.front.agent.audit.dump()["audit_requests"]
