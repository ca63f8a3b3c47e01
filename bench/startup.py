"""How long a person waits for `cachebot` to start: `--help`, `history --since 1d`, `ask --help`, and the rest.

Each command runs as a fresh process (`python -m agent.cli …`, what the `cachebot` script does), from this
working tree and, in the same run, from a baseline commit checked out in a temporary git worktree (default: the
commit before start-up was made lazy; `--baseline main` compares with main). Both use this virtualenv's Python,
with `PYTHONPATH` naming the tree, so only cachebot's own code differs. Runs alternate between the two trees so a
busy machine slows both alike. The config is the demo's shape (Redis app cache, Varnish, nginx; nothing needs to
answer) with a few recorded requests in its audit trail. Printed: median and best wall time per command, the
ratio to the baseline, the floor (`python -c pass`), the targets of issue #13, and the heavy libraries each
command imported. Figures, not a pass/fail test:

    python bench/startup.py [--runs 7] [--baseline REV] [--profile]

`--profile` also prints, per command, the slowest imports of this tree (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEFORE_LAZY_START = "6392035"  # main before issue #13's start-up work
HEAVY = ("langgraph", "langchain_core", "langchain_openai", "langsmith", "openai", "sqlalchemy", "alembic", "boto3",
         "botocore", "slack_bolt", "slack_sdk", "httpx", "aiohttp", "redis", "psycopg", "pydantic")
COMMANDS = {  # name: (arguments, target in seconds or None)
    "--help": (["--help"], 0.3),
    "history --since 1d": (["history", "--since", "1d"], 0.6),
    "ask --help": (["ask", "--help"], None),
    "stats": (["stats"], None),
    "ask help (whole agent)": (["ask", "help"], None),
}
LIST_MODULES = ("import sys, json, atexit\n"
                "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})),"
                " file=sys.stderr))\n"
                "sys.argv[0] = 'cachebot'\n"
                "from agent.cli.main import app\n"
                "app()\n")


def write_workdir(workdir: Path) -> None:
    """The demo's config shape, nothing listening; an audit trail with a few requests from the last hours."""
    config = {
        "sites": [{"name": "shop", "hosts": ["shop.example"], "origin": "http://127.0.0.1:9",
                   "layers": ["appcache", "varnish", "edge"]}],
        "layers": [
            {"name": "appcache", "kind": "redis", "endpoint": "redis://127.0.0.1:9/0",
             "options": {"key_templates": ["page:{host}{path}"]}},
            {"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:9"},
            {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9",
             "options": {"purge_path_prefix": "/purge"}},
        ],
        "approval": {"approvers": ["alice"]},
        "storage": {"sqlite_path": str(workdir / "state" / "state.sqlite")},
    }
    (workdir / "cachebot.yaml").write_text(yaml.safe_dump(config))
    for n in range(3):  # recorded the way any request is: through the agent ("help" touches no cache)
        subprocess.run([sys.executable, "-m", "agent.cli", "ask", f"help {n}", "--as", "bob"], cwd=workdir,
                       env=environment(ROOT), check=True, capture_output=True)


def environment(tree: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE is left out, as on a person's machine: with it, every start-up compiled cachebot's
    # own modules from source again (65 ms of `history`, measured), a cost no user pays after the first run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CACHEBOT_", "OPENAI_", "SLACK_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), COLUMNS="100", NO_COLOR="1")
    return env


def timed(tree: Path, workdir: Path, arguments: list[str]) -> tuple[float, float, list[str]]:
    """Wall time and CPU time (user + system: less sensitive to a busy machine than wall time) of one fresh
    `cachebot …` process, and the top-level packages it had imported at exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LIST_MODULES, *arguments], cwd=workdir, env=environment(tree),
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = done.stderr.strip().splitlines()[-1:] or ["[]"]
    try:
        modules = json.loads(last[0])
    except json.JSONDecodeError:
        raise SystemExit(f"{' '.join(arguments)} failed in {tree}:\n{done.stdout}\n{done.stderr}") from None
    return elapsed, cpu, [m for m in HEAVY if m in modules]


def floor(runs: int) -> tuple[float, float]:
    """`python -c pass`: wall and CPU time, medians."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def slowest_imports(tree: Path, workdir: Path, arguments: list[str], top: int = 12) -> list[tuple[float, str]]:
    """The packages with the largest cumulative import time, outermost first (`python -X importtime`)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", LIST_MODULES, *arguments], cwd=workdir,
                          env=environment(tree), capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if found and len(found[2]) <= 2:  # imported by cachebot or typer themselves, not deep inside a library
            rows.append((int(found[1]) / 1e6, found[3]))
    return sorted(rows, reverse=True)[:top]


def baseline_tree(revision: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="cachebot-startup-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), revision],
                   check=True, capture_output=True)
    return path


def compile_tree(tree: Path) -> None:
    """Byte-compile a tree's own packages, as `pip install` does for an installed package, so neither tree's
    first timed run pays for compiling."""
    packages = [str(tree / name) for name in ("agent", "slack_app") if (tree / name).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command and tree (default 7)")
    parser.add_argument("--baseline", default=BEFORE_LAZY_START, help=f"git revision to compare with "
                        f"(default {BEFORE_LAZY_START}, before start-up was made lazy)")
    parser.add_argument("--profile", action="store_true", help="print the slowest imports of each command")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a `timeout` still removes the baseline worktree

    workdir = Path(tempfile.mkdtemp(prefix="cachebot-startup-"))
    write_workdir(workdir)
    before = baseline_tree(args.baseline)
    try:
        for tree in (before, ROOT):
            compile_tree(tree)
        wall_floor, cpu_floor = floor(args.runs)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.runs} runs each, alternating; "
              f"baseline {args.baseline}; `python -c pass`: {wall_floor:.3f} s wall, {cpu_floor:.3f} s CPU")
        print("seconds: median wall (best) | median CPU; the target is on wall time, which a busy machine inflates")
        print(f"{'command':<24} {'baseline':>22} {'this tree':>22} {'ratio':>6}  target")
        for name, (arguments, target) in COMMANDS.items():
            times: dict[str, list[float]] = {"before": [], "after": []}
            cpus: dict[str, list[float]] = {"before": [], "after": []}
            heavy: dict[str, list[str]] = {}
            for _ in range(args.runs):
                for label, tree in (("before", before), ("after", ROOT)):
                    elapsed, cpu, heavy[label] = timed(tree, workdir, arguments)
                    times[label].append(elapsed)
                    cpus[label].append(cpu)
            b, a = statistics.median(times["before"]), statistics.median(times["after"])
            met = "" if target is None else f"< {target} s: {'met' if a < target else 'NOT met'}"
            print(f"{name:<24} {b:6.3f} ({min(times['before']):.3f}) | {statistics.median(cpus['before']):.3f} "
                  f"{a:6.3f} ({min(times['after']):.3f}) | {statistics.median(cpus['after']):.3f} "
                  f"{a / b:5.2f}×  {met}")
            print(f"{'':<24} imports before: {', '.join(heavy['before']) or '-'}")
            print(f"{'':<24} imports now:    {', '.join(heavy['after']) or '-'}")
            if args.profile:
                for seconds, module in slowest_imports(ROOT, workdir, arguments):
                    print(f"{'':<28} {seconds:6.3f} s  {module}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
