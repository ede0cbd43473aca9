//! The real OpenShift machine-api controllers and admission webhooks, from
//! `github.com/openshift/machine-api-operator` (built by [`crate::tools`]), run as child
//! processes against the environment's kube-apiserver
//! ([`TestEnvOptions::machine_api`](crate::TestEnvOptions::machine_api)).
//!
//! In a cluster, machine-api-operator runs these as the containers of the
//! `machine-api-controllers` Deployment in `openshift-machine-api`. Here each is a process on
//! loopback with the arguments the operator gives its container (`pkg/operator/sync.go`:
//! `--v=3 --namespace=openshift-machine-api`), except:
//! - leader election is off (`--leader-elect=false`): one replica of each;
//! - metrics and health probes listen on free 127.0.0.1 ports (`--metrics-bind-address`,
//!   `--health-addr`; nodelink-controller serves neither);
//! - no `--feature-gates`: the commands' defaults (the operator copies the cluster's
//!   FeatureGate, which nothing here sets);
//! - the admission webhooks. `cmd/machineset` serves them with a webhook server that
//!   listens on every interface (there is no flag for its host), and servers here may only
//!   listen on loopback. So machineset runs with `--webhook-enabled=false`, and
//!   `machine-api-webhooks` (the wrapper module's own small program) serves the same
//!   upstream handlers (`pkg/webhooks`, built by the same constructors with the same feature
//!   gates, at the same paths) on 127.0.0.1 with a serving certificate from the
//!   environment's CA. The ValidatingWebhookConfiguration and MutatingWebhookConfiguration
//!   `machine-api` are the ones machine-api-operator installs (printed by that program from
//!   `pkg/webhooks`), with a URL `clientConfig` (`https://127.0.0.1:PORT/path`; there is no
//!   Service) and `caBundle` = the environment's CA instead of the Service reference and the
//!   service-ca injection annotation's work. Their `failurePolicy` stays upstream's
//!   `Ignore`, so [`MachineApi::start`] returns only once the API server demonstrably calls
//!   them.
//!
//! | process | upstream | client identity |
//! |---|---|---|
//! | `machine-controller` | `cmd/vsphere` | `vsm-testenv:machine-api:machine-controller` |
//! | `machineset-controller` | `cmd/machineset` | `vsm-testenv:machine-api:machineset-controller` |
//! | `nodelink-controller` | `cmd/nodelink-controller` | `vsm-testenv:machine-api:nodelink-controller` |
//! | `machine-healthcheck-controller` | `cmd/machine-healthcheck` | `vsm-testenv:machine-api:machine-healthcheck-controller` |
//! | `machine-api-webhooks` | `pkg/webhooks` | `vsm-testenv:machine-api:machine-api-webhooks` |
//!
//! RBAC: every process has its own client certificate (user as above) in the group
//! [`CONTROLLERS_GROUP`], and that group gets exactly what machine-api-operator's manifests
//! grant the `machine-api-controllers` service account that all these containers share:
//! the Roles, ClusterRole and bindings named `machine-api-controllers` in
//! `install/0000_30_machine-api-operator_09_rbac.yaml`, read from the module source in the
//! Go module cache and applied with the group added to each binding's subjects. None of them
//! runs as admin.
//!
//! What they need in the API, created here when absent:
//! - CRDs: Machine, MachineSet (the environment's OpenShift CRDs), MachineHealthCheck (from
//!   `../shared/fixtures/openshift-crds` when the environment did not install it), DNS
//!   (`config.openshift.io`, from the `github.com/openshift/api` module machine-api-operator
//!   is built with: the fixtures do not have it), CloudCredential (`operator.openshift.io`,
//!   from the same module: whether the cloud credential operator fills the credentials
//!   Secret the actuator reads), and IPAddress and IPAddressClaim
//!   (`ipam.cluster.x-k8s.io`, from the `sigs.k8s.io/cluster-api` module it is built with:
//!   the actuator lists a Machine's claims when it deletes it).
//! - Infrastructure `cluster` with `status.platformStatus.type: VSphere` and
//!   `status.infrastructureName`, and DNS `cluster`: the webhook constructors read both once
//!   at start (the platform type picks the vSphere defaulting and validation; the defaulter
//!   labels Machines `machine.openshift.io/cluster-api-cluster: <infrastructureName>`).
//!   Created bare when absent, with the infrastructure name the simulator seeds by default
//!   ([`SeedOptions::default`](crate::sim::SeedOptions)); the simulator's seed completes a
//!   bare Infrastructure with its vCenters, failure domains and status.
//!
//! What the vSphere actuator needs to clone VMs comes from the cluster simulator's seed
//! ([`crate::sim::seed`]) and controllers, as in a cluster from the installer and the
//! operators: the credentials Secret `providerSpec.credentialsSecret` names
//! (`vsphere-cloud-credentials`, `<server>.username/.password`: the cloud credential
//! operator's copy of `kube-system/vsphere-creds`, kept in sync by the simulator), the
//! `<role>-user-data` Secrets (key `userData`), the cloud config the Infrastructure's
//! `spec.cloudConfig` names in `openshift-config` (the actuator reads each vCenter's port
//! and insecure flag from it), and in each vCenter a template it can clone (hardware version
//! 15 or later, one disk). The machine-controller verifies vCenter certificates with its
//! trust store, a file its `SSL_CERT_FILE` names ([`MachineApi::trust_file`]), as its
//! container does with the `mao-trusted-ca` ConfigMap mounted over
//! `/etc/pki/ca-trust/extracted/pem`: at start what the cluster trusted when it was
//! installed ([`TestEnv::installed_trust_pem`](crate::TestEnv::installed_trust_pem)); the
//! simulator restarts it with that ConfigMap's content whenever the
//! `machine-api-controllers` pod is replaced ([`MachineApi::restart_machine_controller`]).
//! The simulator's kubelets register a Node for each VM the actuator powers on, which
//! nodelink links to its Machine ([`Simulator`](crate::sim::Simulator)).
//!
//! The actuator tags each VM with the tag named like the infrastructure name in the category
//! `openshift-<infrastructure name>` when that tag exists in the vCenter, and skips the tag
//! otherwise (as on a cluster installed without it); nothing here creates it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apiserver::{self, KubeconfigUser};
use crate::crds;
use crate::pki::TestCa;
use crate::process::{Process, free_port, stop_all, wait_for};
use crate::sim::objects;
use crate::tools::MachineApiTools;

