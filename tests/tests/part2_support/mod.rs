//! Shared setup of the integration tests of the later phases (UpdateConfig … Verify), on
//! top of `phase_support`: a cluster seeded with chosen options, the earlier phases run
//! for real through the harness (so a phase starts from what the migration really leaves),
//! and lookups of Machines, MachineSets, Nodes and VMs.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::TestEnv;
use vsm_testenv::harness::{Harness, Run, target_spec};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SimHandle, SimOptions, Simulator};
use vsm_vsphere::{ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy};

use crate::phase_support::{LIMIT, PhaseEnv, ensure_done, eventually};

/// The phase components in migration order.
pub const ORDER: [&str; 16] = [
    "preflight",
    "backup",
    "disable-cvo",
    "update-secrets",
    "create-tags",
    "create-folder",
    "delete-cpms",
    "update-infrastructure",
    "update-config",
    "restart-pods",
    "monitor-health",
    "create-workers",
    "recreate-cpms",
    "scale-old-machines",
    "cleanup",
    "verify",
];

/// What a phase needs before it can create machines in the target: its credentials in
/// vsphere-creds, its VM folder, its vCenter and failure domain in the Infrastructure, its
/// entry in the cloud config.
pub const BEFORE_WORKERS: &[&str] = &["update-secrets", "create-folder", "update-infrastructure", "update-config"];

/// The binary's environment seeded with `seed`, a migration `name` to the target vCenter
/// (stability window 2s, so RecreateCPMS's window is short in tests), and `component`.
pub async fn start_seeded(name: &str, component: &str, seed: &SeedOptions) -> Result<PhaseEnv> {
    start_seeded_in(TestEnv::shared().await?, name, component, seed).await
}

/// [`start_seeded`] in the binary's environment with the real machine-api
/// ([`TestEnv::shared_with_machine_api`]): Machines are made, linked and removed by the real
/// controllers, and the simulator plays only the kubelets and what else has no real
/// counterpart.
pub async fn start_seeded_real(name: &str, component: &str, seed: &SeedOptions) -> Result<PhaseEnv> {
    start_seeded_in(TestEnv::shared_with_machine_api().await?, name, component, seed).await
}

async fn start_seeded_in(env: &'static TestEnv, name: &str, component: &str, seed: &SeedOptions) -> Result<PhaseEnv> {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let cluster = vsm_testenv::sim::seed(env, seed).await.context("seeding")?;
    let mut spec = target_spec(env);
    spec.health.stability_window = Some("2s".into());
    let h = Harness::new(env, name, spec).await?;
    let plugin = h.phase(component).await?;
    Ok(PhaseEnv { env, cluster, h, plugin })
}

pub fn sim(c: &PhaseEnv) -> SimHandle {
    Simulator::start(c.env, SimOptions::instant())
}

/// Run the phase components `components` in order, each to `done`.
pub async fn run_phases(c: &PhaseEnv, components: &[&str]) -> Result<()> {
    for name in components {
        let plugin = c.h.phase(name).await?;
        let run = c.h.run(&plugin, Direction::Execute).await.with_context(|| format!("running {name}"))?;
        ensure_done(&run, name).with_context(|| format!("phase {name}"))?;
        tracing::info!(phase = name, message = run.message(), calls = run.calls, "earlier phase done");
    }
    Ok(())
}

/// Roll the phase components back, last first, each to `done`.
pub async fn roll_back(c: &PhaseEnv, components: &[&str]) -> Result<()> {
    for name in components.iter().rev() {
        let plugin = c.h.phase(name).await?;
        let run = c.h.run(&plugin, Direction::Rollback).await.with_context(|| format!("rolling back {name}"))?;
        ensure_done(&run, name).with_context(|| format!("rollback of {name}"))?;
    }
    Ok(())
}

/// One call of the phase under test, as the operator's first call would make it.
pub async fn one_call(c: &PhaseEnv, direction: Direction) -> Result<Outcome> {
    Ok(c.h.call(&c.plugin, direction, 1, false).await?.0.outcome)
}

