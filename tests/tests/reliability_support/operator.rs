//! The operator as a real separate process: the release binary `vsm-operator run`, with
//! its logs at debug level in a file, killed with SIGKILL, frozen with SIGSTOP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vsm_testenv::harness::NAMESPACE;
use vsm_testenv::process::{Process, free_port};

use super::Lab;

/// The release operator binary: `$VSM_OPERATOR_BIN`, else built with
/// `cargo build --release -p vsm-host --bin vsm-operator` (a no-op when up to date; waits on
/// the target directory's lock while another build runs).
pub fn binary() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("VSM_OPERATOR_BIN") {
            return Ok(PathBuf::from(p));
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["build", "--release", "--quiet", "-p", "vsm-host", "--bin", "vsm-operator"])
            .current_dir(super::root())
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!("building the release operator failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(super::target_dir().join("release/vsm-operator"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// How to run one operator process.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// `--identity`, and the user of its client certificate (`vsm-<identity>`).
    pub identity: String,
    /// `--leader-elect` with these lease duration / renew deadline / retry period.
    pub leader: Option<(Duration, Duration, Duration)>,
    /// `--namespace` (watch one namespace only).
    pub namespace: Option<String>,
    /// RUST_LOG of the process.
    pub rust_log: String,
    /// `--vsphere-timeout`.
    pub vsphere_timeout: Option<Duration>,
}

impl OperatorOptions {
    pub fn new(identity: &str) -> Self {
        OperatorOptions {
            identity: identity.into(),
            leader: None,
            namespace: None,
            // Debug level everywhere, as the secret scan asks; the wasm compiler's own
            // internals (only when a component is compiled, not cached) stay at info.
            rust_log: "debug,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,wasmtime_cranelift=info"
                .into(),
            vsphere_timeout: None,
        }
    }

    pub fn leader(mut self, lease: Duration, renew: Duration, retry: Duration) -> Self {
        self.leader = Some((lease, renew, retry));
        self
    }
}

/// A running operator process.
pub struct OperatorProc {
    process: Option<Process>,
    pub pid: u32,
    pub identity: String,
    /// The Kubernetes user it authenticates as (client certificate).
    pub user: String,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub started: Instant,
    stopped: bool,
}

/// The lease every replica of the suite contends for.
pub const LEASE_NAME: &str = "vsm-reliability";

impl OperatorProc {
    pub async fn start(lab: &Lab, opts: OperatorOptions) -> Result<OperatorProc> {
        let bin = binary()?;
        let user = format!("vsm-{}", opts.identity);
        let kubeconfig = lab.kubeconfig_for(&user)?;
        let n = lab.logs.lock().unwrap().len();
        let log = lab.dir.join(format!("operator-{n:02}-{}.log", opts.identity));
        let cache = vsm_testenv::tools::cache_dir()?.with_file_name("wasm-cache");
        let mut last = None;
        // The port is free a moment before the process binds it; retry on a collision.
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let mut args: Vec<String> = vec![
                "run".into(),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--plugin-dir={}", lab.plugin_dir.display()),
                format!("--plugin-config={}", lab.plugin_config.display()),
                format!("--cache-dir={}", cache.display()),
                format!("--listen={addr}"),
                format!("--identity={}", opts.identity),
                "--log-format=json".into(),
            ];
            if let Some((lease, renew, retry)) = opts.leader {
                args.extend([
                    "--leader-elect".into(),
                    format!("--lease-namespace={NAMESPACE}"),
                    format!("--lease-name={LEASE_NAME}"),
                    format!("--lease-duration={}ms", lease.as_millis()),
                    format!("--renew-deadline={}ms", renew.as_millis()),
                    format!("--retry-period={}ms", retry.as_millis()),
                ]);
            }
            if let Some(ns) = &opts.namespace {
                args.push(format!("--namespace={ns}"));
            }
            if let Some(t) = opts.vsphere_timeout {
                args.push(format!("--vsphere-timeout={}ms", t.as_millis()));
            }
            let rust_log = std::ffi::OsString::from(&opts.rust_log);
            let no_color = std::ffi::OsString::from("1");
            let process = Process::spawn(
                &format!("vsm-operator {}", opts.identity),
                &bin,
                &args,
                &[("RUST_LOG", rust_log.as_os_str()), ("NO_COLOR", no_color.as_os_str())],
                &log,
                false,
            )?;
            let pid = process.pid();
            let mut op = OperatorProc {
                process: Some(process),
                pid,
                identity: opts.identity.clone(),
                user: user.clone(),
                addr,
                log: log.clone(),
                started: Instant::now(),
                stopped: false,
            };
            match op.wait_ready().await {
                Ok(()) => return Ok(op),
                Err(e) => {
                    op.kill();
                    last = Some(e);
                }
            }
        }
        Err(last.expect("an attempt"))
    }

    async fn wait_ready(&self) -> Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://{}/readyz", self.addr);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(p) = &self.process {
                p.check_running()?;
            }
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("operator {} not ready; log tail:\n{}", self.identity, self.log_tail())
    }

    /// GET /healthz answered 200.
    pub async fn healthy(&self) -> bool {
        let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(5)).build() else { return false };
        http.get(format!("http://{}/healthz", self.addr)).send().await.is_ok_and(|r| r.status().is_success())
    }

    pub async fn metrics(&self) -> Result<String> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(http.get(format!("http://{}/metrics", self.addr)).send().await?.text().await?)
    }

    /// The value of a metric line (`name{labels} value`) with exactly this name and labels.
    pub async fn metric(&self, name_and_labels: &str) -> Result<Option<f64>> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(k, _)| k == name_and_labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Still running (not exited)?
    pub fn running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.check_running().is_ok())
    }

    fn signal(&self, sig: libc::c_int) {
        if self.process.is_some() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }

    /// kill -9 (no clean-up of any kind), and reap it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(p) = self.process.take() {
            p.wait_until(Instant::now() + Duration::from_secs(10));
        }
        self.stopped = true;
    }

    /// Freeze (SIGSTOP): the process stays, does nothing, answers nothing.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaw (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGTERM and wait (a graceful hand-over: lease released, sessions logged out).
    pub fn stop(&mut self) {
        self.thaw();
        if let Some(p) = self.process.take() {
            p.stop();
        }
        self.stopped = true;
    }

    pub fn log_tail(&self) -> String {
        vsm_testenv::process::log_tail(&self.log, 6000)
    }

    /// The log lines (JSON) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProc {
    fn drop(&mut self) {
        // A frozen process cannot act on SIGTERM.
        self.thaw();
        if let Some(p) = self.process.take() {
            p.stop();
        }
    }
}

/// Is this the moment the test should give up waiting? (For loops that wait on processes.)
pub fn context_of(op: &OperatorProc) -> String {
    format!("operator {} (pid {}), log {}", op.identity, op.pid, op.log.display())
}

pub trait WithClients<T> {
    fn with_operator(self, op: &OperatorProc) -> Result<T>;
}

impl<T> WithClients<T> for Result<T> {
    fn with_operator(self, op: &OperatorProc) -> Result<T> {
        self.with_context(|| format!("{}; log tail:\n{}", context_of(op), op.log_tail()))
    }
}
