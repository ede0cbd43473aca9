"""A vsphere-migration phase written in Python: proof that the contract (wit/phase.wit) is
language independent. Built into a component by build.sh (componentize-py).

It is a health gate a vendor might add: it waits until every Node is Ready, records how
many it saw in the phase's state store and reports progress; it changes nothing, so its
rollback has nothing to undo.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import kube, log, state, types

NODE = kube.ObjectType(api_version="v1", kind="Node")


def ready(node) -> bool:
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PhaseInfo:
        return types.PhaseInfo(
            name="MonitorHealth",
            version="0.1.0",
            purpose="Wait until every Node is Ready (a sample phase written in Python)",
            capabilities=types.Capabilities(
                kube=[types.KubeCapability(group="", resource="nodes", verbs=["list"], namespace=None)],
                vsphere=[],
            ),
            has_rollback=False,
            default_deadline_ms=30 * 60 * 1000,
        )

    def execute(self, ctx: types.CallContext) -> types.Outcome:
        try:
            nodes = json.loads(kube.list(NODE, None, None))
        except Err as e:
            return types.Outcome_Failed(types.Failure(message=f"listing nodes: {e.value}", retryable=True))
        total = len(nodes)
        good = sum(1 for n in nodes if ready(n))
        if total == 0:
            return types.Outcome_Failed(types.Failure(message="the cluster has no nodes", retryable=False))
        state.set(state.Scope.PHASE, "nodes-seen", str(total))
        if good < total:
            percent = good * 100 // total
            log.progress(percent, f"{good}/{total} nodes ready")
            return types.Outcome_Wait(types.WaitInfo(after_ms=10_000, progress=percent, message=f"{good}/{total} nodes ready"))
        log.write(log.Level.INFO, f"all {total} nodes are Ready", [("attempt", str(ctx.attempt))])
        return types.Outcome_Done(f"all {total} nodes are Ready (checked by a Python phase)")

    def rollback(self, ctx: types.CallContext) -> types.Outcome:
        return types.Outcome_Done("nothing to undo: this phase changes nothing")
