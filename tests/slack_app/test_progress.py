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


class StatusRecorder:
    """What ``ThreadStatus`` needs of ``SlackApi``: the status lines it set, in order."""

    def __init__(self):
        self.said = []

    def thread_status(self, channel, thread_ts, status):
        self.said.append(status)


def test_the_assistant_status_line_is_throttled_and_cleared():
    from agent.models import Plan
    from agent.service.events import PlanReady
    from slack_app.progress import ThreadStatus

    slack, clock = StatusRecorder(), Clock()
    status = ThreadStatus(slack, "D1", "1.2", interval=1.0, clock=clock)
    status.start()
    clock.t = 1.0
    status.event(PlanReady(plan=Plan.model_validate({"items": [], "pages": ["a", "b", "c"]})))
    status.event(Progress(phase="purge", done=1, total=9))  # within the interval: skipped
    clock.t = 2.5
    status.event(Progress(phase="purge", done=6, total=9))
    status.event(StepDone(step="purged"))  # not a status
    status.clear()
    assert slack.said == ["Looking into it…", "Purging 3 pages…", "Purging 6/9…", ""]
