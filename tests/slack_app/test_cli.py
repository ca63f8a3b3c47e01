"""The Slack app's part of `cachebot` (slack_app/cli.py, plugged in through entry points): `cachebot slack` serves
events, `cachebot digest` prints or posts the digest, `cachebot recover` tells the recovered runs' threads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import parse_config
from agent.service.recovery import RESTARTED
from tests.fakes.slack import SlackSender, mention
from tests.slack_app.conftest import CHANNEL, SECRET, SMALL, new_ts
from tests.slack_app.test_recovery_digest import Died, die_in_execute


def test_the_slack_commands_are_part_of_cachebot():
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert {"slack", "digest", "recover"} <= names


def test_cachebot_slack_http_command_serves_events_and_health(stack, fake_slack, tmp_path):
    data = stack.config_dict()
    data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite")}
    config = tmp_path / "cachebot.yaml"
    config.write_text(yaml.safe_dump(data))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-secret-token-value", "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_API_URL": fake_slack.api_url, "CACHEBOT_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-c", "from agent.cli.main import app; app()", "slack", "--http",
                             "--port", str(port), "--host", "127.0.0.1", "--workers", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)
        ts = new_ts()
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET)
        assert sender.event(mention("help", user="UBOB", channel=CHANNEL, ts=ts))[0] == 200
        fake_slack.wait_for(lambda: any("I clear cached pages" in (m["text"] or "")
                                        for m in fake_slack.in_thread(CHANNEL, ts)), what="the help reply")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "xoxb-secret-token-value" not in output and SECRET not in output


def test_cachebot_digest_post_sends_the_stats_summary(slack, fake_slack, fresh_stack, tmp_path, monkeypatch):
    h = slack(approval={"threshold": 20})
    h.mention(SMALL)
    data = fresh_stack.config_dict()
    data["storage"] = {"sqlite_path": str(h.config.storage.sqlite_path)}
    data["digest"] = {"channel": "CDIGEST", "weekday": "mon", "hour": 9}
    config = tmp_path / "digest.yaml"
    config.write_text(yaml.safe_dump(data))
    assert parse_config(data).digest.weekday == "mon"
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-digest")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.api_url)
    result = CliRunner().invoke(app, ["digest", "--post", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [posted] = fake_slack.calls_to("chat.postMessage", channel="CDIGEST")
    text = posted.args["text"]
    for part in ("1 requests", "Top sites", "shop: ", "Top sections", "shop `/pricing`", "Top layers",
                 "shop/varnish", "Most purged paths", "1× shop `/pricing`", "Layers stale most often",
                 "Median request → verified"):
        assert part in text, (part, text)
    printed = CliRunner().invoke(app, ["digest", "--config", str(config)])  # without --post: printed only
    assert printed.exit_code == 0 and "Top sections" in printed.output
    assert len(fake_slack.calls_to("chat.postMessage", channel="CDIGEST")) == 1


def test_cachebot_recover_tells_the_slack_thread(slack, fake_slack, fresh_stack, tmp_path, monkeypatch):
    h = slack(approval={"threshold": 20})  # runs at once
    thread_ts = new_ts()
    with pytest.raises(Died):
        h.front.agent.ask(SMALL, user="UBOB", channel=CHANNEL, thread_id=f"{CHANNEL}:{thread_ts}",
                          interface="slack", on_event=die_in_execute)
    h.stop_all()  # the process that was running it is gone
    data = fresh_stack.config_dict()
    data["storage"] = {"sqlite_path": str(h.config.storage.sqlite_path)}
    config = tmp_path / "recover.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-recover")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.api_url)
    result = CliRunner().invoke(app, ["recover", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{CHANNEL}:{thread_ts}: finished" in result.output
    texts = [m["text"] for m in h.thread(thread_ts)]
    assert texts[0].startswith(RESTARTED) and "finished it" in texts[0]
    assert len(h.reports(thread_ts)) == 1
