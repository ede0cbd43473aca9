//! The fake host's own tests: it must behave like the operator's services where phases
//! can tell the difference.

use serde_json::json;

use super::*;
use crate::prelude::*;
use crate::{Cardinality, CategorySpec, done, wait};

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": data})
}

/// Edits two ConfigMaps, creates a third, a folder, a category, a tag and an attachment;
/// rollback restores its journal.
struct Editor;

impl Phase for Editor {
    fn describe() -> PhaseInfo {
        PhaseInfo::new("Editor", "0.1.0", "test")
            .kube("", "configmaps", &["get", "create", "patch", "update"], Some("ns"))
            .vsphere(VsphereCapability::ReadInventory)
            .vsphere(VsphereCapability::ManageFolders)
            .vsphere(VsphereCapability::ManageTags)
            .with_rollback()
    }

    fn execute(cx: &Cx) -> Step {
        let k = cx.kube();
        k.merge_patch(&types::CONFIG_MAP, Some("ns"), "a", &json!({"data": {"x": "changed"}}))?;
        k.merge_patch(&types::CONFIG_MAP, Some("ns"), "a", &json!({"data": {"y": "added"}}))?;
        let mut b = k.get_required(&types::CONFIG_MAP, Some("ns"), "b")?;
        b.set("/data/z", json!("1"));
        k.replace(&types::CONFIG_MAP, &b)?;
        k.create_if_absent(&types::CONFIG_MAP, Some("ns"), &cm("c", json!({})))?;
        let vs = cx.vsphere();
        vs.create_folder("vc", "/dc/vm/a/b")?;
        let cat = vs.ensure_category(
            "vc",
            &CategorySpec {
                name: "cat".into(),
                description: String::new(),
                cardinality: Cardinality::Single,
                associable_types: vec![],
            },
        )?;
        let tag = vs.ensure_tag("vc", &cat.id, "t", "")?;
        let dc = vs.find("vc", ObjectKind::Datacenter, "/dc")?;
        vs.attach_tag("vc", &tag.id, &dc)?;
        Ok(done("edited"))
    }

    fn rollback(cx: &Cx) -> Step {
        Ok(done(format!("restored {}", cx.backup().restore_all()?)))
    }
}

fn seeded() -> FakeHost {
    let host = FakeHost::new();
    host.put(cm("a", json!({"x": "1"})));
    host.put(cm("b", json!({"x": "2"})));
    host.vcenter("vc", |v| {
        v.add_datacenter("dc");
    });
    host
}

fn m() -> Migration {
    migration(&json!({"failureDomains": [{"server": "vc"}]}), &[])
}

#[test]
fn the_journal_takes_first_before_images_and_rollback_restores_them_all() {
    let host = seeded();
    let before_a = host.get(&types::CONFIG_MAP, Some("ns"), "a").unwrap();
    let run = host.run::<Editor>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    // One entry per subject: the second patch of `a` did not journal again.
    let subjects: Vec<String> = host.journal().iter().map(|r| r.entry.subject()).collect();
    assert_eq!(subjects.iter().filter(|s| *s == "ConfigMap ns/a").count(), 1, "{subjects:?}");
    assert_eq!(subjects.len(), 7, "{subjects:?}");
    match &host.journal()[0].entry {
        JournalEntry::Object { before: Some(b), .. } => assert_eq!(b["data"], json!({"x": "1"})),
        other => panic!("{other:?}"),
    }
    let run = host.run::<Editor>(Direction::Rollback, &m());
    assert_eq!(run.message(), "restored 7");
    let after_a = host.get(&types::CONFIG_MAP, Some("ns"), "a").unwrap();
    assert_eq!(after_a.at("/data"), before_a.at("/data"));
    assert_eq!(host.get(&types::CONFIG_MAP, Some("ns"), "b").unwrap().at("/data"), Some(&json!({"x": "2"})));
    assert!(host.get(&types::CONFIG_MAP, Some("ns"), "c").is_none(), "created objects are deleted");
    host.vcenter("vc", |v| {
        assert!(v.by_path("/dc/vm/a").is_none(), "created folder levels are removed");
        assert!(v.categories.is_empty() && v.tags.is_empty() && v.attachments.is_empty());
    });
    // Spent entries are not restored twice; a new run journals afresh.
    assert_eq!(host.run::<Editor>(Direction::Rollback, &m()).message(), "restored 0");
    host.run::<Editor>(Direction::Execute, &m());
    assert_eq!(host.journal().iter().filter(|r| !r.restored).count(), 7);
}

