//! `deploy/` on the real environment: the Namespace, ServiceAccount, RBAC and plugin
//! ConfigMap applied as an admin would, then the operator run as the Deployment runs it
//! (leader election, its namespace, the ConfigMap's grants) with the ServiceAccount's own
//! token, not an admin's, through a whole migration of the simulated cluster and the
//! migration's deletion. Every request it made is recorded: none may be refused, and every
//! permission the RBAC grants must have been used, except those only a rollback needs.
//! Also: the example migrations pass the API server's validation.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use vsm_api::{Direction, PHASES, PhaseResult, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::Operator;
use vsm_testenv::TestEnv;
use vsm_testenv::deploy::{self, Access, covers};
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, plugin_dir, target_spec};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator, seed};

const MIGRATION: &str = "deploy-e2e";

/// Permissions a forward migration and its deletion need not exercise, with the reason.
/// Everything else the RBAC grants must have been used in the run.
fn may_stay_unused(a: &Access, reasons: &[String]) -> Option<&'static str> {
    if reasons.iter().any(|r| r.starts_with("restore:")) {
        return Some("a rollback needs it (restoring a before-image, or the phase's own rollback)");
    }
    match (a.resource.as_str(), a.verb.as_str()) {
        ("vspheremigrations", "get") => Some("read back only when a status write meets a conflict"),
        ("vspheremigrations/finalizers", "update") => {
            Some("checked by OwnerReferencesPermissionEnforcement admission, which this API server does not run")
        }
        ("events", "patch") => Some("only a repeated Event (a series) is patched"),
        ("secrets", "get")
            if matches!(a.name.as_deref(), Some("vsphere-cloud-credentials" | "vmware-vsphere-cloud-credentials"))
                && reasons.iter().all(|r| r == "phase preflight: get") =>
        {
            Some(
                "Preflight reads the components' credentials Secrets only in Manual credentials mode (phase_preflight runs it)",
            )
        }
        _ => None,
    }
}

async fn until<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    // Only a guard against hanging: a migration on a busy 2-core machine takes minutes.
    for _ in 0..7200 {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("timed out waiting for {what}")
}

