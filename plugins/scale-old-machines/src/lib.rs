//! ScaleOldMachines: scale every MachineSet that still puts machines in a source vCenter
//! to zero, each only once its replacement (CreateWorkers' recorded plan) has all its
//! machines Running with Ready nodes, remembering each one's replica count before the
//! first change, and wait until their machines and those machines' nodes are gone. The
//! control plane is the CPMS's business, not this phase's.
//!
//! A source set that wants machines and has no replacement in the plan (made after
//! CreateWorkers planned) fails the phase rather than lose its capacity; one whose
//! replacement is not Ready is waited for. Before a set goes down, every
//! MachineAutoscaler that scales it is pointed at its replacement (min and max kept: an
//! autoscaler left on the source would scale it back up), and the MachineHealthChecks
//! over its machines are paused until they are gone. Rollback scales each set back to its
//! remembered count (the Go controller used a hard-coded 3), points the moved autoscalers
//! back, and waits (health checks paused) until its machines are Running with Ready nodes
//! again.

use std::collections::{BTreeMap, BTreeSet};

use vsm_common::health_checks;
use vsm_common::machines::{self, Readiness};
use vsm_common::replacements::Replacement;
use vsm_common::shared_state::MACHINE_SET_REPLACEMENTS;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{MACHINE_API_NAMESPACE, MACHINESET_LABEL};

const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);
const POLL_MS: u64 = 30_000;
/// Phase state: MachineSet name -> replicas before the phase scaled it.
const ORIGINAL_KEY: &str = "original";
/// Phase state: the nodes of the old sets' machines, which must go too.
const NODES_KEY: &str = "nodes";
/// Phase state: MachineAutoscaler name -> the source set it scaled before it was moved.
const AUTOSCALERS_KEY: &str = "autoscalers";

pub struct ScaleOldMachines;

impl Phase for ScaleOldMachines {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "ScaleOldMachines",
            env!("CARGO_PKG_VERSION"),
            "Scale the source vCenter's MachineSets to zero and wait until their machines and nodes are gone",
        )
        .kube("machine.openshift.io", "machinesets", &["get", "list", "patch"], NS)
        .kube("machine.openshift.io", "machines", &["list"], NS)
        .kube("machine.openshift.io", "machinehealthchecks", &["get", "list", "patch"], NS)
        .kube("autoscaling.openshift.io", "machineautoscalers", &["list", "patch"], NS)
        .kube("", "nodes", &["list"], None)
        .with_rollback()
        .deadline_minutes(90)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        rollback(cx)
    }
}

fn replicas(set: &Object) -> i64 {
    set.i64_at("/spec/replicas").unwrap_or(1)
}

fn scale(cx: &Cx, name: &str, to: i64) -> Result<(), PhaseError> {
    cx.kube().merge_patch(&types::MACHINE_SET, NS, name, &json!({"spec": {"replicas": to}}))?;
    Ok(())
}

fn in_set<'a>(machines: &'a [Object], set: &str) -> Vec<&'a Object> {
    machines.iter().filter(|m| m.label(MACHINESET_LABEL) == Some(set)).collect()
}

/// The machine template labels of `sets`: what their machines carry.
fn template_labels(sets: &[&Object]) -> Vec<Value> {
    sets.iter().map(|s| s.at("/spec/template/metadata/labels").cloned().unwrap_or_else(|| json!({}))).collect()
}

fn autoscalers(cx: &Cx) -> Result<Vec<Object>, PhaseError> {
    match cx.kube().list(&types::MACHINE_AUTOSCALER, NS, None) {
        // A cluster without the autoscaler's CRD has no autoscaler.
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        other => other,
    }
}

fn target_of(autoscaler: &Object) -> Option<&str> {
    (autoscaler.str_at("/spec/scaleTargetRef/kind") == Some("MachineSet"))
        .then(|| autoscaler.str_at("/spec/scaleTargetRef/name"))
        .flatten()
}

/// Every MachineAutoscaler that scales one of `sources` scales its replacement instead
/// (min and max as they are), recorded first ([`AUTOSCALERS_KEY`]: autoscaler -> source)
/// so the rollback points it back.
fn move_autoscalers(cx: &Cx, sources: &[&Object], plan: &[Replacement]) -> Result<(), PhaseError> {
    let mut moved: BTreeMap<String, String> = cx.state().get_json(AUTOSCALERS_KEY)?.unwrap_or_default();
    for a in autoscalers(cx)? {
        let Some(target) = target_of(&a) else { continue };
        let Some(r) = plan.iter().find(|r| r.source == target && sources.iter().any(|s| s.name() == target)) else {
            continue;
        };
        moved.insert(a.name().to_string(), r.source.clone());
        cx.state().put(AUTOSCALERS_KEY, &moved)?;
        cx.kube().merge_patch(
            &types::MACHINE_AUTOSCALER,
            NS,
            a.name(),
            &json!({"spec": {"scaleTargetRef": {"name": r.name}}}),
        )?;
        cx.info(format!("MachineAutoscaler {} now scales {} (was {})", a.name(), r.name, r.source));
    }
    Ok(())
}

