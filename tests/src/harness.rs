//! Run one phase component against the real test environment, exactly as the operator
//! would (same runtime, same backends), and look at what it did.
//!
//! ```no_run
//! # async fn demo(env: &vsm_testenv::TestEnv) -> anyhow::Result<()> {
//! use vsm_testenv::harness::{Harness, target_spec};
//! let h = Harness::new(env, "create-tags-ok", target_spec(env)).await?;
//! let phase = h.phase("create-tags").await?;
//! let run = h.run(&phase, vsm_host::runtime::Direction::Execute).await?;
//! assert!(run.done());
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vsm_api::{MigrationSpec, SourceVCenter, VSphereMigration, VSphereMigrationSpec};
use vsm_host::backends::{CallOutputs, Clients, MigrationBackends};
use vsm_host::runtime::bindings::{CallContext, Migration, Outcome};
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_host::runtime::{
    CallReport, CallScope, Direction, Import, ImportObserver, LoadedPlugin, Runtime, RuntimeConfig,
};
use vsm_vsphere::{ClientOptions, SessionPool};

use crate::TestEnv;
use crate::sim::{FailureDomain, SeededCluster};
use crate::vcsim::target;

/// Namespace migrations live in during tests.
pub const NAMESPACE: &str = "vsphere-migration";
/// The Secret with the target vCenter credentials.
pub const TARGET_CREDS: &str = "target-vcenter-creds";
/// The Secret with every vCenter's CA ([`TestEnv::vcenter_ca_bundle_pem`]: the environment's,
/// plus those of vCenters with a CA of their own).
pub const VCENTER_CA: &str = "vcenter-ca";
/// The target failure domain of [`target_spec`].
pub const TARGET_FD: &str = "target-fd";
/// The RHCOS template the seed puts in the target vCenter.
pub const TARGET_TEMPLATE: &str = "/dst-dc/vm/rhcos-template";

/// A spec moving the seeded cluster to the environment's target vCenter.
pub fn target_spec(env: &TestEnv) -> MigrationSpec {
    let (src, dst) = (env.source(), env.target());
    serde_json::from_value(json!({
        "state": "Running",
        "targetVCenterCredentialsSecret": {"name": TARGET_CREDS},
        "failureDomains": [{
            "name": TARGET_FD, "region": "dst-region", "zone": "dst-zone-a", "server": dst.host(),
            "topology": {
                "datacenter": target::DATACENTER,
                "computeCluster": target::CLUSTER_PATH,
                "datastore": target::DATASTORE_PATH,
                "networks": [target::NETWORK],
                "resourcePool": target::RESOURCE_POOL_PATH,
                "template": TARGET_TEMPLATE
            }
        }],
        "vcenters": [
            {"server": src.host(), "port": src.port(), "caSecret": {"name": VCENTER_CA}},
            {"server": dst.host(), "port": dst.port(), "caSecret": {"name": VCENTER_CA}}
        ],
        "machineSetConfig": {"failureDomain": TARGET_FD},
        "controlPlaneMachineSetConfig": {"failureDomain": TARGET_FD},
        // The seed's static-IP worker set (SeedOptions::static_ip_workers) gets addresses
        // from the target network's pool.
        "staticIPs": [{"failureDomain": TARGET_FD, "nameservers": TARGET_NAMESERVERS,
                       "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": TARGET_IP_POOL}]}]
    }))
    .expect("a valid spec")
}

/// The IP pool [`target_spec`] gives the target failure domain's static-IP machines.
pub const TARGET_IP_POOL: &str = "dst-worker-pool";
/// The target network's DNS servers in [`target_spec`].
pub const TARGET_NAMESERVERS: [&str; 1] = ["10.20.0.53"];

