"""The Web API as the handlers use it: retries (rate limits), user groups for approval, and calls that fail
without breaking a run. The first two run end to end (real HTTP, the loopback Slack); the rest on a stub client."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from agent.config import ApprovalConfig
from slack_app.slack_api import SlackApi, SlackUserGroups, approver_mentions
from tests.slack_app.conftest import BIG, SMALL, all_text


def test_rate_limited_post_is_retried_after_retry_after(slack):
    h = slack()
    h.fake.rate_limit_once("chat.postMessage", retry_after=1)
    ts = h.dm("help")
    assert len(h.fake.rate_limited("chat.postMessage")) == 1
    [reply] = h.fake.in_thread("DBOB", ts)
    assert "I clear cached pages" in all_text(reply)


def test_a_report_is_not_lost_to_a_rate_limit_or_server_errors(slack):
    """Every kind of bad answer Slack's edge gives, once or twice, on the calls that carry the answer: each is
    retried (after Retry-After for the 429, with backoff for the 5xx) and the thread gets exactly one report."""
    h = slack(approval={"threshold": 20})
    h.fake.rate_limit_once("chat.postMessage", retry_after=1)
    for status in (500, 502):
        h.fake.fail_next("chat.postMessage", status)
    for status in (503, 504):
        h.fake.fail_next("chat.update", status)
    thread_ts = h.mention(SMALL)
    assert len(h.fake.rate_limited("chat.postMessage")) == 1
    assert sorted(c.status for c in h.fake.failed("chat.postMessage")) == [500, 502]
    assert sorted(c.status for c in h.fake.failed("chat.update")) == [503, 504]
    assert len(h.reports(thread_ts)) == 1
    assert not any("Looking at" in all_text(m) for m in h.thread(thread_ts))  # the status message was replaced


def test_user_group_members_may_approve(slack, fake_slack):
    fake_slack.user_groups["SAPPROVERS"] = ["UDAVE"]
    h = slack(approval={"approver_groups": ["SAPPROVERS"]})
    thread_ts = h.mention(BIG)
    assert "subteam^SAPPROVERS" in all_text(h.approval_message(thread_ts))
    h.click(thread_ts, "UDAVE", "approve")
    assert len(h.reports(thread_ts)) == 1
    assert h.fake.calls_to("usergroups.users.list", usergroup="SAPPROVERS")


class RefusingClient:
    """Every call fails as Slack would answer ``ok: false``."""

    def __init__(self, error: str = "channel_not_found"):
        self.error = error
        self.calls: list[str] = []

    def __getattr__(self, method: str):
        def call(**kwargs):
            self.calls.append(method)
            raise SlackApiError(self.error, {"ok": False, "error": self.error})

        return call


def test_a_refused_call_is_logged_and_never_raises(caplog):
    client = RefusingClient()
    slack = SlackApi(client)
    assert slack.post("C1", "1.2", "hello") is None
    slack.update("C1", "1.3", "hello", [])
    slack.ephemeral("C1", "UBOB", "1.2", "hello")
    assert slack.upload_csv("C1", "1.2", "a,b\n", filename="r.csv", title="r", comment="c") == "channel_not_found"
    assert client.calls == ["chat_postMessage", "chat_update", "chat_postEphemeral", "files_upload_v2"]
    assert caplog.text.count("channel_not_found") == 4


def test_nothing_is_sent_without_a_message_or_a_recipient():
    client = RefusingClient()
    slack = SlackApi(client)
    slack.update("C1", None, "hello", [])  # the status message was never posted
    slack.ephemeral("C1", "", "1.2", "hello")  # no clicker
    assert client.calls == []


def test_a_reply_replaces_the_status_message_when_there_is_one():
    class Recording:
        def __init__(self):
            self.calls = []

        def chat_postMessage(self, **kwargs):
            self.calls.append(("post", kwargs))
            return {"ts": "9.9"}

        def chat_update(self, **kwargs):
            self.calls.append(("update", kwargs))
            return {"ok": True}

    client = Recording()
    slack = SlackApi(client, keep=("<@UALICE>",))
    slack.reply_in_place("C1", "1.2", "1.3", "ask <@UALICE>")
    slack.reply_in_place("C1", "1.2", None, "ask <@UALICE>")
    (kind1, update), (kind2, post) = client.calls
    assert (kind1, update["ts"]) == ("update", "1.3") and (kind2, post["thread_ts"]) == ("post", "1.2")
    assert "<@UALICE>" in update["blocks"][0]["text"]["text"]  # our own mention stays live


def test_approver_mentions_are_users_and_groups():
    rules = ApprovalConfig(approvers=["UALICE"], approver_groups=["SOPS"])
    assert approver_mentions(rules) == ("<@UALICE>", "<!subteam^SOPS>")


def test_user_groups_are_cached_and_a_refusal_means_no_groups():
    class Groups:
        calls = 0

        def usergroups_users_list(self, usergroup):
            Groups.calls += 1
            if usergroup == "SGONE":
                raise SlackApiError("no_such_subteam", {"ok": False, "error": "no_such_subteam"})
            return {"users": ["UDAVE"]}

    groups = SlackUserGroups(Groups(), ["SOPS", "SGONE"])
    assert groups("UDAVE") == {"SOPS"} and groups("UEVE") == set()
    assert Groups.calls == 3  # SOPS once (cached), SGONE each time (a refusal is not cached)


def test_a_final_message_is_found_by_its_metadata_on_any_page_of_the_thread(fake_slack):
    """``finished_in_thread`` reads the thread as Slack lists it (conversations.replies, include_all_metadata,
    cursor pages): a request's final message is found by the request it names, and only by that."""
    from slack_app import blocks as kit
    from slack_app.slack_api import make_client

    api = SlackApi(make_client("xoxb-test-token", fake_slack.api_url))
    thread_ts = "1800000999.000100"
    for n in range(230):  # more than one page of 200
        api.post("CPAGES", thread_ts, f"progress {n}")
    api.post("CPAGES", thread_ts, "All 2 purges done and verified fresh.",
             metadata=kit.finished_metadata("event:EvLATE", f"CPAGES:{thread_ts}", "report"))

    assert api.finished_in_thread("CPAGES", thread_ts, "event:EvLATE")
    assert not api.finished_in_thread("CPAGES", thread_ts, "event:EvOTHER")  # another request's answer is not it
    assert not api.finished_in_thread("CPAGES", "1800000998.000100", "event:EvLATE")  # no such thread: not found
    pages = fake_slack.calls_to("conversations.replies", ts=thread_ts)
    assert len(pages) >= 2 and all(c.response["ok"] for c in pages)
    without = fake_slack.handle("conversations.replies", {"channel": "CPAGES", "ts": thread_ts})[1]
    assert not any("metadata" in m for m in without["messages"])  # Slack leaves metadata out unless asked
