"""What `cachebot` loads before it answers: the commands a person runs most (`--help`, `history`, another
command's `--help`) must not import the agent's heavy machinery (LangGraph and the LangChain/LangSmith stack,
SQLAlchemy, Alembic, boto3, Bolt, the cache clients). Each import costs start-up time on every run (issue #13:
`cachebot --help` took 2.5 s). How long start-up takes is measured by bench/startup.py, not here: these tests
look at which modules a fresh process imported, which does not depend on how busy the machine is.

When one fails: import the named module inside the function that needs it (agent/cli/ask.py shows how), or
behind ``if TYPE_CHECKING:`` when it is only an annotation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from agent.storage.audit import AuditStore
from agent.storage.database import resolve_database_url
from agent.config import StorageConfig

ROOT = Path(__file__).resolve().parents[3]

# The agent's heavy machinery: no light command needs any of it.
AGENT_MACHINERY = {"langgraph", "langchain_core", "langchain_openai", "langsmith", "openai", "boto3", "botocore",
                   "slack_bolt", "slack_sdk", "aiohttp", "redis", "pymemcache", "psycopg", "aiosqlite", "alembic"}
# `--help` reads no file and no database: not even the records (pydantic) or the audit store (SQLAlchemy).
HELP_ALSO_NOT = {"sqlalchemy", "pydantic", "httpx", "yaml", "regex"}

# Runs `cachebot` with each argument list in turn, in one fresh process (one start-up, however many commands),
# then prints the top-level packages imported by then.
RUN_CACHEBOT = """
import json, sys
sys.argv[0] = "cachebot"
from agent.cli.main import app
for arguments in json.loads(sys.argv[1]):
    try:
        app(arguments)
    except SystemExit as exit:
        if exit.code:
            sys.exit(f"cachebot {' '.join(arguments)} exited with {exit.code}")
print("\\nMODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def imported_by(*commands: list[str], cwd: Path) -> set[str]:
    """The top-level packages a fresh process had imported after running `cachebot` with each of ``commands``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBOT_", "OPENAI_", "SLACK_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", RUN_CACHEBOT, json.dumps(commands)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = done.stdout.rsplit("MODULES ", 1)
    assert len(listed) == 2, done.stdout + done.stderr
    return set(json.loads(listed[1]))


def write_config(directory: Path) -> Path:
    """The demo's shape: an app cache in Redis, Varnish, an nginx edge (nothing needs to answer)."""
    config = {
        "sites": [{"name": "shop", "hosts": ["shop.example"], "origin": "http://127.0.0.1:9",
                   "layers": ["appcache", "varnish", "edge"]}],
        "layers": [
            {"name": "appcache", "kind": "redis", "endpoint": "redis://127.0.0.1:9/0",
             "options": {"key_templates": ["page:{host}{path}"]}},
            {"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9"},
            {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9"},
        ],
        "storage": {"sqlite_path": str(directory / "state" / "state.sqlite")},
    }
    path = directory / "cachebot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_help_lists_every_command_without_loading_the_agent(tmp_path):
    loaded = imported_by(["--help"], cwd=tmp_path)
    assert not loaded & (AGENT_MACHINERY | HELP_ALSO_NOT), sorted(loaded & (AGENT_MACHINERY | HELP_ALSO_NOT))
    assert "agent" in loaded and "slack_app" in loaded  # the plug-in commands were listed too


def test_a_commands_help_does_not_load_the_agent(tmp_path):
    commands = [[name, "--help"] for name in ("ask", "approve", "chat", "history", "stats", "recover", "graph",
                                              "slack", "digest", "db", "demo", "trace", "web")]
    loaded = imported_by(*commands, cwd=tmp_path)
    assert not loaded & AGENT_MACHINERY, sorted(loaded & AGENT_MACHINERY)


def test_history_reads_the_audit_trail_without_the_graph_or_the_cache_clients(tmp_path):
    write_config(tmp_path)
    storage = StorageConfig(sqlite_path=str(tmp_path / "state" / "state.sqlite"))
    AuditStore.open(resolve_database_url(storage)).close()  # the schema exists, as after any earlier run

    loaded = imported_by(["history", "--since", "1d"], ["stats"], cwd=tmp_path)
    assert "sqlalchemy" in loaded  # it did read the database
    # nor the HTTP client: checking the layers' options imports the layers, and they load httpx only to send
    assert not loaded & (AGENT_MACHINERY | {"httpx"}), sorted(loaded & (AGENT_MACHINERY | {"httpx"}))


def test_the_agent_on_sqlite_loads_neither_the_postgresql_driver_nor_unused_clients(tmp_path):
    """`cachebot ask` needs LangGraph; it does not need psycopg on SQLite, boto3 without a CloudFront layer, the
    OpenAI client without a model, Bolt outside Slack, or Alembic once the schema is current."""
    write_config(tmp_path)
    imported_by(["ask", "help"], cwd=tmp_path)  # the first run creates the schema
    loaded = imported_by(["ask", "help"], cwd=tmp_path)
    assert "langgraph" in loaded
    unused = {"psycopg", "psycopg_pool", "boto3", "botocore", "openai", "langchain_openai", "slack_bolt", "alembic"}
    assert not loaded & unused, sorted(loaded & unused)


def test_trace_reads_a_run_back_without_the_graph_or_langgraph(tmp_path):
    """`cachebot trace` reads the checkpoints' tables itself (agent.storage.history): it shows a run's steps
    without importing LangGraph, the savers or the serializer (a 5,000-URL trace spent most of its second there)."""
    write_config(tmp_path)
    imported_by(["ask", "help"], cwd=tmp_path)  # a request with its checkpoints, recorded by the agent

    loaded = imported_by(["trace", "last"], cwd=tmp_path)
    assert "sqlalchemy" in loaded and "ormsgpack" in loaded  # it did read the audit and the checkpoints
    assert not loaded & AGENT_MACHINERY, sorted(loaded & AGENT_MACHINERY)
