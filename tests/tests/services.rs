//! The operator's services behind the phase imports, against the real environment: every
//! import through a real component, the write-ahead journal and its restore, plan mode
//! changing nothing, snapshots never overwritten.

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::SourceVCenter;
use vsm_host::backends::journal::EntryKind;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_testenv::TestEnv;
use vsm_testenv::harness::{Harness, NAMESPACE, target_spec};
use vsm_vsphere::ObjectKind;

fn exerciser_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins/exerciser.wasm")
}

async fn harness(env: &TestEnv, name: &str) -> Result<Harness> {
    let namespaces: Api<Namespace> = Api::all(env.client());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "exerciser"}});
    namespaces.patch("exerciser", &PatchParams::apply("test").force(), &Patch::Apply(ns)).await?;
    let src = env.source();
    Harness::with_sources(env, name, target_spec(env), vec![SourceVCenter { server: src.host(), port: src.port() }])
        .await
}

async fn exerciser(h: &Harness) -> Result<vsm_host::runtime::LoadedPlugin> {
    let bytes = std::fs::read(exerciser_path())?;
    Ok(h.runtime
        .load("exerciser", &bytes, &PluginEntry { grant_declared: true, ..Default::default() }, Limits::default())
        .await?)
}

#[tokio::test]
async fn every_import_works_against_the_real_cluster_and_vcenter_and_rollback_undoes_it() -> Result<()> {
    let env = TestEnv::shared().await?;
    let h = harness(env, "services-all").await?;
    let plugin = exerciser(&h).await?;
    let ctx_spec =
        json!({"action": "all", "namespace": "exerciser", "server": env.target().host(), "datacenter": "dst-dc"});
    let report = call_with_spec(&h, &plugin, Direction::Execute, ctx_spec.clone(), false).await?;
    let Outcome::Done(json) = &report.0.outcome else { panic!("{:?}", report.0.outcome) };
    let results: Value = serde_json::from_str(json)?;
    for (step, value) in results.as_object().unwrap() {
        assert!(value.get("error").is_none(), "{step} failed: {value}");
    }
    assert_eq!(results["kube.get"], json!("1"));
    assert_eq!(results["kube.replace"], json!("4"));
    assert_eq!(results["vsphere.create_folder"], json!(true));
    assert_eq!(results["vsphere.list_attached_tags"], json!(["exercised"]));
    assert_eq!(results["backup.snapshot"]["created"], json!(true));

    // Every first mutation was journalled ahead of it.
    let subjects: Vec<String> = report.1.backups.iter().map(|b| b.subject.clone()).collect();
    for expected in [
        "ConfigMap exerciser/exercised",
        "folder /dst-dc/vm/exercised/deeper",
        "tag category exercised",
        "tag exercised in",
        "tag ",
    ] {
        assert!(subjects.iter().any(|s| s.contains(expected)), "{expected} not journalled: {subjects:?}");
    }
    // The exerciser ends by restoring its own journal, newest first: every step is reported
    // and none failed, and what it created is gone.
    let restored = results["backup.restore_journal"].as_array().unwrap();
    assert!(restored.len() >= 5, "{restored:?}");
    assert!(restored.iter().all(|r| r["error"].is_null()), "{restored:?}");
    let vc = h.vsphere(&env.target().host()).await?;
    assert!(
        vc.find(ObjectKind::Folder, "/dst-dc/vm/exercised").await.is_err(),
        "created folders are removed up to the first level created"
    );
    assert!(vc.category_id("exercised").await?.is_none());
    let cms: Api<ConfigMap> = Api::namespaced(env.client(), "exerciser");
    assert!(cms.get_opt("exercised").await?.is_none());
    // The journal is marked restored: the rollback call finds nothing more to undo.
    let entries = h.backends(false).journal.list(EntryKind::Journal, Some("Exerciser")).await?;
    assert!(!entries.is_empty() && entries.iter().all(|e| e.as_ref().is_ok_and(|s| s.restored)));
    let (report, _) = call_with_spec(&h, &plugin, Direction::Rollback, ctx_spec, false).await?;
    assert!(matches!(report.outcome, Outcome::Done(ref m) if m == "restored 0"), "{:?}", report.outcome);
    Ok(())
}