/// The namespace the controllers watch and the webhooks' credentials checks look in.
pub const NAMESPACE: &str = "openshift-machine-api";
/// The group of every machine-api client identity; it holds the `machine-api-controllers`
/// grants.
pub const CONTROLLERS_GROUP: &str = "vsm-testenv:machine-api-controllers";
/// Name of machine-api-operator's service account, Roles, ClusterRole and bindings.
const UPSTREAM_RBAC_NAME: &str = "machine-api-controllers";
const RBAC_MANIFEST: &str = "install/0000_30_machine-api-operator_09_rbac.yaml";
const DNS_CRD: &str = "config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_dnses.crd.yaml";
/// The cloud credential operator's configuration (its mode decides who fills the
/// credentials Secret the actuator reads): not in the fixtures either.
const CLOUD_CREDENTIAL_CRD: &str =
    "operator/v1/zz_generated.crd-manifests/0000_40_cloud-credential_00_cloudcredentials.crd.yaml";
/// The vSphere actuator lists a Machine's IP address claims when it deletes one (also without
/// static IPs), and fails while their kind is unknown; OpenShift installs them.
const IPAM_CRDS: [&str; 2] = [
    "config/crd/bases/ipam.cluster.x-k8s.io_ipaddresses.yaml",
    "config/crd/bases/ipam.cluster.x-k8s.io_ipaddressclaims.yaml",
];
const MHC_CRD_NAME: &str = "machinehealthchecks.machine.openshift.io";
const MHC_CRD_FILE: &str = "0000_10_machine-api_01_machinehealthchecks.crd.yaml";
const FIELD_MANAGER: &str = "vsm-testenv";

const TRUST_DIR: &str = "machine-controller-trust";
const TRUST_FILE: &str = "tls-ca-bundle.pem";

