//! What a migration would break for the cluster's workloads, found before anything changes:
//!
//! - vSphere volumes: a PersistentVolume of the vSphere CSI driver (or the in-tree vSphere
//!   plugin it replaced) is a disk in the source vCenter's storage. After the migration
//!   the nodes run in the target vCenter and the CSI driver talks to it, so a pod using
//!   such a volume could not start again once its node is drained. Moving volumes is not
//!   supported yet: every such volume is listed and the migration refused.
//! - Disruption budgets that can never allow an eviction: every node is drained when its
//!   machine is replaced, and a drain waits on the budget forever (`maxUnavailable: 0`,
//!   `minAvailable: 100%`, or `minAvailable` at least the pods it covers). Each is named.
//!
//! The rules are pure ([`vsphere_volume`], [`never_allows_eviction`]); the checks list the
//! objects and report.

use serde_json::Value;
use vsm_sdk::prelude::*;

use crate::Findings;

/// The vSphere CSI driver's name.
pub const VSPHERE_CSI_DRIVER: &str = "csi.vsphere.vmware.com";
/// At most this many objects are named in one problem (the count is always given).
const NAMED: usize = 10;

/// `Some(description)` if `pv` is a vSphere volume: its name, volume handle and claim.
pub fn vsphere_volume(pv: &Object) -> Option<String> {
    let csi = pv.str_at("/spec/csi/driver") == Some(VSPHERE_CSI_DRIVER);
    let in_tree = pv.at("/spec/vsphereVolume").is_some();
    if !csi && !in_tree {
        return None;
    }
    let handle = pv.str_at("/spec/csi/volumeHandle").or_else(|| pv.str_at("/spec/vsphereVolume/volumePath"));
    let claim = match (pv.str_at("/spec/claimRef/namespace"), pv.str_at("/spec/claimRef/name")) {
        (Some(ns), Some(name)) => format!("claim {ns}/{name}"),
        _ => "no claim".to_string(),
    };
    let what = if csi { "CSI volume" } else { "in-tree volume" };
    Some(format!("{} ({what} {}, {claim})", pv.name(), handle.unwrap_or("without a handle")))
}

/// An int-or-percent field: `Ok(n)` for an integer, `Err(p)` for `"p%"`.
fn int_or_percent(v: &Value) -> Option<Result<i64, i64>> {
    match v {
        Value::Number(n) => n.as_i64().map(Ok),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().map(Err),
            None => s.trim().parse().ok().map(Ok),
        },
        _ => None,
    }
}

/// Why `pdb` can never allow an eviction of the pods it covers, or None. A budget that
/// covers no pod (`status.expectedPods` 0) holds nothing up.
pub fn never_allows_eviction(pdb: &Object) -> Option<String> {
    let expected = pdb.i64_at("/status/expectedPods").unwrap_or(0);
    if expected == 0 {
        return None;
    }
    if let Some(max) = pdb.at("/spec/maxUnavailable").and_then(int_or_percent)
        && matches!(max, Ok(0) | Err(0))
    {
        return Some(format!("maxUnavailable 0 over {expected} pod(s)"));
    }
    match pdb.at("/spec/minAvailable").and_then(int_or_percent) {
        Some(Err(p)) if p >= 100 => Some(format!("minAvailable {p}% over {expected} pod(s)")),
        Some(Ok(n)) if n >= expected => Some(format!("minAvailable {n} over {expected} pod(s)")),
        _ => None,
    }
}

