//! `cargo xtask bench`: the numbers of docs/BENCHMARKS.md, measured the same way every time.
//!
//! 1. Micro-benchmarks (criterion): `cargo bench -p vsm-host --bench runtime` (part
//!    `runtime`) and `cargo bench -p vsm-phase-bench --bench phases` (part `phases`), in one
//!    cargo invocation; the criterion estimates are collected into
//!    `target/bench/runtime.json`, the phases bench writes `target/bench/phases.json`.
//! 2. Whole-system figures on the real test environment (etcd, kube-apiserver, two vcsim),
//!    the seeded cluster and its simulator, with the release `vsm-operator` as a separate
//!    process (measured from `/proc/<pid>/status` and `/proc/<pid>/stat`, and its
//!    `/metrics`):
//!    - `footprint`: start-up to `/readyz` with a cold (empty) and a warm component cache,
//!      idle RSS with the 16 components loaded, watching a seeded cluster;
//!    - `overhead`: full migrations with the simulator's delays at zero and at realistic
//!      values; overhead = wall time − the time during which at least one simulated delay
//!      was running (the simulator's `delay_wall`);
//!    - `scale`: full migrations with N workers (instant simulator);
//!    - `reconcile`: reconciles per migration, by trigger (from the same migrations);
//!    - `zonal`: a zonal migration (three source failure domains onto three target domains,
//!      the control plane over the three, an autoscaler and a health check) next to the
//!      single-domain one, same machines (3 workers, 1 infra), instant simulator, one run
//!      each in one sitting.
//!
//! Everything goes to `target/bench/*.json` and a summary table on stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use vsm_api::MigrationSpec;
use vsm_api::{Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, plugin_dir, target_spec, zonal_spec_in_order};
use vsm_testenv::process::{Process, free_port};
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimOptions, Simulator, ZonalSeed, seed};
use vsm_testenv::{TestEnv, TestEnvOptions, VcsimOptions};

use crate::{cargo, root, run};

pub const PARTS: &[&str] = &["runtime", "phases", "footprint", "overhead", "scale", "reconcile", "zonal"];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub quick: bool,
    pub only: Vec<String>,
    pub workers: Vec<u32>,
    /// Repetitions of the start-up measurements (cold and warm each).
    pub starts: usize,
    /// Repetitions of each overhead migration (instant and realistic).
    pub runs: usize,
}

impl BenchOptions {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target")).join("bench")
}

fn write_json(name: &str, v: &Value) -> Result<PathBuf> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(v)?)?;
    println!("[bench] wrote {}", path.display());
    Ok(path)
}

