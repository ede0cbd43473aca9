//! RestartPods: restart, once, the pods that read the vCenter configuration and trust at
//! start (the vSphere cloud controller manager, the machine-api controllers, the vSphere CSI
//! driver's controller and node pods and its operator), then wait until every group is
//! fully Ready again.
//!
//! Before the first delete, it waits until the configuration those pods will read has
//! arrived: the cluster-config-operator's copy of the cloud config
//! (`openshift-config-managed/kube-cloud-config`, which newer machine-api releases read)
//! lists every target vCenter, and every trust ConfigMap a group's pods mount holds the
//! target CAs UpdateConfig added (filled by the cluster-network-operator's trusted CA
//! injection, or the cloud controller manager operator). A pod restarted earlier would read
//! the old configuration, and Go reads its trust store once per process. A ConfigMap the
//! cluster does not have is not waited for; a cloud config that does not list the targets
//! at all (UpdateConfig has not run) is refused. A plan (which changes nothing, so nothing
//! arrives) notes what a run would wait for and goes on.
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
use vsm_common::shared_state::TARGET_CA_FINGERPRINTS;
use vsm_common::trust::{self, Injected, TRUSTED_CA_KEY};
use vsm_common::{cloud_config, pem};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{CLOUD_CONFIG, CLOUD_CONFIG_KEY, CLOUD_CONFIG_NAMESPACE};
use vsm_sdk::{KubeError, Preconditions};

/// Pods of one component: namespace, label selector, how an administrator calls it, and
/// the ConfigMap they mount as their trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub namespace: &'static str,
    pub selector: &'static str,
    pub what: &'static str,
    pub trust: Option<Injected>,
}

pub const GROUPS: [Group; 5] = [
    Group {
        namespace: "openshift-cloud-controller-manager",
        selector: "k8s-app=vsphere-cloud-controller-manager",
        what: "vSphere cloud controller manager",
        trust: Some(trust::CCM_TRUST),
    },
    Group {
        namespace: "openshift-machine-api",
        selector: "api=clusterapi",
        what: "machine-api controllers",
        trust: Some(trust::MACHINE_API_TRUST),
    },
    Group {
        namespace: "openshift-cluster-csi-drivers",
        selector: "app=vmware-vsphere-csi-driver-controller",
        what: "vSphere CSI driver controller",
        trust: Some(trust::CSI_DRIVER_TRUST),
    },
    Group {
        namespace: "openshift-cluster-csi-drivers",
        selector: "app=vmware-vsphere-csi-driver-node",
        what: "vSphere CSI driver node",
        trust: Some(trust::CSI_DRIVER_TRUST),
    },
    // Nothing restarts it when its trust store changes (cluster-storage-operator sets no
    // hash annotation for it).
    Group {
        namespace: "openshift-cluster-csi-drivers",
        selector: "name=vmware-vsphere-csi-driver-operator",
        what: "vSphere CSI driver operator",
        trust: Some(trust::CSI_OPERATOR_TRUST),
    },
];

/// The cluster-config-operator's copy of the cloud config.
pub const MANAGED_CLOUD_CONFIG: (&str, &str, &str) = ("openshift-config-managed", "kube-cloud-config", "cloud.conf");

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
                info = info.kube("", "configmaps", &["get"], Some(g.namespace));
            }
        }
        info.kube("", "configmaps", &["get"], Some(MANAGED_CLOUD_CONFIG.0))
            .kube("", "configmaps", &["get"], Some(CLOUD_CONFIG_NAMESPACE))
            .deadline_minutes(30)
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

/// What the pods would read if restarted now that is not what the migration wrote yet, or
/// None when everything has arrived.
fn not_arrived(cx: &Cx) -> Result<Option<String>, PhaseError> {
    let listed_in = |text: &str, what: &str| -> Result<Vec<String>, PhaseError> {
        let listed = cloud_config::vcenters(text).map_err(|e| PhaseError::invalid(format!("{what}: {e}")))?;
        Ok(cx.target_servers().iter().filter(|t| !listed.iter().any(|l| &l.server == *t)).cloned().collect())
    };
    let source = format!("ConfigMap {CLOUD_CONFIG_NAMESPACE}/{CLOUD_CONFIG}");
    if let Some(cm) = cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)? {
        let missing = listed_in(cm.str_at(&format!("/data/{CLOUD_CONFIG_KEY}")).unwrap_or_default(), &source)?;
        if !missing.is_empty() {
            return Err(PhaseError::invalid(format!(
                "{source} does not list target vCenter(s) {}: restarting would not make anything read them (UpdateConfig must have run)",
                missing.join(", ")
            )));
        }
    }
    let (ns, name, key) = MANAGED_CLOUD_CONFIG;
    if let Some(cm) = cx.kube().get(&types::CONFIG_MAP, Some(ns), name)? {
        let missing =
            listed_in(cm.str_at(&format!("/data/{key}")).unwrap_or_default(), &format!("ConfigMap {ns}/{name}"))?;
        if !missing.is_empty() {
            return Ok(Some(format!(
                "ConfigMap {ns}/{name} (the cluster-config-operator's copy of the cloud config) does not list {} yet",
                missing.join(", ")
            )));
        }
    }
    let Some(wanted) = cx.shared().get_json::<Vec<String>>(TARGET_CA_FINGERPRINTS)? else { return Ok(None) };
    let mut checked = BTreeSet::new();
    for injected in GROUPS.iter().filter_map(|g| g.trust) {
        if !checked.insert((injected.namespace, injected.name)) {
            continue;
        }
        let Some(cm) = cx.kube().get(&types::CONFIG_MAP, Some(injected.namespace), injected.name)? else { continue };
        let what = format!("ConfigMap {}/{}", injected.namespace, injected.name);
        let held: Vec<String> = pem::certificates(cm.str_at(&format!("/data/{TRUSTED_CA_KEY}")).unwrap_or_default())
            .map_err(|e| PhaseError::invalid(format!("{what} {e}")))?
            .into_iter()
            .map(|c| c.fingerprint)
            .collect();
        let missing: Vec<&str> = wanted.iter().filter(|f| !held.contains(f)).map(|f| pem::short(f)).collect();
        if !missing.is_empty() {
            return Ok(Some(format!(
                "{what} does not hold target CA(s) {} yet ({} puts them there)",
                missing.join(", "),
                injected.filled_by
            )));
        }
    }
    Ok(None)
}

fn execute(cx: &Cx) -> Step {
    if !cx.state().is_marked(DELETED_KEY)
        && let Some(why) = not_arrived(cx)?
    {
        // A plan changes nothing, so nothing will arrive: say what a run would wait for.
        if cx.dry_run() {
            cx.info(format!("a run would wait until the vCenter clients' configuration has arrived: {why}"));
        } else {
            return Ok(wait(POLL_MS, 0, format!("not restarting the vCenter clients yet: {why}")));
        }
    }
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
