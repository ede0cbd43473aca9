//! Who approved a phase: the field manager that owns the entry in `spec.approvals`
//! (a set-type list, so the API server tracks ownership per value).

use serde_json::Value;

use crate::api::VSphereMigration;
use crate::lifecycle::ApprovalSeen;

/// One `ApprovalSeen` per entry of spec.approvals; "unknown" when no manager owns it.
pub fn approvals_seen(m: &VSphereMigration) -> Vec<ApprovalSeen> {
    let managed = m.metadata.managed_fields.clone().unwrap_or_default();
    m.spec
        .approvals
        .iter()
        .map(|phase| {
            let key = format!("v:{}", Value::String(phase.clone()));
            let by = managed
                .iter()
                .filter(|f| {
                    f.fields_v1
                        .as_ref()
                        .and_then(|f| f.0.pointer("/f:spec/f:approvals"))
                        .and_then(Value::as_object)
                        .is_some_and(|set| set.contains_key(&key))
                })
                .filter_map(|f| f.manager.clone())
                .next_back()
                .unwrap_or_else(|| "unknown".into());
            ApprovalSeen { phase: phase.clone(), by }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    #[test]
    fn the_manager_owning_the_set_entry_is_the_approver() {
        let mut m: VSphereMigration = serde_json::from_value(json!({
            "apiVersion": "migration.openshift.io/v1alpha1", "kind": "VSphereMigration",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"state": "Running", "approvals": ["Preflight", "Backup"],
                "targetVCenterCredentialsSecret": {"name": "s"},
                "failureDomains": [{"name": "fd", "region": "r", "zone": "z", "server": "v",
                    "topology": {"datacenter": "d", "computeCluster": "/d/host/c", "datastore": "/d/datastore/s", "networks": ["n"]}}],
                "machineSetConfig": {"failureDomain": "fd"}, "controlPlaneMachineSetConfig": {"failureDomain": "fd"}}
        }))
        .unwrap();
        m.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry {
                manager: Some("kubectl-create".into()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:state": {}}}))),
                ..Default::default()
            },
            ManagedFieldsEntry {
                manager: Some("kubectl-vsm".into()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:approvals": {"v:\"Preflight\"": {}}}}))),
                ..Default::default()
            },
        ]);
        let seen = approvals_seen(&m);
        assert_eq!(seen[0], ApprovalSeen { phase: "Preflight".into(), by: "kubectl-vsm".into() });
        assert_eq!(seen[1], ApprovalSeen { phase: "Backup".into(), by: "unknown".into() });
    }
}
