"""The architecture is checked with the suite: ``lint-imports`` runs the contracts in pyproject.toml
(``[tool.importlinter]``: agent never imports slack_app, the layers, the demo stack only for the CLI, no import
cycles), so a change that breaks one fails here with import-linter's explanation of which import and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_import_contracts_hold():
    checked = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    report = checked.stdout + checked.stderr
    assert checked.returncode == 0, f"an import contract is broken (pyproject.toml, [tool.importlinter]):\n{report}"
    assert "0 broken" in report, report