#[tokio::test]
async fn the_service_account_alone_runs_a_whole_migration_and_uses_every_permission_it_has() -> Result<()> {
    let env = TestEnv::start_with_machine_api().await?;
    deploy::install(&env).await?;
    let seeded = seed(&env, &SeedOptions { workers: 2, ..Default::default() }).await?;
    ensure_secrets(&env, &env.client()).await?;
    // A health check over the workers and an autoscaler on their set: the machine phases
    // pause the one and move the other, with the operator's own permissions.
    let mhcs: Api<DynamicObject> = Api::namespaced_with(env.client(), o::MACHINE_API_NS, &o::machine_health_check());
    let mhc = serde_json::json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineHealthCheck",
        "metadata": {"name": "workers", "namespace": o::MACHINE_API_NS},
        "spec": {"selector": {"matchLabels": {o::LABEL_ROLE: "worker"}},
                 "unhealthyConditions": [{"type": "Ready", "status": "False", "timeout": "300s"}]}});
    mhcs.create(&PostParams::default(), &serde_json::from_value(mhc)?).await?;
    let scalers: Api<DynamicObject> = Api::namespaced_with(env.client(), o::MACHINE_API_NS, &o::machine_autoscaler());
    let scaler = serde_json::json!({
        "apiVersion": "autoscaling.openshift.io/v1beta1", "kind": "MachineAutoscaler",
        "metadata": {"name": "workers", "namespace": o::MACHINE_API_NS},
        "spec": {"minReplicas": 1, "maxReplicas": 3, "scaleTargetRef": {
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet", "name": seeded.worker_machinesets[0]}}});
    scalers.create(&PostParams::default(), &serde_json::from_value(scaler)?).await?;
    let sim = Simulator::start(&env, SimOptions::instant());

    let (client, log) = deploy::operator_client(&env).await?;
    let op = Operator::start(client, deploy::operator_config(&plugin_dir(), "vsphere-migration-operator-0")?).await?;
    let rejected: Vec<String> = op.registry.status().into_iter().filter_map(|s| s.error).collect();
    assert!(rejected.is_empty(), "components rejected: {rejected:?}");
    assert_eq!(op.registry.loaded().len(), PHASES.len());
    until("leadership", || async { Ok(op.leader.is_leader().then_some(())) }).await?;

    let mut spec = target_spec(&env);
    spec.health.stability_window = Some("5s".into());
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    let created =
        api.create(&PostParams::default(), &VSphereMigration::new(MIGRATION, VSphereMigrationSpec { spec })).await?;
    let uid = created.metadata.uid.clone().context("no uid")?;
    let m = until("the migration to end", || async {
        let m = api.get(MIGRATION).await?;
        Ok(m.status.as_ref().is_some_and(|s| s.finished_at.is_some()).then_some(m))
    })
    .await?;
    let status = m.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(Stage::Completed), "history: {}", serde_json::to_string_pretty(&status.history)?);
    let ran: Vec<&str> = status
        .history
        .iter()
        .filter(|h| h.direction == Direction::Execute && h.result == PhaseResult::Succeeded)
        .map(|h| h.phase.as_str())
        .collect();
    assert_eq!(ran, PHASES.to_vec());
    assert!(!status.backups.is_empty(), "the journal wrote backups");

    // Events were published with the operator's permissions.
    let events: Api<Event> = Api::namespaced(env.client(), NAMESPACE);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(MIGRATION))
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "MigrationCompleted"), "events: {reasons:?}");

    // Deleting the migration removes its backups and state (the finalizer, as the operator).
    api.delete(MIGRATION, &DeleteParams::default()).await?;
    until("the migration to be deleted", || async { Ok(api.get_opt(MIGRATION).await?.is_none().then_some(())) })
        .await?;
    let secrets: Api<Secret> = Api::namespaced(env.client(), NAMESPACE);
    let left = secrets
        .list(&ListParams::default().labels(&format!("migration.openshift.io/migration-uid={uid}")))
        .await?
        .items;
    assert!(left.is_empty(), "backups left behind: {}", left.len());

    op.stop().await;
    sim.stop().await;

    let requests = log.all();
    let refused: Vec<String> = requests
        .iter()
        .filter(|r| r.status == 401 || r.status == 403)
        .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
        .collect();
    assert!(refused.is_empty(), "requests the RBAC refused:\n  {}", refused.join("\n  "));

    let used: Vec<Access> = requests.iter().filter(|r| r.status != 0).filter_map(|r| r.access()).collect();
    let granted = deploy::granted()?;
    let required = deploy::required(&plugin_dir()).await?;
    let mut unused = Vec::new();
    for g in &granted {
        if used.iter().any(|u| covers(g, u)) {
            continue;
        }
        let reasons: Vec<String> = required.get(g).map(|r| r.iter().cloned().collect()).unwrap_or_default();
        if may_stay_unused(g, &reasons).is_none() {
            unused.push(format!("{g:?} ({})", reasons.join("; ")));
        }
    }
    assert!(unused.is_empty(), "granted but never used by a whole migration:\n  {}", unused.join("\n  "));
    Ok(())
}

#[tokio::test]
async fn the_example_migrations_pass_the_api_servers_validation() -> Result<()> {
    let env = TestEnv::start_default().await?;
    let client = env.client();
    let dir = deploy::deploy_dir().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        for doc in deploy::load(&path)? {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let ns = doc["metadata"]["namespace"].as_str().context("examples name their namespace")?.to_string();
            assert_eq!(ns, NAMESPACE, "{}: examples live in the operator's namespace", path.display());
            let pp = PostParams { dry_run: true, ..Default::default() };
            match kind.as_str() {
                "VSphereMigration" => {
                    let m: VSphereMigration = serde_json::from_value(doc.clone())
                        .with_context(|| format!("{} is not a VSphereMigration", path.display()))?;
                    Api::<VSphereMigration>::namespaced(client.clone(), &ns)
                        .create(&pp, &m)
                        .await
                        .with_context(|| format!("{} refused", path.display()))?;
                }
                "Secret" => {
                    let s: Secret = serde_json::from_value(doc.clone())?;
                    Api::<Secret>::namespaced(client.clone(), &ns).create(&pp, &s).await?;
                }
                other => {
                    let o: DynamicObject = serde_json::from_value(doc.clone())?;
                    bail!("unexpected {other} {:?} in {}", o.metadata.name, path.display());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} example objects");
    Ok(())
}
