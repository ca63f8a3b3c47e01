"""What understanding a request with a model costs, for 1, 50 and 500 URLs — ours versus the seed's approach.

Both run the real ``ChatOpenAI`` client against the loopback fake server (``tests/fakes/openai.py``), which
reports prompt tokens as characters / 4:

* placeholders (agent.llm): the message with URLs replaced by [URLn] / "[N URLs]", structured output;
* URLs as function arguments (the seed's approach): the raw message goes to the model, which calls a
  ``purge_urls(intent, urls)`` tool writing every URL back out.

    /tmp/venv/bin/python bench/llm_cost.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel, Field  # noqa: E402

from agent.config import LLMConfig  # noqa: E402
from agent.llm import ModelUnderstander, build_chat_model  # noqa: E402
from tests.fakes.openai import FakeOpenAI, answer_text, prompt_text, user_text  # noqa: E402

SIZES = (1, 50, 500)


class PurgeUrls(BaseModel):
    """Purge the cached pages at these URLs (the seed's tool: the model passes the URLs as arguments)."""

    intent: str = Field(description="purge, check, help or other")
    urls: list[str] = Field(description="every URL the person wants purged, exactly as written")


def message_with(count: int) -> str:
    urls = [f"https://shop.example/products/category-{i % 7}/item-{i}?ref=slack" for i in range(1, count + 1)]
    return "these still show the old price, please clear them:\n" + "\n".join(f"• <{u}>" for u in urls) + "\nthanks!"


def seed_answer(body: dict) -> dict:
    """The fake model doing what the seed asked of it: write every URL of the message back as arguments."""
    import re

    urls = re.findall(r"<(https?://[^>|]+)", user_text(body))
    return {"intent": "purge", "urls": urls}


def measure(fake: FakeOpenAI, run) -> dict:
    before = len(fake.requests)
    run()
    bodies = fake.requests[before:]
    raw = fake.raw_requests[before:]
    return {
        "calls": len(bodies),
        "prompt_chars": sum(len(prompt_text(b)) + len(json.dumps(b.get("tools") or b.get("response_format") or ""))
                            for b in bodies),
        "request_bytes": sum(len(r.encode()) for r in raw),
        "answer_chars": sum(len(answer_text(payload)) for _, payload in fake.responses[before:]),
    }


def main() -> None:
    rows = []
    with FakeOpenAI() as fake:
        settings = LLMConfig(model="fake-model", base_url=fake.base_url, api_key="x", max_retries=0)
        chat = build_chat_model(settings)
        ours = ModelUnderstander(chat)
        seed = chat.bind_tools([PurgeUrls], tool_choice="PurgeUrls")
        for count in SIZES:
            message = message_with(count)
            result = {}

            def run_ours() -> None:
                result["ours"] = ours.understand_request(message, ["shop"])

            m_ours = measure(fake, run_ours)
            usage = result["ours"].token_usage or {}
            m_ours |= {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0)}

            fake.push(seed_answer)

            def run_seed() -> None:
                result["seed"] = seed.invoke([("system", "Find the URLs the person wants purged and call PurgeUrls."),
                                              ("user", message)])

            m_seed = measure(fake, run_seed)
            seed_usage = result["seed"].usage_metadata or {}
            args = result["seed"].tool_calls[0]["args"]
            assert len(args["urls"]) == count
            m_seed |= {"prompt_tokens": seed_usage.get("input_tokens", 0),
                       "completion_tokens": seed_usage.get("output_tokens", 0)}
            rows.append((count, m_ours, m_seed, result["ours"].understood_by))

    print("Understanding one request (real ChatOpenAI client, fake server counting tokens as chars/4)\n")
    header = f"{'URLs':>5} | {'approach':<26} | {'calls':>5} | {'prompt chars':>12} | {'prompt tok':>10} | " \
             f"{'answer chars':>12} | {'compl. tok':>10}"
    print(header)
    print("-" * len(header))
    for count, m_ours, m_seed, by in rows:
        for name, m in (("placeholders (agent.llm)", m_ours), ("URLs as tool arguments", m_seed)):
            print(f"{count:>5} | {name:<26} | {m['calls']:>5} | {m['prompt_chars']:>12,} | {m['prompt_tokens']:>10,} | "
                  f"{m['answer_chars']:>12,} | {m['completion_tokens']:>10,}")
        ratio_p = m_seed["prompt_tokens"] / max(1, m_ours["prompt_tokens"])
        ratio_c = m_seed["completion_tokens"] / max(1, m_ours["completion_tokens"])
        print(f"{'':>5}   seed / ours: prompt tokens ×{ratio_p:.2f}, completion tokens ×{ratio_c:.2f}"
              f"   (ours understood by: {by})")
    first, last = rows[0][1], rows[-1][1]
    print(f"\nplaceholders, 500 vs 1 URL: prompt chars ×{last['prompt_chars'] / first['prompt_chars']:.3f}, "
          f"prompt tokens ×{last['prompt_tokens'] / first['prompt_tokens']:.3f}")
    s_first, s_last = rows[0][2], rows[-1][2]
    print(f"tool arguments, 500 vs 1 URL: prompt chars ×{s_last['prompt_chars'] / s_first['prompt_chars']:.1f}, "
          f"completion tokens ×{s_last['completion_tokens'] / max(1, s_first['completion_tokens']):.1f}")


if __name__ == "__main__":
    main()
