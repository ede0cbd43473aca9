//! The whole environment: etcd, kube-apiserver, CRDs, namespaces and the vCenters (a source
//! and a target, plus any [`TestEnvOptions::extra_sources`] and
//! [`TestEnvOptions::extra_targets`]), and optionally the real machine-api controllers
//! ([`TestEnvOptions::machine_api`]).
//!
//! Trust: every vCenter without a CA of its own gets a serving certificate from the
//! environment's CA; one with its own ([`VcsimOptions::with_own_ca`]) keeps it. The
//! environment writes a bundle of every vCenter's CA ([`TestEnv::vcenter_ca_bundle_pem`]),
//! which the real machine-api's vSphere actuator trusts (`SSL_CERT_FILE`) and which a
//! migration's `vcenters[].caSecret` may hold; each [`Vcsim::ca_pem`] is its own CA alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::apiserver::{self, ApiServer, KubeconfigUser};
use crate::crds::{self, OpenShiftCrds};
use crate::etcd::Etcd;
use crate::machine_api::{self, MachineApi};
use crate::pki::TestCa;
use crate::process::stop_all;
use crate::tools;
use crate::vcsim::{Vcsim, VcsimOptions};

#[derive(Clone, Debug)]
pub struct TestEnvOptions {
    /// The source vCenter; its `ca` is replaced by the environment's CA when `None`.
    pub source: VcsimOptions,
    /// The target vCenter; its `ca` is replaced by the environment's CA when `None`.
    pub target: VcsimOptions,
    /// More source vCenters (e.g. [`VcsimOptions::extra_source`]), started beside `source`;
    /// each needs a name and a listen address of its own.
    pub extra_sources: Vec<VcsimOptions>,
    /// More target vCenters (e.g. [`VcsimOptions::extra_target`]).
    pub extra_targets: Vec<VcsimOptions>,
    pub openshift_crds: OpenShiftCrds,
    /// Install the project's CRDs from `crds/`.
    pub project_crds: bool,
    /// Create [`crds::NAMESPACES`].
    pub namespaces: bool,
    /// Let kube-apiserver write an audit log of every write ([`apiserver::AUDIT_POLICY`]);
    /// see [`TestEnv::audit_log_path`].
    pub audit_log: bool,
    /// Run the real machine-api controllers and admission webhooks from
    /// machine-api-operator against the environment ([`crate::machine_api`]); see
    /// [`TestEnv::machine_api`].
    pub machine_api: bool,
}

impl Default for TestEnvOptions {
    fn default() -> Self {
        TestEnvOptions {
            source: VcsimOptions::source(),
            target: VcsimOptions::target(),
            extra_sources: Vec::new(),
            extra_targets: Vec::new(),
            openshift_crds: OpenShiftCrds::Auto,
            project_crds: true,
            namespaces: true,
            audit_log: false,
            machine_api: false,
        }
    }
}

/// A running environment. Everything stops and every temporary file is removed on drop,
/// also when the test panics; the kernel kills the processes if the test process dies.
pub struct TestEnv {
    ca: Arc<TestCa>,
    // Configs, not clients: a kube client's connections run on the runtime that first used
    // them, and a test's runtime ends with the test, so each caller gets a fresh client.
    admin_config: kube::Config,
    operator_config: kube::Config,
    kubeconfig: PathBuf,
    operator_kubeconfig: PathBuf,
    installed_crds: Vec<String>,
    openshift_crds_dir: Option<PathBuf>,
    // Drop order matters: processes before the directory that holds their files.
    machine_api: Option<Arc<MachineApi>>,
    source: Vcsim,
    target: Vcsim,
    /// The extra vCenters, sources first, each in the order asked for.
    extra: Vec<(VCenterRole, Vcsim)>,
    apiserver: ApiServer,
    etcd: Etcd,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("apiserver", &self.apiserver.url)
            .field("kubeconfig", &self.kubeconfig)
            .field("source", &self.source)
            .field("target", &self.target)
            .field("extra", &self.extra)
            .finish_non_exhaustive()
    }
}

/// Which side of a migration a vCenter of the environment is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VCenterRole {
    /// The cluster runs here before the migration.
    Source,
    /// The cluster moves here.
    Target,
}

/// Every vCenter an environment would start, by role: `source`, the extra sources,
/// `target`, the extra targets.
fn vcenter_plan(opts: &TestEnvOptions) -> Vec<(VCenterRole, VcsimOptions)> {
    let sources = std::iter::once(&opts.source).chain(&opts.extra_sources).map(|o| (VCenterRole::Source, o.clone()));
    let targets = std::iter::once(&opts.target).chain(&opts.extra_targets).map(|o| (VCenterRole::Target, o.clone()));
    sources.chain(targets).collect()
}

