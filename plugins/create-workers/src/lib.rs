//! CreateWorkers: a replacement in the target vCenter for every MachineSet of the source
//! vCenters, whatever its role (workers, infra, custom), each in the target failure
//! domain the spec maps it to, at its size, with its labels, taints, annotations and
//! machine settings kept (`vsm_common::replacements` says how the plan is made,
//! `machines::replacement_set` how a set is copied).
//!
//! 1. At the first call, the plan is made and recorded for the later phases
//!    (`shared_state::MACHINE_SET_REPLACEMENTS`); later calls (and a re-run after a crash)
//!    use the recorded plan, so a set the autoscaler resized meanwhile keeps its size. An
//!    edit of `spec.machineSetConfig` makes a new plan while nothing was created yet, and
//!    is refused after.
//! 2. Every replacement that does not exist is created, its name recorded first (so a
//!    rollback knows the set is the phase's); one that exists must be in its target
//!    vCenter.
//! 3. The phase waits until every machine of every replacement is Running with a node,
//!    and every such node is Ready; a failed machine fails the phase with its reason.
//!    While the machines are made, the MachineHealthChecks that select them are paused
//!    (`vsm_common::health_checks`), and resumed once they are Ready.
//!
//! Rollback, for each set the phase created, with the health checks over its machines
//! paused until they are gone: scale it to zero, delete it (uid precondition) and wait
//! until its machines are gone. A set of that name that the phase did not create is left
//! alone.

use std::collections::BTreeSet;

use vsm_common::health_checks;
use vsm_common::infra;
use vsm_common::machines::{self, Readiness};
use vsm_common::replacements::{self, Replacement};
use vsm_common::shared_state::MACHINE_SET_REPLACEMENTS;
use vsm_sdk::Preconditions;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{INFRASTRUCTURE, MACHINE_API_NAMESPACE, MACHINESET_LABEL};

const POLL_MS: u64 = 30_000;
/// Phase state: the replacement sets this phase creates, each recorded before its create.
const CREATED_KEY: &str = "created";
/// Phase state: the `spec.machineSetConfig` the recorded plan was made from.
const PLANNED_FROM_KEY: &str = "planned-from";
const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);

pub struct CreateWorkers;

