use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration, outcome_message};

use super::*;

fn m() -> Migration {
    migration(&json!({"failureDomains": [{"name": "fd-b", "server": "vc-b"}]}), &["vc-a"])
}

fn set(name: &str, server: &str, replicas: i64) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"replicas": replicas, "template": {"spec": {"providerSpec": {"value": {"workspace": {"server": server}}}}}}})
}

/// machine-api in miniature: on every wait, each set gets or loses machines (Running, with
/// a Ready node named like the machine); a machine's node goes with it.
fn machine_api(h: &FakeHost) {
    for s in h.list(&types::MACHINE_SET) {
        let want = replicas(&s) as usize;
        let server = machines::machine_set_server(&s).to_string();
        let mine: Vec<Object> =
            h.list(&types::MACHINE).into_iter().filter(|m| m.label(MACHINESET_LABEL) == Some(s.name())).collect();
        for i in mine.len()..want {
            let name = format!("{}-{i}-{}", s.name(), h.imports());
            h.put(json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
                         "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE, "labels": {MACHINESET_LABEL: s.name()}},
                         "spec": {"providerSpec": {"value": {"workspace": {"server": server}}}},
                         "status": {"phase": "Running", "nodeRef": {"name": name}}}));
            h.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                         "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        }
        for extra in mine.iter().skip(want) {
            h.remove(&types::MACHINE, Some(MACHINE_API_NAMESPACE), extra.name());
            h.remove(&types::NODE, None, extra.name());
        }
    }
}

fn replacement(source: &str, name: &str, replicas: i64) -> Replacement {
    Replacement {
        source: source.into(),
        source_domain: None,
        name: name.into(),
        failure_domain: "fd-b".into(),
        server: "vc-b".into(),
        replicas,
    }
}

fn record_plan(h: &FakeHost, plan: &[Replacement]) {
    h.set_shared_state(MACHINE_SET_REPLACEMENTS, &serde_json::to_string(plan).unwrap());
}

/// Two source sets, each replaced (CreateWorkers' plan recorded, replacements Ready).
fn cluster() -> FakeHost {
    let h = FakeHost::new();
    h.put(set("old-a", "vc-a", 2));
    h.put(set("old-b", "vc-a", 1));
    h.put(set("new-a", "vc-b", 2));
    h.put(set("new-b", "vc-b", 1));
    record_plan(&h, &[replacement("old-a", "new-a", 2), replacement("old-b", "new-b", 1)]);
    machine_api(&h);
    h.on_wait(machine_api);
    h
}

fn counts(h: &FakeHost) -> Vec<(String, i64)> {
    h.list(&types::MACHINE_SET).iter().map(|s| (s.name().to_string(), replicas(s))).collect()
}

#[test]
fn scales_the_source_sets_to_zero_and_the_rollback_restores_the_remembered_counts() {
    let h = cluster();
    let run = h.run::<ScaleOldMachines>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.waits() >= 1, "waited for the machines and nodes to go");
    assert_eq!(counts(&h), [("new-a".into(), 2), ("new-b".into(), 1), ("old-a".into(), 0), ("old-b".into(), 0)]);
    assert!(h.list(&types::NODE).iter().all(|n| n.name().starts_with("new-")));
    assert_eq!(h.phase_state("ScaleOldMachines", "original").as_deref(), Some("{\"old-a\":2,\"old-b\":1}"));

    let back = h.run::<ScaleOldMachines>(Direction::Rollback, &m());
    assert!(back.done(), "{:?}", back.outcome);
    assert_eq!(
        counts(&h),
        [("new-a".into(), 2), ("new-b".into(), 1), ("old-a".into(), 2), ("old-b".into(), 1)],
        "not a fixed 3"
    );
    assert_eq!(h.list(&types::MACHINE).len(), 6);
}

#[test]
fn a_crash_anywhere_never_remembers_a_zero() {
    for n in 1..40 {
        let h = cluster();
        if h.call_crashing::<ScaleOldMachines>(Direction::Execute, &m(), n).is_some() {
            assert!(n > 5, "the first call has several imports");
            return;
        }
        machine_api(&h);
        let run = h.run::<ScaleOldMachines>(Direction::Execute, &m());
        assert!(run.done(), "crash at {n}: {:?}", run.outcome);
        assert_eq!(
            h.phase_state("ScaleOldMachines", "original").as_deref(),
            Some("{\"old-a\":2,\"old-b\":1}"),
            "crash at {n}"
        );
    }
    panic!("more than 40 imports in the first call");
}