/// Two vCenters may not share a name (their files and logs are named by it) or a listen
/// address (OpenShift tells vCenters apart by address alone: `vcenters[].server`).
fn check_vcenter_plan(plan: &[(VCenterRole, VcsimOptions)]) -> Result<()> {
    for (i, (_, a)) in plan.iter().enumerate() {
        for (_, b) in &plan[..i] {
            anyhow::ensure!(a.name != b.name, "two vCenters are named {:?}", a.name);
            anyhow::ensure!(
                a.listen_ip != b.listen_ip,
                "vCenters {:?} and {:?} both listen on {}: OpenShift tells vCenters apart by address",
                b.name,
                a.name,
                a.listen_ip
            );
        }
    }
    Ok(())
}

/// The distinct CA certificates (PEM) among `pems`, in first-seen order, concatenated.
fn ca_bundle<'a>(pems: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for pem in pems {
        let pem = pem.trim();
        if !pem.is_empty() && !seen.contains(&pem) {
            seen.push(pem);
        }
    }
    seen.iter().map(|p| format!("{p}\n")).collect()
}

impl TestEnv {
    /// Starts everything with the default options.
    pub async fn start_default() -> Result<TestEnv> {
        Self::start(TestEnvOptions::default()).await
    }

    /// Starts everything with the real machine-api ([`TestEnvOptions::machine_api`]): what
    /// a migration that creates or removes machines needs.
    pub async fn start_with_machine_api() -> Result<TestEnv> {
        Self::start(TestEnvOptions { machine_api: true, ..Default::default() }).await
    }

    pub async fn start(opts: TestEnvOptions) -> Result<TestEnv> {
        // kube and reqwest pull in rustls with more than one crypto backend; without a process
        // default, rustls refuses to pick. Either answer is fine, so ignore "already set".
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bins = tools::ensure_built_async().await?;
        let dir = tempfile::Builder::new().prefix("vsm-testenv-").tempdir()?;
        let ca = Arc::new(TestCa::new("vsm-testenv-ca")?);
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, &ca.cert_pem)?;

        let mut plan = vcenter_plan(&opts);
        check_vcenter_plan(&plan)?;
        for (_, o) in &mut plan {
            o.ca.get_or_insert_with(|| ca.clone());
        }

