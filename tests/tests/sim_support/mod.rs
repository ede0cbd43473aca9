//! Shared setup of the cluster simulator tests: an environment of their own (the seeded
//! objects are cluster singletons), polling with generous limits, and lookups.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use vsm_testenv::sim::objects::{self as o};
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator};
use vsm_testenv::{TestEnv, TestEnvOptions};
use vsm_vsphere::{Client, ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy};

/// Only a guard against hanging: nothing here should take more than seconds.
pub const LIMIT: Duration = Duration::from_secs(300);

fn limit() -> Duration {
    std::env::var("VSM_SIM_TEST_LIMIT_SECS").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs).unwrap_or(LIMIT)
}

pub struct World {
    pub env: TestEnv,
    pub cluster: SeededCluster,
    pub sim: Option<SimHandle>,
    pub pool: SessionPool,
}

impl World {
    /// A new environment, seeded; with the real machine-api and the simulator started when
    /// `sim` is given.
    pub async fn start(seed: SeedOptions, sim: Option<SimOptions>) -> World {
        let opts = TestEnvOptions { machine_api: sim.is_some(), ..Default::default() };
        let env = TestEnv::start(opts).await.expect("environment starts");
        let cluster = vsm_testenv::sim::seed(&env, &seed).await.expect("seeding");
        let sim = sim.map(|o| Simulator::start(&env, o));
        World { env, cluster, sim, pool: SessionPool::new(ClientOptions::default()) }
    }

    pub fn client(&self) -> kube::Client {
        self.env.client()
    }

    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("simulator started")
    }

    /// An admin session on the source (`true`) or target vCenter.
    pub async fn vcenter(&self, source: bool) -> std::sync::Arc<Client> {
        let vc = if source { self.env.source() } else { self.env.target() };
        let spec = ServerSpec {
            server: vc.server(),
            credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
            tls: TlsPolicy { ca_bundle_pem: Some(self.env.ca_pem().to_string()), ..Default::default() },
        };
        self.pool.client(&spec).await.expect("vCenter login")
    }

    pub async fn vm_names(&self, source: bool, folder: &str) -> Vec<String> {
        match self.vcenter(source).await.list_vms(folder).await {
            Ok(vms) => vms.into_iter().map(|v| v.name).collect(),
            Err(vsm_vsphere::VsphereError::NotFound { .. }) => Vec::new(),
            Err(e) => panic!("listing {folder}: {e}"),
        }
    }

    pub async fn machine(&self, name: &str) -> Option<DynamicObject> {
        o::machines_api(&self.client()).get_opt(name).await.unwrap()
    }

    pub async fn machines(&self) -> Vec<DynamicObject> {
        o::machines_api(&self.client()).list(&ListParams::default()).await.unwrap().items
    }

    pub async fn node(&self, name: &str) -> Option<Node> {
        Api::<Node>::all(self.client()).get_opt(name).await.unwrap()
    }

    pub async fn pods(&self, ns: &str, labels: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client(), ns).list(&ListParams::default().labels(labels)).await.unwrap().items
    }

    pub async fn operator(&self, name: &str) -> DynamicObject {
        o::operators_api(&self.client()).get(name).await.unwrap()
    }

    /// Poll `f` until it returns Some, or panic after [`LIMIT`] with what it last saw and
    /// the simulator's recent errors.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            match f().await {
                Ok(v) => return v,
                Err(last) if start.elapsed() > limit() => {
                    let errors = self.sim.as_ref().map(|s| s.errors()).unwrap_or_default();
                    let stats = self.sim.as_ref().map(|s| format!("{:?}\n{}", s.stats(), s.diagnostics()));
                    panic!(
                        "{what}: still not true after {:?}; last: {last}\nsimulator: {}\nerrors: {errors:#?}",
                        limit(),
                        stats.unwrap_or_default()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Add the target vCenter (with a failure domain named `fd`) to the Infrastructure,
    /// its credentials to vsphere-creds and its entry to the YAML cloud config: what a
    /// migration does before it creates machines there.
    pub async fn add_target(&self, fd: &str) {
        let client = self.client();
        let infra = o::infra_api(&client).get(o::INFRA_NAME).await.unwrap();
        let mut vsphere = infra.data["spec"]["platformSpec"]["vsphere"].clone();
        vsphere["vcenters"].as_array_mut().unwrap().push(self.cluster.target_vcenter_json());
        let fds = vsphere["failureDomains"].as_array().cloned().unwrap_or_default();
        let mut fds = fds;
        fds.push(self.cluster.target_failure_domain(fd).to_json());
        vsphere["failureDomains"] = Value::Array(fds);
        let patch = json!({"spec": {"platformSpec": {"vsphere": vsphere}}});
        o::infra_api(&client).patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        self.add_target_credentials().await;
        self.add_target_to_cloud_config().await;
    }

    pub async fn add_target_credentials(&self) {
        let dst = self.env.target();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(self.client(), o::CREDS_NS);
        let patch = json!({"stringData": {format!("{}.username", dst.host()): dst.username,
                                          format!("{}.password", dst.host()): dst.password}});
        secrets.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }

    pub async fn add_target_to_cloud_config(&self) {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(self.client(), o::CLOUD_CONFIG_NS);
        let cm = cms.get(o::CLOUD_CONFIG_NAME).await.unwrap();
        let text = cm.data.unwrap()[o::CLOUD_CONFIG_KEY].clone();
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let t = &self.cluster.target;
        doc["vcenter"][t.host.as_str()] = serde_yaml::from_str(&format!(
            "{{server: '{}', port: {}, datacenters: [{}]}}",
            t.host, t.port, t.datacenter
        ))
        .unwrap();
        let patch = json!({"data": {o::CLOUD_CONFIG_KEY: serde_yaml::to_string(&doc).unwrap()}});
        cms.patch(o::CLOUD_CONFIG_NAME, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.sim.take() {
            s.stop().await;
        }
        self.pool.shutdown().await;
    }
}

pub fn phase(m: &DynamicObject) -> &str {
    o::str_at(&m.data, "/status/phase").unwrap_or_default()
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

/// `(Available, Degraded)` of a ClusterOperator.
pub fn health(co: &DynamicObject) -> (String, String) {
    let c = co.data.pointer("/status/conditions");
    let get = |t| o::condition_status(c, t).unwrap_or("?").to_string();
    (get("Available"), get("Degraded"))
}

pub fn names(objs: &[impl ResourceExt]) -> Vec<String> {
    let mut v: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
    v.sort();
    v
}