fn named(items: &[String]) -> String {
    let mut text = items.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > NAMED {
        text.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    text
}

/// Refuse while vSphere volumes exist.
pub fn check_volumes(cx: &Cx, f: &mut Findings) -> Result<(), PhaseError> {
    let pvs = cx.kube().list(&types::PERSISTENT_VOLUME, None, None)?;
    let volumes: Vec<String> = pvs.iter().filter_map(vsphere_volume).collect();
    if volumes.is_empty() {
        f.checked(format!("no vSphere volumes among {} PersistentVolume(s)", pvs.len()));
    } else {
        f.problem(format!(
            "{} vSphere PersistentVolume(s) live in the source vCenter's storage, and moving volumes is not supported yet: \
             their pods could not start on the target's nodes. Move their data off vSphere volumes (or delete the volumes) \
             first: {}",
            volumes.len(),
            named(&volumes)
        ));
    }
    Ok(())
}

/// Refuse while a disruption budget would hold a drain up forever.
pub fn check_disruption_budgets(cx: &Cx, f: &mut Findings) -> Result<(), PhaseError> {
    let pdbs = cx.kube().list(&types::POD_DISRUPTION_BUDGET, None, None)?;
    let blocking: Vec<String> = pdbs
        .iter()
        .filter_map(|p| {
            never_allows_eviction(p).map(|why| format!("{}/{} ({why})", p.namespace().unwrap_or_default(), p.name()))
        })
        .collect();
    if blocking.is_empty() {
        f.checked(format!("{} PodDisruptionBudget(s) allow a drain", pdbs.len()));
    } else {
        f.problem(format!(
            "{} PodDisruptionBudget(s) can never allow an eviction, so draining the nodes being replaced would wait forever: \
             {} (relax them, or scale their workloads up, before migrating)",
            blocking.len(),
            named(&blocking)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mk_pv(name: &str, spec: Value) -> Object {
        Object(json!({"metadata": {"name": name}, "spec": spec}))
    }

    fn mk_pdb(spec: Value, expected: i64) -> Object {
        Object(
            json!({"metadata": {"name": "b", "namespace": "ns"}, "spec": spec, "status": {"expectedPods": expected}}),
        )
    }

    #[test]
    fn vsphere_volumes_are_csi_or_in_tree_ones() {
        let csi = mk_pv(
            "pv-1",
            json!({"csi": {"driver": VSPHERE_CSI_DRIVER, "volumeHandle": "fcd-1"}, "claimRef": {"namespace": "db", "name": "data"}}),
        );
        assert_eq!(vsphere_volume(&csi).unwrap(), "pv-1 (CSI volume fcd-1, claim db/data)");
        let in_tree = mk_pv("pv-2", json!({"vsphereVolume": {"volumePath": "[ds] kubevols/x.vmdk"}}));
        assert_eq!(vsphere_volume(&in_tree).unwrap(), "pv-2 (in-tree volume [ds] kubevols/x.vmdk, no claim)");
        assert_eq!(vsphere_volume(&mk_pv("nfs", json!({"nfs": {"server": "s", "path": "/"}}))), None);
        assert_eq!(vsphere_volume(&mk_pv("other", json!({"csi": {"driver": "ebs.csi.aws.com"}}))), None);
    }

    #[test]
    fn a_budget_blocks_when_it_can_never_allow_an_eviction() {
        assert_eq!(
            never_allows_eviction(&mk_pdb(json!({"maxUnavailable": 0}), 3)).unwrap(),
            "maxUnavailable 0 over 3 pod(s)"
        );
        assert_eq!(
            never_allows_eviction(&mk_pdb(json!({"maxUnavailable": "0%"}), 3)).unwrap(),
            "maxUnavailable 0 over 3 pod(s)"
        );
        assert_eq!(
            never_allows_eviction(&mk_pdb(json!({"minAvailable": "100%"}), 2)).unwrap(),
            "minAvailable 100% over 2 pod(s)"
        );
        assert_eq!(
            never_allows_eviction(&mk_pdb(json!({"minAvailable": 2}), 2)).unwrap(),
            "minAvailable 2 over 2 pod(s)"
        );
        assert_eq!(
            never_allows_eviction(&mk_pdb(json!({"minAvailable": "3"}), 2)).unwrap(),
            "minAvailable 3 over 2 pod(s)"
        );
        // Budgets that allow one eviction at a time, and one over no pods.
        for (spec, expected) in [
            (json!({"maxUnavailable": 1}), 3),
            (json!({"maxUnavailable": "25%"}), 3),
            (json!({"minAvailable": 1}), 2),
            (json!({"minAvailable": "50%"}), 2),
            (json!({"maxUnavailable": 0}), 0),
            (json!({}), 2),
        ] {
            assert_eq!(never_allows_eviction(&mk_pdb(spec.clone(), expected)), None, "{spec} over {expected}");
        }
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let items: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
        assert_eq!(named(&items), "v0, v1, v2, v3, v4, v5, v6, v7, v8, v9 and 2 more");
        assert_eq!(named(&items[..2]), "v0, v1");
    }
}