        // The vCenters start while etcd and the apiserver come up.
        let vcenters = futures::future::try_join_all(plan.into_iter().map(|(role, o)| {
            let dir = dir.path();
            async move { anyhow::Ok((role, Vcsim::start_in(o, dir).await?)) }
        }));
        let kube_side = async {
            let kube_dir = dir.path().join("kube");
            std::fs::create_dir(&kube_dir)?;
            let etcd = Etcd::start(&bins.etcd, &kube_dir).await?;
            let apiserver =
                ApiServer::start_with(&bins.kube_apiserver, &kube_dir, &ca, &etcd.client_url, opts.audit_log).await?;
            anyhow::Ok((etcd, apiserver))
        };
        let (vcenters, kube_side) = tokio::join!(vcenters, kube_side);
        // On error the started halves are dropped here, which stops them.
        let mut vcenters = vcenters?;
        let (etcd, apiserver) = kube_side?;
        // The plan's order: source first, the first target after the extra sources.
        let target_at = 1 + opts.extra_sources.len();
        let (_, target) = vcenters.remove(target_at);
        let (_, source) = vcenters.remove(0);
        let extra = vcenters;
        let bundle = ca_bundle(std::iter::once(ca.cert_pem.as_str()).chain(
            [&source, &target].into_iter().chain(extra.iter().map(|(_, v)| v)).filter_map(|v| v.ca_pem.as_deref()),
        ));
        std::fs::write(dir.path().join(VCENTER_CA_BUNDLE), &bundle)?;

        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            apiserver::kubeconfig_yaml(
                &apiserver.url,
                &ca_path,
                KubeconfigUser::ClientCert { cert: &apiserver.admin_cert_path, key: &apiserver.admin_key_path },
            ),
        )?;
        let operator_kubeconfig = dir.path().join("kubeconfig-operator");
        std::fs::write(
            &operator_kubeconfig,
            apiserver::kubeconfig_yaml(&apiserver.url, &ca_path, KubeconfigUser::Token(&apiserver.operator_token)),
        )?;
        let admin_config = apiserver::config_from_kubeconfig(&kubeconfig).await?;
        let operator_config = apiserver::config_from_kubeconfig(&operator_kubeconfig).await?;

        let mut env = TestEnv {
            ca,
            admin_config,
            operator_config,
            kubeconfig,
            operator_kubeconfig,
            installed_crds: Vec::new(),
            openshift_crds_dir: opts.openshift_crds.resolve(),
            machine_api: None,
            source,
            target,
            extra,
            apiserver,
            etcd,
            dir,
        };
        let mut to_install = Vec::new();
        if opts.project_crds {
            to_install.extend(crds::load_dir(&crds::project_dir())?);
        }
        if let Some(d) = &env.openshift_crds_dir {
            let found = opts.openshift_crds.load(d)?;
            anyhow::ensure!(!found.is_empty(), "no CRDs in {}", d.display());
            to_install.extend(found);
        }
        env.installed_crds = crds::install(&env.client(), to_install).await.context("installing CRDs")?;
        if opts.namespaces {
            crds::create_namespaces(&env.client(), crds::NAMESPACES).await?;
        }
        if opts.machine_api {
            let ca_path = env.ca_path();
            let trust = env.installed_trust_pem();
            let cluster = machine_api::Cluster {
                client: env.client(),
                apiserver_url: &env.apiserver.url,
                ca: &env.ca,
                ca_path: &ca_path,
                trust_pem: &trust,
                installed_crds: &env.installed_crds,
            };
            let started = MachineApi::start(&bins.machine_api, &cluster, &env.dir.path().join("machine-api")).await;
            let started = started.context("starting the machine-api")?;
            env.installed_crds.extend_from_slice(started.installed_crds());
            env.machine_api = Some(Arc::new(started));
        }
        Ok(env)
    }

    /// A new admin client (client certificate, group `system:masters`), bound to the calling
    /// runtime (or the shared runtime when called outside one).
    pub fn client(&self) -> kube::Client {
        new_client(&self.admin_config)
    }

    /// An admin [`Api`](kube::Api) of any kind by group, version, kind and plural (the OpenShift kinds
    /// have no Rust types here); namespaced when `ns` is given.
    pub fn dynamic(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        ns: Option<&str>,
    ) -> kube::Api<kube::api::DynamicObject> {
        let ar = crate::sim::objects::resource(group, version, kind, plural);
        match ns {
            Some(ns) => kube::Api::namespaced_with(self.client(), ns, &ar),
            None => kube::Api::all_with(self.client(), &ar),
        }
    }

    /// Client authenticating as [`apiserver::OPERATOR_USER`] with a static token. RBAC denies
    /// it everything until a test grants it roles.
    pub fn operator_client(&self) -> kube::Client {
        new_client(&self.operator_config)
    }

    /// The admin client's configuration.
    pub fn admin_config(&self) -> &kube::Config {
        &self.admin_config
    }

    /// Admin kubeconfig file (for kubectl or `KUBECONFIG`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Kubeconfig of the non-admin operator identity.
    pub fn operator_kubeconfig_path(&self) -> &Path {
        &self.operator_kubeconfig
    }

    /// `https://127.0.0.1:PORT`
    pub fn apiserver_url(&self) -> &str {
        &self.apiserver.url
    }

    pub fn admin_token(&self) -> &str {
        &self.apiserver.admin_token
    }

    pub fn operator_token(&self) -> &str {
        &self.apiserver.operator_token
    }

    /// The environment's CA: it signed the apiserver's certificate and those of every vCenter
    /// without a CA of its own.
    pub fn ca(&self) -> &Arc<TestCa> {
        &self.ca
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The CA certificate as a file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA certificates of every vCenter (the environment's first), one PEM bundle: what
    /// trusts them all.
    pub fn vcenter_ca_bundle_pem(&self) -> String {
        std::fs::read_to_string(self.vcenter_ca_bundle_path()).unwrap_or_else(|_| self.ca.cert_pem.clone())
    }

    /// [`TestEnv::vcenter_ca_bundle_pem`] as a file.
    pub fn vcenter_ca_bundle_path(&self) -> PathBuf {
        self.dir.path().join(VCENTER_CA_BUNDLE)
    }

    /// The (first) source vCenter.
    pub fn source(&self) -> &Vcsim {
        &self.source
    }

    /// The (first) target vCenter.
    pub fn target(&self) -> &Vcsim {
        &self.target
    }

    /// Every vCenter with its role: [`TestEnv::source`], the extra sources,
    /// [`TestEnv::target`], the extra targets.
    pub fn vcenters(&self) -> Vec<(VCenterRole, &Vcsim)> {
        let extra = |role| self.extra.iter().filter(move |(r, _)| *r == role).map(|(r, v)| (*r, v));
        std::iter::once((VCenterRole::Source, &self.source))
            .chain(extra(VCenterRole::Source))
            .chain(std::iter::once((VCenterRole::Target, &self.target)))
            .chain(extra(VCenterRole::Target))
            .collect()
    }

    /// The source vCenters, [`TestEnv::source`] first.
    pub fn sources(&self) -> Vec<&Vcsim> {
        self.vcenters().into_iter().filter(|(r, _)| *r == VCenterRole::Source).map(|(_, v)| v).collect()
    }

    /// The target vCenters, [`TestEnv::target`] first.
    pub fn targets(&self) -> Vec<&Vcsim> {
        self.vcenters().into_iter().filter(|(r, _)| *r == VCenterRole::Target).map(|(_, v)| v).collect()
    }

    /// The vCenter OpenShift knows by `host` (the address, no port: [`Vcsim::host`]).
    pub fn vcenter(&self, host: &str) -> Option<&Vcsim> {
        self.vcenters().into_iter().map(|(_, v)| v).find(|v| v.host() == host)
    }

    /// Names of the CRDs installed.
    pub fn installed_crds(&self) -> &[String] {
        &self.installed_crds
    }

    /// Where the OpenShift CRDs came from (fixtures or fallback), if any were installed.
    pub fn openshift_crds_dir(&self) -> Option<&Path> {
        self.openshift_crds_dir.as_deref()
    }

    /// The environment's temporary directory (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's audit log (JSON lines), if [`TestEnvOptions::audit_log`] was set.
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.apiserver.audit_log_path.as_deref()
    }

    /// The machine-api processes, if [`TestEnvOptions::machine_api`] was set.
    pub fn machine_api(&self) -> Option<&MachineApi> {
        self.machine_api.as_deref()
    }

    /// [`TestEnv::machine_api`], to keep: the simulator restarts its machine controller
    /// as a kubelet restarts the container.
    pub fn machine_api_handle(&self) -> Option<Arc<MachineApi>> {
        self.machine_api.clone()
    }

    /// What the simulated cluster trusted when it was installed, one PEM bundle: the
    /// environment's CA (the system roots of its nodes and images: a vCenter with a
    /// certificate from it is trusted as one from a public CA would be) and every source
    /// vCenter's CA (given at install, as `additionalTrustBundle`). A target vCenter with
    /// a CA of its own ([`VcsimOptions::with_own_ca`]) is not trusted until a migration
    /// adds its CA.
    pub fn installed_trust_pem(&self) -> String {
        let mut pems = vec![self.ca.cert_pem.clone()];
        for v in self.sources() {
            if let Some(pem) = &v.ca_pem
                && !pems.contains(pem)
            {
                pems.push(pem.clone());
            }
        }
        pems.iter().map(|p| if p.ends_with('\n') { p.clone() } else { format!("{p}\n") }).collect()
    }

    /// The system roots of the simulated cluster's images: the environment's CA.
    pub fn system_trust_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// Log files of the machine-api processes (none unless [`TestEnvOptions::machine_api`]).
    pub fn machine_api_logs(&self) -> Vec<(machine_api::Component, &Path)> {
        self.machine_api.as_deref().map(MachineApi::log_paths).unwrap_or_default()
    }

    /// Stop kube-apiserver (SIGTERM, or SIGKILL when `kill`) and start it again on the same
    /// address with the same certificates, tokens and etcd, as when a control-plane node
    /// restarts; returns when it is ready. Clients and kubeconfigs stay valid.
    pub async fn restart_apiserver(&mut self, kill: bool) -> Result<()> {
        self.apiserver.restart(kill).await
    }

    /// Process ids of etcd, kube-apiserver and every vcsim ([`TestEnv::vcenters`] order).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd.process.pid(), self.apiserver.process.pid()];
        pids.extend(self.vcenters().iter().map(|(_, v)| v.pid()));
        pids
    }

    /// Stops every process now (they are also stopped on drop).
    pub fn stop(&self) {
        // The machine-api, the apiserver and the vCenters first; etcd after, so the apiserver
        // shuts down cleanly.
        let mut first: Vec<&crate::process::Process> = self.machine_api.iter().flat_map(|m| m.processes()).collect();
        first.push(&self.apiserver.process);
        first.extend(self.vcenters().into_iter().map(|(_, v)| v.process()));
        stop_all(&first);
        stop_all(&[&self.etcd.process]);
    }

    /// One environment per test binary, started on first use and stopped (files removed)
    /// when the process exits. Tests sharing it must use their own object names.
    ///
    /// It runs on a runtime of its own, so it works from any test runtime: kube clients keep
    /// their connection tasks on the runtime that created them, and a `#[tokio::test]`
    /// runtime ends with its test.
    pub async fn shared() -> Result<&'static TestEnv> {
        static SHARED: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
        Self::shared_in(&SHARED, TestEnvOptions::default).await
    }

    /// Like [`TestEnv::shared`], with the real machine-api
    /// ([`TestEnvOptions::machine_api`]).
    pub async fn shared_with_machine_api() -> Result<&'static TestEnv> {
        static SHARED: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
        Self::shared_in(&SHARED, || TestEnvOptions { machine_api: true, ..Default::default() }).await
    }

    /// Like [`TestEnv::shared`] for an environment with other options, kept in `cell`.
    pub async fn shared_in(
        cell: &'static tokio::sync::OnceCell<TestEnv>,
        opts: impl FnOnce() -> TestEnvOptions,
    ) -> Result<&'static TestEnv> {
        cell.get_or_try_init(|| async {
            let env = shared_runtime().spawn(TestEnv::start(opts())).await??;
            Ok::<_, anyhow::Error>(env)
        })
        .await?;
        let env = cell.get().expect("initialised above");
        stop_at_exit(env);
        Ok(env)
    }
}