pub fn run_bench(opts: BenchOptions) -> Result<()> {
    for p in &opts.only {
        if !PARTS.contains(&p.as_str()) {
            bail!("unknown part {p}; the parts are {}", PARTS.join(", "));
        }
    }
    let started = Instant::now();
    write_json("machine.json", &machine(&opts))?;
    let needs_plugins = PARTS.iter().any(|p| *p != "runtime" && opts.wants(p));
    if needs_plugins || opts.wants("runtime") {
        crate::plugins::build_all()?;
    }
    let mut summary = Vec::new();
    if opts.wants("runtime") || opts.wants("phases") {
        summary.extend(micro(&opts)?);
    }
    let system: Vec<&str> =
        ["footprint", "overhead", "scale", "reconcile", "zonal"].into_iter().filter(|p| opts.wants(p)).collect();
    if !system.is_empty() {
        vsm_testenv::tools::ensure_built()?;
        // `VSM_OPERATOR_BIN` names a release operator built beforehand (skips the build).
        if std::env::var_os("VSM_OPERATOR_BIN").is_none() {
            run(cargo().args(["build", "--release", "-p", "vsm-host", "--bin", "vsm-operator"]))?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        summary.extend(rt.block_on(whole_system(&opts))?);
    }
    println!("\n==================== cargo xtask bench: summary ====================");
    for line in &summary {
        println!("{line}");
    }
    println!("(total {:.0} s; JSON in {})", started.elapsed().as_secs_f64(), out_dir().display());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Machine description
// ---------------------------------------------------------------------------------------

fn first_line_with(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(opts: &BenchOptions) -> Value {
    json!({
        "date": command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": first_line_with("/proc/cpuinfo", "model name"),
        "memory": first_line_with("/proc/meminfo", "MemTotal"),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "os": std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())),
        "rustc": command_output("rustc", &["--version"]),
        "load_average_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "git": command_output("git", &["-C", &root().to_string_lossy(), "rev-parse", "--short", "HEAD"]),
        "options": format!("{opts:?}"),
    })
}

// ---------------------------------------------------------------------------------------
// 1. criterion benches
// ---------------------------------------------------------------------------------------

fn micro(opts: &BenchOptions) -> Result<Vec<String>> {
    let mut cmd = cargo();
    cmd.arg("bench");
    if opts.wants("runtime") {
        cmd.args(["-p", "vsm-host", "--bench", "runtime"]);
    }
    if opts.wants("phases") {
        cmd.args(["-p", "vsm-phase-bench", "--bench", "phases"]);
    }
    if opts.quick {
        cmd.env("VSM_BENCH_SAMPLES", "300").env("VSM_BENCH_CRITERION", "0").args(["--", "--quick"]);
    }
    run(&mut cmd)?;
    let mut lines = Vec::new();
    if opts.wants("runtime") {
        let estimates = criterion_estimates(&root().join("target/criterion"))?;
        write_json("runtime.json", &json!({ "criterion": estimates }))?;
        lines.push("-- runtime (criterion median, 95 % CI of the median) --".to_string());
        for (name, e) in &estimates {
            lines.push(format!(
                "{:<70} {:>12} [{} .. {}]",
                name,
                fmt_ns(e["median_ns"].as_f64().unwrap_or(0.0)),
                fmt_ns(e["median_lower_ns"].as_f64().unwrap_or(0.0)),
                fmt_ns(e["median_upper_ns"].as_f64().unwrap_or(0.0)),
            ));
        }
    }
    if opts.wants("phases") {
        let path = out_dir().join("phases.json");
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)?;
        lines.push("-- phases: one execute on a fresh fixture (µs) --".to_string());
        lines.push(format!(
            "{:<22} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "phase", "imports", "wasm p50", "wasm p99", "nat p50", "nat p99", "ratio"
        ));
        for r in v["phases"].as_array().into_iter().flatten() {
            lines.push(format!(
                "{:<22} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>6.1}×",
                r["component"].as_str().unwrap_or(""),
                r["imports"],
                r["wasm_p50_us"].as_f64().unwrap_or(0.0),
                r["wasm_p99_us"].as_f64().unwrap_or(0.0),
                r["native_p50_us"].as_f64().unwrap_or(0.0),
                r["native_p99_us"].as_f64().unwrap_or(0.0),
                r["ratio_p50"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    Ok(lines)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// `target/criterion/<group>/<bench>/new/estimates.json` of the runtime bench's groups.
fn criterion_estimates(dir: &Path) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for group in ["runtime", "load component (incl. validation call)"] {
        let gdir = dir.join(group);
        let Ok(entries) = std::fs::read_dir(&gdir) else { continue };
        for entry in entries.flatten() {
            let est = entry.path().join("new/estimates.json");
            let bench = entry.path().join("new/benchmark.json");
            let (Ok(est), Ok(bench)) = (std::fs::read_to_string(&est), std::fs::read_to_string(&bench)) else {
                continue;
            };
            let est: Value = serde_json::from_str(&est)?;
            let bench: Value = serde_json::from_str(&bench)?;
            let name = bench["full_id"].as_str().unwrap_or_default().to_string();
            out.insert(
                name,
                json!({
                    "median_ns": est["median"]["point_estimate"],
                    "median_lower_ns": est["median"]["confidence_interval"]["lower_bound"],
                    "median_upper_ns": est["median"]["confidence_interval"]["upper_bound"],
                    "mean_ns": est["mean"]["point_estimate"],
                    "std_dev_ns": est["std_dev"]["point_estimate"],
                    "median_abs_dev_ns": est["median_abs_dev"]["point_estimate"],
                }),
            );
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The operator as a process, measured from /proc
// ---------------------------------------------------------------------------------------

fn operator_bin() -> PathBuf {
    std::env::var_os("VSM_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/vsm-operator"))
}

/// kB value of a `/proc/<pid>/status` line (VmRSS, VmHWM), in MiB.
fn status_mib(pid: u32, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

struct OperatorProc {
    process: Process,
    pid: u32,
    addr: String,
    spawned: Instant,
    http: reqwest::Client,
}

/// The seeded cluster of a run.
#[derive(Clone, Copy, Debug)]
struct Cluster {
    workers: u32,
    /// Machines of an infra MachineSet.
    infra: Option<u32>,
    /// A zonal cluster over this many failure domains (one compute cluster each, in the
    /// source and in the target vCenter), with an autoscaler and a health check; source
    /// domain i moves to target domain i, the control plane over the first three.
    zones: Option<u32>,
}

impl Cluster {
    fn workers(workers: u32) -> Cluster {
        Cluster { workers, infra: None, zones: None }
    }

    fn env_options(self) -> TestEnvOptions {
        let mut opts = TestEnvOptions { machine_api: true, ..Default::default() };
        if let Some(n) = self.zones {
            opts.source = VcsimOptions::zonal_source(n);
            opts.target = VcsimOptions::zonal_target(n);
        }
        opts
    }

    fn seed_options(self) -> SeedOptions {
        SeedOptions {
            workers: self.workers,
            infra_machines: self.infra,
            zonal: self.zones.map(|_| ZonalSeed::full()),
            static_ip_workers: self.zones.is_none() && SeedOptions::default().static_ip_workers,
            ..Default::default()
        }
    }

    fn spec(self, env: &TestEnv, seeded: &SeededCluster) -> MigrationSpec {
        match self.zones {
            None => target_spec(env),
            Some(_) => zonal_spec_in_order(env, seeded),
        }
    }
}

struct Lab {
    env: TestEnv,
    dir: PathBuf,
    plugin_config: PathBuf,
}

impl Lab {
    async fn start(name: &str, cluster: Cluster) -> Result<(Lab, SeededCluster)> {
        let dir = out_dir().join("runs").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let env = TestEnv::start(cluster.env_options()).await.context("starting the test environment")?;
        let seeded = seed(&env, &cluster.seed_options()).await.context("seeding")?;
        ensure_secrets(&env, &env.client()).await?;
        let mut plugins = serde_json::Map::new();
        for entry in std::fs::read_dir(plugin_dir())? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let stem = path.file_stem().context("name")?.to_string_lossy().to_string();
                plugins.insert(stem, json!({"grantDeclared": true}));
            }
        }
        if plugins.len() != 16 {
            bail!(
                "{} components in {} (expected 16): run `cargo xtask plugins`",
                plugins.len(),
                plugin_dir().display()
            );
        }
        let plugin_config = dir.join("plugin-config.yaml");
        std::fs::write(&plugin_config, serde_yaml::to_string(&json!({ "plugins": plugins }))?)?;
        Ok((Lab { env, dir, plugin_config }, seeded))
    }

    async fn operator(&self, tag: &str, cache: &Path) -> Result<OperatorProc> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let args: Vec<String> = vec![
            "run".into(),
            format!("--kubeconfig={}", self.env.kubeconfig_path().display()),
            format!("--plugin-dir={}", plugin_dir().display()),
            format!("--plugin-config={}", self.plugin_config.display()),
            format!("--cache-dir={}", cache.display()),
            format!("--listen={addr}"),
            format!("--identity=bench-{tag}"),
            "--log-format=json".into(),
        ];
        let rust_log = std::ffi::OsString::from("info");
        let spawned = Instant::now();
        let process = Process::spawn(
            &format!("vsm-operator {tag}"),
            &operator_bin(),
            &args,
            &[("RUST_LOG", rust_log.as_os_str())],
            &self.dir.join(format!("operator-{tag}.log")),
            false,
        )?;
        let pid = process.pid();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(OperatorProc { process, pid, addr, spawned, http })
    }
}

impl OperatorProc {
    /// Time from spawn to the first 200 on /readyz (polled every 5 ms).
    async fn ready(&self) -> Result<Duration> {
        let url = format!("http://{}/readyz", self.addr);
        loop {
            self.process.check_running()?;
            if self.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(self.spawned.elapsed());
            }
            if self.spawned.elapsed() > Duration::from_secs(300) {
                bail!("operator not ready after 300 s; log tail:\n{}", self.process.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metrics(&self) -> Result<Metrics> {
        let text = self.http.get(format!("http://{}/metrics", self.addr)).send().await?.text().await?;
        Ok(Metrics::parse(&text))
    }

    fn rss(&self) -> f64 {
        status_mib(self.pid, "VmRSS:").unwrap_or(f64::NAN)
    }

    fn hwm(&self) -> f64 {
        status_mib(self.pid, "VmHWM:").unwrap_or(f64::NAN)
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }
}

/// Prometheus text, as (name, labels) → value.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split("\",") {
                        if let Some((k, v)) = pair.split_once("=\"") {
                            labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                        }
                    }
                    (n.to_string(), labels)
                }
                None => (key.to_string(), BTreeMap::new()),
            };
            out.push((name, labels, value));
        }
        Metrics(out)
    }

    /// Sum of `name` grouped by the value of `label` ("" for all).
    fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.0 {
            if n == name {
                let k = labels.get(label).cloned().unwrap_or_default();
                *out.entry(k).or_insert(0.0) += v;
            }
        }
        out
    }

    fn total(&self, name: &str) -> f64 {
        self.by(name, "").values().sum()
    }
}

fn stats(xs: &[f64]) -> Value {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return json!({"n": 0});
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    json!({"n": v.len(), "median": median, "min": v[0], "max": v[v.len() - 1], "p10": q(0.1), "p90": q(0.9)})
}

fn med(v: &Value) -> f64 {
    v["median"].as_f64().unwrap_or(f64::NAN)
}

fn spread(v: &Value) -> String {
    format!(
        "{:.3} [{:.3} .. {:.3}] n={}",
        med(v),
        v["min"].as_f64().unwrap_or(f64::NAN),
        v["max"].as_f64().unwrap_or(f64::NAN),
        v["n"]
    )
}

// ---------------------------------------------------------------------------------------
// 2. Whole-system figures
// ---------------------------------------------------------------------------------------

async fn whole_system(opts: &BenchOptions) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if opts.wants("footprint") {
        lines.extend(footprint(opts).await?);
    }
    let mut runs: Vec<Value> = Vec::new();
    if opts.wants("overhead") || opts.wants("reconcile") {
        let mut rows = Vec::new();
        for i in 0..opts.runs {
            for (label, sim) in [("instant", SimOptions::instant()), ("realistic", SimOptions::realistic())] {
                let r = migration(&format!("overhead-{label}-{i}"), Cluster::workers(3), label, sim).await?;
                rows.push(r);
            }
        }
        let summary = overhead_summary(&rows);
        write_json("overhead.json", &json!({"runs": rows, "summary": summary}))?;
        lines.extend(overhead_lines(&rows, &summary));
        runs.extend(rows);
    }
    if opts.wants("scale") {
        let mut rows = Vec::new();
        for &n in &opts.workers {
            let r = migration(&format!("scale-{n}"), Cluster::workers(n), "instant", SimOptions::instant()).await?;
            rows.push(r.clone());
            // Written after every N, so a long run leaves its figures behind even if stopped.
            write_json("scale.json", &json!({ "runs": rows }))?;
        }
        let growth = growth(&rows);
        write_json("scale.json", &json!({"runs": rows, "growth": growth}))?;
        lines.extend(scale_lines(&rows, &growth));
        runs.extend(rows);
    }
    if opts.wants("zonal") {
        let mut rows = Vec::new();
        for (label, zones) in [("single-domain", None), ("zonal-3", Some(3))] {
            let cluster = Cluster { workers: 3, infra: Some(1), zones };
            rows.push(migration(&format!("zonal-{label}"), cluster, "instant", SimOptions::instant()).await?);
        }
        write_json("zonal.json", &json!({ "runs": rows }))?;
        lines.extend(zonal_lines(&rows));
        runs.extend(rows);
    }
    if opts.wants("reconcile") || opts.wants("scale") || opts.wants("overhead") || opts.wants("zonal") {
        write_json("reconcile.json", &json!({ "runs": runs.iter().map(reconcile_row).collect::<Vec<_>>() }))?;
        lines.push("-- reconciles per migration --".into());
        lines.push(format!(
            "{:<22} {:>6} {:>10} {:>8} {:>8} {:>8} {:>12}",
            "run", "N", "reconciles", "event", "timer", "calls", "event share"
        ));
        for r in &runs {
            let rr = reconcile_row(r);
            lines.push(format!(
                "{:<22} {:>6} {:>10} {:>8} {:>8} {:>8} {:>11.0}%",
                rr["run"].as_str().unwrap_or(""),
                rr["workers"],
                rr["reconciles"],
                rr["event"],
                rr["timer"],
                rr["plugin_calls"],
                rr["event_share"].as_f64().unwrap_or(0.0) * 100.0
            ));
        }
    }
    Ok(lines)
}

