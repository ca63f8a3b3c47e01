"""Agents wired to the real local stack, with a clock the tests can move."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from agent.config import AppConfig, parse_config
from agent.demo.stack import Stack
from agent.service.agent import Agent
from agent.state import AgentContext


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_agent(fresh_stack: Stack, tmp_path, clock, database_url) -> Iterator[Callable[..., Agent]]:
    """Build an Agent on the stack; keyword arguments override top-level config sections.

    Parametrised through ``database_url``: every graph test runs once on SQLite (checkpoints and audit in files)
    and once on the real PostgreSQL (PostgresSaver and the audit in one database)."""
    agents: list[Agent] = []

    def build(checkpoint: str = "state.sqlite", **sections) -> Agent:
        data = fresh_stack.config_dict()
        data["storage"] = {**data["storage"], "database_url": database_url}
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        config: AppConfig = parse_config(data)
        agent = Agent(config, context=AgentContext(config=config, now=clock),
                      checkpoint_path=str(tmp_path / checkpoint))
        agents.append(agent)
        return agent

    yield build
    for agent in agents:
        agent.close()


def through_edge(stack: Stack, path: str) -> httpx.Response:
    """What a visitor gets: the page through nginx -> varnish -> origin."""
    return httpx.get(stack.nginx_url + path, headers={"Host": stack.host}, timeout=10)


def warm(stack: Stack, *paths: str) -> None:
    for path in paths:
        for _ in range(2):
            through_edge(stack, path)