#[test]
fn plan_mode_records_and_changes_nothing() {
    let host = seeded();
    let run = host.plan_run::<Editor>(&m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(host.get(&types::CONFIG_MAP, Some("ns"), "a").unwrap().at("/data"), Some(&json!({"x": "1"})));
    assert!(host.get(&types::CONFIG_MAP, Some("ns"), "c").is_none());
    assert!(host.journal().is_empty());
    let actions: Vec<String> = host.plan().iter().map(|p| format!("{} {}", p.action, p.target)).collect();
    assert!(actions.contains(&"patch ConfigMap ns/a".to_string()), "{actions:?}");
    assert!(actions.contains(&"create-folder vCenter vc folder /dc/vm/a/b".to_string()), "{actions:?}");
    assert!(actions.iter().any(|a| a.starts_with("attach-tag vCenter vc /dc")), "{actions:?}");
    host.vcenter("vc", |v| assert!(v.by_path("/dc/vm/a").is_none() && v.categories.is_empty()));
}

struct Undeclared;

impl Phase for Undeclared {
    fn describe() -> PhaseInfo {
        PhaseInfo::new("Undeclared", "0.1.0", "test").kube("", "configmaps", &["get"], Some("ns"))
    }
    fn execute(cx: &Cx) -> Step {
        let e = cx.kube().list(&types::CONFIG_MAP, Some("ns"), None).unwrap_err();
        let v = cx.vsphere().about("vc").unwrap_err();
        let other = cx.kube().get(&types::CONFIG_MAP, Some("other"), "a").unwrap_err();
        Ok(done(format!("{e} | {v:?} | {other}")))
    }
}

#[test]
fn calls_outside_the_declared_capabilities_are_forbidden() {
    let host = seeded();
    let run = host.run::<Undeclared>(Direction::Execute, &m());
    assert!(run.message().contains("forbidden: list core/configmaps in namespace ns"), "{}", run.message());
    assert!(run.message().contains("vsphere read-inventory was not granted"), "{}", run.message());
    assert!(run.message().contains("get core/configmaps in namespace other"), "{}", run.message());
    assert_eq!(host.denials().len(), 3);
}

/// Waits until ConfigMap `go` exists.
struct Waiter;

impl Phase for Waiter {
    fn describe() -> PhaseInfo {
        PhaseInfo::new("Waiter", "0.1.0", "test").kube("", "configmaps", &["get"], Some("ns"))
    }
    fn execute(cx: &Cx) -> Step {
        match cx.kube().get(&types::CONFIG_MAP, Some("ns"), "go")? {
            Some(_) => Ok(done(format!("after {} ms", cx.elapsed_ms()))),
            None => Ok(wait(1000, 0, "waiting for go")),
        }
    }
}

#[test]
fn runs_sleep_through_waits_on_the_fake_clock_and_run_wait_hooks() {
    let host = FakeHost::new();
    let mut ticks = 0;
    host.on_wait(move |h| {
        ticks += 1;
        if ticks == 3 {
            h.put(cm("go", json!({})));
        }
    });
    let run = host.run::<Waiter>(Direction::Execute, &m());
    assert_eq!(run.message(), "after 3000 ms");
    assert_eq!((run.calls, run.waits()), (4, 3));
}

#[test]
fn hooks_can_change_the_world_before_a_call_or_fail_it() {
    let host = seeded();
    // Another writer changes `b` between the phase's read and its replace: a conflict.
    host.on_kube("update", "ConfigMap", |h| {
        h.edit(&types::CONFIG_MAP, Some("ns"), "b", |o| o["data"]["other"] = json!("writer"));
        None
    });
    let run = host.run::<Editor>(Direction::Execute, &m());
    assert!(run.retryable(), "{:?}", run.outcome);
    assert!(run.message().contains("conflict"), "{}", run.message());
    host.clear_hooks();
    host.on_vsphere("create-folder", |_| Some(VsphereError::PermissionDenied("Folder.Create".into())));
    let run = host.run::<Editor>(Direction::Execute, &m());
    assert!(run.message().contains("permission denied: Folder.Create"), "{}", run.message());
}

#[test]
fn a_crash_abandons_the_call_at_the_chosen_import() {
    let host = seeded();
    assert_eq!(host.call_crashing::<Editor>(Direction::Execute, &m(), 2), None);
    // Import 1 (the first patch) happened, import 2 (the second) did not.
    let a = host.get(&types::CONFIG_MAP, Some("ns"), "a").unwrap();
    assert_eq!(a.at("/data"), Some(&json!({"x": "changed"})));
    let reset_host = FakeHost::new();
    let points = reset_host.crash_everywhere::<Editor>(
        Direction::Execute,
        &m(),
        |h, _| {
            h.run::<Editor>(Direction::Rollback, &m());
            h.put(cm("a", json!({"x": "1"})));
            h.put(cm("b", json!({"x": "2"})));
            h.vcenter("vc", |v| {
                v.add_datacenter("dc");
            });
        },
        |h, n| {
            let a = h.get(&types::CONFIG_MAP, Some("ns"), "a").unwrap();
            assert_eq!(a.at("/data"), Some(&json!({"x": "changed", "y": "added"})), "crash at {n}");
            assert!(h.get(&types::CONFIG_MAP, Some("ns"), "c").is_some());
        },
    );
    assert!(points >= 8, "{points}");
}

#[test]
fn snapshots_are_never_overwritten_and_state_scopes_are_apart() {
    let host = seeded();
    let ty = types::CONFIG_MAP.get();
    let first = host.backup_snapshot(&ty, Some("ns"), "a").unwrap();
    assert!(first.created);
    host.edit(&types::CONFIG_MAP, Some("ns"), "a", |o| o["data"]["x"] = json!("later"));
    let second = host.backup_snapshot(&ty, Some("ns"), "a").unwrap();
    assert!(!second.created);
    assert_eq!(first.name, second.name);
    assert_eq!(host.snapshots()["ConfigMap ns/a"]["data"]["x"], json!("1"));
    assert!(matches!(host.backup_snapshot(&ty, Some("ns"), "zz"), Err(BackupError::NotFound(_))));

    host.state_set(Scope::Phase, "k", "phase").unwrap();
    host.state_set(Scope::Migration, "k", "shared").unwrap();
    assert_eq!(host.phase_state("Test", "k").as_deref(), Some("phase"));
    assert_eq!(host.shared_state("k").as_deref(), Some("shared"));
    host.state_delete(Scope::Phase, "k").unwrap();
    assert_eq!(host.state_get(Scope::Phase, "k"), None);
}

#[test]
fn lists_filter_by_namespace_and_labels_and_scope_rules_hold() {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "a", "labels": {"app": "x"}}}));
    host.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "namespace": "b", "labels": {"app": "x"}}}));
    host.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p3", "namespace": "a", "labels": {"app": "y"}}}));
    let ty = types::POD.get();
    let names = |ns, sel| -> Vec<String> {
        let items: Vec<Value> = serde_json::from_str(&host.kube_list(&ty, ns, sel).unwrap()).unwrap();
        items.iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(Some("a"), None), ["p1", "p3"]);
    assert_eq!(names(None, Some("app=x")), ["p1", "p2"]);
    assert!(matches!(host.kube_get(&ty, None, "p1"), Err(KubeError::Invalid(_))));
    assert!(matches!(host.kube_get(&types::NODE.get(), Some("a"), "n"), Err(KubeError::Invalid(_))));
    assert!(matches!(host.kube_get(&ty, Some("a"), "nope"), Err(KubeError::NotFound(_))));
}

