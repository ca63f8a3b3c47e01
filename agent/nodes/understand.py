"""understand: what does the person want (purge, purge everything, check, history, help, ask, dry run, cancel)?

The understanding comes from ``runtime.context.understander`` when one is given (tests, front ends), otherwise
from the configuration: a language model when ``llm`` is configured or OPENAI_API_KEY / OPENAI_BASE_URL are set
(``agent.llm``), the rules otherwise (``agent.understanding``). Whatever understood the message, the rules' words
guard has the last say: a message the rules read as a question, dry run, cancellation or "don't purge" is never
purged (``agent.understanding.guard``). Every field is written on every run, so nothing from a previous request on
the same thread carries over.

A front end can answer an offer ("Purge these N pages" / "Just check them") with ``chosen_intent`` in the request:
the URLs still come from the message (built by the front end from the stored run) and every policy applies.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from langgraph.runtime import Runtime

from agent.llm import understander_for
from agent.models import Intent
from agent.state import AgentContext, PurgeState, context_of
from agent.understanding import PLAN_ONLY, Understander, Understanding, guard

# What a front end may choose for the person (an offer's buttons, a terminal prompt): never "everything".
CHOOSABLE = (Intent.PURGE, Intent.CHECK)


def understander_of(context: AgentContext) -> Understander:
    if context.understander is not None:
        return context.understander
    return understander_for(context.config)


async def understand_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    message = state.get("message", "")
    chosen = state.get("chosen_intent")
    if chosen in CHOOSABLE:
        understanding = Understanding(intent=Intent(chosen), understood_by="choice")
    else:
        sites = [site.name for site in context.config.sites]
        # a model answers over the network (seconds): off the event loop, with its sync client (langchain-openai
        # keeps one async client per process, which breaks across the per-request loops the Agent runs)
        understood = await asyncio.to_thread(understander_of(context).understand_request, message, sites)
        understanding = guard(understood, message)
    return {
        "intent": understanding.intent.value,
        "reply": understanding.reply,
        "scope": understanding.scope,
        "selected": understanding.selected,
        "understood_by": understanding.understood_by,
        "understanding_note": understanding.note,
        "token_usage": understanding.token_usage,
        # questions and dry runs are planned and never executed: the graph's dry-run path (plan -> report)
        "dry_run": bool(state.get("dry_run")) or understanding.intent in PLAN_ONLY,
    }


def route_after_understand(state: PurgeState) -> Literal["resolve", "report"]:
    """Help, history, cancellations and unclear messages are answered at once; so are questions and dry runs about
    more than the listed pages (a whole site: that always needs approval, and the answer says how to ask for it).
    Everything else needs the URLs."""
    intent = state["intent"]
    if intent in (Intent.HELP, Intent.HISTORY, Intent.UNKNOWN, Intent.CANCEL):
        return "report"
    if intent in PLAN_ONLY and state.get("scope") not in (None, "", "urls"):
        return "report"
    return "resolve"