/// The moved autoscalers point at their source sets again.
fn restore_autoscalers(cx: &Cx) -> Result<(), PhaseError> {
    let Some(moved) = cx.state().get_json::<BTreeMap<String, String>>(AUTOSCALERS_KEY)? else { return Ok(()) };
    let present = autoscalers(cx)?;
    for (name, source) in &moved {
        let Some(a) = present.iter().find(|a| a.name() == name) else { continue };
        if target_of(a) != Some(source.as_str()) {
            cx.kube().merge_patch(
                &types::MACHINE_AUTOSCALER,
                NS,
                name,
                &json!({"spec": {"scaleTargetRef": {"name": source}}}),
            )?;
            cx.info(format!("MachineAutoscaler {name} scales {source} again"));
        }
    }
    Ok(())
}

fn execute(cx: &Cx) -> Step {
    let sources = cx.source_servers().to_vec();
    if sources.is_empty() {
        return Err(PhaseError::invalid("no source vCenter was recorded when the migration started"));
    }
    let plan: Vec<Replacement> = cx.shared().get_json(MACHINE_SET_REPLACEMENTS)?.ok_or_else(|| {
        PhaseError::invalid("CreateWorkers recorded no replacement plan: it must complete before ScaleOldMachines")
    })?;
    let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
    let all_machines = cx.kube().list(&types::MACHINE, NS, None)?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;

    let mut original: BTreeMap<String, i64> = cx.state().get_json(ORIGINAL_KEY)?.unwrap_or_default();
    let mut gone_nodes: BTreeSet<String> = cx.state().get_json(NODES_KEY)?.unwrap_or_default();

    // A source set that wants machines and has no replacement is never scaled down.
    let unplanned: Vec<String> = sets
        .iter()
        .filter(|s| !s.is_deleting() && sources.iter().any(|src| src == machines::machine_set_server(s)))
        .filter(|s| replicas(s) > 0 && !plan.iter().any(|r| r.source == s.name()))
        .map(|s| format!("{} ({} replica(s))", s.name(), replicas(s)))
        .collect();
    if !unplanned.is_empty() {
        return Err(PhaseError::invalid(format!(
            "MachineSet(s) {} put machines in the source vCenter(s) {} and have no replacement (made after CreateWorkers planned?): scale them to zero or roll the migration back",
            unplanned.join(", "),
            sources.join(", ")
        )));
    }

    // Each source set goes down once its replacement is Ready (a plan has no machines
    // from the planned sets: there, it would wait for them, as CreateWorkers' plan says).
    let mut not_ready = Vec::new();
    let mut newly = Vec::new();
    for r in plan.iter().filter(|r| !original.contains_key(&r.source)) {
        let Some(source) = sets.iter().find(|s| s.name() == r.source && !s.is_deleting()) else { continue };
        if !cx.dry_run() {
            let want = sets.iter().find(|s| s.name() == r.name).map(replicas);
            let mine: Vec<Object> = in_set(&all_machines, &r.name).into_iter().cloned().collect();
            let state = Readiness::of(&mine, &nodes);
            match want {
                None => {
                    not_ready.push(format!("{} (its replacement {} does not exist)", r.source, r.name));
                    continue;
                }
                Some(want) if !state.complete(want.max(0) as usize) => {
                    not_ready.push(format!("{} (replacement {} {}/{want} ready)", r.source, r.name, state.ready.len()));
                    continue;
                }
                Some(_) => {}
            }
        }
        newly.push(source);
    }
    if !newly.is_empty() {
        health_checks::pause(cx, &template_labels(&newly))?;
        move_autoscalers(cx, &newly, &plan)?;
        // Nodes first, then the counts: a crash in between records the nodes again.
        for s in &newly {
            gone_nodes
                .extend(in_set(&all_machines, s.name()).iter().filter_map(|m| machines::node_ref(m).map(String::from)));
        }
        cx.state().put(NODES_KEY, &gone_nodes)?;
        for s in &newly {
            original.insert(s.name().to_string(), replicas(s));
        }
        cx.state().put(ORIGINAL_KEY, &original)?;
    }
    if !not_ready.is_empty() && original.is_empty() {
        return Ok(wait(
            POLL_MS,
            0,
            format!("waiting for replacements to be Ready before scaling down: {}", machines::list_some(&not_ready, 3)),
        ));
    }
    if original.is_empty() {
        return Ok(done(format!("no MachineSet puts machines in the source vCenter(s) {}", sources.join(", "))));
    }
    // Every call: whatever has been scaled up again goes back to zero.
    for name in original.keys() {
        if let Some(set) = sets.iter().find(|s| s.name() == name)
            && replicas(set) != 0
            && !set.is_deleting()
        {
            scale(cx, name, 0)?;
            cx.info(format!("scaled MachineSet {name} from {} to 0", replicas(set)));
        }
    }

    let left: Vec<String> = original
        .keys()
        .flat_map(|name| in_set(&all_machines, name))
        .map(|m| format!("{} {}", m.name(), if m.is_deleting() { "Deleting" } else { machines::phase(m) }))
        .collect();
    let nodes_left: Vec<String> =
        nodes.iter().filter(|n| gone_nodes.contains(n.name())).map(|n| n.name().to_string()).collect();
    let counts: Vec<String> = original.iter().map(|(n, r)| format!("{n} {r}→0")).collect();
    if !left.is_empty() || !nodes_left.is_empty() || !not_ready.is_empty() {
        let total = gone_nodes.len().max(original.values().sum::<i64>().max(0) as usize).max(1);
        let mut parts = Vec::new();
        if !left.is_empty() {
            parts.push(format!("{} old machine(s) still there: {}", left.len(), machines::list_some(&left, 3)));
        }
        if !nodes_left.is_empty() {
            parts.push(format!(
                "{} node(s) still registered: {}",
                nodes_left.len(),
                machines::list_some(&nodes_left, 3)
            ));
        }
        if !not_ready.is_empty() {
            parts.push(format!("replacements not Ready yet: {}", machines::list_some(&not_ready, 3)));
        }
        return Ok(wait(
            POLL_MS,
            percent(total.saturating_sub(left.len().max(nodes_left.len())), total),
            format!("scaled {} to zero; waiting: {}", counts.join(", "), parts.join("; ")),
        ));
    }
    health_checks::resume(cx)?;
    Ok(done(format!(
        "scaled {} MachineSet(s) in the source vCenter(s) to zero ({}); their machines and {} node(s) are gone",
        original.len(),
        counts.join(", "),
        gone_nodes.len()
    )))
}

