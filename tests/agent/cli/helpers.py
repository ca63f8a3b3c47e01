"""What the CLI tests share: typer's runner, and a config file for the real stack."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from agent.cli.main import app

runner = CliRunner()


def write_config(stack, tmp_path, **sections):
    data = stack.config_dict()
    data["storage"] = {"sqlite_path": str(tmp_path / "cli.sqlite")}
    data.update(sections)
    path = tmp_path / "cachebot.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def waiting_request(fresh_stack, tmp_path, **approval):
    config = write_config(fresh_stack, tmp_path, approval={"threshold": 1, "approvers": ["alice"], **approval})
    asked = runner.invoke(app, ["ask", "purge https://shop.example/pricing", "--json", "--config", config,
                                "--as", "bob"])
    return config, json.loads(asked.output)["thread_id"]
