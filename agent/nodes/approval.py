"""approval: wait for a second person. Enforced here, inside the graph, so no front end can skip it.

The node is re-run from its start when resumed, so it holds nothing but the interrupt and the decision
(REFERENCE: code before ``interrupt()`` runs twice). A refused click loops back here for a fresh interrupt.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic_core import to_jsonable_python

from agent.policy import approvers_description, is_expired, refuse_approver
from agent.state import AgentContext, PurgeState, context_of


def approval_request(state: PurgeState, context: AgentContext) -> dict[str, Any]:
    """What the front ends show while the run waits: plain JSON, as the interrupt payload travels to them."""
    plan = state["plan"]
    return {
        "kind": "approval",
        "requester": state.get("user", ""),
        "reason": plan.approval_reason,
        "purge_count": plan.purge_count,
        "pages": len(plan.pages),
        "expires_at": to_jsonable_python(plan.expires_at),
        "approvers": approvers_description(context.config),
    }


async def approval_node(
    state: PurgeState, runtime: Runtime[AgentContext]
) -> Command[Literal["approval", "execute", "report"]]:
    context = context_of(runtime)
    decision = interrupt(approval_request(state, context))
    record = state["approval"]
    now = context.now()

    if is_expired(state["plan"].expires_at, now):
        return Command(goto="report", update={"approval": record.model_copy(update={"status": "expired", "at": now})})

    choice, user = parse_decision(decision)
    refusal = (
        "that is not a decision I understand (approve or deny)"
        if choice is None
        else refuse_approver(user, state.get("user", ""), context.user_groups(user), context.config, choice)
    )
    if refusal:
        refusals = [*record.refusals, f"{user or 'someone'}: {refusal}"]
        return Command(goto="approval", update={"approval": record.model_copy(update={"refusals": refusals})})

    status = "approved" if choice == "approve" else "denied"
    decided = record.model_copy(update={"status": status, "by": user, "at": now})
    return Command(goto="execute" if choice == "approve" else "report", update={"approval": decided})


def parse_decision(decision: Any) -> tuple[str | None, str]:
    if not isinstance(decision, dict):
        return None, ""
    choice = decision.get("decision")
    user = str(decision.get("user") or "")
    return (choice if choice in ("approve", "deny") else None), user
