"""``python -m agent.cli …``: the ``cachebot`` command."""

from agent.cli.main import app

app()