/// The file name of the vCenter CA bundle in the environment's directory.
const VCENTER_CA_BUNDLE: &str = "vcenter-ca-bundle.crt";

fn new_client(config: &kube::Config) -> kube::Client {
    // Building a client spawns its request-buffer task, which needs a runtime.
    let _guard = tokio::runtime::Handle::try_current().is_err().then(|| shared_runtime().enter());
    kube::Client::try_from(config.clone()).expect("a kube client from a config that worked at start")
}

/// Statics are never dropped, so shared environments are stopped by an exit hook.
fn stop_at_exit(env: &'static TestEnv) {
    static ENVS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    static HOOK: std::sync::Once = std::sync::Once::new();
    extern "C" fn stop_all_shared() {
        let envs = std::mem::take(&mut *ENVS.lock().unwrap_or_else(|e| e.into_inner()));
        for addr in envs {
            // SAFETY: only `&'static TestEnv` addresses are registered.
            let env = unsafe { &*(addr as *const TestEnv) };
            env.stop();
            let _ = std::fs::remove_dir_all(env.dir());
        }
    }
    HOOK.call_once(|| {
        // SAFETY: registering a plain extern "C" fn.
        unsafe { libc::atexit(stop_all_shared) };
    });
    let mut envs = ENVS.lock().unwrap_or_else(|e| e.into_inner());
    let addr = env as *const TestEnv as usize;
    if !envs.contains(&addr) {
        envs.push(addr);
    }
}