fn reconcile_row(r: &Value) -> Value {
    let triggers = &r["reconcile_triggers"];
    let event = triggers["event"].as_f64().unwrap_or(0.0);
    let timer = triggers["timer"].as_f64().unwrap_or(0.0);
    json!({
        "run": r["name"], "workers": r["workers"], "sim": r["sim"],
        "reconciles": r["reconciles_total"], "by_result": r["reconciles_by_result"],
        "event": event, "timer": timer, "plugin_calls": r["plugin_calls_total"],
        "event_share": if event + timer > 0.0 { event / (event + timer) } else { 0.0 },
    })
}

/// Start-up to ready with a cold and a warm component cache, and idle RSS, watching a
/// seeded cluster (3 workers; no migration, no simulator).
async fn footprint(opts: &BenchOptions) -> Result<Vec<String>> {
    println!("[bench] footprint: environment and a seeded cluster (3 workers)…");
    let (lab, _seeded) = Lab::start("footprint", Cluster::workers(3)).await?;
    let idle_wait = if opts.quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let (mut cold, mut warm, mut idle, mut hwm, mut idle_cpu) = (vec![], vec![], vec![], vec![], vec![]);
    let mut idle_cold = vec![];
    let mut samples = Vec::new();
    for i in 0..opts.starts {
        let cache = lab.dir.join(format!("cache-{i}"));
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache)?;
        for (kind, list) in [("cold", &mut cold), ("warm", &mut warm)] {
            let op = lab.operator(&format!("{kind}-{i}"), &cache).await?;
            let ready = op.ready().await?.as_secs_f64();
            list.push(ready);
            let rss_ready = op.rss();
            // Idle: settle, then the median of VmRSS sampled every 100 ms for 2 s.
            tokio::time::sleep(idle_wait).await;
            let cpu0 = op.cpu();
            let mut rs = Vec::new();
            for _ in 0..20 {
                rs.push(op.rss());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let cpu_rate = (op.cpu() - cpu0) / 2.0;
            let idle_rss = med(&stats(&rs));
            let m = op.metrics().await?;
            let loaded = m.total("vsm_plugins_loaded");
            if loaded != 16.0 {
                bail!("{loaded} plugins loaded (expected 16)");
            }
            if kind == "warm" {
                idle.push(idle_rss);
                hwm.push(op.hwm());
                idle_cpu.push(cpu_rate);
            } else {
                idle_cold.push(idle_rss);
            }
            samples.push(json!({
                "start": i, "cache": kind, "ready_s": ready, "rss_at_ready_mib": rss_ready,
                "idle_rss_mib": idle_rss, "hwm_mib": op.hwm(), "idle_cpu_share": cpu_rate,
                "api_requests": m.total("vsm_kube_api_requests_total"),
            }));
            println!(
                "[bench]   start {i} {kind}: ready {ready:.3} s, idle RSS {idle_rss:.1} MiB, VmHWM {:.1} MiB",
                op.hwm()
            );
            op.process.stop();
        }
    }
    let cold_s = stats(&cold);
    let warm_s = stats(&warm);
    let summary = json!({
        "cold_ready_s": cold_s, "warm_ready_s": warm_s,
        "idle_rss_mib": stats(&idle), "idle_rss_after_cold_start_mib": stats(&idle_cold), "startup_hwm_mib": stats(&hwm), "idle_cpu_share": stats(&idle_cpu),
        "cold_over_warm": med(&cold_s) / med(&warm_s),
        "targets": {"idle_rss_mib_max": 48, "warm_ready_s_max": 1.5},
    });
    write_json("footprint.json", &json!({"samples": samples, "summary": summary}))?;
    drop(lab);
    Ok(vec![
        "-- operator footprint (16 components, seeded cluster, 3 workers) --".into(),
        format!("start-up to ready, cold cache (s): {}", spread(&cold_s)),
        format!("start-up to ready, warm cache (s): {}   target < 1.5", spread(&warm_s)),
        format!("cold / warm (medians):             {:.1}×", summary["cold_over_warm"].as_f64().unwrap_or(0.0)),
        format!("idle RSS (MiB):                    {}   target < 48", spread(&summary["idle_rss_mib"])),
        format!("idle RSS after a cold start (MiB): {}", spread(&summary["idle_rss_after_cold_start_mib"])),
        format!("VmHWM after a warm start (MiB):    {}", spread(&summary["startup_hwm_mib"])),
        format!("idle CPU (share of one core):      {}", spread(&summary["idle_cpu_share"])),
    ])
}

