//! `cargo xtask demo`: a whole migration on the embedded test environment, shown live.
//!
//! Starts the real environment (etcd, kube-apiserver, two vcsim vCenters), seeds an
//! OpenShift-on-vSphere cluster on the source vCenter, runs the cluster simulator and the
//! operator with the shipped phase components, applies a migration and follows it: the
//! current phase, a progress bar, the phase's own message and the time per phase; then a
//! summary and where the report and the operator's logs are.
//!
//! With [`DemoOptions::zones`] the cluster is zonal: `n` failure domains (one compute
//! cluster each) in the source vCenter, a worker set per domain, an infra set with a taint,
//! a MachineAutoscaler and a MachineHealthCheck; source domain i moves to target domain i of
//! the target vCenter and the control plane spreads over the first three target domains.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::json;
use vsm_api::{Direction, MigrationStatus, PhaseResult, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::{Operator, OperatorConfig};
use vsm_host::runtime::config::{PluginConfig, PluginEntry};

use crate::harness::{NAMESPACE, ensure_secrets, plugin_dir, target_spec, zonal_spec_in_order};
use crate::sim::{SeedOptions, SeededCluster, SimOptions, Simulator, ZonalSeed, seed};
use crate::{TestEnv, TestEnvOptions, VcsimOptions};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub workers: u32,
    /// A zonal cluster of this many failure domains (1 to 6); `None`: the classic single
    /// failure domain.
    pub zones: Option<u32>,
    /// Stop before every phase until approved (Enter, or `kubectl vsm approve`).
    pub manual: bool,
    /// Plan mode: print the intended changes, change nothing.
    pub plan: bool,
    /// Leave everything running afterwards, until Ctrl-C.
    pub keep: bool,
    pub sim: SimOptions,
    /// Where the report and logs go.
    pub out_dir: PathBuf,
    /// Draw a live view (a terminal); otherwise print one line per change.
    pub live: bool,
    /// Print nothing while running (tests, benchmarks).
    pub quiet: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            workers: 3,
            zones: None,
            manual: false,
            plan: false,
            keep: false,
            sim: SimOptions::realistic(),
            out_dir: PathBuf::from("target/demo"),
            live: std::io::stdout().is_terminal(),
            quiet: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseLine {
    pub phase: String,
    pub direction: String,
    pub result: String,
    pub seconds: f64,
    pub attempts: u32,
    pub message: String,
}

/// What a demo run did, also written to `<out_dir>/report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub result: String,
    pub wall_seconds: f64,
    /// Time the simulated controllers spent in their configured delays (the cluster's own
    /// slowness); wall time minus this is the operator's and the real machine-api's time.
    pub simulated_delay_seconds: f64,
    /// The machine-api-operator version whose controllers made and removed the machines.
    pub machine_api_version: String,
    pub phases: Vec<PhaseLine>,
    pub kubernetes_objects_changed: Vec<String>,
    pub vsphere_objects_created: Vec<String>,
    pub vms_before: BTreeMap<String, usize>,
    pub vms_after: BTreeMap<String, usize>,
    /// Machines per failure domain (by where their VM runs), before and after.
    pub machines_by_domain_before: BTreeMap<String, usize>,
    pub machines_by_domain_after: BTreeMap<String, usize>,
    pub kube_requests_by_phase: BTreeMap<String, u64>,
    pub vsphere_calls_by_phase: BTreeMap<String, u64>,
    pub plan: Vec<String>,
    pub report_path: PathBuf,
    pub log_path: PathBuf,
}

const MIGRATION: &str = "demo";

/// Counts VMs per vCenter in the cluster's folders.
async fn vm_counts(env: &TestEnv, seeded: &SeededCluster) -> Result<BTreeMap<String, usize>> {
    use vsm_vsphere::{ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy};
    let pool = SessionPool::new(ClientOptions::default());
    let mut out = BTreeMap::new();
    for seeded_vc in seeded.source_vcenters.iter().chain(&seeded.target_vcenters) {
        let vc = env.vcenter(&seeded_vc.host).context("a seeded vCenter the environment runs")?;
        let spec = ServerSpec {
            server: vc.server(),
            credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
            tls: TlsPolicy { ca_bundle_pem: Some(env.vcenter_ca_bundle_pem()), ..Default::default() },
        };
        let client = pool.client(&spec).await?;
        let folder = format!("/{}/vm/{}", seeded_vc.datacenter, seeded.infra_id);
        let vms = match client.list_vms(&folder).await {
            Ok(vms) => vms.into_iter().filter(|v| !v.template).count(),
            Err(vsm_vsphere::VsphereError::NotFound { .. }) => 0,
            Err(e) => return Err(e.into()),
        };
        out.insert(format!("{} ({})", vc.name, vc.host()), vms);
    }
    pool.shutdown().await;
    Ok(out)
}

