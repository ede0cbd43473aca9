//! kube-apiserver against an [`Etcd`](crate::etcd::Etcd), with certificates from the
//! environment's [`TestCa`], a client-certificate admin, static tokens and RBAC on.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::pki::{TestCa, key_pair_pem};
use crate::process::{Process, free_port, wait_for};

/// User name of the admin client certificate (group `system:masters`).
pub const ADMIN_USER: &str = "test-admin";
/// Namespace of the operator's service account.
pub const OPERATOR_NAMESPACE: &str = "vsphere-migration";
/// The non-admin identity the operator token authenticates as.
pub const OPERATOR_USER: &str = "system:serviceaccount:vsphere-migration:operator";

/// Only a guard against hanging forever; a busy 2-core machine takes tens of seconds.
const READY_LIMIT: Duration = Duration::from_secs(300);
const START_ATTEMPTS: usize = 3;

pub struct ApiServer {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// Bearer token of an admin (group `system:masters`).
    pub admin_token: String,
    /// Bearer token of [`OPERATOR_USER`], which has no RBAC grants until a test adds some.
    pub operator_token: String,
    pub admin_cert_path: PathBuf,
    pub admin_key_path: PathBuf,
    pub ca_path: PathBuf,
    /// The audit log (JSON lines), when started with [`ApiServer::start_with`] and `audit`.
    pub audit_log_path: Option<PathBuf>,
    pub(crate) process: Process,
    launch: Launch,
}

/// How the running server was started, so [`ApiServer::restart`] can start it again the same way.
struct Launch {
    bin: PathBuf,
    dir: PathBuf,
    etcd_url: String,
    port: u16,
    attempt: usize,
    audit: bool,
    restarts: usize,
}

/// The audit policy of [`ApiServer::start_with`]: every write (with who made it and how it
/// ended), no reads.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