impl Phase for CreateWorkers {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "CreateWorkers",
            env!("CARGO_PKG_VERSION"),
            "Create a replacement in its target failure domain for every MachineSet of the source vCenters and wait until their machines and nodes are Ready",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("machine.openshift.io", "machinesets", &["get", "list", "create", "patch", "delete"], NS)
        .kube("machine.openshift.io", "machines", &["list"], NS)
        .kube("machine.openshift.io", "machinehealthchecks", &["get", "list", "patch"], NS)
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

/// The recorded plan, or a new one recorded now. A plan is made again when
/// `spec.machineSetConfig` was edited before any replacement was created (a user fixing
/// what the first call refused); once one exists, an edit is refused.
fn the_plan(cx: &Cx, infra: &Object, sets: &[Object]) -> Result<Vec<Replacement>, PhaseError> {
    let spec = cx.spec()?;
    let config = serde_json::to_value(&spec.machine_set_config).map_err(|e| PhaseError::invalid(e.to_string()))?;
    if let Some(plan) = cx.shared().get_json::<Vec<Replacement>>(MACHINE_SET_REPLACEMENTS)? {
        let planned_from: Option<Value> = cx.state().get_json(PLANNED_FROM_KEY)?;
        if planned_from.as_ref() == Some(&config) {
            return Ok(plan);
        }
        let created: BTreeSet<String> = cx.state().get_json(CREATED_KEY)?.unwrap_or_default();
        if !created.is_empty() {
            return Err(PhaseError::invalid(format!(
                "spec.machineSetConfig changed after MachineSet(s) {} were created from it: roll the migration back to place the machines differently",
                created.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let vsphere = infra::vsphere_spec(infra);
    let plan = replacements::plan(sets, infra::failure_domains(&vsphere), spec, cx.source_servers())
        .map_err(PhaseError::invalid)?;
    cx.state().put(PLANNED_FROM_KEY, &config)?;
    cx.shared().put(MACHINE_SET_REPLACEMENTS, &plan)?;
    Ok(plan)
}

/// The labels of the machines the plan makes: each source set's machine template labels,
/// with the replacement's MachineSet label.
fn moving_labels(plan: &[Replacement], sets: &[Object]) -> Vec<Value> {
    plan.iter()
        .filter_map(|r| {
            let source = sets.iter().find(|s| s.name() == r.source)?;
            let mut labels = source
                .at("/spec/template/metadata/labels")
                .filter(|l| l.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            labels[MACHINESET_LABEL] = json!(r.name);
            Some(labels)
        })
        .collect()
}

fn machines_of(cx: &Cx, set: &str) -> Result<Vec<Object>, PhaseError> {
    cx.kube().list(&types::MACHINE, NS, Some(&format!("{MACHINESET_LABEL}={set}")))
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let infra_id = infra::infra_id(&infra)?.to_string();
    let in_infra = infra::vcenter_servers(&infra::vsphere_spec(&infra));
    let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
    let plan = the_plan(cx, &infra, &sets)?;
    if plan.is_empty() {
        return Ok(done(format!(
            "no MachineSet puts machines in the source vCenter(s) {}",
            cx.source_servers().join(", ")
        )));
    }

    // Every check before the first create: a plan that cannot complete changes nothing.
    let mut existing = Vec::new();
    for r in &plan {
        if !in_infra.contains(&r.server) {
            return Err(PhaseError::invalid(format!(
                "vCenter {} is not in the Infrastructure yet (it lists {}): UpdateInfrastructure must run before CreateWorkers",
                r.server,
                in_infra.join(", ")
            )));
        }
        let set = sets.iter().find(|s| s.name() == r.name);
        if let Some(set) = set {
            let server = machines::machine_set_server(set);
            if server != r.server {
                return Err(PhaseError::invalid(format!(
                    "MachineSet {} already exists and puts its machines in vCenter {server:?}, not {}: rename or remove it, or name the replacement of {} in spec.machineSetConfig.overrides",
                    r.name, r.server, r.source
                )));
            }
        }
        existing.push(set);
    }

    if existing.iter().any(Option::is_none) {
        // The health checks over these machines hold still while they are made.
        health_checks::pause(cx, &moving_labels(&plan, &sets))?;
    }
    let mut created = Vec::new();
    let mut mine: BTreeSet<String> = cx.state().get_json(CREATED_KEY)?.unwrap_or_default();
    for (r, set) in plan.iter().zip(&existing) {
        if set.is_some() {
            continue;
        }
        let fd = spec.failure_domain(&r.failure_domain).ok_or_else(|| {
            PhaseError::invalid(format!(
                "failure domain {} of the plan is not in spec.failureDomains",
                r.failure_domain
            ))
        })?;
        let source = sets.iter().find(|s| s.name() == r.source).ok_or_else(|| {
            PhaseError::invalid(format!(
                "MachineSet {} is gone before its replacement {} was made: nothing to copy it from",
                r.source, r.name
            ))
        })?;
        let (new, dropped) = machines::replacement_set(source, &r.name, fd, &infra_id, r.replicas, &spec.static_ips)
            .map_err(|e| PhaseError::invalid(e.to_string()))?;
        for d in &dropped {
            cx.warn(format!("MachineSet {}: not copied from {}: {d}", r.name, r.source));
        }
        mine.insert(r.name.clone());
        cx.state().put(CREATED_KEY, &mine)?;
        cx.kube().create_if_absent(&types::MACHINE_SET, NS, &new)?;
        created.push(format!(
            "{} from {} ({} machine(s) in failure domain {}, vCenter {})",
            r.name, r.source, r.replicas, r.failure_domain, r.server
        ));
    }
    if !created.is_empty() {
        let message = format!("created MachineSet(s) {}", created.join("; "));
        cx.log().event(EventType::Normal, "WorkersCreated", &message);
        return Ok(wait(2_000, 5, format!("{message}; waiting for their machines")));
    }

    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let all = cx.kube().list(&types::MACHINE, NS, None)?;
    let (mut ready, mut wanted, mut waiting) = (0usize, 0usize, Vec::new());
    for (r, set) in plan.iter().zip(existing.iter().flatten()) {
        let want = set.i64_at("/spec/replicas").unwrap_or(0).max(0) as usize;
        let mine: Vec<Object> =
            all.iter().filter(|m| m.label(MACHINESET_LABEL) == Some(r.name.as_str())).cloned().collect();
        let state = Readiness::of(&mine, &nodes);
        if !state.failed.is_empty() {
            return Err(PhaseError::invalid(format!(
                "new machine(s) of MachineSet {} failed: {}",
                r.name,
                machines::list_some(&state.failed, 3)
            )));
        }
        ready += state.ready.len().min(want);
        wanted += want;
        if !state.complete(want) {
            let mut parts = vec![format!("{} {}/{want} ready", r.name, state.ready.len())];
            if state.total() < want {
                parts.push(format!("machine-api has created {} of {want}", state.total()));
            }
            if !state.waiting.is_empty() {
                parts.push(machines::list_some(&state.waiting, 2));
            }
            waiting.push(parts.join(", "));
        }
    }
    if waiting.is_empty() {
        health_checks::resume(cx)?;
        let per_set: Vec<String> =
            plan.iter().map(|r| format!("{} {} in {}", r.name, r.replicas, r.failure_domain)).collect();
        return Ok(done(format!(
            "{} replacement MachineSet(s), {wanted} machine(s) Running with Ready nodes: {}",
            plan.len(),
            per_set.join(", ")
        )));
    }
    Ok(wait(
        POLL_MS,
        percent(ready, wanted.max(1)),
        format!("waiting for new machines: {ready}/{wanted} ready; {}", machines::list_some(&waiting, 3)),
    ))
}

fn rollback(cx: &Cx) -> Step {
    let Some(mine) = cx.state().get_json::<BTreeSet<String>>(CREATED_KEY)? else {
        health_checks::resume(cx)?;
        return Ok(done("nothing to undo: this phase created no MachineSet"));
    };
    if let Some(plan) = cx.shared().get_json::<Vec<Replacement>>(MACHINE_SET_REPLACEMENTS)? {
        let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
        health_checks::pause(cx, &moving_labels(&plan, &sets))?;
    }
    let mut left_total = Vec::new();
    for name in &mine {
        if let Some(set) = cx.kube().get(&types::MACHINE_SET, NS, name)?
            && !set.is_deleting()
        {
            if set.i64_at("/spec/replicas").unwrap_or(0) != 0 {
                cx.kube().merge_patch(&types::MACHINE_SET, NS, name, &json!({"spec": {"replicas": 0}}))?;
                cx.info(format!("scaled MachineSet {name} to 0"));
            }
            let left = machines_of(cx, name)?;
            if !left.is_empty() {
                left_total.extend(left.iter().map(|m| format!("{} {}", m.name(), machines::phase(m))));
                continue;
            }
            let pre = Preconditions { uid: Some(set.uid().to_string()), resource_version: None };
            cx.kube().delete(&types::MACHINE_SET, NS, name, Some(&pre))?;
            cx.info(format!("deleted MachineSet {name}"));
        }
        left_total.extend(machines_of(cx, name)?.iter().map(|m| format!("{} {}", m.name(), machines::phase(m))));
    }
    if !left_total.is_empty() {
        return Ok(wait(
            POLL_MS,
            50,
            format!(
                "removing {} MachineSet(s): {} machine(s) left: {}",
                mine.len(),
                left_total.len(),
                machines::list_some(&left_total, 3)
            ),
        ));
    }
    cx.backup().restore_all()?;
    health_checks::resume(cx)?;
    cx.shared().delete(MACHINE_SET_REPLACEMENTS)?;
    cx.state().delete(PLANNED_FROM_KEY)?;
    cx.state().delete(CREATED_KEY)?;
    let names: Vec<String> = mine.into_iter().collect();
    Ok(done(format!("MachineSet(s) {} and their machines are gone", names.join(", "))))
}

export_phase!(CreateWorkers);

#[cfg(test)]
mod tests;
