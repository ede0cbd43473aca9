use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

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
    assert_eq!(made.load(Ordering::Relaxed), 8, "every old pod was replaced once");
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
    assert_eq!(made.load(Ordering::Relaxed), 8);
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
        assert_eq!(made.load(Ordering::Relaxed), 8, "after a crash at import {n}, each old pod was replaced once");
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
