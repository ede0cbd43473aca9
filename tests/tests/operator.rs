//! The operator core against the real environment: the controller runs migrations through
//! every phase (test components bound to the 16 phases by spec.plugins), manual approval,
//! failures and rollback, crash and resume, leader election with fencing, one migration at
//! a time, spec problems named, the finalizer, and no secret in status or Events.
//!
//! Each test has its own environment: migrations are cluster-wide singletons in spirit
//! (one active per cluster), so tests must not share one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::{MigrationSpec, PHASES, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::leader::LeaderConfig;
use vsm_host::operator::{Operator, OperatorConfig};
use vsm_host::runtime::config::{PluginConfig, PluginEntry};
use vsm_testenv::TestEnv;
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, target_spec};
use vsm_testenv::sim::{SeedOptions, seed};

/// A plugin directory holding the named test components.
fn plugin_dir(components: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins");
    for c in components {
        std::fs::copy(built.join(format!("{c}.wasm")), dir.path().join(format!("{c}.wasm")))
            .expect("run `cargo xtask plugins`");
    }
    dir
}

fn plugin_config(components: &[&str]) -> PluginConfig {
    let mut cfg = PluginConfig::default();
    for c in components {
        cfg.plugins.insert(c.to_string(), PluginEntry { grant_declared: true, ..Default::default() });
    }
    cfg
}

fn config(dir: &tempfile::TempDir, components: &[&str], identity: &str, leader: bool) -> OperatorConfig {
    OperatorConfig {
        plugin_dir: dir.path().to_path_buf(),
        plugin_config: plugin_config(components),
        cache_dir: Some(std::env::temp_dir().join("vsm-operator-test-cache")),
        namespace: None,
        leader: leader.then(|| LeaderConfig {
            namespace: NAMESPACE.into(),
            name: "vsm-test-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
        }),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        identity: identity.into(),
        watch_plugins: false,
        vsphere: Default::default(),
    }
}