/// Replaces the trust file in one rename, so a starting process never reads half of it.
fn write_trust(path: &Path, pem: &str) -> Result<()> {
    let dir = path.parent().context("trust file without a folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".tls-ca-bundle.pem.new");
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Only a guard against hanging; a busy 2-core machine takes tens of seconds.
const READY_LIMIT: Duration = Duration::from_secs(300);

/// One machine-api process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// `cmd/vsphere`: the Machine controller with the vSphere actuator.
    MachineController,
    /// `cmd/machineset`: the MachineSet controller (webhooks off, see the module doc).
    MachineSetController,
    /// `cmd/nodelink-controller`: links Nodes and Machines.
    NodeLinkController,
    /// `cmd/machine-healthcheck`: the MachineHealthCheck controller.
    MachineHealthCheckController,
    /// The admission webhooks of `pkg/webhooks`.
    Webhooks,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::MachineController,
        Component::MachineSetController,
        Component::NodeLinkController,
        Component::MachineHealthCheckController,
        Component::Webhooks,
    ];

    /// The container name machine-api-operator gives it (the webhooks: the program's name).
    pub fn name(self) -> &'static str {
        match self {
            Component::MachineController => "machine-controller",
            Component::MachineSetController => "machineset-controller",
            Component::NodeLinkController => "nodelink-controller",
            Component::MachineHealthCheckController => "machine-healthcheck-controller",
            Component::Webhooks => "machine-api-webhooks",
        }
    }

    /// The user name of its client certificate.
    pub fn user(self) -> String {
        format!("vsm-testenv:machine-api:{}", self.name())
    }

    fn binary(self, tools: &MachineApiTools) -> &Path {
        match self {
            Component::MachineController => &tools.vsphere,
            Component::MachineSetController => &tools.machineset,
            Component::NodeLinkController => &tools.nodelink_controller,
            Component::MachineHealthCheckController => &tools.machine_healthcheck,
            Component::Webhooks => &tools.webhooks,
        }
    }
}

/// The running processes; stopped on drop.
pub struct MachineApi {
    processes: Vec<(Component, Process, PathBuf)>,
    /// The machine controller's trust store (`SSL_CERT_FILE`).
    trust_file: PathBuf,
    webhook_url: String,
    installed_crds: Vec<String>,
    version: String,
}

impl std::fmt::Debug for MachineApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineApi").field("webhook_url", &self.webhook_url).finish_non_exhaustive()
    }
}

/// What [`MachineApi::start`] needs of the environment.
pub struct Cluster<'a> {
    pub client: kube::Client,
    pub apiserver_url: &'a str,
    pub ca: &'a TestCa,
    /// The API server's CA (the kubeconfigs').
    pub ca_path: &'a Path,
    /// What the machine controller's trust store holds at start
    /// ([`TestEnv::installed_trust_pem`](crate::TestEnv::installed_trust_pem)).
    pub trust_pem: &'a str,
    /// CRDs the environment installed already.
    pub installed_crds: &'a [String],
}