/// One whole migration in a fresh environment with `workers` workers; the operator a
/// separate release process with a warm component cache.
async fn migration(name: &str, cluster: Cluster, sim_label: &str, sim_opts: SimOptions) -> Result<Value> {
    let workers = cluster.workers;
    println!("[bench] {name}: environment, {cluster:?}, simulator {sim_label}…");
    let (lab, seeded) = Lab::start(name, cluster).await?;
    let sim = Simulator::start(&lab.env, sim_opts);
    // Shared across runs: warm after the first.
    let cache = out_dir().join("wasm-cache");
    std::fs::create_dir_all(&cache)?;
    let op = lab.operator(name, &cache).await?;
    let ready = op.ready().await?;
    // Let the start-up settle (watches listed) before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m0 = op.metrics().await?;
    let cpu0 = op.cpu();

    let mut spec = serde_json::to_value(cluster.spec(&lab.env, &seeded))?;
    // The stability window after the control-plane rollout is a deliberate wait of the
    // operator (default 2 m), not overhead: zero here.
    spec["health"] = json!({"stabilityWindow": "0s"});
    let spec = serde_json::from_value(spec)?;
    let api: Api<VSphereMigration> = Api::namespaced(lab.env.client(), NAMESPACE);
    let start = Instant::now();
    api.create(&PostParams::default(), &VSphereMigration::new("bench", VSphereMigrationSpec { spec })).await?;
    let limit = Duration::from_secs(600 + 12 * workers as u64);
    let mut peak_rss: f64 = 0.0;
    let mut last_phase = String::new();
    let status = loop {
        peak_rss = peak_rss.max(op.rss());
        if let Ok(m) = api.get("bench").await {
            let status = m.status.unwrap_or_default();
            if status.finished_at.is_some() {
                break status;
            }
            if let Some(c) = &status.current
                && c.name != last_phase
            {
                last_phase = c.name.clone();
                println!("[bench]   {:>6.1} s  {}", start.elapsed().as_secs_f64(), c.name);
            }
        }
        op.process.check_running()?;
        if start.elapsed() > limit {
            bail!("{name}: not finished after {limit:?}; simulator: {}", sim.diagnostics());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu = op.cpu() - cpu0;
    let hwm = op.hwm();
    let m1 = op.metrics().await?;
    let st = sim.stats();
    let delay_wall = st.delay_wall.as_secs_f64();
    let diff = |name: &str, label: &str| -> BTreeMap<String, f64> {
        let before = m0.by(name, label);
        m1.by(name, label).into_iter().map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0.0))).collect()
    };
    let api_by_method = diff("vsm_kube_api_requests_total", "method");
    let api_total: f64 = api_by_method.values().sum();
    let kube_by_phase = diff("vsm_kube_requests_total", "phase");
    let vsphere_by_phase = diff("vsm_vsphere_calls_total", "phase");
    let calls_by_phase = diff("vsm_plugin_calls_total", "phase");
    let reconciles = diff("vsm_reconciles_total", "result");
    let triggers = diff("vsm_reconcile_triggers_total", "trigger");
    let phases: Vec<Value> = status
        .history
        .iter()
        .map(|h| {
            json!({"phase": h.phase, "result": format!("{:?}", h.result), "attempts": h.attempts,
                   "seconds": h.finished_at.seconds_since(h.started_at) as f64})
        })
        .collect();
    let result = status.phase.as_ref().map_or("", Stage::as_str);
    println!(
        "[bench]   {name}: {result} in {wall:.1} s (simulated delays {delay_wall:.1} s), operator CPU {cpu:.2} s, \
         peak RSS {:.1} MiB, {api_total} API requests ({:.0} the controller's own)",
        hwm.max(peak_rss),
        api_total - kube_by_phase.values().sum::<f64>()
    );
    let row = json!({
        "name": name, "workers": workers, "infra": cluster.infra, "zones": cluster.zones, "sim": sim_label,
        "result": result,
        "ready_s": ready.as_secs_f64(),
        "wall_s": wall,
        "sim_delay_wall_s": delay_wall,
        "sim_delay_total_s": st.delay_total.as_secs_f64(),
        "overhead_s": wall - delay_wall,
        "overhead_ratio": (wall - delay_wall) / wall,
        "operator_cpu_s": cpu,
        "peak_rss_mib": hwm.max(peak_rss),
        "rss_end_mib": op.rss(),
        "kube_api_requests": api_total,
        "kube_api_requests_by_method": api_by_method,
        "kube_requests_for_phases": kube_by_phase,
        // The controller's own: everything the operator sent that was not a phase's import.
        "controller_kube_requests": api_total - kube_by_phase.values().sum::<f64>(),
        "vsphere_operations_for_phases": vsphere_by_phase,
        "plugin_calls_by_phase": calls_by_phase,
        "plugin_calls_total": calls_by_phase.values().sum::<f64>(),
        "reconciles_by_result": reconciles,
        "reconciles_total": reconciles.values().sum::<f64>(),
        "reconcile_triggers": triggers,
        "simulator_reconciles": st.reconciles,
        "phases": phases,
    });
    std::fs::write(lab.dir.join("result.json"), serde_json::to_string_pretty(&row)?)?;
    op.process.stop();
    sim.stop().await;
    drop(lab);
    if result != "Completed" {
        bail!("{name}: the migration ended {result}; see {}", out_dir().join("runs").join(name).display());
    }
    Ok(row)
}

