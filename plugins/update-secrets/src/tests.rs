use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::json;
use vsm_common::creds::encode;
use vsm_sdk::testing::{Direction, FakeHost, migration};
use vsm_sdk::{KubeError, Migration, types};

use super::*;

const NS: &str = "vsphere-migration";

fn fd(name: &str, server: &str) -> Value {
    json!({"name": name, "region": "r", "zone": name, "server": server,
           "topology": {"datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/ds",
                        "networks": ["VM Network"], "template": "/dc/vm/t"}})
}

fn spec(servers: &[&str]) -> Value {
    let fds: Vec<Value> = servers.iter().enumerate().map(|(i, s)| fd(&format!("fd-{i}"), s)).collect();
    json!({"targetVCenterCredentialsSecret": {"name": "target-creds"}, "failureDomains": fds,
           "machineSetConfig": {"failureDomain": "fd-0"},
           "controlPlaneMachineSetConfig": {"failureDomain": "fd-0"}})
}

fn m() -> Migration {
    migration(&spec(&["vc-a", "vc-b"]), &["vc-src"])
}

fn original_root() -> Value {
    json!({"vc-src.username": encode("src-user"), "vc-src.password": encode("src-pass"),
           "vc-a.username": encode("a-user"), "vc-a.password": encode("a-old")})
}

fn cluster() -> FakeHost {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": VSPHERE_CREDS, "namespace": VSPHERE_CREDS_NAMESPACE,
                                 "annotations": {"cloudcredential.openshift.io/mode": "passthrough"}},
                    "type": "Opaque", "data": original_root()}));
    host.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "target-creds", "namespace": NS},
                    "stringData": {"vc-a.username": "a-user", "vc-a.password": "a-new\n",
                                   "vc-b.username": "b-user", "vc-b.password": "b-pass"}}));
    host
}

fn root(h: &FakeHost) -> Object {
    h.get(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS).unwrap()
}

fn updated_root() -> Value {
    let mut d = original_root();
    d["vc-a.password"] = json!(encode("a-new\n"));
    d["vc-b.username"] = json!(encode("b-user"));
    d["vc-b.password"] = json!(encode("b-pass"));
    d
}

#[test]
fn two_target_servers_and_a_changed_password_are_written_in_one_update() {
    let host = cluster();
    let writes = Arc::new(AtomicU32::new(0));
    let w = writes.clone();
    host.on_kube("update", "Secret", move |_| {
        w.fetch_add(1, Ordering::Relaxed);
        None
    });
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "updated kube-system/vsphere-creds: added vc-b.username, vc-b.password; updated vc-a.password"
    );
    let after = root(&host);
    assert_eq!(after.at("/data"), Some(&updated_root()), "byte-exact copies, trailing newline included");
    assert_eq!(writes.load(Ordering::Relaxed), 1, "one write for both servers");
    assert_eq!(after.annotation("cloudcredential.openshift.io/mode"), Some("passthrough"));
    let record: Record = serde_json::from_str(&host.phase_state("UpdateSecrets", RECORD_KEY).unwrap()).unwrap();
    assert_eq!(record.added, ["vc-b.username", "vc-b.password"]);
    assert_eq!(record.changed, ["vc-a.password"]);
    assert_eq!(record.resource_version.as_deref(), Some(after.resource_version()));
    let state = host.phase_state("UpdateSecrets", RECORD_KEY).unwrap();
    for secret in ["b-pass", "a-new", "a-old"] {
        assert!(!state.contains(secret) && !state.contains(&encode(secret)), "no values in state: {state}");
    }
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn a_second_run_changes_nothing() {
    let host = cluster();
    host.run::<UpdateSecrets>(Direction::Execute, &m());
    let before = root(&host);
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert_eq!(run.message(), "kube-system/vsphere-creds already holds the current credentials of vc-a, vc-b");
    assert_eq!(root(&host), before);
}

#[test]
fn a_concurrent_writer_causes_a_conflict_that_is_retried_without_losing_either_change() {
    let host = cluster();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    host.on_kube("update", "Secret", move |h| {
        if !f.swap(true, Ordering::Relaxed) {
            h.edit(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS, |o| {
                o["data"]["other.username"] = json!(encode("someone"));
            });
        }
        None
    });
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(fired.load(Ordering::Relaxed));
    let data = root(&host).at("/data").unwrap().clone();
    assert_eq!(data["other.username"], json!(encode("someone")));
    assert_eq!(data["vc-b.password"], json!(encode("b-pass")));
    assert!(host.logged("changed while it was being updated"));
}

#[test]
fn a_secret_that_keeps_changing_is_a_retryable_failure() {
    let host = cluster();
    host.on_kube("update", "Secret", |_| Some(KubeError::Conflict("the object has been modified".into())));
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert!(run.retryable(), "{:?}", run.outcome);
    assert_eq!(run.message(), "kube-system/vsphere-creds kept changing during 5 attempts to update it");
}