/// A spec moving a zonal cluster ([`crate::sim::ZonalSeed`]) onto the target failure
/// domains of every target vCenter: `map` pairs source and target domain names
/// (`machineSetConfig.failureDomainMap`), the control plane spreads over `control_plane`,
/// `spec.failureDomains` lists every target domain and `spec.vcenters` every vCenter of the
/// environment (CA in [`VCENTER_CA`]).
pub fn zonal_spec(
    env: &TestEnv,
    seeded: &SeededCluster,
    map: &[(&str, &str)],
    control_plane: &[&str],
) -> MigrationSpec {
    let domains: Vec<_> = seeded.target_failure_domains.iter().map(spec_domain).collect();
    let vcenters: Vec<_> = env
        .vcenters()
        .into_iter()
        .map(|(_, vc)| json!({"server": vc.host(), "port": vc.port(), "caSecret": {"name": VCENTER_CA}}))
        .collect();
    let map: Vec<_> = map.iter().map(|(s, t)| json!({"source": s, "target": t})).collect();
    serde_json::from_value(json!({
        "state": "Running",
        "targetVCenterCredentialsSecret": {"name": TARGET_CREDS},
        "failureDomains": domains,
        "vcenters": vcenters,
        "machineSetConfig": {"failureDomainMap": map},
        "controlPlaneMachineSetConfig": {"failureDomains": control_plane},
    }))
    .expect("a valid zonal spec")
}

/// [`zonal_spec`] domain by domain: the i-th source failure domain onto the i-th target
/// domain, the control plane over the first three target domains.
pub fn zonal_spec_in_order(env: &TestEnv, seeded: &SeededCluster) -> MigrationSpec {
    let map: Vec<(&str, &str)> = seeded
        .failure_domains
        .iter()
        .zip(&seeded.target_failure_domains)
        .map(|(s, t)| (s.name.as_str(), t.name.as_str()))
        .collect();
    let control_plane: Vec<&str> = seeded.target_failure_domains.iter().take(3).map(|t| t.name.as_str()).collect();
    zonal_spec(env, seeded, &map, &control_plane)
}

/// A seeded failure domain as `spec.failureDomains` lists it.
pub fn spec_domain(fd: &FailureDomain) -> serde_json::Value {
    let mut topology = json!({
        "datacenter": fd.datacenter, "computeCluster": fd.compute_cluster, "datastore": fd.datastore,
        "networks": fd.networks, "template": fd.template,
    });
    if !fd.resource_pool.is_empty() {
        topology["resourcePool"] = json!(fd.resource_pool);
    }
    json!({"name": fd.name, "region": fd.region, "zone": fd.zone, "server": fd.server, "topology": topology})
}

/// Where `cargo xtask plugins` puts the phase components.
pub fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

/// Polls the migration `name` every 100 ms until `pred` holds; `guard` only keeps a test
/// from hanging (the error shows the last status).
pub async fn until_migration(
    api: &Api<VSphereMigration>,
    name: &str,
    what: &str,
    guard: Duration,
    pred: impl Fn(&VSphereMigration) -> bool,
) -> Result<VSphereMigration> {
    let poll = Duration::from_millis(100);
    for _ in 0..guard.as_millis() / poll.as_millis() {
        let m = api.get(name).await?;
        if pred(&m) {
            return Ok(m);
        }
        tokio::time::sleep(poll).await;
    }
    let m = api.get(name).await?;
    bail!("timed out waiting for {what}: {}", serde_json::to_string_pretty(&m.status)?)
}

/// The operator in this process with every shipped phase component, each granted what it
/// declares, the shared component cache, no leader election and no HTTP endpoint.
pub async fn shipped_operator(env: &TestEnv, identity: &str) -> Result<vsm_host::operator::Operator> {
    let mut plugin_config = vsm_host::runtime::config::PluginConfig::default();
    for entry in std::fs::read_dir(plugin_dir()).context("run `cargo xtask plugins`")? {
        let stem = entry?.path().file_stem().context("a component file")?.to_string_lossy().to_string();
        plugin_config.plugins.insert(stem, PluginEntry { grant_declared: true, ..Default::default() });
    }
    let config = vsm_host::operator::OperatorConfig {
        plugin_dir: plugin_dir(),
        plugin_config,
        cache_dir: Some(crate::tools::cache_dir()?.with_file_name("wasm-cache")),
        namespace: None,
        leader: None,
        listen: None,
        identity: identity.into(),
        watch_plugins: false,
        vsphere: Default::default(),
    };
    Ok(vsm_host::operator::Operator::start(env.client(), config).await?)
}

