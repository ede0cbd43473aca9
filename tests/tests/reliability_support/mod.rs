//! Shared machinery of the reliability suite (`reliability_*.rs`): the real environment
//! with the simulated cluster, the operator as a separate process (the release binary,
//! restarted, killed, frozen), migrations, checks of the final state and of the backups,
//! and the secret-hygiene scan.
//!
//! Every scenario keeps its files (operator logs, audit log, a summary) under
//! `target/reliability/<scenario>/`, so a failure can be read afterwards and
//! docs/RELIABILITY.md can quote the numbers.
#![allow(dead_code)] // each test binary uses its own subset

pub mod checks;
pub mod operator;
pub mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::{MigrationSpec, Stage, Time, VSphereMigration, VSphereMigrationSpec};
use vsm_testenv::harness::{NAMESPACE, TARGET_CREDS, ensure_secrets, target_spec};
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator, seed};
use vsm_testenv::{TestEnv, TestEnvOptions};

pub use operator::{OperatorOptions, OperatorProc};

/// Only a guard against hanging for ever; never a performance expectation. Longer than the
/// real machine-api's longest retry delay: its controllers back off per object up to 1,000 s
/// (controller-runtime's default rate limiter), and a Machine whose reconciles failed through
/// a kube-apiserver outage may next be looked at that late (seen once in CI: a new master in
/// Provisioning for over 15 minutes after a SIGKILL of the API server during RecreateCPMS).
pub const LIMIT: Duration = Duration::from_secs(1800);

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Where a scenario keeps its files: `target/reliability/<scenario>/`, emptied first.
pub fn out_dir(scenario: &str) -> Result<PathBuf> {
    let dir = target_dir().join("reliability").join(scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Test log output (RUST_LOG), once per binary.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,kube=error".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Print a line of the scenario's report (stdout, and `report.txt` in its directory).
pub fn report(dir: &Path, line: impl AsRef<str>) {
    use std::io::Write;
    let line = line.as_ref();
    println!("[reliability] {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("report.txt")) {
        let _ = writeln!(f, "{line}");
    }
}

/// What a lab starts with.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The scenario name (its files go to `target/reliability/<name>/`).
    pub name: String,
    pub workers: u32,
    /// kube-apiserver audit log of every write.
    pub audit: bool,
    /// Test components from `target/test-plugins` to put beside the shipped phases.
    pub test_components: Vec<String>,
    /// Extra plugin configuration per component (YAML mapping merged into its entry).
    pub plugin_limits: BTreeMap<String, Value>,
    pub sim: SimOptions,
}

impl LabOptions {
    pub fn new(name: &str) -> Self {
        LabOptions {
            name: name.into(),
            workers: 1,
            audit: false,
            test_components: Vec::new(),
            plugin_limits: BTreeMap::new(),
            sim: SimOptions::instant(),
        }
    }
}

/// The real environment with the real machine-api, seeded with an OpenShift-on-vSphere
/// cluster on the source vCenter, the cluster simulator running, and a plugin directory for the operator processes.
pub struct Lab {
    pub env: TestEnv,
    pub seeded: SeededCluster,
    pub sim: Option<SimHandle>,
    pub dir: PathBuf,
    pub plugin_dir: PathBuf,
    pub plugin_config: PathBuf,
    /// Every secret value in play (passwords, tokens, vCenter session ids seen so far): none
    /// may appear in status, Events or logs.
    pub secrets: Arc<Mutex<BTreeSet<String>>>,
    /// vCenter session ids seen (a subset of `secrets`).
    pub sessions: Arc<Mutex<BTreeSet<String>>>,
    /// The target vCenter's password now (tests rotate it).
    pub target_password: Mutex<String>,
    /// Operator log files of every process started, in order.
    pub logs: Arc<Mutex<Vec<PathBuf>>>,
    session_watch: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Lab {
    pub async fn start(opts: LabOptions) -> Result<Lab> {
        init_tracing();
        let dir = out_dir(&opts.name)?;
        let started = Instant::now();
        // Build (or find) the operator binary while the environment starts.
        let bin = tokio::task::spawn_blocking(operator::binary);
        let env =
            TestEnv::start(TestEnvOptions { audit_log: opts.audit, machine_api: true, ..Default::default() }).await?;
        bin.await??;
        let seeded = seed(&env, &SeedOptions { workers: opts.workers, ..Default::default() }).await?;
        ensure_secrets(&env, &env.client()).await?;
        let sim = Simulator::start(&env, opts.sim.clone());

        let plugin_dir = dir.join("plugins");
        std::fs::create_dir_all(&plugin_dir)?;
        let mut config = BTreeMap::new();
        let shipped = vsm_testenv::harness::plugin_dir();
        let mut add = |from: PathBuf| -> Result<()> {
            let name = from.file_stem().context("component name")?.to_string_lossy().to_string();
            std::fs::copy(&from, plugin_dir.join(format!("{name}.wasm")))
                .with_context(|| format!("{}: run `cargo xtask plugins`", from.display()))?;
            let mut entry = json!({"grantDeclared": true});
            if let Some(extra) = opts.plugin_limits.get(&name) {
                for (k, v) in extra.as_object().into_iter().flatten() {
                    entry[k] = v.clone();
                }
            }
            config.insert(name, entry);
            Ok(())
        };
        for entry in
            std::fs::read_dir(&shipped).with_context(|| format!("{}: run `cargo xtask plugins`", shipped.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                add(path)?;
            }
        }
        for c in &opts.test_components {
            add(target_dir().join("test-plugins").join(format!("{c}.wasm")))?;
        }
        let plugin_config = dir.join("plugin-config.yaml");
        std::fs::write(&plugin_config, serde_yaml::to_string(&json!({"plugins": config}))?)?;

        let secrets: BTreeSet<String> = [
            env.source().password.clone(),
            env.target().password.clone(),
            env.admin_token().to_string(),
            env.operator_token().to_string(),
        ]
        .into_iter()
        .collect();
        let secrets = Arc::new(Mutex::new(secrets));
        let target_password = Mutex::new(env.target().password.clone());
        let mut lab = Lab {
            env,
            seeded,
            sim: Some(sim),
            dir,
            plugin_dir,
            plugin_config,
            secrets,
            sessions: Arc::default(),
            target_password,
            logs: Arc::default(),
            session_watch: None,
            started,
        };
        lab.watch_sessions();
        report(&lab.dir, format!("environment ready in {:.1}s", lab.started.elapsed().as_secs_f64()));
        Ok(lab)
    }

    /// Collect every vCenter session id the simulators hand out (polled), for the scan.
    fn watch_sessions(&mut self) {
        let urls = [self.env.source().control_url.clone(), self.env.target().control_url.clone()];
        let (secrets, sessions) = (self.secrets.clone(), self.sessions.clone());
        self.session_watch = Some(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
            loop {
                for url in &urls {
                    let Ok(resp) = http.get(format!("{url}/stats")).send().await else { continue };
                    let Ok(stats) = resp.json::<vsm_testenv::VcsimStats>().await else { continue };
                    let keys: Vec<String> = stats.sessions.into_iter().filter(|k| k.len() >= 8).collect();
                    secrets.lock().unwrap().extend(keys.iter().cloned());
                    sessions.lock().unwrap().extend(keys);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }

    /// Add a secret value to look for (e.g. a rotated password).
    pub fn add_secret(&self, value: &str) {
        self.secrets.lock().unwrap().insert(value.to_string());
    }

    /// A kubeconfig for `user`, a client certificate in group system:masters, so the audit
    /// log tells operator processes apart.
    pub fn kubeconfig_for(&self, user: &str) -> Result<PathBuf> {
        let (cert, key) = self.env.ca().issue_client(user, Some("system:masters"))?;
        let dir = self.dir.join("identities");
        std::fs::create_dir_all(&dir)?;
        let (cert_path, key_path) = (dir.join(format!("{user}.crt")), dir.join(format!("{user}.key")));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        let path = dir.join(format!("{user}.kubeconfig"));
        std::fs::write(
            &path,
            vsm_testenv::apiserver::kubeconfig_yaml(
                self.env.apiserver_url(),
                &self.env.ca_path(),
                vsm_testenv::apiserver::KubeconfigUser::ClientCert { cert: &cert_path, key: &key_path },
            ),
        )?;
        Ok(path)
    }

    /// Start an operator process.
    pub async fn operator(&self, opts: OperatorOptions) -> Result<OperatorProc> {
        let proc = OperatorProc::start(self, opts).await?;
        self.logs.lock().unwrap().push(proc.log.clone());
        Ok(proc)
    }

    pub fn migrations(&self) -> Api<VSphereMigration> {
        Api::namespaced(self.env.client(), NAMESPACE)
    }

    /// The spec of a migration to the target vCenter (every MachineSet replaced at its size),
    /// a short stability window, and `extra` top-level fields.
    pub fn spec(&self, extra: Value) -> Result<MigrationSpec> {
        let mut v = serde_json::to_value(target_spec(&self.env))?;
        v["health"] = json!({"stabilityWindow": "3s"});
        for (k, val) in extra.as_object().context("extra is an object")? {
            v[k] = val.clone();
        }
        Ok(serde_json::from_value(v)?)
    }

    pub async fn create(&self, name: &str, spec: MigrationSpec) -> Result<VSphereMigration> {
        Ok(self
            .migrations()
            .create(&PostParams::default(), &VSphereMigration::new(name, VSphereMigrationSpec { spec }))
            .await?)
    }

    pub async fn get(&self, name: &str) -> Result<VSphereMigration> {
        Ok(self.migrations().get(name).await?)
    }

    /// Poll until `pred` holds (transient API errors are tolerated: the API server may be
    /// restarting).
    pub async fn until(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&VSphereMigration) -> bool,
    ) -> Result<VSphereMigration> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < LIMIT {
            match self.migrations().get(name).await {
                Ok(m) if pred(&m) => return Ok(m),
                Ok(m) => last = Some(m),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let diag = self.sim.as_ref().map(|s| s.diagnostics()).unwrap_or_default();
        bail!(
            "timed out waiting for {what} of {name}; status: {}\nsimulator: {diag}",
            serde_json::to_string_pretty(&last.and_then(|m| m.status))?
        )
    }

    /// Until the migration has finished (any result).
    pub async fn finished(&self, name: &str) -> Result<VSphereMigration> {
        self.until(name, "the end", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) -> Result<()> {
        self.migrations()
            .patch(
                name,
                &PatchParams { field_manager: Some("reliability-test".into()), ..Default::default() },
                &Patch::Merge(json!({"spec": spec})),
            )
            .await?;
        Ok(())
    }

    /// Change the target vCenter's password: in the simulator and in the migration's
    /// credentials Secret (as an administrator rotating it would).
    pub async fn rotate_target_password(&self, password: &str) -> Result<()> {
        self.add_secret(password);
        *self.target_password.lock().unwrap() = password.to_string();
        let dst = self.env.target();
        dst.set_credentials(&dst.username, password).await?;
        if let Some(sim) = &self.sim {
            sim.set_vcenter_password(&dst.host(), password);
        }
        let secrets: Api<Secret> = Api::namespaced(self.env.client(), NAMESPACE);
        let patch = json!({"stringData": {format!("{}.password", dst.host()): password}});
        secrets.patch(TARGET_CREDS, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// Stop the simulator (before the environment goes).
    pub async fn stop(mut self) {
        if let Some(t) = self.session_watch.take() {
            t.abort();
        }
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
    }
}

/// `status.phase` (empty before the start).
pub fn phase(m: &VSphereMigration) -> String {
    m.status.as_ref().and_then(|s| s.phase.as_ref()).map(Stage::to_string).unwrap_or_default()
}

/// The phase being worked on (name), if any.
pub fn current(m: &VSphereMigration) -> Option<String> {
    m.status.as_ref().and_then(|s| s.current.as_ref()).map(|c| c.name.clone())
}

/// A condition as (status, reason, message).
pub fn condition(m: &VSphereMigration, type_: &str) -> (String, String, String) {
    m.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Seconds from `a` to `b` (times of the status).
pub fn seconds_between(a: Time, b: Time) -> f64 {
    b.seconds_since(a) as f64
}