pub fn message(o: &Outcome) -> &str {
    match o {
        Outcome::Done(m) => m,
        Outcome::Wait(w) => &w.message,
        Outcome::Failed(f) => &f.message,
    }
}

/// Every wait message of a run, in order.
pub fn wait_messages(run: &Run) -> Vec<String> {
    run.reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Wait(w) => Some(w.message.clone()),
            _ => None,
        })
        .collect()
}

pub async fn machines(c: &PhaseEnv) -> Result<Vec<DynamicObject>> {
    Ok(o::machines_api(&c.client()).list(&ListParams::default()).await?.items)
}

pub async fn machine_sets(c: &PhaseEnv) -> Result<Vec<DynamicObject>> {
    Ok(o::machine_sets_api(&c.client()).list(&ListParams::default()).await?.items)
}

pub async fn machine_set(c: &PhaseEnv, name: &str) -> Result<Option<DynamicObject>> {
    Ok(o::machine_sets_api(&c.client()).get_opt(name).await?)
}

pub async fn nodes(c: &PhaseEnv) -> Result<Vec<Node>> {
    Ok(Api::<Node>::all(c.client()).list(&ListParams::default()).await?.items)
}

pub async fn operators(c: &PhaseEnv) -> Result<Vec<DynamicObject>> {
    Ok(o::operators_api(&c.client()).list(&ListParams::default()).await?.items)
}

/// `workspace.server` of a Machine.
pub fn machine_server(m: &DynamicObject) -> &str {
    o::str_at(&m.data, "/spec/providerSpec/value/workspace/server").unwrap_or_default()
}

/// `workspace.server` of a MachineSet's template.
pub fn set_server(s: &DynamicObject) -> &str {
    o::str_at(&s.data, "/spec/template/spec/providerSpec/value/workspace/server").unwrap_or_default()
}

pub fn replicas(s: &DynamicObject) -> i64 {
    o::i64_at(&s.data, "/spec/replicas").unwrap_or(1)
}

pub fn is_master(m: &DynamicObject) -> bool {
    m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master")
}

pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// A Machine is Running, has a nodeRef, and that Node exists and is Ready.
pub fn machine_ready(m: &DynamicObject, nodes: &[Node]) -> bool {
    o::str_at(&m.data, "/status/phase") == Some("Running")
        && o::nonempty_at(&m.data, "/status/nodeRef/name")
            .is_some_and(|n| nodes.iter().any(|node| node.name_any() == n && node_ready(node)))
}

/// Machines of a MachineSet (by its label).
pub fn of_set<'a>(all: &'a [DynamicObject], set: &str) -> Vec<&'a DynamicObject> {
    all.iter().filter(|m| m.labels().get(o::LABEL_MACHINESET).map(String::as_str) == Some(set)).collect()
}

/// Machines grouped by vCenter: server -> (name, ready).
pub async fn placement(c: &PhaseEnv) -> Result<BTreeMap<String, Vec<(String, bool)>>> {
    let (all, nodes) = (machines(c).await?, nodes(c).await?);
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for m in &all {
        out.entry(machine_server(m).to_string()).or_default().push((m.name_any(), machine_ready(m, &nodes)));
    }
    Ok(out)
}

