use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

fn m() -> Migration {
    migration(&json!({"failureDomains": []}), &["vc-src"])
}

fn cpms(state: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
           "metadata": {"name": CPMS, "namespace": MACHINE_API_NAMESPACE, "labels": {"owner": "installer"},
                        "annotations": {"note": "original"}},
           "spec": {"replicas": 3, "state": state, "strategy": {"type": "RollingUpdate"},
                    "selector": {"matchLabels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
                    "template": {"machineType": "machines_v1beta1_machine_openshift_io",
                                 "machines_v1beta1_machine_openshift_io": {"failureDomains": {"platform": "VSphere", "vsphere": [{"name": "source-fd"}]}}}},
           "status": {"replicas": 3}})
}

/// The control-plane machine set operator: a deleted CPMS comes back Inactive, from the
/// current masters (here: the same spec, without failure domains, no labels).
fn operator(h: &FakeHost) {
    if h.get(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS).is_none() {
        let mut regenerated = cpms("Inactive");
        regenerated["metadata"] = json!({"name": CPMS, "namespace": MACHINE_API_NAMESPACE});
        regenerated["spec"]["template"]["machines_v1beta1_machine_openshift_io"] = json!({});
        h.put(regenerated);
    }
}

fn cluster(state: &str) -> FakeHost {
    let host = FakeHost::new();
    host.put(cpms(state));
    host.on_wait(operator);
    host
}

fn live(h: &FakeHost) -> Option<Object> {
    h.get(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS)
}

#[test]
fn deletes_the_active_cpms_and_waits_for_the_regenerated_inactive_one() {
    let host = cluster("Active");
    let uid = live(&host).unwrap().uid().to_string();
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.waits() >= 1, "the phase waited for the regeneration");
    let now = live(&host).unwrap();
    assert_ne!(now.uid(), uid);
    assert_eq!(state_of(&now), "Inactive");
    assert!(run.message().starts_with("deleted the original ControlPlaneMachineSet openshift-machine-api/cluster (Active); the operator regenerated it Inactive"), "{}", run.message());
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn a_second_run_changes_nothing() {
    let host = cluster("Active");
    host.run::<DeleteCpms>(Direction::Execute, &m());
    let before = live(&host).unwrap();
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.done() && run.calls == 1, "{:?}", run.outcome);
    assert_eq!(live(&host).unwrap(), before);
}

#[test]
fn without_an_operator_it_carries_on_after_the_grace_period() {
    let host = FakeHost::new();
    host.put(cpms("Active"));
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.waits() as u64 >= REGENERATE_GRACE_MS / POLL_MS - 1, "{}", run.waits());
    assert!(run.message().contains("none was regenerated within 120 s"), "{}", run.message());
    assert!(live(&host).is_none());
}

#[test]
fn a_cpms_recreated_active_is_a_clear_failure() {
    let host = FakeHost::new();
    host.put(cpms("Active"));
    host.on_wait(|h| {
        if live(h).is_none() {
            h.put(cpms("Active"));
        }
    });
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert!(
        run.message().starts_with("a new Active ControlPlaneMachineSet openshift-machine-api/cluster (uid "),
        "{}",
        run.message()
    );
    assert!(run.message().ends_with("make it Inactive or delete it, then retry"), "{}", run.message());
}

#[test]
fn an_inactive_cpms_is_left_alone_and_there_is_nothing_to_roll_back() {
    let host = cluster("Inactive");
    let before = live(&host).unwrap();
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "the ControlPlaneMachineSet openshift-machine-api/cluster is Inactive: it does not roll machines, so it is left as it is"
    );
    assert_eq!(live(&host).unwrap(), before);
    let run = host.run::<DeleteCpms>(Direction::Rollback, &m());
    assert_eq!(run.message(), "nothing to undo: this phase did not delete the ControlPlaneMachineSet");
    let host = FakeHost::new();
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "no ControlPlaneMachineSet openshift-machine-api/cluster exists: the control plane is not managed by one, nothing to delete"
    );
}

#[test]
fn rollback_puts_the_original_spec_and_state_back_over_the_regenerated_one() {
    let host = cluster("Active");
    let original = live(&host).unwrap();
    host.run::<DeleteCpms>(Direction::Execute, &m());
    let regenerated_uid = live(&host).unwrap().uid().to_string();
    let run = host.run::<DeleteCpms>(Direction::Rollback, &m());
    assert_eq!(
        run.message(),
        "restored the original ControlPlaneMachineSet openshift-machine-api/cluster (state Active)"
    );
    let now = live(&host).unwrap();
    for field in ["/spec", "/metadata/labels", "/metadata/annotations"] {
        assert_eq!(now.at(field), original.at(field), "{field}");
    }
    assert_eq!(now.uid(), regenerated_uid, "the live object is updated in place");
    // Rollback with nothing regenerated re-creates it.
    let host = FakeHost::new();
    host.put(cpms("Active"));
    host.set_now(0);
    host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(live(&host).is_none());
    host.run::<DeleteCpms>(Direction::Rollback, &m());
    assert_eq!(live(&host).unwrap().at("/spec"), original.at("/spec"));
}

#[test]
fn a_cpms_held_by_finalizers_is_waited_for() {
    let host = FakeHost::new();
    let mut c = cpms("Active");
    c["metadata"]["finalizers"] = json!(["controlplanemachineset.machine.openshift.io"]);
    host.put(c);
    let mut waits = 0;
    host.on_wait(move |h| {
        waits += 1;
        if waits == 2 {
            h.remove(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS);
        }
        operator(h);
    });
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.outcomes
            .iter()
            .any(|o| vsm_sdk::testing::outcome_message(o).contains("is being deleted (finalizers pending)"))
    );
    assert_eq!(state_of(&live(&host).unwrap()), "Inactive");
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges() {
    let host = FakeHost::new();
    host.on_wait(operator);
    let points = host.crash_everywhere::<DeleteCpms>(
        Direction::Execute,
        &m(),
        |h, _| {
            h.remove(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS);
            h.put(cpms("Active"));
            vsm_sdk::Host::state_delete(h, vsm_sdk::Scope::Phase, ORIGINAL_KEY).unwrap();
        },
        |h, n| {
            assert_eq!(state_of(&live(h).unwrap()), "Inactive", "crash at {n}");
            assert!(live(h).unwrap().label("owner").is_none(), "the regenerated one, crash at {n}");
        },
    );
    assert!(points >= 3, "{points}");
}

#[test]
fn plan_mode_deletes_nothing() {
    let host = cluster("Active");
    let before = live(&host).unwrap();
    let run = host.plan_run::<DeleteCpms>(&m());
    assert!(
        run.message().starts_with("would delete the Active ControlPlaneMachineSet openshift-machine-api/cluster"),
        "{}",
        run.message()
    );
    assert_eq!(live(&host).unwrap(), before);
    assert_eq!(host.plan().len(), 1);
}

#[test]
fn a_refused_delete_is_a_failure_not_a_warning() {
    // The Go controller logged every delete error as "not found or already deleted" and
    // completed.
    let host = cluster("Active");
    host.on_kube("delete", "ControlPlaneMachineSet", |_| {
        Some(vsm_sdk::KubeError::Forbidden("controlplanemachinesets \"cluster\" is forbidden".into()))
    });
    let run = host.run::<DeleteCpms>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "deleting ControlPlaneMachineSet openshift-machine-api/cluster: forbidden: controlplanemachinesets \"cluster\" is forbidden"
    );
    assert_eq!(state_of(&live(&host).unwrap()), "Active");
}