fn random_token() -> Result<String> {
    let mut buf = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

impl ApiServer {
    /// Writes certificates and tokens under `dir` and starts the server; retries with a new
    /// port if the one picked was taken meanwhile.
    pub async fn start(bin: &Path, dir: &Path, ca: &TestCa, etcd_url: &str) -> Result<ApiServer> {
        Self::start_with(bin, dir, ca, etcd_url, false).await
    }

    /// [`ApiServer::start`], with an audit log of every write at `dir/audit.log` when `audit`
    /// ([`AUDIT_POLICY`]).
    pub async fn start_with(bin: &Path, dir: &Path, ca: &TestCa, etcd_url: &str, audit: bool) -> Result<ApiServer> {
        let ca_path = dir.join("ca.crt");
        std::fs::write(&ca_path, &ca.cert_pem)?;
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let service_ip: IpAddr = "10.0.0.1".parse()?;
        let (cert, key) = ca.issue_server(
            &["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            &[localhost, service_ip],
        )?;
        let (serving_cert, serving_key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        std::fs::write(&serving_cert, cert)?;
        std::fs::write(&serving_key, key)?;
        let (cert, key) = ca.issue_client(ADMIN_USER, Some("system:masters"))?;
        let (admin_cert_path, admin_key_path) = (dir.join("admin.crt"), dir.join("admin.key"));
        std::fs::write(&admin_cert_path, cert)?;
        std::fs::write(&admin_key_path, key)?;
        let (sa_key, sa_pub) = key_pair_pem()?;
        std::fs::write(dir.join("sa.key"), sa_key)?;
        std::fs::write(dir.join("sa.pub"), sa_pub)?;
        let admin_token = random_token()?;
        let operator_token = random_token()?;
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{admin_token},{ADMIN_USER}-token,1000,\"system:masters\"\n\
                 {operator_token},{OPERATOR_USER},1001,\"system:serviceaccounts,system:serviceaccounts:{OPERATOR_NAMESPACE}\"\n"
            ),
        )?;
        if audit {
            std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        }
        let mut last = None;
        for attempt in 0..START_ATTEMPTS {
            let launch = Launch {
                bin: bin.to_path_buf(),
                dir: dir.to_path_buf(),
                etcd_url: etcd_url.to_string(),
                port: free_port()?,
                attempt,
                audit,
                restarts: 0,
            };
            match Self::try_start(&launch, &admin_token).await {
                Ok((url, process)) => {
                    return Ok(ApiServer {
                        url,
                        admin_token,
                        operator_token,
                        admin_cert_path,
                        admin_key_path,
                        ca_path,
                        audit_log_path: audit.then(|| dir.join("audit.log")),
                        process,
                        launch,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// Stops the server (SIGTERM, or SIGKILL when `kill`) and starts it again on the same
    /// port with the same certificates, tokens and etcd data, as a control-plane node
    /// restart does; returns once it is ready again. Clients keep their configuration.
    pub async fn restart(&mut self, kill: bool) -> Result<()> {
        if kill {
            // SAFETY: kill(2) on our own child; `wait_until` reaps it.
            unsafe { libc::kill(self.process.pid() as libc::pid_t, libc::SIGKILL) };
            self.process.wait_until(std::time::Instant::now() + Duration::from_secs(10));
        } else {
            self.process.stop();
        }
        self.launch.restarts += 1;
        // The port may still be held for a moment by the old process's sockets.
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&self.launch, &self.admin_token).await {
                Ok((_, process)) => {
                    self.process = process;
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last.unwrap())
    }

    /// The server's process id (it changes with every restart).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    async fn try_start(launch: &Launch, admin_token: &str) -> Result<(String, Process)> {
        let Launch { bin, dir, etcd_url, port, attempt, audit, restarts } = launch;
        let (dir, attempt) = (dir.as_path(), *attempt);
        let url = format!("https://127.0.0.1:{port}");
        let p = |name: &str| dir.join(name).display().to_string();
        let cert_dir = dir.join("cert-dir");
        std::fs::create_dir_all(&cert_dir)?;
        let mut args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            // Unique per start, so a retry never sees a half-initialised previous attempt.
            format!("--etcd-prefix=/registry-{attempt}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={url}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No controller-manager creates service-account tokens here.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--profiling=false".into(),
            // The default reconciler keeps trying to publish 127.0.0.1 as the `kubernetes`
            // service endpoint, which the API refuses (loopback), every 10 s.
            "--endpoint-reconciler-type=none".into(),
        ];
        if *audit {
            args.push(format!("--audit-policy-file={}", p("audit-policy.yaml")));
            args.push(format!("--audit-log-path={}", p("audit.log")));
            // Written as they happen (no batching), so a test reads what happened up to now.
            args.push("--audit-log-mode=blocking".into());
            args.push("--audit-log-format=json".into());
        }
        let log = match restarts {
            0 => dir.join(format!("kube-apiserver-{attempt}.log")),
            n => dir.join(format!("kube-apiserver-{attempt}-restart-{n}.log")),
        };
        let process = Process::spawn("kube-apiserver", bin, &args, &[], &log, false)?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt"))?)?;
        let http = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(10)).build()?;
        let readyz = format!("{url}/readyz");
        let ready = wait_for("kube-apiserver /readyz", READY_LIMIT, || {
            let running = process.check_running();
            let req = http.get(&readyz).bearer_auth(admin_token).send();
            async move {
                running?;
                Ok(req.await.map(|r| r.status().is_success()).unwrap_or(false))
            }
        })
        .await;
        ready.with_context(|| format!("kube-apiserver did not become ready; log tail:\n{}", process.log_tail()))?;
        Ok((url, process))
    }
}

/// A kubeconfig for `server`, trusting `ca_path`, authenticating with either a client
/// certificate pair or a bearer token.
pub fn kubeconfig_yaml(server: &str, ca_path: &Path, user: KubeconfigUser<'_>) -> String {
    let auth = match user {
        KubeconfigUser::ClientCert { cert, key } => serde_json::json!({
            "client-certificate": cert.display().to_string(),
            "client-key": key.display().to_string(),
        }),
        KubeconfigUser::Token(token) => serde_json::json!({ "token": token }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": server, "certificate-authority": ca_path.display().to_string(),
        }}],
        "users": [{"name": "testenv-user", "user": auth}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "testenv-user"}}],
        "current-context": "testenv",
    });
    serde_yaml::to_string(&doc).expect("kubeconfig serialises")
}

pub enum KubeconfigUser<'a> {
    ClientCert { cert: &'a Path, key: &'a Path },
    Token(&'a str),
}

/// A kube client configuration from a kubeconfig file.
pub async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?)
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    Ok(kube::Client::try_from(config_from_kubeconfig(path).await?)?)
}
