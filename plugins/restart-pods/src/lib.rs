//! RestartPods: restart, once, the pods that read the vCenter configuration at start (the
//! vSphere cloud controller manager, the machine-api controllers, the vSphere CSI driver's
//! controller and node pods), then wait until every group is fully Ready again.
//!
//! The pods to delete are recorded before the first delete, and deleted by uid: a re-run
//! (after a crash, or once the phase is done) never deletes a replacement pod. A group is
//! ready again when its old pods are gone and at least as many new pods as it had are
//! Running and Ready; the wait message names the first group that is not.
//!
//! The kube-controller-manager is not restarted (the Go controller deletes its pods): on
//! OpenShift it runs as static pods, and deleting a static pod's mirror through the API
//! restarts nothing, and since vSphere clusters run the external cloud controller manager
//! (OpenShift 4.13 and later) it no longer talks to vCenter.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vsm_sdk::prelude::*;
use vsm_sdk::{KubeError, Preconditions};

/// Pods of one component: namespace, label selector, and how an administrator calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub namespace: &'static str,
    pub selector: &'static str,
    pub what: &'static str,
}

pub const GROUPS: [Group; 4] = [
    Group {
        namespace: "openshift-cloud-controller-manager",
        selector: "k8s-app=vsphere-cloud-controller-manager",
        what: "vSphere cloud controller manager",
    },
    Group { namespace: "openshift-machine-api", selector: "api=clusterapi", what: "machine-api controllers" },
    Group {
        namespace: "openshift-cluster-csi-drivers",
        selector: "app=vmware-vsphere-csi-driver-controller",
        what: "vSphere CSI driver controller",
    },
    Group {
        namespace: "openshift-cluster-csi-drivers",
        selector: "app=vmware-vsphere-csi-driver-node",
        what: "vSphere CSI driver node",
    },
];

/// Phase-state key of the recorded restart ([`Plan`]).
const PLAN_KEY: &str = "plan";
/// Phase-state key set once every recorded pod was deleted.
const DELETED_KEY: &str = "deleted";
const POLL_MS: u64 = 10_000;

/// The pods one group had when the restart began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `(name, uid)` of each pod deleted.
    pub pods: Vec<(String, String)>,
}

/// What the restart deletes, per group (index-aligned with [`GROUPS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub groups: Vec<Recorded>,
}

pub struct RestartPods;

impl Phase for RestartPods {
    fn describe() -> PhaseInfo {
        let mut info = PhaseInfo::new(
            "RestartPods",
            env!("CARGO_PKG_VERSION"),
            "Restart the cloud controller manager, machine-api controllers and vSphere CSI driver pods once so they read the new vCenter configuration",
        );
        let mut seen = BTreeSet::new();
        for g in GROUPS {
            if seen.insert(g.namespace) {
                info = info.kube("", "pods", &["list", "delete"], Some(g.namespace));
            }
        }
        info.deadline_minutes(30)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

fn is_ready(pod: &Object) -> bool {
    pod.str_at("/status/phase") == Some("Running") && pod.condition_true("Ready")
}

/// How one group stands after the restart: None when it is back, else why not.
pub fn group_status(g: &Group, recorded: &Recorded, pods: &[Object]) -> Option<String> {
    let old: BTreeSet<&str> = recorded.pods.iter().map(|(_, uid)| uid.as_str()).collect();
    let leftover = pods.iter().filter(|p| old.contains(p.uid())).count();
    let fresh: Vec<&Object> = pods.iter().filter(|p| !old.contains(p.uid()) && !p.is_deleting()).collect();
    let ready = fresh.iter().filter(|p| is_ready(p)).count();
    let want = recorded.pods.len();
    let terminating = pods.iter().filter(|p| !old.contains(p.uid()) && p.is_deleting()).count();
    if leftover == 0 && ready >= want && ready == fresh.len() {
        return None;
    }
    let mut parts = vec![format!("{ready}/{} ready", want.max(fresh.len()))];
    if leftover > 0 {
        parts.push(format!("{leftover} old pod(s) still terminating"));
    }
    if terminating > 0 {
        parts.push(format!("{terminating} other pod(s) terminating"));
    }
    let waiting: Vec<String> = fresh
        .iter()
        .filter(|p| !is_ready(p))
        .map(|p| format!("{} {}", p.name(), p.str_at("/status/phase").unwrap_or("Pending")))
        .take(3)
        .collect();
    if !waiting.is_empty() {
        parts.push(waiting.join(", "));
    }
    Some(format!("{} pods ({}, {}): {}", g.what, g.namespace, g.selector, parts.join("; ")))
}

fn record(cx: &Cx) -> Result<Plan, PhaseError> {
    let mut plan = Plan::default();
    for g in GROUPS {
        let pods = cx.kube().list(&types::POD, Some(g.namespace), Some(g.selector))?;
        let pods = pods.iter().filter(|p| !p.is_deleting()).map(|p| (p.name().to_string(), p.uid().to_string()));
        plan.groups.push(Recorded { pods: pods.collect() });
    }
    cx.state().put(PLAN_KEY, &plan)?;
    Ok(plan)
}

fn delete_recorded(cx: &Cx, plan: &Plan) -> Result<usize, PhaseError> {
    let mut deleted = 0;
    for (g, rec) in GROUPS.iter().zip(&plan.groups) {
        for (name, uid) in &rec.pods {
            let pre = Preconditions { uid: Some(uid.clone()), resource_version: None };
            match cx.kube().delete(&types::POD, Some(g.namespace), name, Some(&pre)) {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                // The uid precondition failed: a new pod took the name; it is not ours to delete.
                Err(PhaseError::Kube { error: KubeError::Conflict(_), .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

fn execute(cx: &Cx) -> Step {
    let plan = match cx.state().get_json::<Plan>(PLAN_KEY)? {
        Some(p) if p.groups.len() == GROUPS.len() => p,
        _ => record(cx)?,
    };
    if !cx.state().is_marked(DELETED_KEY) {
        let deleted = delete_recorded(cx, &plan)?;
        cx.state().mark(DELETED_KEY)?;
        let total: usize = plan.groups.iter().map(|r| r.pods.len()).sum();
        cx.info(format!(
            "deleted {deleted} of the {total} recorded vSphere consumer pods; waiting for their replacements"
        ));
        cx.log().event(
            EventType::Normal,
            "PodsRestarted",
            &format!("restarted {total} pods that read the vCenter configuration"),
        );
    }

    let mut ready_groups = 0;
    let mut absent = Vec::new();
    for (g, rec) in GROUPS.iter().zip(&plan.groups) {
        let pods = cx.kube().list(&types::POD, Some(g.namespace), Some(g.selector))?;
        if rec.pods.is_empty() && pods.is_empty() {
            absent.push(g.what);
            ready_groups += 1;
            continue;
        }
        match group_status(g, rec, &pods) {
            None => ready_groups += 1,
            Some(why) => {
                return Ok(wait(POLL_MS, percent(ready_groups, GROUPS.len()), format!("waiting for the {why}")));
            }
        }
    }
    let restarted: Vec<String> = GROUPS
        .iter()
        .zip(&plan.groups)
        .filter(|(_, r)| !r.pods.is_empty())
        .map(|(g, r)| format!("{} ({})", g.what, r.pods.len()))
        .collect();
    let mut message = format!("restarted and Ready again: {}", restarted.join(", "));
    if !absent.is_empty() {
        message.push_str(&format!("; not present on this cluster: {}", absent.join(", ")));
    }
    Ok(done(message))
}

export_phase!(RestartPods);

#[cfg(test)]
mod tests;
