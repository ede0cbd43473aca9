use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;
use vsm_common::pem::test_certificate as mk_cert;

fn m() -> Migration {
    migration(&json!({}), &["vc-a"])
}

fn pod(g: &Group, name: &str, ready: bool) -> Value {
    let (k, v) = g.selector.split_once('=').unwrap();
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": g.namespace, "labels": {k: v}},
           "status": {"phase": if ready { "Running" } else { "Pending" },
                      "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// Two pods per group; a "controller" that, on every wait, makes a replacement for each
/// missing pod (not ready at first, ready on the next wait).
fn cluster() -> (FakeHost, Arc<AtomicU32>) {
    let h = FakeHost::new();
    for (i, g) in GROUPS.iter().enumerate() {
        for j in 0..2 {
            h.put(pod(g, &format!("old-{i}-{j}"), true));
        }
    }
    let made = Arc::new(AtomicU32::new(0));
    let counter = made.clone();
    h.on_wait(move |h| {
        for g in GROUPS {
            let pods: Vec<Object> = h
                .list(&types::POD)
                .into_iter()
                .filter(|p| p.namespace() == Some(g.namespace))
                .filter(|p| {
                    let (k, v) = g.selector.split_once('=').unwrap();
                    p.label(k) == Some(v)
                })
                .collect();
            for p in &pods {
                if p.str_at("/status/phase") == Some("Pending") {
                    h.put(pod(&g, p.name(), true));
                }
            }
            for _ in pods.len()..2 {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                h.put(pod(&g, &format!("new-{n}"), false));
            }
        }
    });
    (h, made)
}

#[test]
fn deletes_each_pod_once_and_waits_until_every_group_is_ready_again() {
    let (h, made) = cluster();
    let run = h.run::<RestartPods>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(made.load(Ordering::Relaxed), 10, "every old pod was replaced once");
    assert!(h.list(&types::POD).iter().all(|p| p.name().starts_with("new-")));
    let waits: Vec<&str> = run
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Wait(w) => Some(w.message.as_str()),
            _ => None,
        })
        .collect();
    assert!(waits[0].contains("vSphere cloud controller manager pods"), "{waits:?}");
    assert!(waits[0].contains("0/2 ready"), "{waits:?}");

    // Done already: a re-run deletes nothing.
    let again = h.run::<RestartPods>(Direction::Execute, &m());
    assert!(again.done());
    assert_eq!(made.load(Ordering::Relaxed), 10);
}

#[test]
fn a_crash_at_any_import_still_deletes_every_old_pod_exactly_once() {
    let mut points = 0;
    for n in 1.. {
        let (h, made) = cluster();
        if h.call_crashing::<RestartPods>(Direction::Execute, &m(), n).is_some() {
            break;
        }
        points += 1;
        let run = h.run::<RestartPods>(Direction::Execute, &m());
        assert!(run.done(), "after a crash at import {n}: {:?}", run.outcome);
        assert_eq!(made.load(Ordering::Relaxed), 10, "after a crash at import {n}, each old pod was replaced once");
        assert!(h.list(&types::POD).iter().all(|p| p.name().starts_with("new-")), "crash at {n}");
    }
    assert!(points > 10, "the first call lists, records and deletes: {points} imports");
}

#[test]
fn a_missing_group_is_reported_not_waited_for() {
    let h = FakeHost::new();
    for g in &GROUPS[..3] {
        h.put(pod(g, &format!("p-{}", g.what.len()), true));
    }
    h.on_wait(|h| {
        for g in &GROUPS[..3] {
            h.put(pod(g, &format!("n-{}", g.what.len()), true));
        }
    });
    let run = h.run::<RestartPods>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.message().contains("not present on this cluster: vSphere CSI driver node"), "{}", run.message());
}

/// A migration from vc-a to vc-b.
fn to_vc_b() -> Migration {
    let fd = json!({"name": "a", "region": "r", "zone": "z", "server": "vc-b",
                    "topology": {"datacenter": "d", "computeCluster": "/d/host/c", "datastore": "/d/datastore/s", "networks": ["n"]}});
    migration(&json!({"failureDomains": [fd]}), &["vc-a"])
}