/// The runtime behind [`TestEnv::shared`]; it lives as long as the process.
pub fn shared_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vsm-testenv-shared")
            .enable_all()
            .build()
            .expect("building the shared test environment runtime")
    })
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcenters_start_in_role_order_and_must_differ_by_name_and_address() {
        let opts = TestEnvOptions {
            extra_sources: vec![VcsimOptions::extra_source(2, 1)],
            extra_targets: vec![VcsimOptions::extra_target(2, 2)],
            ..Default::default()
        };
        let plan = vcenter_plan(&opts);
        let names: Vec<(VCenterRole, &str)> = plan.iter().map(|(r, o)| (*r, o.name.as_str())).collect();
        use VCenterRole::{Source, Target};
        assert_eq!(names, [(Source, "source"), (Source, "source-2"), (Target, "target"), (Target, "target-2")]);
        check_vcenter_plan(&plan).unwrap();

        let same_address = TestEnvOptions { extra_sources: vec![VcsimOptions::zonal_source(2)], ..Default::default() };
        let err = check_vcenter_plan(&vcenter_plan(&same_address)).unwrap_err().to_string();
        assert!(err.contains("named \"source\""), "{err}");
        let mut twin = VcsimOptions::extra_source(2, 1);
        twin.listen_ip = VcsimOptions::target().listen_ip;
        let err =
            check_vcenter_plan(&vcenter_plan(&TestEnvOptions { extra_sources: vec![twin], ..Default::default() }))
                .unwrap_err()
                .to_string();
        assert!(err.contains("both listen on 127.0.0.2"), "{err}");
    }

    #[test]
    fn the_ca_bundle_has_each_ca_once() {
        let (a, b) =
            ("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nB\n");
        assert_eq!(ca_bundle([a, b, a, "", a.trim()]), format!("{}\n{}\n", a.trim(), b.trim()));
    }
}