/// What a sequence of calls ended with.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    pub calls: u32,
    pub reports: Vec<CallReport>,
    pub outputs: CallOutputs,
}

impl Run {
    pub fn done(&self) -> bool {
        matches!(self.outcome, Outcome::Done(_))
    }

    /// The message of the final outcome.
    pub fn message(&self) -> &str {
        match &self.outcome {
            Outcome::Done(m) => m,
            Outcome::Wait(w) => &w.message,
            Outcome::Failed(f) => &f.message,
        }
    }

    /// Every capability denial of every call.
    pub fn denials(&self) -> Vec<String> {
        self.reports.iter().flat_map(|r| r.denials.clone()).collect()
    }
}

/// One migration object in the environment, and the operator's machinery to call phases
/// for it.
pub struct Harness {
    pub client: kube::Client,
    pub ctx: Arc<Clients>,
    pub runtime: Arc<Runtime>,
    pub migration: VSphereMigration,
    pub sources: Vec<SourceVCenter>,
    /// Longest sleep between calls while a phase waits (its own `after` is shortened to
    /// this: tests should not idle for a phase's production-sized waits).
    pub wait_cap: Duration,
    /// Calls after which `run` gives up (a phase that never finishes is a failing test,
    /// not a hang).
    pub max_calls: u32,
}

impl Harness {
    /// Create the migration `name` (replacing one of that name) with the target credentials
    /// and CA Secrets, and record its sources from the Infrastructure (seed it first).
    pub async fn new(env: &TestEnv, name: &str, spec: MigrationSpec) -> Result<Harness> {
        let sources = vsm_host::facts::discover_sources(&env.client(), &spec).await.map_err(anyhow::Error::msg)?;
        Self::with_sources(env, name, spec, sources).await
    }