#[test]
fn plurals_match_discovery_for_the_kinds_phases_use() {
    for (kind, plural_name) in [
        ("Infrastructure", "infrastructures"),
        ("ControlPlaneMachineSet", "controlplanemachinesets"),
        ("CustomResourceDefinition", "customresourcedefinitions"),
        ("StorageClass", "storageclasses"),
        ("NetworkPolicy", "networkpolicies"),
        ("Secret", "secrets"),
    ] {
        assert_eq!(plural(kind), plural_name);
    }
}

/// Asks whether two replacements of ConfigMap `a` would be accepted; stores nothing.
struct Validator;

impl Phase for Validator {
    fn describe() -> PhaseInfo {
        PhaseInfo::new("Validator", "0.1.0", "test").kube("", "configmaps", &["get", "validate"], Some("ns"))
    }

    fn execute(cx: &Cx) -> Step {
        let k = cx.kube();
        let mut a = k.get_required(&types::CONFIG_MAP, Some("ns"), "a")?;
        a.set("/data/x", json!("2"));
        let would = k.validate_replace(&types::CONFIG_MAP, &a)?;
        let stale = {
            let mut s = a.clone();
            s.set("/metadata/resourceVersion", json!("1"));
            k.validate_replace(&types::CONFIG_MAP, &s).map(|_| "accepted").unwrap_or_else(|e| {
                if matches!(e, PhaseError::Kube { error: KubeError::Conflict(_), .. }) { "conflict" } else { "other" }
            })
        };
        Ok(done(format!("{} {stale}", would.str_at("/data/x").unwrap_or_default())))
    }
}

#[test]
fn a_validated_replace_is_checked_like_a_replace_and_stores_nothing() {
    let host = FakeHost::new();
    host.put(cm("a", json!({"x": "1"})));
    host.edit(&types::CONFIG_MAP, Some("ns"), "a", |o| o["data"]["y"] = json!("bumps the resourceVersion"));
    let before = host.list(&types::CONFIG_MAP);
    let run = host.run::<Validator>(Direction::Execute, &migration(&json!({}), &["vc"]));
    assert_eq!(run.message(), "2 conflict", "{:?}", run.outcome);
    assert_eq!(host.list(&types::CONFIG_MAP), before, "nothing stored");
    assert!(host.journal().is_empty() && host.plan().is_empty(), "nothing journalled or planned");
    // The API server's schema or CEL rules, played by a hook, refuse it.
    host.on_kube("validate", "ConfigMap", |_| Some(KubeError::Invalid("data.x: must be 1".into())));
    let run = host.run::<Validator>(Direction::Execute, &migration(&json!({}), &["vc"]));
    assert!(run.message().contains("data.x: must be 1"), "{:?}", run.outcome);
}
