"""`cachebot web`: serves on loopback by default, and refuses any other address without a token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from tests.agent.web.conftest import SECRET

runner = CliRunner()
CACHEBOT = Path(sys.executable).with_name("cachebot")


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "cachebot.yaml"
    path.write_text(yaml.safe_dump({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["varnish"]}],
        "layers": [{"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"sqlite_path": str(tmp_path / "state" / "state.sqlite")},
    }))
    return path


def test_another_address_without_a_token_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("CACHEBOT_WEB_TOKEN", raising=False)
    for host in ("0.0.0.0", "::", "192.0.2.10", "cachebot.example"):
        refused = runner.invoke(app, ["web", "--host", host, "--config", str(write_config(tmp_path))])
        assert refused.exit_code == 2, refused.output
        assert "--token" in refused.output and "CACHEBOT_WEB_TOKEN" in refused.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_by_default_it_serves_on_loopback_only(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEBOT_")}
    server = subprocess.Popen([str(CACHEBOT), "web", "--port", str(port), "--config", str(write_config(tmp_path))],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answer = None
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200 and "No requests recorded" in answer.text
        listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{port}"]  # local address
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert f"http://127.0.0.1:{port}/" in output and SECRET not in output