    /// As [`Harness::new`], with the sources given (no Infrastructure needed).
    pub async fn with_sources(
        env: &TestEnv,
        name: &str,
        spec: MigrationSpec,
        sources: Vec<SourceVCenter>,
    ) -> Result<Harness> {
        let client = env.client();
        ensure_secrets(env, &client).await?;
        let api: Api<VSphereMigration> = Api::namespaced(client.clone(), NAMESPACE);
        if api.get_opt(name).await?.is_some() {
            // Drop the finalizer too: no operator runs here to remove it.
            let _ = api
                .patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
                .await;
            let _ = api.delete(name, &DeleteParams::default()).await;
            for _ in 0..600 {
                if api.get_opt(name).await?.is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let migration = api
            .create(&PostParams::default(), &VSphereMigration::new(name, VSphereMigrationSpec { spec }))
            .await
            .context("creating the migration")?;
        let vsphere = SessionPool::new(ClientOptions::default());
        let ctx = Clients::new(client.clone(), vsphere, "harness", vsm_host::leader::LeaderHandle::always());
        // Compiled components are cached beside the Go tools: test binaries start fast.
        let cache = crate::tools::cache_dir()?.with_file_name("wasm-cache");
        let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache), ..Default::default() })?;
        Ok(Harness { client, ctx, runtime, migration, sources, wait_cap: Duration::from_millis(200), max_calls: 3000 })
    }

    /// Load a phase component from `target/plugins` with what it declares granted.
    pub async fn phase(&self, component: &str) -> Result<LoadedPlugin> {
        let path = plugin_dir().join(format!("{component}.wasm"));
        let bytes = std::fs::read(&path).with_context(|| format!("{}: run `cargo xtask plugins`", path.display()))?;
        let entry = PluginEntry { grant_declared: true, ..Default::default() };
        Ok(self.runtime.load(component, &bytes, &entry, Limits::default()).await?)
    }

    /// The backends the next call would use (fresh per call, as in a reconcile; plan mode's
    /// with `dry_run`).
    pub fn backends(&self, dry_run: bool) -> MigrationBackends {
        MigrationBackends::new(&self.ctx, &self.migration, self.sources.clone(), dry_run)
    }

    fn context(&self, attempt: u32, dry_run: bool, started_at_ms: u64) -> CallContext {
        let spec_json = serde_json::to_string(&self.migration.spec.spec).expect("spec serializes");
        self.context_raw(spec_json, attempt, dry_run, started_at_ms)
    }

    fn context_raw(&self, spec_json: String, attempt: u32, dry_run: bool, started_at_ms: u64) -> CallContext {
        let spec = &self.migration.spec.spec;
        CallContext {
            migration: Migration {
                name: self.migration.metadata.name.clone().unwrap_or_default(),
                namespace: NAMESPACE.into(),
                uid: self.migration.metadata.uid.clone().unwrap_or_default(),
                spec_json,
                source_servers: self.sources.iter().map(|s| s.server.clone()).collect(),
                target_servers: spec.target_servers().into_iter().map(str::to_string).collect(),
            },
            attempt,
            dry_run,
            started_at_ms,
        }
    }

    fn servers(&self) -> Vec<String> {
        let mut all: Vec<String> = self.sources.iter().map(|s| s.server.clone()).collect();
        all.extend(self.migration.spec.spec.target_servers().into_iter().map(str::to_string));
        all
    }

    /// One call.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        direction: Direction,
        attempt: u32,
        dry_run: bool,
    ) -> Result<(CallReport, CallOutputs)> {
        let b = self.backends(dry_run);
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        let report = plugin
            .call(&plugin.info.name, b.backends, self.context(attempt, dry_run, started), direction, self.servers())
            .await?;
        Ok((report, b.outputs.take()))
    }

    /// One call with a spec JSON of the test's choosing (test components read orders there).
    pub async fn call_raw(
        &self,
        plugin: &LoadedPlugin,
        direction: Direction,
        spec_json: String,
        dry_run: bool,
    ) -> Result<(CallReport, CallOutputs)> {
        let b = self.backends(dry_run);
        let report = plugin
            .call(&plugin.info.name, b.backends, self.context_raw(spec_json, 1, dry_run, 0), direction, self.servers())
            .await?;
        Ok((report, b.outputs.take()))
    }

    /// A vSphere client for a server of the migration, resolved as the operator does.
    pub async fn vsphere(&self, server: &str) -> Result<Arc<vsm_vsphere::Client>> {
        let endpoints = vsm_host::backends::vcenter::Endpoints {
            client: self.client.clone(),
            spec: self.migration.spec.spec.clone(),
            migration_namespace: NAMESPACE.into(),
            sources: self.sources.clone(),
        };
        endpoints.client(&self.ctx.vsphere, server).await.map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// Call until the phase is done or fails, sleeping through its waits (capped).
    pub async fn run(&self, plugin: &LoadedPlugin, direction: Direction) -> Result<Run> {
        self.run_with(plugin, direction, false).await
    }

    /// [`Harness::run`] in plan mode.
    pub async fn plan(&self, plugin: &LoadedPlugin) -> Result<Run> {
        self.run_with(plugin, Direction::Execute, true).await
    }

    async fn run_with(&self, plugin: &LoadedPlugin, direction: Direction, dry_run: bool) -> Result<Run> {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        let mut reports = Vec::new();
        let mut outputs = CallOutputs::default();
        for attempt in 1..=self.max_calls {
            let b = self.backends(dry_run);
            let report = plugin
                .call(&plugin.info.name, b.backends, self.context(attempt, dry_run, started), direction, self.servers())
                .await?;
            let out = b.outputs.take();
            outputs.plan.extend(out.plan);
            outputs.backups.extend(out.backups);
            outputs.kube_requests += out.kube_requests;
            outputs.vsphere_calls += out.vsphere_calls;
            outputs.progress = out.progress.or(outputs.progress);
            let outcome = report.outcome.clone();
            reports.push(report);
            match outcome {
                Outcome::Wait(w) if !dry_run => {
                    tokio::time::sleep(Duration::from_millis(w.after_ms).min(self.wait_cap)).await
                }
                Outcome::Failed(ref f) if f.retryable && !dry_run => tokio::time::sleep(self.wait_cap).await,
                outcome => return Ok(Run { outcome, calls: attempt, reports, outputs }),
            }
        }
        bail!(
            "phase {} did not finish within {} calls; last: {:?}",
            plugin.info.name,
            self.max_calls,
            reports.last().map(|r| &r.outcome)
        )
    }
}