#[test]
fn rollback_restores_the_exact_before_image_when_nobody_touched_the_secret() {
    let host = cluster();
    let before = root(&host);
    host.run::<UpdateSecrets>(Direction::Execute, &m());
    let run = host.run::<UpdateSecrets>(Direction::Rollback, &m());
    assert_eq!(
        run.message(),
        "restored kube-system/vsphere-creds as it was before the migration (removed vc-b.username, vc-b.password; restored vc-a.password)"
    );
    let after = root(&host);
    assert_eq!(after.at("/data"), before.at("/data"));
    assert_eq!(after.at("/metadata/annotations"), before.at("/metadata/annotations"));
    assert_eq!(
        host.run::<UpdateSecrets>(Direction::Rollback, &m()).message(),
        "nothing to undo in kube-system/vsphere-creds"
    );
}

#[test]
fn rollback_never_clobbers_a_credential_rotated_since() {
    let host = cluster();
    host.run::<UpdateSecrets>(Direction::Execute, &m());
    // An administrator rotates the source password while the migration runs.
    host.edit(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS, |o| {
        o["data"]["vc-src.password"] = json!(encode("src-rotated"));
    });
    let run = host.run::<UpdateSecrets>(Direction::Rollback, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.message().starts_with("kube-system/vsphere-creds changed since this phase ran, so it was undone key by key: removed vc-b.username, vc-b.password; left vc-a.password (keeps the migration's value"), "{}", run.message());
    let data = root(&host).at("/data").unwrap().clone();
    assert_eq!(data["vc-src.password"], json!(encode("src-rotated")), "the rotation survives");
    assert!(data.get("vc-b.username").is_none() && data.get("vc-b.password").is_none());
    assert_eq!(data["vc-a.password"], json!(encode("a-new\n")));
    assert!(host.events().iter().any(|(_, reason, _)| reason == "CredentialsKept"));
    // Done once: a second rollback does nothing.
    let again = root(&host);
    host.run::<UpdateSecrets>(Direction::Rollback, &m());
    assert_eq!(root(&host), again);
}

#[test]
fn selective_undo_keeps_keys_changed_by_someone_else() {
    let record = Record {
        added: vec!["a".into(), "b".into(), "gone".into()],
        changed: vec!["c".into(), "d".into()],
        ..Default::default()
    };
    let live = json!({"a": "ours", "b": "theirs", "c": "ours", "d": "theirs"});
    let written = json!({"a": "ours", "b": "ours", "c": "ours", "d": "ours"});
    let (remove, kept) = selective_undo(&record, live.as_object().unwrap(), written.as_object().unwrap());
    assert_eq!(remove, ["a"]);
    assert_eq!(kept.len(), 2);
    assert!(kept[0].starts_with("b (changed since"));
    assert!(kept[1].starts_with("c (keeps the migration's value"));
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges_and_rollback_still_restores() {
    let host = cluster();
    let points = host.crash_everywhere::<UpdateSecrets>(
        Direction::Execute,
        &m(),
        |h, _| {
            h.run::<UpdateSecrets>(Direction::Rollback, &m());
            assert_eq!(root(h).at("/data"), Some(&original_root()));
        },
        |h, n| {
            assert_eq!(root(h).at("/data"), Some(&updated_root()), "crash at {n}");
            let record: Record = serde_json::from_str(&h.phase_state("UpdateSecrets", RECORD_KEY).unwrap()).unwrap();
            assert_eq!(record.resource_version.as_deref(), Some(root(h).resource_version()), "crash at {n}");
        },
    );
    assert!(points >= 5, "{points}");
    let run = host.run::<UpdateSecrets>(Direction::Rollback, &m());
    assert!(run.message().starts_with("restored"), "{}", run.message());
    assert_eq!(root(&host).at("/data"), Some(&original_root()));
}

#[test]
fn missing_target_keys_are_all_named_at_once() {
    let host = cluster();
    host.edit(&types::SECRET, Some(NS), "target-creds", |o| {
        o["data"].as_object_mut().unwrap().remove("vc-b.password");
        o["data"]["vc-a.username"] = json!(encode(""));
    });
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "spec.targetVCenterCredentialsSecret: Secret vsphere-migration/target-creds lacks (or has empty) keys vc-a.username, vc-b.password"
    );
    assert_eq!(root(&host).at("/data"), Some(&original_root()));
}

#[test]
fn missing_secrets_are_clear_failures() {
    let host = cluster();
    host.remove(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS);
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "kube-system/vsphere-creds does not exist: the cluster keeps its vCenter credentials there; restore it before migrating"
    );
    host.remove(&types::SECRET, Some(NS), "target-creds");
    let run = host.run::<UpdateSecrets>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "spec.targetVCenterCredentialsSecret: Secret vsphere-migration/target-creds does not exist"
    );
}

#[test]
fn plan_mode_changes_nothing() {
    let host = cluster();
    let run = host.plan_run::<UpdateSecrets>(&m());
    assert!(run.message().starts_with("would update kube-system/vsphere-creds"), "{}", run.message());
    assert_eq!(root(&host).at("/data"), Some(&original_root()));
    assert_eq!(host.phase_state("UpdateSecrets", RECORD_KEY), None);
    assert_eq!(host.plan().len(), 1);
}