impl MachineApi {
    /// Prepares the API (CRDs, Infrastructure, DNS, RBAC), starts every process with files
    /// under `dir`, registers the webhooks, and returns once all processes are ready and the
    /// API server calls the webhooks.
    pub async fn start(tools: &MachineApiTools, cluster: &Cluster<'_>, dir: &Path) -> Result<MachineApi> {
        std::fs::create_dir_all(dir)?;
        let client = &cluster.client;
        let module = tools.clone();
        let (operator_source, openshift_api_source, cluster_api_source, version) =
            tokio::task::spawn_blocking(move || {
                anyhow::Ok((
                    module.operator_source()?,
                    module.openshift_api_source()?,
                    module.cluster_api_source()?,
                    module.operator_version()?,
                ))
            })
            .await??;
        let installed_crds =
            install_crds(client, &openshift_api_source, &cluster_api_source, cluster.installed_crds).await?;
        crds::create_namespaces(client, &[NAMESPACE, "openshift-config", "openshift-config-managed"]).await?;
        ensure_cluster_config(client).await?;
        apply_rbac(client, &operator_source).await.context("applying machine-api-operator's RBAC")?;

        let cert_dir = dir.join("webhook-certs");
        std::fs::create_dir_all(&cert_dir)?;
        let (cert, key) = cluster.ca.issue_server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])?;
        std::fs::write(cert_dir.join("tls.crt"), cert)?;
        std::fs::write(cert_dir.join("tls.key"), key)?;
        let webhook_port = free_port()?;

        let trust_file = dir.join(TRUST_DIR).join(TRUST_FILE);
        write_trust(&trust_file, cluster.trust_pem)?;

        let mut processes = Vec::new();
        let mut health = Vec::new();
        for component in Component::ALL {
            let kubeconfig = write_kubeconfig(component, cluster, dir)?;
            let (args, health_port) = command_line(component, webhook_port, &cert_dir)?;
            let log = dir.join(format!("{}.log", component.name()));
            let mut env = vec![("KUBECONFIG", kubeconfig.as_os_str())];
            if component == Component::MachineController {
                env.push(("SSL_CERT_FILE", trust_file.as_os_str()));
            }
            let process = Process::spawn(component.name(), component.binary(tools), &args, &env, &log, false)?;
            health.push((component, health_port));
            processes.push((component, process, log));
        }
        let webhook_url = format!("https://127.0.0.1:{webhook_port}");
        let machine_api = MachineApi { processes, webhook_url, installed_crds, version, trust_file };

        for (component, port) in health {
            machine_api.wait_ready(component, port).await?;
        }
        register_webhooks(client, &tools.webhooks, &machine_api.webhook_url, &cluster.ca.cert_pem).await?;
        wait_for_admission(client).await.with_context(|| {
            format!("the API server does not call the webhooks; log:\n{}", machine_api.log_tail(Component::Webhooks))
        })?;
        Ok(machine_api)
    }

    /// The machine controller's trust store: the file its `SSL_CERT_FILE` names, as the
    /// `mao-trusted-ca` ConfigMap is mounted at `/etc/pki/ca-trust/extracted/pem` in a
    /// cluster.
    pub fn trust_file(&self) -> &Path {
        &self.trust_file
    }

    /// Restarts the machine controller with `trust_pem` as its trust store, as a kubelet
    /// starts a new `machine-api-controllers` pod with the ConfigMap as it is then (Go
    /// reads its trust store once per process).
    pub fn restart_machine_controller(&self, trust_pem: &str, why: &str) -> Result<()> {
        write_trust(&self.trust_file, trust_pem)?;
        self.entry(Component::MachineController).1.restart(why)
    }

    /// The machine-api-operator version the processes were built from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Each process's log (stdout and stderr), by component.
    pub fn log_paths(&self) -> Vec<(Component, &Path)> {
        self.processes.iter().map(|(c, _, log)| (*c, log.as_path())).collect()
    }

    /// The log of one process.
    pub fn log_path(&self, component: Component) -> &Path {
        self.entry(component).2.as_path()
    }

    /// The last lines of a process's log.
    pub fn log_tail(&self, component: Component) -> String {
        self.entry(component).1.log_tail()
    }

    /// Fails with the log tail of the first process that has exited.
    pub fn check_running(&self) -> Result<()> {
        self.processes.iter().try_for_each(|(_, p, _)| p.check_running())
    }

    pub fn pid(&self, component: Component) -> u32 {
        self.entry(component).1.pid()
    }

    /// The CRDs [`MachineApi::start`] installed (the environment had not).
    pub fn installed_crds(&self) -> &[String] {
        &self.installed_crds
    }

    /// `https://127.0.0.1:PORT` of the webhook server.
    pub fn webhook_url(&self) -> &str {
        &self.webhook_url
    }

    /// The processes, to stop them together with others ([`stop_all`]).
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.processes.iter().map(|(_, p, _)| p)
    }

    /// Stops every process now (also done on drop).
    pub fn stop(&self) {
        stop_all(&self.processes().collect::<Vec<_>>());
    }

    fn entry(&self, component: Component) -> &(Component, Process, PathBuf) {
        self.processes.iter().find(|(c, _, _)| *c == component).expect("every component is started")
    }

    /// `/readyz` on the health port; without one (nodelink), the controller's workers
    /// having started, as its log says. Fails at once if the process exits.
    async fn wait_ready(&self, component: Component, health_port: Option<u16>) -> Result<()> {
        let (_, process, log) = self.entry(component);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            process.check_running()?;
            let ready = match health_port {
                Some(port) => http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                None => std::fs::read_to_string(log).unwrap_or_default().contains("Starting workers"),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {READY_LIMIT:?}; log tail:\n{}", component.name(), process.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MachineApi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command line of `component` (see the module doc), and its health port if it has one.
fn command_line(component: Component, webhook_port: u16, cert_dir: &Path) -> Result<(Vec<String>, Option<u16>)> {
    // What machine-api-operator passes every container, less leader election.
    let mut args: Vec<String> = vec!["--logtostderr=true".into(), "--v=3".into(), format!("--namespace={NAMESPACE}")];
    let no_leader_election = || String::from("--leader-elect=false");
    let metrics = || -> Result<String> { Ok(format!("--metrics-bind-address=127.0.0.1:{}", free_port()?)) };
    let health = match component {
        Component::NodeLinkController => None,
        _ => Some(free_port()?),
    };
    match component {
        Component::MachineController | Component::MachineHealthCheckController => {
            args.extend([no_leader_election(), metrics()?]);
        }
        Component::MachineSetController => {
            args.extend([no_leader_election(), metrics()?, "--webhook-enabled=false".into()]);
        }
        // It serves neither metrics nor probes.
        Component::NodeLinkController => args.push(no_leader_election()),
        // Its own program: no leader election to turn off, no metrics worth serving.
        Component::Webhooks => args.extend([
            "--webhook-host=127.0.0.1".into(),
            format!("--webhook-port={webhook_port}"),
            format!("--webhook-cert-dir={}", cert_dir.display()),
            "--metrics-bind-address=0".into(),
        ]),
    }
    if let Some(port) = health {
        args.push(format!("--health-addr=127.0.0.1:{port}"));
    }
    Ok((args, health))
}

fn write_kubeconfig(component: Component, cluster: &Cluster<'_>, dir: &Path) -> Result<PathBuf> {
    let (cert, key) = cluster.ca.issue_client(&component.user(), Some(CONTROLLERS_GROUP))?;
    let (cert_path, key_path) =
        (dir.join(format!("{}.crt", component.name())), dir.join(format!("{}.key", component.name())));
    std::fs::write(&cert_path, cert)?;
    std::fs::write(&key_path, key)?;
    let path = dir.join(format!("{}.kubeconfig", component.name()));
    let user = KubeconfigUser::ClientCert { cert: &cert_path, key: &key_path };
    std::fs::write(&path, apiserver::kubeconfig_yaml(cluster.apiserver_url, cluster.ca_path, user))?;
    Ok(path)
}

/// The DNS CRD, the IP address (claim) CRDs, and the MachineHealthCheck CRD unless the
/// environment installed it. Returns their names.
async fn install_crds(
    client: &kube::Client,
    openshift_api_source: &Path,
    cluster_api_source: &Path,
    installed: &[String],
) -> Result<Vec<String>> {
    let mut wanted = load_crds(&openshift_api_source.join(DNS_CRD))?;
    wanted.extend(load_crds(&openshift_api_source.join(CLOUD_CREDENTIAL_CRD))?);
    for file in IPAM_CRDS {
        wanted.extend(load_crds(&cluster_api_source.join(file))?);
    }
    if !installed.iter().any(|n| n == MHC_CRD_NAME) {
        let fixtures = crds::fixtures_dir().context(
            "the machine-api needs the MachineHealthCheck CRD from ../shared/fixtures/openshift-crds \
             (or $VSM_OPENSHIFT_CRDS), which is missing",
        )?;
        wanted.extend(load_crds(&fixtures.join(MHC_CRD_FILE))?);
    }
    crds::install(client, wanted).await.context("installing the machine-api CRDs")
}

fn load_crds(file: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    Ok(vec![crd])
}

/// Infrastructure `cluster` (platform VSphere, the simulator's default infrastructure name)
/// and DNS `cluster`, bare, unless they exist.
async fn ensure_cluster_config(client: &kube::Client) -> Result<()> {
    let infra = objects::infra_api(client);
    if infra.get_opt(objects::INFRA_NAME).await?.is_none() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
            "metadata": {"name": objects::INFRA_NAME},
            "spec": {"platformSpec": {"type": "VSphere"}},
        }))?;
        create_if_absent(&infra, &obj).await?;
        let status = json!({"status": {
            "infrastructureName": crate::sim::SeedOptions::default().infra_id,
            "platform": "VSphere",
            "platformStatus": {"type": "VSphere"},
        }});
        infra
            .patch_status(objects::INFRA_NAME, &PatchParams::default(), &Patch::Merge(status))
            .await
            .context("setting the Infrastructure's platform status")?;
    }
    let dns: Api<DynamicObject> =
        Api::all_with(client.clone(), &objects::resource("config.openshift.io", "v1", "DNS", "dnses"));
    // No public zone: the webhooks read that as a disconnected cluster (it matters on Azure).
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "config.openshift.io/v1", "kind": "DNS", "metadata": {"name": "cluster"}, "spec": {},
    }))?;
    create_if_absent(&dns, &obj).await
}