/// The spec every test starts from: the seeded cluster to the target vCenter, each phase
/// served by a chosen test component.
fn spec(env: &TestEnv, bindings: &[(&str, &str)], extra: Value) -> MigrationSpec {
    let mut v = serde_json::to_value(target_spec(env)).unwrap();
    let mut plugins = BTreeMap::new();
    for phase in PHASES {
        let component = bindings.iter().find(|(p, _)| *p == phase).map(|(_, c)| *c).unwrap_or("exerciser");
        plugins.insert(phase.to_string(), json!({"component": component}));
    }
    v["plugins"] = json!(plugins);
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn prepared_env() -> Result<TestEnv> {
    let env = TestEnv::start_default().await?;
    seed(&env, &SeedOptions { workers: 1, ..Default::default() }).await?;
    ensure_secrets(&env, &env.client()).await?;
    Ok(env)
}

async fn create(env: &TestEnv, name: &str, spec: MigrationSpec) -> Result<VSphereMigration> {
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    Ok(api.create(&PostParams::default(), &VSphereMigration::new(name, VSphereMigrationSpec { spec })).await?)
}

async fn get(env: &TestEnv, name: &str) -> Result<VSphereMigration> {
    Ok(Api::<VSphereMigration>::namespaced(env.client(), NAMESPACE).get(name).await?)
}

/// Wait (generously, only to avoid hanging forever) until `pred` holds.
async fn until<F: Fn(&VSphereMigration) -> bool>(
    env: &TestEnv,
    name: &str,
    what: &str,
    pred: F,
) -> Result<VSphereMigration> {
    for _ in 0..3000 {
        let m = get(env, name).await?;
        if pred(&m) {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = get(env, name).await?;
    bail!("timed out waiting for {what}; status: {}", serde_json::to_string_pretty(&m.status)?)
}

fn phase(m: &VSphereMigration) -> String {
    m.status.as_ref().and_then(|s| s.phase.as_ref()).map(Stage::to_string).unwrap_or_default()
}

fn condition(m: &VSphereMigration, type_: &str) -> (String, String, String) {
    m.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

async fn events(env: &TestEnv, name: &str) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(env.client(), NAMESPACE);
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.into_iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).collect())
}

async fn patch_spec(env: &TestEnv, name: &str, manager: &str, spec: Value) -> Result<()> {
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    api.patch(
        name,
        &PatchParams { field_manager: Some(manager.into()), ..Default::default() },
        &Patch::Merge(json!({"spec": spec})),
    )
    .await?;
    Ok(())
}

async fn metrics(op: &Operator) -> Result<String> {
    let url = format!("http://{}/metrics", op.addr.context("no endpoint")?);
    Ok(reqwest::get(url).await?.text().await?)
}

#[tokio::test]
async fn a_migration_runs_every_phase_in_order_to_completed_with_events_metrics_and_no_secrets() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "exerciser-slow"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    create(&env, "full", spec(&env, &[("RestartPods", "exerciser-slow")], json!({}))).await?;
    let m = until(&env, "full", "Completed", |m| phase(m) == "Completed").await?;
    let status = m.status.clone().unwrap();

    let done: Vec<&str> = status.history.iter().map(|h| h.phase.as_str()).collect();
    assert_eq!(done, PHASES.to_vec(), "every phase ran once, in order");
    let restart = status.history.iter().find(|h| h.phase == "RestartPods").unwrap();
    assert_eq!(restart.attempts, 3, "waited twice, then completed");
    assert!(restart.started_at <= restart.finished_at);
    assert_eq!(condition(&m, "Ready").0, "True");
    assert_eq!(status.progress.as_deref(), Some("16/16 (100%)"));
    assert_eq!(status.sources.len(), 1, "the source vCenter was recorded at the start");
    assert_eq!(status.sources[0].server, env.source().host());
    assert!(status.history.iter().all(|h| h.plugin.as_ref().is_some_and(|p| p.component.starts_with("exerciser"))));

    // The Events of a transition are posted after its status write: the last one may
    // still be on its way when the status shows Completed.
    let wanted = ["MigrationStarted", "PhaseStarted", "PhaseCompleted", "MigrationCompleted"];
    let (mut evs, mut reasons) = (Vec::new(), Vec::new());
    for _ in 0..600 {
        evs = events(&env, "full").await?;
        reasons = evs.iter().filter_map(|e| e.reason.clone()).collect::<Vec<String>>();
        if wanted.iter().all(|r| reasons.iter().any(|x| x == r)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in wanted {
        assert!(reasons.iter().any(|x| x == r), "no {r} event in {reasons:?}");
    }
    let text = metrics(&op).await?;
    assert!(
        text.contains("vsm_phase_outcomes_total{phase=\"Verify\",direction=\"execute\",result=\"Succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vsm_plugin_calls_total{phase=\"RestartPods\",direction=\"execute\",result=\"wait\"} 2"),
        "{text}"
    );

    // `kubectl get vsm` shows the CRD's printer columns, from the real API server.
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["get", "vsm", "full", "-n", NAMESPACE])
        .output()
        .context("running kubectl (the test environment needs it on PATH)")?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl get vsm: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "PHASE", "STATE", "PROGRESS", "AGE"], "{table}");
    assert_eq!(rows[1][..5], ["full", "Completed", "Running", "16/16", "(100%)"], "{table}");

    // No credential ever reaches the status or the Events.
    let all = format!("{}{}", serde_json::to_string(&m)?, serde_json::to_string(&evs)?);
    for secret in [env.target().password.as_str(), env.source().password.as_str()] {
        assert!(!all.contains(secret), "a password leaked into status or events");
    }
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_phase_is_woken_by_events_of_a_kind_no_shipped_phase_reads() -> Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
    let env = prepared_env().await?;
    let namespaces: Api<Namespace> = Api::all(env.client());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "exerciser"}});
    namespaces.patch("exerciser", &PatchParams::apply("test").force(), &Patch::Apply(ns)).await?;
    let components = ["exerciser", "exerciser-quota"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    create(&env, "woken", spec(&env, &[("Preflight", "exerciser-quota")], json!({}))).await?;
    let waiting = until(&env, "woken", "Preflight waiting for its quota", |m| {
        m.status.as_ref().and_then(|s| s.current.as_ref()).is_some_and(|c| c.message.contains("ResourceQuota"))
    })
    .await?;
    let timer = waiting.status.unwrap().current.unwrap().next_call_at.context("a wait sets the next call")?;

    let quotas: Api<ResourceQuota> = Api::namespaced(env.client(), "exerciser");
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "go"}, "spec": {}});
    quotas.create(&PostParams::default(), &serde_json::from_value(quota)?).await?;
    let m = until(&env, "woken", "Preflight done", |m| {
        m.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.phase == "Preflight"))
    })
    .await?;
    let record = m.status.unwrap().history.into_iter().find(|h| h.phase == "Preflight").unwrap();
    let finished = record.finished_at;
    assert!(
        finished < timer,
        "Preflight finished at {finished}, not before its own timer ({timer}): the quota's event did not wake it"
    );
    assert!(record.message.contains("exists"), "{}", record.message);
    op.stop().await;
    Ok(())
}

