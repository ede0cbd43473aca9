//! Backup against the real environment: snapshots of the Infrastructure, cloud config,
//! vsphere-creds, CPMS, every MachineSet and the CVO in the migration's backup store
//! (owned Secrets, never the status); a re-run never overwrites a snapshot (the Go
//! controller replaced them with whatever was live); a crash anywhere converges; plan
//! mode stores nothing; a missing CPMS is tolerated, a missing cloud config is named.

mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_host::backends::journal::{Entry, EntryKind, labels};
use vsm_host::runtime::Direction;
use vsm_testenv::harness::NAMESPACE;
use vsm_testenv::sim::objects as o;

use phase_support::*;

/// Snapshot subjects → the object each holds.
async fn snapshots(c: &PhaseEnv) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for stored in c.h.backends(false).journal.list(EntryKind::Snapshot, None).await? {
        let stored = stored?;
        if let Entry::Object { before, .. } = &stored.entry {
            out.insert(stored.entry.subject(), before.clone().unwrap_or(Value::Null));
        }
    }
    Ok(out)
}

/// Remove this migration's snapshots (to exercise their creation again).
async fn drop_snapshots(c: &PhaseEnv) -> Result<()> {
    let uid = c.h.migration.metadata.uid.clone().unwrap_or_default();
    let selector = format!("{}={uid},{}=snapshot", labels::MIGRATION_UID, labels::KIND);
    let api: Api<Secret> = Api::namespaced(c.client(), NAMESPACE);
    for s in api.list(&ListParams::default().labels(&selector)).await?.items {
        api.delete(&s.metadata.name.unwrap_or_default(), &DeleteParams::default()).await?;
    }
    Ok(())
}

fn expected(c: &PhaseEnv) -> Vec<String> {
    let mut want = vec![
        "ConfigMap openshift-config/cloud-provider-config".to_string(),
        "ControlPlaneMachineSet openshift-machine-api/cluster".to_string(),
        "Deployment openshift-cluster-version/cluster-version-operator".to_string(),
        "Infrastructure cluster".to_string(),
        "Secret kube-system/vsphere-creds".to_string(),
    ];
    want.extend(c.cluster.worker_machinesets.iter().map(|m| format!("MachineSet openshift-machine-api/{m}")));
    want.sort();
    want
}

#[tokio::test]
async fn backup_snapshots_everything_once_and_never_overwrites() -> Result<()> {
    let c = start("phase-backup", "backup").await?;
    drop_snapshots(&c).await?;

    // Success.
    let run = c.execute_done().await?;
    ensure!(run.message().starts_with("snapshots of 6 objects (1 MachineSet(s))"), "{}", run.message());
    let first = snapshots(&c).await?;
    ensure!(first.keys().cloned().collect::<Vec<_>>() == expected(&c), "{:?}", first.keys());
    let infra = c.infrastructure().await?;
    ensure!(first["Infrastructure cluster"]["spec"] == infra.data["spec"], "the snapshot holds the live object");

    // A re-run never overwrites: the Infrastructure changes, its snapshot does not.
    o::infra_api(&c.client())
        .patch(
            o::INFRA_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"changed-after-backup": "yes"}}})),
        )
        .await?;
    c.forget_state(Some("Backup"), "done").await?;
    c.execute_done().await?;
    ensure!(snapshots(&c).await? == first, "a re-run overwrote a snapshot");
    o::infra_api(&c.client())
        .patch(
            o::INFRA_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"changed-after-backup": null}}})),
        )
        .await?;

    // Nothing to roll back.
    ensure!(c.rollback_done().await?.message() == "nothing to undo");
    ensure!(snapshots(&c).await? == first, "the rollback touched the snapshots");

    // A crash at any import converges to the full set.
    let cr = &c;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                drop_snapshots(cr).await?;
                cr.forget_state(Some("Backup"), "done").await
            },
            move |n| async move {
                let now = snapshots(cr).await?;
                ensure!(now.keys().cloned().collect::<Vec<_>>() == expected(cr), "crash at {n}: {:?}", now.keys());
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 8, "{points} crash points");

    // Plan mode stores nothing.
    drop_snapshots(&c).await?;
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.message().starts_with("would snapshot 6 objects"), "{}", plan.message());
    ensure!(snapshots(&c).await?.is_empty(), "plan mode stored snapshots");

    // A cluster without a CPMS is fine; one without its cloud config is not.
    let cpms_api = o::cpms_api(&c.client());
    let mut cpms = cpms_api.get(o::CPMS_NAME).await?;
    cpms_api.delete(o::CPMS_NAME, &DeleteParams::default()).await?;
    c.forget_state(Some("Backup"), "done").await?;
    c.execute_done().await?;
    ensure!(snapshots(&c).await?.len() == expected(&c).len() - 1);
    cpms.metadata.resource_version = None;
    cpms.metadata.uid = None;
    cpms_api.create(&PostParams::default(), &cpms).await?;

    let cms: Api<ConfigMap> = Api::namespaced(c.client(), o::CLOUD_CONFIG_NS);
    let mut cm = cms.get(o::CLOUD_CONFIG_NAME).await?;
    cms.delete(o::CLOUD_CONFIG_NAME, &DeleteParams::default()).await?;
    drop_snapshots(&c).await?;
    c.forget_state(Some("Backup"), "done").await?;
    let run = c.execute().await?;
    let result = failed_with(
        &run,
        "cannot back up ConfigMap openshift-config/cloud-provider-config: not found (the migration changes it, so it must exist)",
    );
    cm.metadata.resource_version = None;
    cm.metadata.uid = None;
    cms.create(&PostParams::default(), &cm).await?;
    ensure!(!result?);
    Ok(())
}