async fn create_if_absent(api: &Api<DynamicObject>, obj: &DynamicObject) -> Result<()> {
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", obj.metadata.name.as_deref().unwrap_or("?"))),
    }
}

/// The `machine-api-controllers` Roles, ClusterRole and bindings from machine-api-operator's
/// manifest, each binding with [`CONTROLLERS_GROUP`] added to its subjects.
pub fn controller_rbac(operator_source: &Path) -> Result<Vec<Value>> {
    let file = operator_source.join(RBAC_MANIFEST);
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut doc: Value =
            serde::Deserialize::deserialize(doc).with_context(|| format!("parsing {}", file.display()))?;
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")
            || doc["metadata"]["name"] != UPSTREAM_RBAC_NAME
        {
            continue;
        }
        if kind.ends_with("Binding") {
            let subjects = doc["subjects"].as_array_mut().context("a binding without subjects")?;
            subjects.push(json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": CONTROLLERS_GROUP}));
        }
        out.push(doc);
    }
    if out.is_empty() {
        bail!("no {UPSTREAM_RBAC_NAME} RBAC in {}", file.display());
    }
    Ok(out)
}

async fn apply_rbac(client: &kube::Client, operator_source: &Path) -> Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for doc in controller_rbac(operator_source)? {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let resource = objects::resource("rbac.authorization.k8s.io", "v1", kind, &format!("{}s", kind.to_lowercase()));
        let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &pp, &Patch::Apply(&doc)).await.with_context(|| format!("applying {kind} {name}"))?;
    }
    Ok(())
}