/// The Secrets every migration in the environment uses (created or updated).
pub async fn ensure_secrets(env: &TestEnv, client: &kube::Client) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let mut keys = serde_json::Map::new();
    for dst in env.targets() {
        keys.insert(format!("{}.username", dst.host()), json!(dst.username));
        keys.insert(format!("{}.password", dst.host()), json!(dst.password));
    }
    let creds = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": TARGET_CREDS}, "stringData": keys
    });
    let ca = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": VCENTER_CA}, "stringData": {"ca.crt": env.vcenter_ca_bundle_pem()}});
    let pp = PatchParams::apply("vsm-harness").force();
    secrets.patch(TARGET_CREDS, &pp, &Patch::Apply(creds)).await?;
    secrets.patch(VCENTER_CA, &pp, &Patch::Apply(ca)).await?;
    Ok(())
}

/// An observer that "crashes" the call at the n-th import: the import never returns and
/// the call is abandoned, exactly as if the operator died there. Imports before it happened.
/// Logs, Events and the clock do not count.
struct CrashAfter {
    remaining: std::sync::atomic::AtomicI64,
    crashed: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl ImportObserver for CrashAfter {
    async fn before(&self, _: &CallScope, import: &Import<'_>) {
        if matches!(import, Import::Event { .. }) {
            return;
        }
        if self.remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 1 {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl Harness {
    /// One call that crashes at its `n`-th import (1-based; logs and the clock do not
    /// count). Returns `None` if the call crashed, or its report if it finished first.
    pub async fn call_crashing(
        &self,
        plugin: &LoadedPlugin,
        direction: Direction,
        attempt: u32,
        n: u32,
    ) -> Result<Option<CallReport>> {
        let crashed = Arc::new(tokio::sync::Notify::new());
        let observer = Arc::new(CrashAfter { remaining: (n as i64).into(), crashed: crashed.clone() });
        let backends = self.backends(false).backends.observed(observer);
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        let call =
            plugin.call(&plugin.info.name, backends, self.context(attempt, false, started), direction, self.servers());
        tokio::select! {
            report = call => Ok(Some(report?)),
            _ = crashed.notified() => Ok(None),
        }
    }

    /// Crash a phase at every import in turn: before each crash `reset(n)` restores the
    /// starting state (e.g. by running the rollback), then the call crashes at import `n`,
    /// the phase is re-run to completion and `check(n)` verifies the converged state.
    /// Returns how many crash points were exercised: "a crash at any point, then a re-run
    /// converges".
    pub async fn crash_everywhere<R, RFut, F, Fut>(
        &self,
        plugin: &LoadedPlugin,
        direction: Direction,
        mut reset: R,
        mut check: F,
    ) -> Result<u32>
    where
        R: FnMut(u32) -> RFut,
        RFut: std::future::Future<Output = Result<()>>,
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut n = 1;
        loop {
            reset(n).await.with_context(|| format!("resetting before a crash at import {n}"))?;
            let crashed = self.call_crashing(plugin, direction, 1, n).await?.is_none();
            if !crashed {
                return Ok(n - 1);
            }
            let run = self.run(plugin, direction).await?;
            if !run.done() {
                bail!("after a crash at import {n}, the re-run did not finish: {:?}", run.outcome);
            }
            check(n).await.with_context(|| format!("state after a crash at import {n} and a re-run"))?;
            n += 1;
            if n > 500 {
                bail!("more than 500 imports in one call");
            }
        }
    }
}
