"""Listeners on their own: a recording stand-in for Bolt's ``App`` and for the dispatcher they hand jobs to."""

from __future__ import annotations

from collections.abc import Callable

import pytest


class RecordingApp:
    """What ``register`` needs of a Bolt ``App``: its listener decorators. Keeps the listeners."""

    def __init__(self) -> None:
        self.events: dict[str, Callable] = {}
        self.actions: dict[str, Callable] = {}
        self.commands: dict[str, Callable] = {}
        self.message_shortcuts: dict[str, Callable] = {}
        self.view_submissions: dict[str, Callable] = {}

    def event(self, kind: str):
        return lambda fn: self.events.setdefault(kind, fn)

    def action(self, action_id: str):
        return lambda fn: self.actions.setdefault(action_id, fn)

    def command(self, name: str):
        return lambda fn: self.commands.setdefault(name, fn)

    def message_shortcut(self, callback_id: str):
        return lambda fn: self.message_shortcuts.setdefault(callback_id, fn)

    def view_submission(self, callback_id: str):
        return lambda fn: self.view_submissions.setdefault(callback_id, fn)


class RecordingIntake:
    """The dispatcher's side of a listener: what was handed on, and in which order things happened."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.jobs: list = []
        self.steps: list[str] = []

    def take_in(self, job) -> None:
        self.steps.append("take_in")
        if self.fail:
            raise RuntimeError("the intake queue is gone")
        self.jobs.append(job)

    def count_received(self) -> None:
        self.steps.append("received")

    def ack(self) -> None:
        self.steps.append("ack")


@pytest.fixture
def app() -> RecordingApp:
    return RecordingApp()


@pytest.fixture
def intake() -> RecordingIntake:
    return RecordingIntake()
