"""Score the labelled set (tests/data/understanding_set.jsonl) against a real OpenAI-compatible endpoint.

    /tmp/venv/bin/python bench/understanding_eval.py --base-url http://127.0.0.1:11434/v1 --model qwen2.5:7b
    OPENAI_API_KEY=sk-... /tmp/venv/bin/python bench/understanding_eval.py --base-url https://api.openai.com/v1 --model gpt-4o-mini

    .venv/bin/python bench/understanding_eval.py --rules      # the rules alone: no endpoint, no network

Prints the model's intent accuracy (answers that fell back to the rules are counted and listed separately), the
rules' accuracy on the same set, and the tokens used. Exits 2 with a clear message when the endpoint is unreachable.

Rows may carry ``kind`` (question, hypothetical, dry_run, cancel, polite, ...), ``lang`` and ``written``
("before_tuning": written and committed before the rules were tuned on them; "held_out": written at the same time
and left out while tuning, with ``--skip-written held_out``); the report breaks accuracy down by those, and counts the dangerous mistakes: a row that does not ask for a purge, understood as one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import LLMConfig  # noqa: E402
from agent.llm import ModelUnderstander, build_chat_model  # noqa: E402
from agent.understanding import RuleUnderstander  # noqa: E402

DATA = ROOT / "tests" / "data" / "understanding_set.jsonl"


def reachable(base_url: str, api_key: str, timeout: float) -> str | None:
    """None when the server answers at all (any HTTP status); otherwise why not."""
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


PURGING = {"purge", "purge_all"}


def load_rows(limit: int = 0, skip_written: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if skip_written:
        rows = [row for row in rows if row.get("written") != skip_written]
    return rows[:limit] if limit else rows


def breakdown(rows: list[dict], got: list[str], field: str) -> list[str]:
    """Accuracy per value of ``field`` (rows without it are left out)."""
    groups: dict[str, list[bool]] = {}
    for row, answer in zip(rows, got):
        if row.get(field):
            groups.setdefault(row[field], []).append(answer == row["intent"])
    return [f"  {field}={name}: {sum(marks) / len(marks):.1%} ({sum(marks)}/{len(marks)})"
            for name, marks in sorted(groups.items())]


def score(name: str, rows: list[dict], got: list[str]) -> None:
    """Overall accuracy, per kind/language/written, and the rows wrongly understood as a purge."""
    n = len(rows)
    right = sum(answer == row["intent"] for row, answer in zip(rows, got))
    print(f"{name}: intent accuracy {right / n:.1%} ({right}/{n})")
    for field in ("written", "kind", "lang"):
        for line in breakdown(rows, got, field):
            print(line)
    dangerous = [(row["text"], row["intent"], answer) for row, answer in zip(rows, got)
                 if answer in PURGING and row["intent"] not in PURGING]
    print(f"  not a purge request, understood as one: {len(dangerous)}")
    for text, expected, answer in dangerous:
        print(f"    ! expected {expected}, got {answer}: {text[:120]!r}")


def rules_only(limit: int, skip_written: str | None) -> int:
    rows = load_rows(limit, skip_written)
    rules = RuleUnderstander()
    got = [rules.understand_request(row["text"], ["shop"]).intent.value for row in rows]
    score("rules", rows, got)
    for row, answer in zip(rows, got):
        if answer != row["intent"]:
            print(f"  ✗ expected {row['intent']}, got {answer}: {row['text'][:120]!r}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", action="store_true", help="score the rules alone (no model, no network)")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N rows")
    parser.add_argument("--skip-written", metavar="GROUP",
                        help="leave out rows whose `written` is GROUP (e.g. held_out while tuning the rules)")
    parser.add_argument("--sites", default="shop", help="comma-separated site names shown to the model")
    args = parser.parse_args()
    if args.rules:
        return rules_only(args.limit, args.skip_written)
    if not args.base_url or not args.model:
        parser.error("--base-url (or $OPENAI_BASE_URL) and --model are needed, or --rules for the rules alone")

    why = reachable(args.base_url, args.api_key, min(args.timeout, 10))
    if why:
        print(f"cannot reach {args.base_url}: {why}\nStart an OpenAI-compatible server or pass --base-url.",
              file=sys.stderr)
        return 2

    rows = load_rows(args.limit, args.skip_written)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    settings = LLMConfig(model=args.model, base_url=args.base_url, api_key=args.api_key,
                         timeout_seconds=args.timeout, max_retries=1)
    model = ModelUnderstander(build_chat_model(settings))
    rules = RuleUnderstander()

    model_got: list[str] = []
    rules_got: list[str] = []
    fallbacks: list[str] = []
    tokens = Counter()
    for index, row in enumerate(rows, 1):
        got = model.understand_request(row["text"], sites)
        if got.understood_by == "rules_fallback":
            fallbacks.append(row["text"])
        model_got.append(got.intent.value)
        rules_got.append(rules.understand_request(row["text"], sites).intent.value)
        for key in ("input_tokens", "output_tokens"):
            tokens[key] += (got.token_usage or {}).get(key, 0)
        print(f"\r{index}/{len(rows)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    n = len(rows)
    score(f"model {args.model} at {args.base_url}", rows, model_got)
    print(f"  of which answered by the rules because the model failed: {len(fallbacks)}")
    score("rules on the same set", rows, rules_got)
    print(f"tokens: {tokens['input_tokens']:,} in, {tokens['output_tokens']:,} out "
          f"({tokens['input_tokens'] / n:,.0f} in per request)")
    for row, got in zip(rows, model_got):
        if got != row["intent"]:
            print(f"  ✗ model: expected {row['intent']}, got {got}: {row['text'][:120]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