/// All reconciles so far, whatever their result.
async fn reconciles(op: &Operator) -> Result<f64> {
    let text = metrics(op).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("vsm_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn a_status_only_update_does_not_trigger_a_reconcile_and_a_spec_edit_does() -> Result<()> {
    let env = prepared_env().await?;
    let dir = plugin_dir(&["exerciser"]);
    let op = Operator::start(env.client(), config(&dir, &["exerciser"], "solo", false)).await?;
    create(&env, "quiet", spec(&env, &[], json!({"state": "Pending"}))).await?;
    until(&env, "quiet", "reconciled once", |m| condition(m, "Ready").1 == "Pending").await?;
    // Pending is idle: nothing requeues it for ten minutes, so every reconcile from here on
    // is one a watch event triggered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = reconciles(&op).await?;

    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    let status = json!({"status": {"progress": "written by someone else"}});
    api.patch_status("quiet", &PatchParams::default(), &Patch::Merge(&status)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reconciles(&op).await?, before, "a status-only update triggered a reconcile");

    // The positive control: a spec edit does (and the counter sees it).
    patch_spec(&env, "quiet", "test", json!({"approvalMode": "Manual"})).await?;
    let mut after = before;
    for _ in 0..600 {
        after = reconciles(&op).await?;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after > before, "a spec edit did not trigger a reconcile");
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn manual_mode_blocks_before_every_phase_until_it_is_approved() -> Result<()> {
    let env = prepared_env().await?;
    let dir = plugin_dir(&["exerciser"]);
    let op = Operator::start(env.client(), config(&dir, &["exerciser"], "solo", false)).await?;
    create(&env, "manual", spec(&env, &[], json!({"approvalMode": "Manual"}))).await?;
    let m = until(&env, "manual", "awaiting approval", |m| condition(m, "AwaitingApproval").0 == "True").await?;
    assert!(condition(&m, "AwaitingApproval").2.contains("Preflight"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(get(&env, "manual").await?.status.unwrap().history.is_empty(), "nothing runs without approval");

    patch_spec(&env, "manual", "test-approver", json!({"approvals": ["Preflight"]})).await?;
    let m = until(&env, "manual", "blocked at Backup", |m| {
        m.status.as_ref().is_some_and(|s| s.history.len() == 1) && condition(m, "AwaitingApproval").2.contains("Backup")
    })
    .await?;
    let status = m.status.unwrap();
    assert_eq!(status.history[0].phase, "Preflight");
    assert_eq!(status.approvals[0].phase, "Preflight");
    assert_eq!(status.approvals[0].by, "test-approver", "the approver is recorded");
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_crashing_phase_is_recorded_and_rolled_back_newest_first_exactly_once() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "hostile-trap"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    create(&env, "crashy", spec(&env, &[("CreateTags", "hostile-trap")], json!({}))).await?;
    let m = until(&env, "crashy", "RolledBack", |m| phase(m) == "RolledBack").await?;
    let status = m.status.clone().unwrap();
    let failed = status.history.iter().find(|h| h.phase == "CreateTags").unwrap();
    assert!(failed.message.contains("plugin hostile-trap crashed"), "{}", failed.message);
    let undone: Vec<&str> = status
        .history
        .iter()
        .filter(|h| h.direction == vsm_api::Direction::Rollback)
        .map(|h| h.phase.as_str())
        .collect();
    assert_eq!(
        undone,
        ["UpdateSecrets", "DisableCVO", "Backup", "Preflight"],
        "completed phases undone newest first (the crashed one has no rollback)"
    );
    assert!(status.rollback.unwrap().reason.contains("CreateTags failed"));
    // Terminal: nothing runs again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&env, "crashy").await?.status.unwrap().history.len(), status.history.len());
    let reasons: Vec<String> = events(&env, "crashy").await?.into_iter().filter_map(|e| e.reason).collect();
    assert!(
        reasons.contains(&"PhaseFailed".to_string()) && reasons.contains(&"RollbackFinished".to_string()),
        "{reasons:?}"
    );
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_rollback_on_failure_a_failure_stops_and_stays_visible() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "hostile-forbidden"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    create(&env, "stops", spec(&env, &[("Backup", "hostile-forbidden")], json!({"rollbackOnFailure": false}))).await?;
    let m = until(&env, "stops", "Failed", |m| phase(m) == "Failed").await?;
    let (_, reason, message) = condition(&m, "Ready");
    assert_eq!(reason, "Failed");
    assert!(message.contains("may not get core/secrets in namespace kube-system"), "the cause is named: {message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = get(&env, "stops").await?;
    assert_eq!(later.status.unwrap().history.len(), 2, "the failed phase is not re-run in a loop");
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_operator_killed_mid_phase_is_replaced_and_the_migration_resumes() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "exerciser-slow"];
    let dir = plugin_dir(&components);
    let first = Operator::start(env.client(), config(&dir, &components, "first", false)).await?;
    create(&env, "resume", spec(&env, &[("CreateFolder", "exerciser-slow")], json!({}))).await?;
    until(&env, "resume", "CreateFolder waiting", |m| {
        m.status.as_ref().and_then(|s| s.current.as_ref()).is_some_and(|c| c.name == "CreateFolder" && c.attempt >= 1)
    })
    .await?;
    first.abort();
    let second = Operator::start(env.client(), config(&dir, &components, "second", false)).await?;
    let m = until(&env, "resume", "Completed", |m| phase(m) == "Completed").await?;
    let status = m.status.unwrap();
    let runs: Vec<&str> = status.history.iter().map(|h| h.phase.as_str()).collect();
    assert_eq!(runs, PHASES.to_vec(), "no phase ran twice");
    assert_eq!(
        status.history.iter().find(|h| h.phase == "CreateFolder").unwrap().attempts,
        3,
        "the run continued where it was"
    );
    second.stop().await;
    Ok(())
}

#[tokio::test]
async fn one_migration_at_a_time_and_spec_problems_name_the_field() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser-slow"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    let all_slow: Vec<(&str, &str)> = PHASES.iter().map(|p| (*p, "exerciser-slow")).collect();
    create(&env, "first", spec(&env, &all_slow, json!({}))).await?;
    until(&env, "first", "started", |m| m.status.as_ref().is_some_and(|s| s.started_at.is_some())).await?;
    create(&env, "second", spec(&env, &all_slow, json!({}))).await?;
    let m = until(&env, "second", "blocked", |m| condition(m, "Ready").1 == "Blocked").await?;
    assert!(condition(&m, "Ready").2.contains(&format!("{NAMESPACE}/first")));

    // A spec the schema accepts but the cluster cannot satisfy: no credentials for the target.
    let mut bad = spec(&env, &all_slow, json!({}));
    bad.target_credentials_secret.name = "missing-creds".into();
    create(&env, "bad-secret", bad).await?;
    let m = until(&env, "bad-secret", "invalid", |m| condition(m, "Ready").1 == "InvalidSpec").await?;
    assert!(
        condition(&m, "Ready").2.starts_with("spec.targetVCenterCredentialsSecret"),
        "{:?}",
        condition(&m, "Ready")
    );

    // What the schema can check, it rejects at the API server with the field named.
    let mut v = serde_json::to_value(spec(&env, &[], json!({})))?;
    v["machineSetConfig"]["failureDomain"] = json!("nowhere");
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    let obj = json!({"apiVersion": "migration.openshift.io/v1alpha1", "kind": "VSphereMigration", "metadata": {"name": "rejected"}, "spec": v});
    let err = api.create(&PostParams::default(), &serde_json::from_value(obj)?).await.unwrap_err();
    assert!(
        err.to_string().contains("spec.machineSetConfig.failureDomain must name one of spec.failureDomains"),
        "{err}"
    );
    op.stop().await;
    Ok(())
}

/// A client of the admin's whose reads of one Secret fail without an answer while `cut` is
/// set, as they do while the API server restarts; the refusals are counted.
fn client_cutting_secret(env: &TestEnv, secret: &str, cut: Arc<AtomicBool>, refused: Arc<AtomicUsize>) -> kube::Client {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/{secret}");
    let layer = tower::filter::FilterLayer::new(move |req: http::Request<kube::client::Body>| {
        if cut.load(Ordering::SeqCst) && req.uri().path() == path {
            refused.fetch_add(1, Ordering::SeqCst);
            return Err::<_, tower::BoxError>("client error (Connect)".into());
        }
        Ok(req)
    });
    kube::client::ClientBuilder::try_from(env.admin_config().clone()).unwrap().with_layer(&layer).build()
}

#[tokio::test]
async fn a_spec_check_the_api_server_cannot_answer_is_retried_never_shown_as_invalid() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser"];
    let dir = plugin_dir(&components);
    let spec = spec(&env, &[], json!({}));
    let (cut, refused) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let client = client_cutting_secret(&env, &spec.target_credentials_secret.name, cut.clone(), refused.clone());
    let op = Operator::start(client, config(&dir, &components, "solo", false)).await?;
    create(&env, "unanswered", spec).await?;
    for _ in 0..3000 {
        if refused.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refusals = refused.load(Ordering::SeqCst);
    assert!(refusals >= 3, "the operator checked the credentials Secret again and again ({refusals} reads refused)");
    let m = get(&env, "unanswered").await?;
    let status = m.status.clone().unwrap_or_default();
    assert!(status.started_at.is_none(), "nothing starts on an unchecked spec: {status:?}");
    assert!(
        status.conditions.iter().all(|c| c.reason != "InvalidSpec"),
        "a check without an answer is not an invalid spec: {:?}",
        status.conditions
    );

    // The API server answers again: the migration starts and completes, never marked invalid.
    cut.store(false, Ordering::SeqCst);
    let m = until(&env, "unanswered", "completed", |m| {
        m.status.as_ref().is_some_and(|s| s.phase == Some(Stage::Completed))
    })
    .await?;
    assert_eq!(condition(&m, "Degraded").0, "False", "{:?}", m.status);
    let invalid_events: Vec<_> =
        events(&env, "unanswered").await?.into_iter().filter(|e| e.reason.as_deref() == Some("InvalidSpec")).collect();
    assert!(invalid_events.is_empty(), "{invalid_events:?}");
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn deletion_is_refused_mid_flight_and_cleans_up_after_a_rollback() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "exerciser-slow"];
    let dir = plugin_dir(&components);
    let op = Operator::start(env.client(), config(&dir, &components, "solo", false)).await?;
    let slow: Vec<(&str, &str)> = PHASES.iter().map(|p| (*p, "exerciser-slow")).collect();
    create(&env, "keep", spec(&env, &slow, json!({}))).await?;
    until(&env, "keep", "running", |m| m.status.as_ref().is_some_and(|s| s.started_at.is_some())).await?;
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    api.delete("keep", &Default::default()).await?;
    let m = until(&env, "keep", "deletion blocked", |m| condition(m, "Degraded").1 == "DeletionBlocked").await?;
    assert!(m.metadata.deletion_timestamp.is_some());
    patch_spec(&env, "keep", "test", json!({"state": "Rollback"})).await?;
    for _ in 0..3000 {
        if api.get_opt("keep").await?.is_none() {
            op.stop().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the migration was not released after its rollback: {:?}", api.get("keep").await?.status)
}

#[tokio::test]
async fn two_replicas_elect_one_leader_fail_over_and_a_deposed_leader_never_writes() -> Result<()> {
    let env = prepared_env().await?;
    let components = ["exerciser", "exerciser-slow"];
    let dir = plugin_dir(&components);
    let a = Operator::start(env.client(), config(&dir, &components, "replica-a", true)).await?;
    let b = Operator::start(env.client(), config(&dir, &components, "replica-b", true)).await?;
    let (mut a, mut b) = (Some(a), Some(b));
    for _ in 0..600 {
        if a.as_ref().unwrap().leader.is_leader() || b.as_ref().unwrap().leader.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (la, lb) = (a.as_ref().unwrap().leader.is_leader(), b.as_ref().unwrap().leader.is_leader());
    assert!(la ^ lb, "exactly one leader (a={la}, b={lb})");
    let slow: Vec<(&str, &str)> = PHASES.iter().map(|p| (*p, "exerciser-slow")).collect();
    create(&env, "ha", spec(&env, &slow, json!({}))).await?;
    until(&env, "ha", "two phases done", |m| m.status.as_ref().is_some_and(|s| s.history.len() >= 2)).await?;

    // Crash the leader (no lease release): the other takes over once the lease expires.
    let (leader, follower) =
        if la { (a.take().unwrap(), b.take().unwrap()) } else { (b.take().unwrap(), a.take().unwrap()) };
    leader.abort();
    for _ in 0..600 {
        if follower.leader.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(follower.leader.is_leader(), "the follower took over");
    let before = get(&env, "ha").await?.status.unwrap().history.len();
    until(&env, "ha", "progress under the new leader", |m| m.status.as_ref().is_some_and(|s| s.history.len() > before))
        .await?;

    // Depose it by taking the lease away: it must stop writing within its renew deadline.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client(), NAMESPACE);
    let mut lease = leases.get("vsm-test-leader").await?;
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()));
    spec.lease_duration_seconds = Some(3600);
    leases.replace("vsm-test-leader", &PostParams::default(), &lease).await?;
    for _ in 0..600 {
        if !follower.leader.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!follower.leader.is_leader(), "a replica that cannot renew stops counting itself leader");
    let frozen = get(&env, "ha").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = get(&env, "ha").await?;
    assert_eq!(later.status, frozen.status, "a deposed leader never writes");
    follower.stop().await;
    Ok(())
}
