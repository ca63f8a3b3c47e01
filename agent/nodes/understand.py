"""understand: what does the person want (purge, purge everything, check, history, help)?

The understanding comes from ``runtime.context.understander`` when one is given (tests, front ends), otherwise
from the configuration: a language model when ``llm`` is configured or OPENAI_API_KEY / OPENAI_BASE_URL are set
(``agent.llm``), the rules otherwise (``agent.understanding``). Every field is written on every run, so nothing
from a previous request on the same thread carries over.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from agent.models import Intent
from agent.state import AgentContext, PurgeState, context_of
from agent.understanding import Understander


def understander_of(context: AgentContext) -> Understander:
    if context.understander is not None:
        return context.understander
    from agent.llm import understander_for

    return understander_for(context.config)


def understand_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    sites = [site.name for site in context.config.sites]
    understanding = understander_of(context).understand_request(state.get("message", ""), sites)
    return {
        "intent": understanding.intent.value,
        "reply": understanding.reply,
        "scope": understanding.scope,
        "selected": understanding.selected,
        "understood_by": understanding.understood_by,
        "understanding_note": understanding.note,
        "token_usage": understanding.token_usage,
    }


def route_after_understand(state: PurgeState) -> Literal["resolve", "report"]:
    """Help, history and unclear messages are answered at once; everything else needs the URLs resolved."""
    if state["intent"] in (Intent.HELP, Intent.HISTORY, Intent.UNKNOWN):
        return "report"
    return "resolve"