/// Names of the VMs in a VM folder of the source (`true`) or target vCenter, logged in as
/// the environment's administrator (the cluster's credentials may be gone by then).
pub async fn vm_names(c: &PhaseEnv, source: bool, folder: &str) -> Result<Vec<String>> {
    let vc = if source { c.env.source() } else { c.env.target() };
    let pool = SessionPool::new(ClientOptions::default());
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
        tls: TlsPolicy { ca_bundle_pem: Some(c.env.ca_pem().to_string()), ..Default::default() },
    };
    let result = async {
        let client = pool.client(&spec).await?;
        match client.list_vms(folder).await {
            Ok(vms) => Ok(vms.into_iter().filter(|v| !v.template).map(|v| v.name).collect::<Vec<_>>()),
            Err(vsm_vsphere::VsphereError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    .await;
    pool.shutdown().await;
    let mut names = result?;
    names.sort();
    Ok(names)
}

/// The source's and target's machine VM folders (`/<dc>/vm/<infraID>`).
pub fn folders(c: &PhaseEnv) -> (String, String) {
    (c.cluster.source.folder.clone(), c.cluster.target.folder.clone())
}

/// Wait until every ClusterOperator not in `tolerated` is Available and not Degraded.
pub async fn operators_healthy(c: &PhaseEnv, tolerated: &[&str]) -> Result<()> {
    eventually("ClusterOperators healthy", || async {
        let cos = operators(c).await.map_err(|e| e.to_string())?;
        let bad: Vec<String> = cos
            .iter()
            .filter(|co| !tolerated.contains(&co.name_any().as_str()))
            .filter(|co| {
                let conds = co.data.pointer("/status/conditions");
                o::condition_status(conds, "Available") != Some("True")
                    || o::condition_status(conds, "Degraded") == Some("True")
            })
            .map(|co| co.name_any())
            .collect();
        if bad.is_empty() { Ok(()) } else { Err(format!("unhealthy: {bad:?}")) }
    })
    .await
}

/// Set a ClusterOperator's conditions (the simulator leaves the unruled ones alone).
pub async fn set_operator(c: &PhaseEnv, name: &str, available: &str, degraded: &str, message: &str) -> Result<()> {
    let now = o::now();
    let status = json!({"status": {"conditions": [
        {"type": "Available", "status": available, "reason": "Test", "message": message, "lastTransitionTime": now},
        {"type": "Degraded", "status": degraded, "reason": "Test", "message": message, "lastTransitionTime": now},
        {"type": "Progressing", "status": "False", "reason": "AsExpected", "message": "", "lastTransitionTime": now},
    ]}});
    o::operators_api(&c.client()).patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

/// The cloud config text.
pub async fn cloud_config_text(c: &PhaseEnv) -> Result<String> {
    let cm = c.config_map(o::CLOUD_CONFIG_NS, o::CLOUD_CONFIG_NAME).await?.context("cloud config")?;
    Ok(cm.data.unwrap_or_default().get(o::CLOUD_CONFIG_KEY).cloned().unwrap_or_default())
}

pub async fn set_cloud_config_text(c: &PhaseEnv, text: &str) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.client(), o::CLOUD_CONFIG_NS);
    let patch = json!({"data": {o::CLOUD_CONFIG_KEY: text}});
    api.patch(o::CLOUD_CONFIG_NAME, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Keys of `kube-system/vsphere-creds`, sorted.
pub async fn creds_keys(c: &PhaseEnv) -> Result<Vec<String>> {
    let s = c.secret(o::CREDS_NS, o::CREDS_NAME).await?.context("vsphere-creds")?;
    Ok(s.data.unwrap_or_default().into_keys().collect())
}

/// `server`s of the Infrastructure's vCenters and `(name, server)` of its failure domains.
pub fn infra_lists(infra: &DynamicObject) -> (Vec<String>, Vec<(String, String)>) {
    let vs = infra.data.pointer("/spec/platformSpec/vsphere").cloned().unwrap_or(Value::Null);
    let servers = vs["vcenters"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["server"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    let fds = vs["failureDomains"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| (f["name"].as_str().unwrap_or("").to_string(), f["server"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    (servers, fds)
}

/// Sleep a little between looks (for polling helpers written inline).
pub async fn pause() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Fail unless `run` ended in `done`.
pub fn done_or_bail(run: &Run, what: &str) -> Result<()> {
    if !run.done() {
        bail!("{what}: {:?}", run.outcome);
    }
    Ok(())
}

/// Guard for tests: the limit the polling helpers use.
pub fn limit() -> Duration {
    LIMIT
}