#[tokio::test]
async fn plan_mode_changes_nothing_and_records_the_intended_changes() -> Result<()> {
    let env = TestEnv::shared().await?;
    let h = harness(env, "services-plan").await?;
    let plugin = exerciser(&h).await?;
    // Its own object names: the other tests of this binary create and delete `exercised`
    // alongside, and plan mode must find nothing in place to plan every create.
    let spec = json!({"action": "all", "namespace": "exerciser", "server": env.target().host(),
        "datacenter": "dst-dc", "name": "planned"});
    let (report, outputs) = call_with_spec(&h, &plugin, Direction::Execute, spec, true).await?;
    assert!(matches!(report.outcome, Outcome::Done(_)));
    assert!(outputs.backups.is_empty(), "plan mode journals nothing");
    let actions: Vec<String> = outputs.plan.iter().map(|c| format!("{} {} {}", c.system, c.action, c.target)).collect();
    assert!(actions.iter().any(|a| a == "kube create ConfigMap exerciser/planned"), "{actions:?}");
    assert!(actions.iter().any(|a| a.starts_with("vsphere create-folder")), "{actions:?}");
    assert!(actions.iter().any(|a| a.starts_with("vsphere create-tag-category")), "{actions:?}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client(), "exerciser");
    assert!(cms.get_opt("planned").await?.is_none(), "dry-run create persisted nothing");
    let vc = h.vsphere(&env.target().host()).await?;
    assert!(vc.find(ObjectKind::Folder, "/dst-dc/vm/planned").await.is_err());
    assert!(vc.category_id("planned").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn the_journal_restores_a_mutated_secret_exactly_and_snapshots_are_never_overwritten() -> Result<()> {
    use vsm_host::runtime::CallScope;
    let env = TestEnv::shared().await?;
    let h = harness(env, "services-journal").await?;
    let secrets: Api<Secret> = Api::namespaced(env.client(), "exerciser");
    let original = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "labels": {"keep": "me"}}, "data": {"a.username": "dXNlcg==", "a.password": "cGFzcw=="}});
    let _ = secrets.delete("creds", &Default::default()).await;
    secrets.create(&PostParams::default(), &serde_json::from_value(original)?).await?;
    let before = secrets.get("creds").await?;

    let services = h.backends(false);
    let scope = CallScope {
        plugin: "test".into(),
        phase: "UpdateSecrets".into(),
        migration_name: "services-journal".into(),
        migration_namespace: NAMESPACE.into(),
        migration_uid: h.migration.metadata.uid.clone().unwrap(),
        dry_run: false,
        direction: Direction::Execute,
    };
    let ty = services
        .backends
        .kube
        .resolve(&vsm_host::runtime::bindings::ObjectType { api_version: "v1".into(), kind: "Secret".into() })
        .await
        .unwrap();
    for patch in
        [json!({"data": {"b.username": "dXNlcg=="}}), json!({"data": {"a.password": "bmV3", "a.username": null}})]
    {
        let merge = vsm_host::runtime::bindings::PatchType::Merge;
        services.backends.kube.patch(&scope, &ty, Some("exerciser"), "creds", merge, &patch.to_string()).await.unwrap();
    }
    let outputs = services.outputs.take();
    assert_eq!(outputs.backups.len(), 1, "one before-image per object per phase, taken at the first mutation");

    let first = services.backends.backup.snapshot(&scope, &ty, Some("exerciser"), "creds").await.unwrap();
    assert!(first.created);
    let again = services.backends.backup.snapshot(&scope, &ty, Some("exerciser"), "creds").await.unwrap();
    assert!(!again.created, "a re-run never overwrites an earlier snapshot");
    assert_eq!(again.sha256, first.sha256);

    let reports = services.backends.backup.restore_journal(&scope).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].error, None, "{reports:?}");
    let after = secrets.get("creds").await?;
    assert_eq!(after.data, before.data, "data restored byte for byte");
    assert_eq!(after.metadata.labels, before.metadata.labels);

    // A corrupted journal entry is refused, not restored.
    let journal = &services.journal;
    let list = journal.list(EntryKind::Journal, Some("UpdateSecrets")).await?;
    let secret_name = list[0].as_ref().unwrap().secret.clone();
    let own: Api<Secret> = Api::namespaced(env.client(), NAMESPACE);
    own.patch(&secret_name, &PatchParams::default(), &Patch::Merge(json!({"data": {"entry.json": "e30="}}))).await?;
    let read = journal.read(&secret_name).await;
    assert!(matches!(read, Err(vsm_host::backends::journal::JournalError::Corrupt { .. })), "{read:?}");
    Ok(())
}

/// The exerciser takes its orders from the raw spec JSON of the call.
async fn call_with_spec(
    h: &Harness,
    plugin: &vsm_host::runtime::LoadedPlugin,
    direction: Direction,
    orders: Value,
    dry_run: bool,
) -> Result<(vsm_host::runtime::CallReport, vsm_host::backends::CallOutputs)> {
    h.call_raw(plugin, direction, orders.to_string(), dry_run).await
}
