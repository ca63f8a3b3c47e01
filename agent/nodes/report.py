"""report: one plain-language answer for every path through the graph (the sentences are in ``agent/words.py``)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.state import AgentContext, PurgeState, context_of
from agent.words import compose_reply


async def report_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    reply = compose_reply(state, context_of(runtime))
    note = state.get("understanding_note")  # the model's short reply, or the note that rules were used instead
    return {"reply": f"{note}\n{reply}" if note else reply}
