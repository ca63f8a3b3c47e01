"""Hostile-input regressions run against the same real stack and agents as tests/agent."""

from tests.agent.conftest import clock, make_agent  # noqa: F401 (fixtures)