#[test]
fn a_source_set_goes_down_only_once_its_own_replacement_is_ready() {
    let h = cluster();
    h.clear_hooks();
    // new-b's machine is not Ready: old-a goes, old-b waits.
    let broken = h.list(&types::MACHINE).into_iter().find(|m| m.label(MACHINESET_LABEL) == Some("new-b")).unwrap();
    h.edit(&types::NODE, None, broken.name(), |n| n["status"]["conditions"][0]["status"] = json!("False"));
    let first = h.call::<ScaleOldMachines>(Direction::Execute, &m(), 1);
    assert!(
        outcome_message(&first).contains("replacements not Ready yet: old-b (replacement new-b 0/1 ready)"),
        "{first:?}"
    );
    assert_eq!(counts(&h), [("new-a".into(), 2), ("new-b".into(), 1), ("old-a".into(), 0), ("old-b".into(), 1)]);
    h.edit(&types::NODE, None, broken.name(), |n| n["status"]["conditions"][0]["status"] = json!("True"));
    h.on_wait(machine_api);
    let run = h.run::<ScaleOldMachines>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(h.phase_state("ScaleOldMachines", "original").as_deref(), Some("{\"old-a\":2,\"old-b\":1}"));
}

#[test]
fn a_source_set_without_a_replacement_or_without_a_plan_is_never_scaled() {
    let h = FakeHost::new();
    h.put(set("old-a", "vc-a", 2));
    let run = h.run::<ScaleOldMachines>(Direction::Execute, &m());
    assert!(run.failed() && run.message().contains("CreateWorkers recorded no replacement plan"), "{}", run.message());

    let h = cluster();
    h.put(set("late", "vc-a", 1));
    let run = h.run::<ScaleOldMachines>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert!(
        run.message().contains("MachineSet(s) late (1 replica(s)) put machines in the source"),
        "{}",
        run.message()
    );
    assert_eq!(
        counts(&h),
        [("late".into(), 1), ("new-a".into(), 2), ("new-b".into(), 1), ("old-a".into(), 2), ("old-b".into(), 1)],
        "nothing scaled"
    );
}

fn autoscaler(name: &str, target: &str) -> Value {
    json!({"apiVersion": "autoscaling.openshift.io/v1beta1", "kind": "MachineAutoscaler",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"minReplicas": 1, "maxReplicas": 4,
                    "scaleTargetRef": {"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet", "name": target}}})
}

fn scales(h: &FakeHost, name: &str) -> (String, i64, i64) {
    let a = h.get(&types::MACHINE_AUTOSCALER, NS, name).unwrap();
    (
        a.str_at("/spec/scaleTargetRef/name").unwrap().to_string(),
        a.i64_at("/spec/minReplicas").unwrap(),
        a.i64_at("/spec/maxReplicas").unwrap(),
    )
}

#[test]
fn an_autoscaler_follows_its_set_to_the_replacement_and_back_and_health_checks_hold_still() {
    let h = cluster();
    h.put(autoscaler("old-a-scaler", "old-a"));
    h.put(autoscaler("elsewhere", "unrelated"));
    h.put(json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineHealthCheck",
                 "metadata": {"name": "all", "namespace": MACHINE_API_NAMESPACE}, "spec": {"selector": {}}}));
    h.clear_hooks();
    let paused = |h: &FakeHost| {
        h.get(&types::MACHINE_HEALTH_CHECK, NS, "all")
            .unwrap()
            .str_at("/metadata/annotations/cluster.x-k8s.io~1paused")
            .map(String::from)
    };
    let first = h.call::<ScaleOldMachines>(Direction::Execute, &m(), 1);
    assert!(matches!(first, Outcome::Wait(_)), "{first:?}");
    assert_eq!(scales(&h, "old-a-scaler"), ("new-a".into(), 1, 4), "moved before the scale-down, min/max kept");
    assert_eq!(scales(&h, "elsewhere").0, "unrelated");
    assert_eq!(paused(&h).as_deref(), Some("vsphere-migration"));
    h.on_wait(machine_api);
    assert!(h.run::<ScaleOldMachines>(Direction::Execute, &m()).done());
    assert_eq!(paused(&h), None, "resumed once the old machines are gone");

    assert!(h.run::<ScaleOldMachines>(Direction::Rollback, &m()).done());
    assert_eq!(scales(&h, "old-a-scaler"), ("old-a".into(), 1, 4), "pointed back");
    assert_eq!(paused(&h), None);
    assert_eq!(h.phase_state("ScaleOldMachines", "autoscalers"), None);
}
