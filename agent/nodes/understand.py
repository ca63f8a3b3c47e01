"""understand: what does the person want (purge, purge everything, check, help)?"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from agent.models import Intent
from agent.state import AgentContext, PurgeState
from agent.understanding import understand
from agent.urls import extract_candidates


def understand_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    message = state.get("message", "")
    understanding = understand(message, has_urls=bool(extract_candidates(message)))
    return {"intent": understanding.intent.value, "reply": understanding.reply}


def route_after_understand(state: PurgeState) -> Literal["resolve", "report"]:
    """Help and unclear messages are answered at once; everything else needs the URLs resolved."""
    if state["intent"] in (Intent.HELP, Intent.UNKNOWN):
        return "report"
    return "resolve"