fn overhead_summary(rows: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for label in ["instant", "realistic"] {
        let sel: Vec<&Value> = rows.iter().filter(|r| r["sim"] == label).collect();
        let col = |k: &str| sel.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>();
        out.insert(
            label.into(),
            json!({
                "wall_s": stats(&col("wall_s")), "sim_delay_wall_s": stats(&col("sim_delay_wall_s")),
                "overhead_s": stats(&col("overhead_s")), "overhead_ratio": stats(&col("overhead_ratio")),
                "operator_cpu_s": stats(&col("operator_cpu_s")), "peak_rss_mib": stats(&col("peak_rss_mib")),
                "kube_api_requests": stats(&col("kube_api_requests")),
            }),
        );
    }
    out.insert("target_overhead_ratio_max".into(), json!(0.10));
    Value::Object(out)
}

fn overhead_lines(rows: &[Value], summary: &Value) -> Vec<String> {
    let mut lines = vec!["-- controller overhead (3 workers; overhead = wall − simulated-delay wall) --".to_string()];
    for label in ["instant", "realistic"] {
        let s = &summary[label];
        lines.push(format!(
            "{label:<9} wall {} s | delays {} s | overhead {} s = {:.1} % | CPU {:.2} s | peak RSS {:.1} MiB | API {:.0}",
            spread(&s["wall_s"]),
            spread(&s["sim_delay_wall_s"]),
            spread(&s["overhead_s"]),
            med(&s["overhead_ratio"]) * 100.0,
            med(&s["operator_cpu_s"]),
            med(&s["peak_rss_mib"]),
            med(&s["kube_api_requests"]),
        ));
    }
    if let Some(r) = rows.iter().find(|r| r["sim"] == "realistic") {
        lines.push(format!("per phase ({}): seconds, attempts, plugin calls, kube requests, vSphere ops", r["name"]));
        for p in r["phases"].as_array().into_iter().flatten() {
            let name = p["phase"].as_str().unwrap_or("");
            lines.push(format!(
                "  {:<22} {:>6.0} {:>4} {:>5} {:>5} {:>5}",
                name,
                p["seconds"].as_f64().unwrap_or(0.0),
                p["attempts"],
                r["plugin_calls_by_phase"][name].as_f64().unwrap_or(0.0),
                r["kube_requests_for_phases"][name].as_f64().unwrap_or(0.0),
                r["vsphere_operations_for_phases"][name].as_f64().unwrap_or(0.0),
            ));
        }
    }
    lines
}

