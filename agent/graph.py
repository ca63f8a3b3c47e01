"""The flow, in one place. Reads like graphs/cache_purge.mmd:

    understand → resolve → plan → approval → execute ⇄ verify → report
                        ↘ check ↗            ↺ (refused click)   (one repair pass for pages still stale)

Routers are typed with ``Literal[...]`` so the drawn graph shows every real edge.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.nodes.approval import approval_node
from agent.nodes.check import check_node
from agent.nodes.execute import execute_node
from agent.nodes.plan import plan_node, route_after_plan
from agent.nodes.report import report_node
from agent.nodes.resolve import resolve_node, route_after_resolve
from agent.nodes.understand import route_after_understand, understand_node
from agent.nodes.verify import route_after_verify, verify_node
from agent.state import AgentContext, PurgeState


def build_graph() -> StateGraph:
    graph = StateGraph(PurgeState, context_schema=AgentContext)
    graph.add_node("understand", understand_node)
    graph.add_node("resolve", resolve_node)
    graph.add_node("check", check_node)
    graph.add_node("plan", plan_node)
    graph.add_node("approval", approval_node)
    graph.add_node("execute", execute_node)
    graph.add_node("verify", verify_node)
    graph.add_node("report", report_node)

    graph.add_edge(START, "understand")
    graph.add_conditional_edges("understand", route_after_understand)
    graph.add_conditional_edges("resolve", route_after_resolve)
    graph.add_edge("check", "report")
    graph.add_conditional_edges("plan", route_after_plan)
    # approval routes itself with Command[Literal["approval", "execute", "report"]]
    graph.add_edge("execute", "verify")
    graph.add_conditional_edges("verify", route_after_verify)  # stale after purge: purge those once more
    graph.add_edge("report", END)
    return graph


# Uncompiled-checkpointer graph for `langgraph dev` / LangGraph Studio (langgraph.json points here);
# the platform supplies its own checkpointer.
graph = build_graph().compile()
