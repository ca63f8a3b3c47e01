"""The progress message: posted once, then updated in place at most once per interval, final state flushed."""

from __future__ import annotations

from slack_app.progress import ProgressMessage
from agent.service.events import Progress, StepDone


class FakeClient:
    def __init__(self):
        self.calls = []

    def chat_postMessage(self, **kwargs):
        self.calls.append(("post", kwargs))
        return {"ts": "9.9"}

    def chat_update(self, **kwargs):
        self.calls.append(("update", kwargs))
        return {"ok": True}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


def test_throttled_to_one_update_per_interval_and_flushed_at_the_end():
    client, clock = FakeClient(), Clock()
    progress = ProgressMessage(client, "C1", "1.2", interval=1.0, clock=clock, sleep=clock.sleep)
    for done in range(1, 101):  # 100 batches over 2.5 seconds
        progress.event(Progress(phase="purge", done=done, total=100))
        clock.t += 0.025
    progress.finish()
    kinds = [kind for kind, _ in client.calls]
    assert kinds[0] == "post" and kinds.count("post") == 1
    assert 2 <= kinds.count("update") <= 4
    assert client.calls[-1][1]["text"] == "✓ Finished Purging 100/100"
    assert all(kw.get("ts", "9.9") == "9.9" for _, kw in client.calls)


def test_no_progress_events_means_no_message():
    client = FakeClient()
    progress = ProgressMessage(client, "C1", "1.2")
    progress.event(StepDone(step="purged"))
    progress.finish()
    assert client.calls == []