/// machine-api-operator's webhook configurations, pointed at `url` and trusting `ca_pem`.
pub fn webhook_configurations(
    webhooks_bin: &Path,
    url: &str,
    ca_pem: &str,
) -> Result<(ValidatingWebhookConfiguration, MutatingWebhookConfiguration)> {
    let out = std::process::Command::new(webhooks_bin)
        .arg("--print-configurations")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", webhooks_bin.display()))?;
    if !out.status.success() {
        bail!("{} --print-configurations: {}", webhooks_bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    let (mut validating, mut mutating): (ValidatingWebhookConfiguration, MutatingWebhookConfiguration) =
        serde_json::from_slice(&out.stdout).context("parsing the webhook configurations")?;
    let point = |config: &mut k8s_openapi::api::admissionregistration::v1::WebhookClientConfig| -> Result<()> {
        let service = config.service.take().context("upstream webhook without a service")?;
        let path = service.path.context("upstream webhook without a path")?;
        config.url = Some(format!("{url}{path}"));
        config.ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
        Ok(())
    };
    for hook in validating.webhooks.iter_mut().flatten() {
        point(&mut hook.client_config)?;
    }
    for hook in mutating.webhooks.iter_mut().flatten() {
        point(&mut hook.client_config)?;
    }
    // Nothing injects a CA here; the bundle is set above.
    for meta in [&mut validating.metadata, &mut mutating.metadata] {
        meta.annotations = None;
    }
    Ok((validating, mutating))
}

async fn register_webhooks(client: &kube::Client, webhooks_bin: &Path, url: &str, ca_pem: &str) -> Result<()> {
    let (validating, mutating) = webhook_configurations(webhooks_bin, url, ca_pem)?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let name = validating.metadata.name.clone().context("unnamed webhook configuration")?;
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(&name, &pp, &Patch::Apply(&validating)).await.context("applying the ValidatingWebhookConfiguration")?;
    let name = mutating.metadata.name.clone().context("unnamed webhook configuration")?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(&name, &pp, &Patch::Apply(&mutating)).await.context("applying the MutatingWebhookConfiguration")?;
    Ok(())
}

/// The API server picks webhook configurations up asynchronously, and with `failurePolicy:
/// Ignore` an unreachable webhook goes unnoticed, so: dry-run a MachineSet whose provider
/// spec is empty until the MachineSet validator refuses it.
async fn wait_for_admission(client: &kube::Client) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &objects::machine_set());
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
        "metadata": {"name": "vsm-testenv-webhook-probe", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"probe": "x"}},
                 "template": {"metadata": {"labels": {"probe": "x"}}, "spec": {"providerSpec": {"value": {}}}}},
    }))?;
    let pp = PostParams { dry_run: true, ..Default::default() };
    wait_for("the machine-api webhooks to be called", READY_LIMIT, || {
        let create = api.create(&pp, &probe);
        async move {
            match create.await {
                Err(kube::Error::Api(e)) if e.message.contains("validation.machineset.machine.openshift.io") => {
                    Ok(true)
                }
                Err(e) => Err(e.into()),
                Ok(_) => Ok(false),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_has_its_own_user_in_the_controllers_group() {
        let users: std::collections::HashSet<String> = Component::ALL.iter().map(|c| c.user()).collect();
        assert_eq!(users.len(), Component::ALL.len());
    }
}
