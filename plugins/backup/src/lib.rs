//! Backup: explicit snapshots, in the host's backup store (Secrets owned by the migration,
//! checksummed, never in the status), of every object the migration changes: the
//! Infrastructure, the cloud-provider config, `kube-system/vsphere-creds`, the
//! ControlPlaneMachineSet, every MachineSet and the cluster-version operator Deployment.
//!
//! A snapshot is never overwritten: a re-run (or a run after a crash) keeps the first
//! copy of each object and only adds the ones still missing (the Go controller replaced
//! its snapshots with whatever was live at the time). At most [`BATCH`] snapshots are
//! taken per call. A missing CPMS is normal on some clusters and only logged; the other
//! objects must exist. Nothing to roll back: the snapshots are the record.

use vsm_sdk::prelude::*;
use vsm_sdk::types::TypeConst;
use vsm_sdk::types::names::{
    CLOUD_CONFIG, CLOUD_CONFIG_NAMESPACE, CPMS, CVO, CVO_NAMESPACE, INFRASTRUCTURE, MACHINE_API_NAMESPACE,
    VSPHERE_CREDS, VSPHERE_CREDS_NAMESPACE,
};

/// Snapshots per call.
pub const BATCH: usize = 20;

pub struct Backup;

impl Phase for Backup {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "Backup",
            env!("CARGO_PKG_VERSION"),
            "Snapshot the Infrastructure, cloud config, vSphere credentials, control-plane and worker machine sets and the CVO",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("", "configmaps", &["get"], Some(CLOUD_CONFIG_NAMESPACE))
        .kube("", "secrets", &["get"], Some(VSPHERE_CREDS_NAMESPACE))
        .kube("machine.openshift.io", "controlplanemachinesets", &["get"], Some(MACHINE_API_NAMESPACE))
        .kube("machine.openshift.io", "machinesets", &["get", "list"], Some(MACHINE_API_NAMESPACE))
        .kube("apps", "deployments", &["get"], Some(CVO_NAMESPACE))
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

/// One object to snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub ty: TypeConst,
    pub namespace: Option<String>,
    pub name: String,
    /// Whether its absence fails the phase.
    pub required: bool,
}

impl Item {
    fn new(ty: TypeConst, namespace: Option<&str>, name: &str, required: bool) -> Self {
        Item { ty, namespace: namespace.map(str::to_string), name: name.to_string(), required }
    }

    pub fn subject(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.ty.kind, self.name),
            None => format!("{} {}", self.ty.kind, self.name),
        }
    }
}

/// Everything to snapshot, in a fixed order (MachineSets by name).
pub fn items(machine_sets: &[String]) -> Vec<Item> {
    let mut out = vec![
        Item::new(types::INFRASTRUCTURE, None, INFRASTRUCTURE, true),
        Item::new(types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG, true),
        Item::new(types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS, true),
        Item::new(types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS, false),
        Item::new(types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO, true),
    ];
    let mut sets = machine_sets.to_vec();
    sets.sort();
    out.extend(sets.iter().map(|n| Item::new(types::MACHINE_SET, Some(MACHINE_API_NAMESPACE), n, false)));
    out
}

/// Phase-scope state: the subjects snapshotted (or found absent) so far, so a long list
/// resumes where it stopped. Snapshots are never overwritten, so starting over is safe
/// too; this only saves work.
const DONE_KEY: &str = "done";

fn execute(cx: &Cx) -> Step {
    let sets: Vec<String> = cx
        .kube()
        .list(&types::MACHINE_SET, Some(MACHINE_API_NAMESPACE), None)?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let all = items(&sets);
    let mut finished: Vec<String> = cx.state().get_json(DONE_KEY)?.unwrap_or_default();
    let todo: Vec<&Item> = all.iter().filter(|i| !finished.contains(&i.subject())).take(BATCH).collect();
    let (mut missing, mut kept) = (Vec::new(), 0);
    for item in todo {
        let ns = item.namespace.as_deref();
        if cx.kube().get(&item.ty, ns, &item.name)?.is_none() {
            if item.required {
                missing.push(item.subject());
            } else {
                cx.warn(format!("{} does not exist; nothing to snapshot", item.subject()));
                finished.push(item.subject());
            }
            continue;
        }
        let info = cx.backup().snapshot(&item.ty, ns, &item.name)?;
        kept += usize::from(!info.created);
        finished.push(item.subject());
    }
    cx.state().put(DONE_KEY, &finished)?;
    if !missing.is_empty() {
        return Err(PhaseError::invalid(format!(
            "cannot back up {}: not found (the migration changes it, so it must exist)",
            missing.join(", ")
        )));
    }
    if kept > 0 {
        cx.info(format!("{kept} snapshot(s) from an earlier run kept as they were"));
    }
    let left = all.iter().filter(|i| !finished.contains(&i.subject())).count();
    if left > 0 {
        let n = all.len() - left;
        return Ok(wait(0, percent(n, all.len()), format!("{n}/{} objects backed up", all.len())));
    }
    let verb = if cx.dry_run() { "would snapshot" } else { "snapshots of" };
    Ok(done(format!(
        "{verb} {} objects ({} MachineSet(s)) in the migration's backup store; earlier snapshots are never overwritten",
        all.len(),
        sets.len()
    )))
}

export_phase!(Backup);

#[cfg(test)]
mod tests;