fn config_map(ns: &str, name: &str, key: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {key: value}})
}

#[test]
fn no_pod_is_restarted_before_the_copied_config_and_the_injected_trust_have_arrived() {
    let (h, made) = cluster();
    let target = to_vc_b();
    let fingerprint = pem::certificates(&mk_cert(1)).unwrap()[0].fingerprint.clone();
    h.set_shared_state(TARGET_CA_FINGERPRINTS, &json!([fingerprint]).to_string());
    let (ns, name, key) = MANAGED_CLOUD_CONFIG;
    h.put(config_map(ns, name, key, "[VirtualCenter \"vc-a\"]\ndatacenters = \"d\"\n"));
    h.put(config_map("openshift-machine-api", "mao-trusted-ca", "ca-bundle.crt", &mk_cert(2)));

    let first = h.call::<RestartPods>(Direction::Execute, &target, 1);
    let Outcome::Wait(w) = &first else { panic!("{first:?}") };
    assert!(w.message.contains("kube-cloud-config") && w.message.contains("does not list vc-b"), "{}", w.message);
    h.put(config_map(
        ns,
        name,
        key,
        "[VirtualCenter \"vc-a\"]\ndatacenters = \"d\"\n[VirtualCenter \"vc-b\"]\ndatacenters = \"d\"\n",
    ));
    let second = h.call::<RestartPods>(Direction::Execute, &target, 1);
    let Outcome::Wait(w) = &second else { panic!("{second:?}") };
    assert!(
        w.message.contains("mao-trusted-ca does not hold target CA(s)") && w.message.contains(&fingerprint[..16]),
        "{}",
        w.message
    );
    assert!(w.message.contains("cluster-network-operator"), "{}", w.message);
    assert_eq!(made.load(Ordering::Relaxed), 0, "nothing deleted while waiting");
    assert!(h.list(&types::POD).iter().all(|p| p.name().starts_with("old-")));

    // Injected (the CCM's bundle does not exist on this cluster: not waited for).
    h.put(config_map(
        "openshift-machine-api",
        "mao-trusted-ca",
        "ca-bundle.crt",
        &format!("{}{}", mk_cert(2), mk_cert(1)),
    ));
    let run = h.run::<RestartPods>(Direction::Execute, &target);
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(made.load(Ordering::Relaxed), 10);
}

#[test]
fn a_cloud_config_without_the_targets_is_refused_before_any_restart() {
    let (h, made) = cluster();
    let target = to_vc_b();
    h.put(config_map(
        "openshift-config",
        "cloud-provider-config",
        "config",
        "[VirtualCenter \"vc-a\"]\ndatacenters = \"d\"\n",
    ));
    let run = h.run::<RestartPods>(Direction::Execute, &target);
    assert!(run.failed() && !run.retryable(), "{:?}", run.outcome);
    assert!(
        run.message().contains("does not list target vCenter(s) vc-b") && run.message().contains("UpdateConfig"),
        "{}",
        run.message()
    );
    assert_eq!(made.load(Ordering::Relaxed), 0);
}

#[test]
fn a_plan_does_not_wait_for_what_only_a_run_brings() {
    let (h, _) = cluster();
    let target = to_vc_b();
    let (ns, name, key) = MANAGED_CLOUD_CONFIG;
    h.put(config_map(ns, name, key, "[VirtualCenter \"vc-a\"]\ndatacenters = \"d\"\n"));
    // The host records a plan's wait and moves on; what matters is that the deletes a run
    // would make are in the plan, not held back by the wait for the injection.
    let run = h.plan_run::<RestartPods>(&target);
    assert!(!run.failed(), "{:?}", run.outcome);
    assert!(h.logged("a run would wait until"), "the plan says what a run waits for");
    assert_eq!(h.plan().len(), 10, "every restart is planned: {:?}", h.plan());
    assert!(h.list(&types::POD).iter().all(|p| p.name().starts_with("old-")), "a plan deletes nothing");
}
