use serde_json::json;
use vsm_sdk::testing::{Direction, FakeHost, migration};
use vsm_sdk::{Migration, types};

use super::*;

const SELECTOR: &str = "k8s-app";

fn m() -> Migration {
    migration(&json!({"failureDomains": []}), &["vc-src"])
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("cluster-version-operator-{i}"), "namespace": CVO_NAMESPACE,
                        "labels": {SELECTOR: "cluster-version-operator"}},
           "status": {"phase": "Running"}})
}

/// A cluster with the CVO at `replicas`, and a controller that keeps its pods and status
/// in line with the spec on every wait.
fn cluster(replicas: i64) -> FakeHost {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": CVO, "namespace": CVO_NAMESPACE},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {SELECTOR: "cluster-version-operator"}}},
                    "status": {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1}}));
    for i in 0..replicas as usize {
        host.put(pod(i));
    }
    host.on_wait(controller);
    host
}

fn controller(h: &FakeHost) {
    let d = h.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap();
    let want = replicas(&d) as usize;
    let pods = h.list(&types::POD);
    for p in pods.iter().skip(want) {
        h.remove(&types::POD, Some(CVO_NAMESPACE), p.name());
    }
    for i in pods.len()..want {
        h.put(pod(i + 10));
    }
    let generation = d.generation();
    h.edit(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO, |o| {
        o["status"] = json!({"replicas": want, "readyReplicas": want, "observedGeneration": generation});
    });
}

fn cvo_replicas(h: &FakeHost) -> i64 {
    replicas(&h.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap())
}

#[test]
fn scales_to_zero_remembers_the_count_in_migration_scope_and_waits_for_the_pods() {
    let host = cluster(2);
    let run = host.run::<DisableCvo>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.waits() >= 1, "the phase waited for the pods");
    assert!(
        run.outcomes[0]
            == wait(
                POLL_MS,
                50,
                "waiting for 2 cluster-version-operator pod(s) to stop: cluster-version-operator-0 (Running), cluster-version-operator-1 (Running)"
            )
    );
    assert_eq!(cvo_replicas(&host), 0);
    assert!(host.list(&types::POD).is_empty());
    assert_eq!(host.shared_state(CVO_REPLICAS).as_deref(), Some("2"), "a JSON number in migration scope");
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn a_second_run_changes_nothing_and_never_overwrites_the_remembered_count() {
    let host = cluster(2);
    host.run::<DisableCvo>(Direction::Execute, &m());
    let before = host.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap();
    let run = host.run::<DisableCvo>(Direction::Execute, &m());
    assert!(run.done());
    assert_eq!(host.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap(), before);
    assert_eq!(host.shared_state(CVO_REPLICAS).as_deref(), Some("2"));
}

#[test]
fn rollback_restores_the_remembered_count_not_one_and_waits_until_ready() {
    let host = cluster(2);
    host.run::<DisableCvo>(Direction::Execute, &m());
    let run = host.run::<DisableCvo>(Direction::Rollback, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.waits() >= 1, "waited for the CVO to be ready again");
    assert_eq!(cvo_replicas(&host), 2, "the Go controller restored 1");
    assert_eq!(run.message(), "the cluster-version operator is back at its original 2 replica(s)");
    assert_eq!(host.list(&types::POD).len(), 2);
    // Again: nothing more to do.
    let rv = host.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap().resource_version().to_string();
    assert!(host.run::<DisableCvo>(Direction::Rollback, &m()).done());
    assert_eq!(host.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap().resource_version(), rv);
}

#[test]
fn a_crash_at_any_point_converges_with_the_original_count_remembered() {
    let host = FakeHost::new();
    let points = host.crash_everywhere::<DisableCvo>(
        Direction::Execute,
        &m(),
        |h, _| {
            h.clear_hooks();
            for p in h.list(&types::POD) {
                h.remove(&types::POD, Some(CVO_NAMESPACE), p.name());
            }
            h.remove(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO);
            let fresh = cluster(3);
            h.put(fresh.get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO).unwrap().0);
            for p in fresh.list(&types::POD) {
                h.put(p.0);
            }
            h.on_wait(controller);
            vsm_sdk::Host::state_delete(h, vsm_sdk::Scope::Migration, CVO_REPLICAS).unwrap();
        },
        |h, n| {
            assert_eq!(cvo_replicas(h), 0, "crash at {n}");
            assert!(h.list(&types::POD).is_empty(), "crash at {n}");
            assert_eq!(h.shared_state(CVO_REPLICAS).as_deref(), Some("3"), "crash at {n}");
        },
    );
    assert!(points >= 3, "{points}");
}

#[test]
fn a_cvo_already_at_zero_is_remembered_as_zero_and_rollback_leaves_it_there() {
    let host = cluster(0);
    let run = host.run::<DisableCvo>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(host.shared_state(CVO_REPLICAS).as_deref(), Some("0"));
    assert!(host.logged("was already scaled to 0 before the migration"));
    assert!(host.run::<DisableCvo>(Direction::Rollback, &m()).done());
    assert_eq!(cvo_replicas(&host), 0);
}

#[test]
fn a_missing_cvo_is_a_clear_failure_and_rollback_without_a_record_does_nothing() {
    let host = FakeHost::new();
    let run = host.run::<DisableCvo>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "the cluster-version operator (Deployment openshift-cluster-version/cluster-version-operator) does not exist: is this an OpenShift cluster?"
    );
    let run = host.run::<DisableCvo>(Direction::Rollback, &m());
    assert_eq!(
        run.message(),
        "nothing to undo: the CVO's replica count was never recorded, so it was never scaled down"
    );
}

#[test]
fn plan_mode_changes_nothing_and_says_what_it_would_do() {
    let host = cluster(2);
    let run = host.plan_run::<DisableCvo>(&m());
    assert_eq!(
        run.message(),
        "would scale Deployment openshift-cluster-version/cluster-version-operator from 2 to 0 replicas and wait for its pods to stop"
    );
    assert_eq!(cvo_replicas(&host), 2);
    assert_eq!(host.shared_state(CVO_REPLICAS), None, "plan mode leaves no facts for a real run");
    assert_eq!(host.plan().len(), 1);
}