fn rollback(cx: &Cx) -> Step {
    let Some(original) = cx.state().get_json::<BTreeMap<String, i64>>(ORIGINAL_KEY)? else {
        return Ok(done("nothing to undo: no MachineSet was scaled"));
    };
    let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
    let scaled: Vec<&Object> = sets.iter().filter(|s| original.contains_key(s.name())).collect();
    health_checks::pause(cx, &template_labels(&scaled))?;
    restore_autoscalers(cx)?;
    for (name, want) in &original {
        let set = sets.iter().find(|s| s.name() == name).ok_or_else(|| {
            PhaseError::invalid(format!("MachineSet {name} no longer exists: its {want} replica(s) cannot be restored"))
        })?;
        if replicas(set) != *want {
            scale(cx, name, *want)?;
            cx.info(format!("scaled MachineSet {name} back to {want}"));
        }
    }
    let all_machines = cx.kube().list(&types::MACHINE, NS, None)?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let mut ready = 0usize;
    let mut waiting = Vec::new();
    for (name, want) in &original {
        let mine: Vec<Object> = in_set(&all_machines, name).into_iter().cloned().collect();
        let r = Readiness::of(&mine, &nodes);
        if !r.failed.is_empty() {
            return Err(PhaseError::invalid(format!(
                "machine(s) of MachineSet {name} failed while scaling back: {}",
                machines::list_some(&r.failed, 3)
            )));
        }
        ready += r.ready.len();
        if !r.complete(*want as usize) {
            waiting.push(format!(
                "{name} {}/{want} ready{}",
                r.ready.len(),
                if r.waiting.is_empty() { String::new() } else { format!(" ({})", machines::list_some(&r.waiting, 2)) }
            ));
        }
    }
    let total: usize = original.values().map(|v| *v as usize).sum();
    if !waiting.is_empty() {
        return Ok(wait(POLL_MS, percent(ready, total.max(1)), format!("restoring replicas: {}", waiting.join("; "))));
    }
    health_checks::resume(cx)?;
    for k in [ORIGINAL_KEY, NODES_KEY, AUTOSCALERS_KEY] {
        cx.state().delete(k)?;
    }
    let counts: Vec<String> = original.iter().map(|(n, r)| format!("{n} {r}")).collect();
    Ok(done(format!(
        "restored the remembered replica counts ({}); every machine is Running with a Ready node",
        counts.join(", ")
    )))
}

export_phase!(ScaleOldMachines);

#[cfg(test)]
mod tests;