/// Counts the cluster's Machines per failure domain (source or target) by the vCenter and
/// compute cluster their VM runs in.
async fn machines_by_domain(env: &TestEnv, seeded: &SeededCluster) -> Result<BTreeMap<String, usize>> {
    let machines: Vec<String> = crate::sim::objects::machines_api(&env.client())
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(kube::ResourceExt::name_any)
        .collect();
    let mut out = BTreeMap::new();
    for (_, vc) in env.vcenters() {
        for vm in vc.guest_vms().await?.into_iter().filter(|vm| machines.contains(&vm.name)) {
            let domain = seeded
                .failure_domains
                .iter()
                .chain(&seeded.target_failure_domains)
                .find(|fd| fd.server == vc.host() && vm.compute_cluster.as_deref() == Some(fd.compute_cluster.as_str()))
                .map_or_else(|| format!("{} (no failure domain)", vc.host()), |fd| fd.name.clone());
            *out.entry(domain).or_default() += 1;
        }
    }
    Ok(out)
}

fn bar(percent: u8, width: usize) -> String {
    let filled = (percent as usize * width) / 100;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Renders the migration as it goes.
struct View {
    live: bool,
    quiet: bool,
    started: Instant,
    last_line: String,
    drawn: usize,
}

impl View {
    fn show(&mut self, status: &MigrationStatus) {
        if self.quiet {
            return;
        }
        let elapsed = self.started.elapsed().as_secs();
        let mut lines = Vec::new();
        for h in &status.history {
            let dir = if h.direction == Direction::Rollback { " (undo)" } else { "" };
            let secs = h.finished_at.seconds_since(h.started_at);
            let mark = if h.result == PhaseResult::Failed { "✗" } else { "✓" };
            lines.push(format!("  {mark} {:<22}{dir:<7} {:>4}s  {}", h.phase, secs, truncate(&h.message, 70)));
        }
        if let Some(cur) = &status.current {
            let dir = if cur.direction == Direction::Rollback { " (undo)" } else { "" };
            lines.push(format!(
                "  ▶ {:<22}{dir:<7} {} {:>3}%  {}",
                cur.name,
                bar(cur.progress, 24),
                cur.progress,
                truncate(&cur.message, 60)
            ));
        }
        let head = format!(
            "vsphere-migration demo — {}  progress {}  elapsed {}m{:02}s",
            status.phase.as_ref().map_or("starting", Stage::as_str),
            status.progress.clone().unwrap_or_default(),
            elapsed / 60,
            elapsed % 60
        );
        if self.live {
            let mut out = std::io::stdout().lock();
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for line in std::iter::once(&head).chain(lines.iter()) {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            let _ = out.flush();
            self.drawn = lines.len() + 1;
        } else {
            let line = lines.last().cloned().unwrap_or_default();
            if line != self.last_line {
                println!("[{:>4}s] {}", elapsed, line.trim());
                self.last_line = line;
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

fn parse_metric(text: &str, name: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some(phase) = line.split("phase=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_default();
        *out.entry(phase.to_string()).or_default() += value as u64;
    }
    out
}

/// Write operator logs to a file for the demo (the terminal shows the live view).
pub fn log_to_file(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let file = std::fs::File::create(path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// Run the demo. The environment stays up while `keep` holds, until Ctrl-C.
/// Seeding is idempotent (a second seed writes nothing), so a request the API server dropped
/// before answering (a connection closed under load, as when the demo's first run builds
/// the components beside it) is retried by seeding again; any other error is not.
async fn seed_retrying(env: &TestEnv, opts: &SeedOptions) -> Result<SeededCluster> {
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match seed(env, opts).await {
            Ok(seeded) => return Ok(seeded),
            Err(e) if attempt < ATTEMPTS && dropped_request(&e) => {
                eprintln!("seeding again: a request was dropped ({e:#})");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the client's request never got an answer (the transport failed), as opposed to
/// an answer the API server gave.
fn dropped_request(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Service(_) | kube::Error::HyperError(_))))
}

pub async fn run(opts: DemoOptions) -> Result<DemoReport> {
    let say = |s: &str| {
        if !opts.quiet {
            println!("{s}");
        }
    };
    std::fs::create_dir_all(&opts.out_dir)?;
    let out_dir = std::fs::canonicalize(&opts.out_dir)?;
    let log_path = out_dir.join("operator.log");
    say("starting etcd, kube-apiserver, two vCenter simulators and OpenShift's machine-api…");
    let (env, seeded) = match opts.zones {
        None => {
            let env = TestEnv::start_with_machine_api().await?;
            say(&format!(
                "seeding an OpenShift cluster with 3 masters and {} workers on the source vCenter…",
                opts.workers
            ));
            let seeded = seed_retrying(&env, &SeedOptions { workers: opts.workers, ..Default::default() }).await?;
            (env, seeded)
        }
        Some(n) => {
            if !(1..=6).contains(&n) {
                bail!("--zones {n}: a zonal demo has 1 to 6 failure domains");
            }
            let env = TestEnv::start(TestEnvOptions {
                source: VcsimOptions::zonal_source(n),
                target: VcsimOptions::zonal_target(n),
                machine_api: true,
                ..Default::default()
            })
            .await?;
            say(&format!(
                "seeding a zonal OpenShift cluster over {n} failure domains: 3 masters, {} workers, 1 infra machine, \
                 a MachineAutoscaler and a MachineHealthCheck…",
                opts.workers
            ));
            let seed_opts = SeedOptions {
                workers: opts.workers,
                zonal: Some(ZonalSeed::full()),
                infra_machines: Some(1),
                static_ip_workers: false,
                ..Default::default()
            };
            let seeded = seed_retrying(&env, &seed_opts).await?;
            (env, seeded)
        }
    };
    ensure_secrets(&env, &env.client()).await?;
    let vms_before = vm_counts(&env, &seeded).await?;
    let machines_by_domain_before = machines_by_domain(&env, &seeded).await?;
    let sim = Simulator::start(&env, opts.sim.clone());

    let plugins = plugin_dir();
    let mut plugin_config = PluginConfig::default();
    for entry in
        std::fs::read_dir(&plugins).with_context(|| format!("{}: run `cargo xtask plugins`", plugins.display()))?
    {
        let path = entry?.path();
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            plugin_config.plugins.insert(stem.to_string(), PluginEntry { grant_declared: true, ..Default::default() });
        }
    }
    let operator = Operator::start(
        env.client(),
        OperatorConfig {
            plugin_dir: plugins,
            plugin_config,
            cache_dir: Some(crate::tools::cache_dir()?.with_file_name("wasm-cache")),
            namespace: None,
            leader: None,
            listen: Some("127.0.0.1:0".parse()?),
            identity: "demo".into(),
            watch_plugins: true,
            vsphere: Default::default(),
        },
    )
    .await?;
    let missing: Vec<String> = operator.registry.status().iter().filter_map(|s| s.error.clone()).collect();
    if !missing.is_empty() {
        bail!("plugins rejected: {}", missing.join("; "));
    }

    let mut spec = match opts.zones {
        None => target_spec(&env),
        Some(_) => zonal_spec_in_order(&env, &seeded),
    };
    // A short stability window after the control-plane rollout: the simulated control plane
    // does not regress, and a demo should not sit still for the production default.
    spec.health.stability_window = Some("15s".into());
    spec.mode = if opts.plan { vsm_api::Mode::Plan } else { vsm_api::Mode::Apply };
    spec.approval_mode = if opts.manual { vsm_api::ApprovalMode::Manual } else { vsm_api::ApprovalMode::Automatic };
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    api.create(&PostParams::default(), &VSphereMigration::new(MIGRATION, VSphereMigrationSpec { spec })).await?;
    say(&format!(
        "migration {NAMESPACE}/{MIGRATION} created: {} → {}{}\n",
        env.source().host(),
        env.target().host(),
        if opts.plan { " (plan mode: nothing will change)" } else { "" }
    ));

    let started = Instant::now();
    let mut view = View { live: opts.live, quiet: opts.quiet, started, last_line: String::new(), drawn: 0 };
    let (approve_tx, mut approve_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut asked: Option<String> = None;
    let status = loop {
        let m = api.get(MIGRATION).await?;
        let status = m.status.clone().unwrap_or_default();
        view.show(&status);
        if status.finished_at.is_some() {
            break status;
        }
        if opts.manual
            && let Some(c) = status.condition("AwaitingApproval").filter(|c| c.status == "True")
        {
            let phase = status.phase.as_ref().map(Stage::to_string).unwrap_or_default();
            if asked.as_deref() != Some(&phase) {
                asked = Some(phase.clone());
                if !opts.quiet {
                    println!("\n{}\n  press Enter to approve {phase}", c.message);
                }
                let tx = approve_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let mut line = String::new();
                    if std::io::stdin().read_line(&mut line).is_ok() {
                        let _ = tx.send(());
                    }
                });
                view.drawn = 0;
            }
            if approve_rx.try_recv().is_ok() {
                let mut approvals = m.spec.approvals.clone();
                approvals.push(phase);
                api.patch(
                    MIGRATION,
                    &PatchParams { field_manager: Some("vsm-demo".into()), ..Default::default() },
                    &Patch::Merge(json!({"spec": {"approvals": approvals}})),
                )
                .await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed();

    let vms_after = vm_counts(&env, &seeded).await?;
    let machines_by_domain_after = machines_by_domain(&env, &seeded).await?;
    let metrics =
        reqwest::get(format!("http://{}/metrics", operator.addr.context("no metrics endpoint")?)).await?.text().await?;
    let stats = sim.stats();
    let phases = status
        .history
        .iter()
        .map(|h| PhaseLine {
            phase: h.phase.clone(),
            direction: format!("{:?}", h.direction),
            result: format!("{:?}", h.result),
            seconds: h.finished_at.seconds_since(h.started_at) as f64,
            attempts: h.attempts,
            message: h.message.clone(),
        })
        .collect();
    let (kube_changed, vsphere_created): (Vec<String>, Vec<String>) = status
        .backups
        .iter()
        .filter(|b| b.kind == "journal")
        .map(|b| format!("{} (by {})", b.subject, b.phase))
        .partition(|s| !s.starts_with("vCenter "));
    let plan = status
        .plan
        .iter()
        .flat_map(|p| p.changes.iter().map(move |c| format!("{}: {} {} {}", p.phase, c.system, c.action, c.target)))
        .collect();
    let report_path = out_dir.join("report.json");
    let report = DemoReport {
        result: status.phase.as_ref().map(Stage::to_string).unwrap_or_default(),
        wall_seconds: wall.as_secs_f64(),
        simulated_delay_seconds: stats.delay_wall.as_secs_f64(),
        machine_api_version: env.machine_api().map(|m| m.version().to_string()).unwrap_or_default(),
        phases,
        kubernetes_objects_changed: kube_changed,
        vsphere_objects_created: vsphere_created,
        vms_before,
        vms_after,
        machines_by_domain_before,
        machines_by_domain_after,
        kube_requests_by_phase: parse_metric(&metrics, "vsm_kube_requests_total"),
        vsphere_calls_by_phase: parse_metric(&metrics, "vsm_vsphere_calls_total"),
        plan,
        report_path: report_path.clone(),
        log_path: log_path.clone(),
    };
    std::fs::write(&report_path, serde_json::to_string_pretty(&json!({"report": &report, "status": &status}))?)?;
    if !opts.quiet {
        print_summary(&report);
    }

    if opts.keep {
        println!("\nleft running for exploration (Ctrl-C to stop):");
        println!("  export KUBECONFIG={}", env.kubeconfig_path().display());
        println!("  kubectl -n {NAMESPACE} get vsm {MIGRATION} -o yaml");
        for (_, vc) in env.vcenters() {
            println!("  vCenter {}: {} user {} (CA {})", vc.name, vc.url, vc.username, env.ca_path().display());
        }
        tokio::signal::ctrl_c().await?;
    }
    operator.stop().await;
    sim.stop().await;
    drop(env);
    Ok(report)
}

fn print_summary(r: &DemoReport) {
    println!("\n== {} in {:.1}s ==", r.result, r.wall_seconds);
    println!("machines made and removed by OpenShift's machine-api-operator {}", r.machine_api_version);
    println!("{:<22} {:<9} {:<10} {:>8} {:>6}", "phase", "direction", "result", "seconds", "calls");
    for p in &r.phases {
        println!("{:<22} {:<9} {:<10} {:>8.1} {:>6}", p.phase, p.direction, p.result, p.seconds, p.attempts);
    }
    if !r.plan.is_empty() {
        println!("\nintended changes (plan mode; nothing was changed):");
        for c in &r.plan {
            println!("  {c}");
        }
    }
    println!("\nKubernetes objects changed ({}):", r.kubernetes_objects_changed.len());
    for o in &r.kubernetes_objects_changed {
        println!("  {o}");
    }
    println!("vSphere objects created ({}):", r.vsphere_objects_created.len());
    for o in &r.vsphere_objects_created {
        println!("  {o}");
    }
    println!("VMs per vCenter (cluster folder): before {:?}, after {:?}", r.vms_before, r.vms_after);
    println!(
        "machines per failure domain: before {:?}, after {:?}",
        r.machines_by_domain_before, r.machines_by_domain_after
    );
    let overhead = r.wall_seconds - r.simulated_delay_seconds;
    println!("simulated cluster delays {:.1}s; operator and API time {overhead:.1}s", r.simulated_delay_seconds);
    println!("\nreport: {}\nlogs:   {}", r.report_path.display(), r.log_path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_without_an_answer_is_retried() {
        let dropped = anyhow::Error::new(kube::Error::Service(Box::new(std::io::Error::other("connection closed"))))
            .context("seeding the cloud config");
        assert!(dropped_request(&dropped));
        let status = kube::core::Status::failure("refused", "Invalid").with_code(422);
        let answered = anyhow::Error::new(kube::Error::Api(Box::new(status)));
        assert!(!dropped_request(&answered));
        assert!(!dropped_request(&anyhow::anyhow!("no kube error at all")));
    }
}
