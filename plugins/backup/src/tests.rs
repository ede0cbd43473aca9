use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

fn m() -> Migration {
    migration(&json!({"failureDomains": []}), &["vc-src"])
}

fn machine_set(name: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE}, "spec": {"replicas": 2}})
}

fn cluster(machine_sets: usize) -> FakeHost {
    let host = FakeHost::new();
    host.put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": INFRASTRUCTURE},
                    "spec": {"platformSpec": {"type": "VSphere"}}}),
    );
    host.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CLOUD_CONFIG, "namespace": CLOUD_CONFIG_NAMESPACE},
                    "data": {"config": "[Global]"}}));
    host.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": VSPHERE_CREDS, "namespace": VSPHERE_CREDS_NAMESPACE},
                    "stringData": {"vc-src.username": "u", "vc-src.password": "p"}}));
    host.put(json!({"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
                    "metadata": {"name": CPMS, "namespace": MACHINE_API_NAMESPACE}, "spec": {"state": "Active"}}));
    host.put(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": CVO, "namespace": CVO_NAMESPACE},
                    "spec": {"replicas": 1}}),
    );
    for i in 0..machine_sets {
        host.put(machine_set(&format!("cl-worker-{i:02}")));
    }
    host
}

#[test]
fn every_object_the_migration_changes_is_snapshotted() {
    let host = cluster(2);
    let run = host.run::<Backup>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "snapshots of 7 objects (2 MachineSet(s)) in the migration's backup store; earlier snapshots are never overwritten"
    );
    let subjects: Vec<String> = host.snapshots().into_keys().collect();
    assert_eq!(
        subjects,
        [
            "ConfigMap openshift-config/cloud-provider-config",
            "ControlPlaneMachineSet openshift-machine-api/cluster",
            "Deployment openshift-cluster-version/cluster-version-operator",
            "Infrastructure cluster",
            "MachineSet openshift-machine-api/cl-worker-00",
            "MachineSet openshift-machine-api/cl-worker-01",
            "Secret kube-system/vsphere-creds",
        ]
    );
    assert!(host.denials().is_empty(), "{:?}", host.denials());
    assert!(host.journal().is_empty(), "snapshots are not rollback journal entries");
}

#[test]
fn a_rerun_never_overwrites_an_earlier_snapshot() {
    let host = cluster(1);
    host.run::<Backup>(Direction::Execute, &m());
    let first = host.snapshots();
    host.edit(&types::INFRASTRUCTURE, None, INFRASTRUCTURE, |o| o["spec"]["changed"] = json!(true));
    host.edit(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG, |o| {
        o["data"]["config"] = json!("changed")
    });
    // Even with the phase's progress forgotten, the earlier copies stay.
    vsm_sdk::Host::state_delete(&host, vsm_sdk::Scope::Phase, DONE_KEY).unwrap();
    let run = host.run::<Backup>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(host.snapshots(), first);
    assert!(host.logged("6 snapshot(s) from an earlier run kept as they were"));
}

#[test]
fn a_missing_cpms_is_only_logged() {
    let host = cluster(1);
    host.remove(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS);
    let run = host.run::<Backup>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(host.logged("ControlPlaneMachineSet openshift-machine-api/cluster does not exist; nothing to snapshot"));
    assert_eq!(host.snapshots().len(), 5);
}

#[test]
fn missing_required_objects_are_all_named() {
    let host = cluster(1);
    host.remove(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG);
    host.remove(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO);
    let run = host.run::<Backup>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "cannot back up ConfigMap openshift-config/cloud-provider-config, Deployment openshift-cluster-version/cluster-version-operator: \
         not found (the migration changes it, so it must exist)"
    );
    assert_eq!(host.snapshots().len(), 4, "the others are kept, a re-run adds the rest");
}

#[test]
fn many_machine_sets_are_snapshotted_in_batches() {
    let host = cluster(45);
    let run = host.run::<Backup>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(run.calls, 3, "50 objects, 20 per call");
    assert_eq!(host.snapshots().len(), 50);
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges() {
    let host = cluster(3);
    let first = {
        let h = cluster(3);
        h.run::<Backup>(Direction::Execute, &m());
        h.snapshots()
    };
    let points = host.crash_everywhere::<Backup>(
        Direction::Execute,
        &m(),
        |h, _| vsm_sdk::Host::state_delete(h, vsm_sdk::Scope::Phase, DONE_KEY).unwrap(),
        |h, n| assert_eq!(h.snapshots(), first, "crash at {n}"),
    );
    assert!(points >= 8, "{points}");
}

#[test]
fn plan_mode_stores_nothing_and_there_is_nothing_to_roll_back() {
    let host = cluster(1);
    let run = host.plan_run::<Backup>(&m());
    assert!(run.message().starts_with("would snapshot 6 objects"), "{}", run.message());
    assert!(host.snapshots().is_empty());
    assert!(!Backup::describe().has_rollback);
    assert_eq!(host.run::<Backup>(Direction::Rollback, &m()).message(), "nothing to undo");
}