fn zonal_lines(rows: &[Value]) -> Vec<String> {
    let mut lines =
        vec!["-- zonal vs single-domain (3 workers + 1 infra, instant simulator, one run each) --".to_string()];
    for r in rows {
        lines.push(format!(
            "{:<26} wall {:>6.1} s | operator CPU {:>5.2} s | API requests {:>5.0} (controller {:>4.0}) | vSphere ops {:>4.0} | plugin calls {:>4.0}",
            r["name"].as_str().unwrap_or(""),
            r["wall_s"].as_f64().unwrap_or(f64::NAN),
            r["operator_cpu_s"].as_f64().unwrap_or(f64::NAN),
            r["kube_api_requests"].as_f64().unwrap_or(f64::NAN),
            r["controller_kube_requests"].as_f64().unwrap_or(f64::NAN),
            r["vsphere_operations_for_phases"].as_object().map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum()),
            r["plugin_calls_total"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    lines
}

/// How each figure grows with N: the log-log slope between successive runs (1 = linear).
fn growth(rows: &[Value]) -> Value {
    let mut out = Vec::new();
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let n = (a["workers"].as_f64().unwrap_or(1.0), b["workers"].as_f64().unwrap_or(1.0));
        let slope = |k: &str| {
            let (x, y) = (a[k].as_f64().unwrap_or(f64::NAN), b[k].as_f64().unwrap_or(f64::NAN));
            (y / x).ln() / (n.1 / n.0).ln()
        };
        out.push(json!({
            "from": n.0, "to": n.1,
            "wall_s": slope("wall_s"), "operator_cpu_s": slope("operator_cpu_s"),
            "peak_rss_mib": slope("peak_rss_mib"), "kube_api_requests": slope("kube_api_requests"),
            "reconciles_total": slope("reconciles_total"),
        }));
    }
    Value::Array(out)
}

fn scale_lines(rows: &[Value], growth: &Value) -> Vec<String> {
    let mut lines = vec![
        "-- scale (instant simulator) --".to_string(),
        format!(
            "{:>5} {:>9} {:>9} {:>10} {:>9} {:>11} {:>10} {:>12}",
            "N", "wall s", "CPU s", "peak MiB", "API req", "API req/N", "reconciles", "CPU ms/N"
        ),
    ];
    for r in rows {
        let n = r["workers"].as_f64().unwrap_or(1.0);
        lines.push(format!(
            "{:>5} {:>9.1} {:>9.2} {:>10.1} {:>9.0} {:>11.1} {:>10.0} {:>12.1}",
            n,
            r["wall_s"].as_f64().unwrap_or(0.0),
            r["operator_cpu_s"].as_f64().unwrap_or(0.0),
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["kube_api_requests"].as_f64().unwrap_or(0.0),
            r["kube_api_requests"].as_f64().unwrap_or(0.0) / n,
            r["reconciles_total"].as_f64().unwrap_or(0.0),
            r["operator_cpu_s"].as_f64().unwrap_or(0.0) * 1000.0 / n,
        ));
    }
    lines.push("growth exponent between successive N (log Δy / log ΔN; 1 = linear):".into());
    for g in growth.as_array().into_iter().flatten() {
        lines.push(format!(
            "  {:>4} → {:<4} wall {:>5.2}  CPU {:>5.2}  RSS {:>5.2}  API {:>5.2}  reconciles {:>5.2}",
            g["from"],
            g["to"],
            g["wall_s"].as_f64().unwrap_or(f64::NAN),
            g["operator_cpu_s"].as_f64().unwrap_or(f64::NAN),
            g["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            g["kube_api_requests"].as_f64().unwrap_or(f64::NAN),
            g["reconciles_total"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    lines
}
