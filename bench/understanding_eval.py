"""Score the labelled set (tests/data/understanding_set.jsonl) against a real OpenAI-compatible endpoint.

    /tmp/venv/bin/python bench/understanding_eval.py --base-url http://127.0.0.1:11434/v1 --model qwen2.5:7b
    OPENAI_API_KEY=sk-... /tmp/venv/bin/python bench/understanding_eval.py --base-url https://api.openai.com/v1 --model gpt-4o-mini

Prints the model's intent accuracy (answers that fell back to the rules are counted and listed separately), the
rules' accuracy on the same set, and the tokens used. Exits 2 with a clear message when the endpoint is unreachable.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"), required=not os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N rows")
    parser.add_argument("--sites", default="shop", help="comma-separated site names shown to the model")
    args = parser.parse_args()

    why = reachable(args.base_url, args.api_key, min(args.timeout, 10))
    if why:
        print(f"cannot reach {args.base_url}: {why}\nStart an OpenAI-compatible server or pass --base-url.",
              file=sys.stderr)
        return 2

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    settings = LLMConfig(model=args.model, base_url=args.base_url, api_key=args.api_key,
                         timeout_seconds=args.timeout, max_retries=1)
    model = ModelUnderstander(build_chat_model(settings))
    rules = RuleUnderstander()

    right = rules_right = 0
    fallbacks: list[str] = []
    wrong: list[tuple[str, str, str]] = []
    tokens = Counter()
    for index, row in enumerate(rows, 1):
        got = model.understand_request(row["text"], sites)
        if got.understood_by == "rules_fallback":
            fallbacks.append(row["text"])
        if got.intent == row["intent"]:
            right += 1
        else:
            wrong.append((row["text"], row["intent"], got.intent.value))
        rules_right += rules.understand_request(row["text"], sites).intent == row["intent"]
        for key in ("input_tokens", "output_tokens"):
            tokens[key] += (got.token_usage or {}).get(key, 0)
        print(f"\r{index}/{len(rows)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    n = len(rows)
    print(f"model {args.model} at {args.base_url}: intent accuracy {right / n:.1%} ({right}/{n})")
    print(f"  of which answered by the rules because the model failed: {len(fallbacks)}")
    print(f"rules on the same set: {rules_right / n:.1%} ({rules_right}/{n})")
    print(f"tokens: {tokens['input_tokens']:,} in, {tokens['output_tokens']:,} out "
          f"({tokens['input_tokens'] / n:,.0f} in per request)")
    for text, expected, got in wrong:
        print(f"  ✗ expected {expected}, got {got}: {text[:120]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
