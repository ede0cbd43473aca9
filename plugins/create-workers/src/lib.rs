//! CreateWorkers: a new worker MachineSet `<infraID>-worker-<failure domain>` in the target
//! failure domain, modelled on a plain worker MachineSet of the source vCenter (never an
//! infra or other special set, whatever its name sorts as), with the workspace, template
//! and port groups of the failure domain and every other machine setting kept (static-IP
//! and nameserver settings of the network devices included). The phase waits until every
//! machine of the set is Running with a node, and every such node is Ready.
//!
//! Rollback scales the set to zero, deletes it and waits until its machines are gone; a
//! set of that name that the phase did not create is left alone.

use vsm_common::infra;
use vsm_common::machines::{self, Readiness};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{INFRASTRUCTURE, MACHINE_API_NAMESPACE, MACHINESET_LABEL};
use vsm_sdk::{Preconditions, spec::FailureDomain};

const POLL_MS: u64 = 30_000;
/// Phase-state key: set before the create, so a rollback knows the set is the phase's.
const CREATING_KEY: &str = "creating";
const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);

pub struct CreateWorkers;

impl Phase for CreateWorkers {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "CreateWorkers",
            env!("CARGO_PKG_VERSION"),
            "Create the worker MachineSet in the target failure domain and wait until its machines and nodes are Ready",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("machine.openshift.io", "machinesets", &["get", "list", "create", "patch", "delete"], NS)
        .kube("machine.openshift.io", "machines", &["list"], NS)
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

/// The target failure domain, the infraID and the new set's name.
struct Target<'a> {
    fd: &'a FailureDomain,
    infra_id: String,
    name: String,
    servers_in_infra: Vec<String>,
}

fn target<'a>(cx: &'a Cx) -> Result<Target<'a>, PhaseError> {
    let spec = cx.spec()?;
    let cfg = &spec.machine_set_config;
    let fd = spec.failure_domain(&cfg.failure_domain).ok_or_else(|| {
        PhaseError::invalid(format!(
            "spec.machineSetConfig.failureDomain is {:?}, which is not one of spec.failureDomains ({})",
            cfg.failure_domain,
            spec.failure_domains.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let infra_id = infra::infra_id(&infra)?.to_string();
    let name = machines::worker_set_name(&infra_id, &fd.name).map_err(PhaseError::invalid)?;
    let servers_in_infra = infra::vcenter_servers(&infra::vsphere_spec(&infra));
    Ok(Target { fd, infra_id, name, servers_in_infra })
}

fn machines_of(cx: &Cx, set: &str) -> Result<Vec<Object>, PhaseError> {
    cx.kube().list(&types::MACHINE, NS, Some(&format!("{MACHINESET_LABEL}={set}")))
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let replicas = spec.machine_set_config.replicas;
    if replicas < 1 {
        return Err(PhaseError::invalid(format!("spec.machineSetConfig.replicas is {replicas}: at least 1 worker")));
    }
    let t = target(cx)?;
    if !t.servers_in_infra.iter().any(|s| s == &t.fd.server) {
        return Err(PhaseError::invalid(format!(
            "vCenter {} is not in the Infrastructure yet (it lists {}): UpdateInfrastructure must run before CreateWorkers",
            t.fd.server,
            t.servers_in_infra.join(", ")
        )));
    }

    let set = match cx.kube().get(&types::MACHINE_SET, NS, &t.name)? {
        Some(set) => {
            let server = machines::machine_set_server(&set);
            if server != t.fd.server {
                return Err(PhaseError::invalid(format!(
                    "MachineSet {} already exists and puts its machines in vCenter {server:?}, not {}: rename or remove it",
                    t.name, t.fd.server
                )));
            }
            set
        }
        None => {
            let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
            let template = machines::worker_template(&sets, cx.source_servers()).map_err(PhaseError::invalid)?;
            let (new, dropped) = machines::new_worker_set(template, &t.name, t.fd, &t.infra_id, replicas)
                .map_err(|e| PhaseError::invalid(e.to_string()))?;
            for d in &dropped {
                cx.warn(format!("MachineSet {}: not copied from {}: {d}", t.name, template.name()));
            }
            cx.state().mark(CREATING_KEY)?;
            cx.kube().create_if_absent(&types::MACHINE_SET, NS, &new)?;
            let message = format!(
                "created MachineSet {} from {} ({replicas} worker(s) in failure domain {}, vCenter {})",
                t.name,
                template.name(),
                t.fd.name,
                t.fd.server
            );
            cx.log().event(EventType::Normal, "WorkersCreated", &message);
            return Ok(wait(2_000, 5, format!("{message}; waiting for its machines")));
        }
    };

    let want = set.i64_at("/spec/replicas").unwrap_or(0).max(0) as usize;
    let all = machines_of(cx, &t.name)?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let r = Readiness::of(&all, &nodes);
    if !r.failed.is_empty() {
        return Err(PhaseError::invalid(format!(
            "new worker machine(s) of MachineSet {} failed: {}",
            t.name,
            machines::list_some(&r.failed, 3)
        )));
    }
    if r.complete(want) {
        return Ok(done(format!(
            "MachineSet {}: {want}/{want} workers Running with Ready nodes in vCenter {} ({})",
            t.name,
            t.fd.server,
            machines::list_some(&r.ready, 5)
        )));
    }
    let mut parts = Vec::new();
    if r.total() < want {
        parts.push(format!("machine-api has created {} of {want} machines", r.total()));
    }
    if !r.waiting.is_empty() {
        parts.push(machines::list_some(&r.waiting, 3));
    }
    Ok(wait(
        POLL_MS,
        percent(r.ready.len(), want.max(1)),
        format!("waiting for new workers: {}/{want} ready; {}", r.ready.len(), parts.join("; ")),
    ))
}

fn rollback(cx: &Cx) -> Step {
    if !cx.state().is_marked(CREATING_KEY) {
        return Ok(done("nothing to undo: this phase created no MachineSet"));
    }
    let t = target(cx)?;
    if let Some(set) = cx.kube().get(&types::MACHINE_SET, NS, &t.name)?
        && !set.is_deleting()
    {
        if set.i64_at("/spec/replicas").unwrap_or(0) != 0 {
            cx.kube().merge_patch(&types::MACHINE_SET, NS, &t.name, &json!({"spec": {"replicas": 0}}))?;
            cx.info(format!("scaled MachineSet {} to 0", t.name));
        }
        let left = machines_of(cx, &t.name)?;
        if !left.is_empty() {
            let names: Vec<String> = left.iter().map(|m| format!("{} {}", m.name(), machines::phase(m))).collect();
            return Ok(wait(
                POLL_MS,
                30,
                format!(
                    "scaling MachineSet {} to 0: {} machine(s) left: {}",
                    t.name,
                    left.len(),
                    machines::list_some(&names, 3)
                ),
            ));
        }
        let pre = Preconditions { uid: Some(set.uid().to_string()), resource_version: None };
        cx.kube().delete(&types::MACHINE_SET, NS, &t.name, Some(&pre))?;
        cx.info(format!("deleted MachineSet {}", t.name));
    }
    let left = machines_of(cx, &t.name)?;
    if !left.is_empty() {
        return Ok(wait(POLL_MS, 70, format!("waiting for {} machine(s) of MachineSet {} to go", left.len(), t.name)));
    }
    cx.backup().restore_all()?;
    cx.state().delete(CREATING_KEY)?;
    Ok(done(format!("MachineSet {} and its machines are gone", t.name)))
}

export_phase!(CreateWorkers);

#[cfg(test)]
mod tests;
