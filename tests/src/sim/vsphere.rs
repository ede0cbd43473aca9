//! The environment's vCenters as the simulated machine-api sees them: known by the address
//! OpenShift stores (`127.0.0.1`, `127.0.0.2`), reached with the credentials the cluster
//! holds for them.

use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use tokio::sync::Semaphore;
use vsm_vsphere::{Client, ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy};

use super::objects as o;
use crate::TestEnv;

#[derive(Clone, Debug)]
pub(crate) struct VCenter {
    /// Address as OpenShift stores it (no port).
    pub host: String,
    /// `host:port`, where the client connects.
    pub server: String,
    pub port: u16,
    /// What the vCenter accepts (to tell a cloud provider's login would fail); the
    /// password changes when a test rotates it.
    pub username: String,
    pub password: Arc<std::sync::Mutex<String>>,
    /// The launcher's control API: what the VMs' guests see (the kubelets' view).
    pub control_url: String,
}

pub(crate) struct VCenters {
    pub list: Vec<VCenter>,
    ca_pem: String,
    pub pool: SessionPool,
    /// Bounds vSphere work (clones, destroys) in flight.
    pub permits: Arc<Semaphore>,
    /// For the launchers' control APIs.
    control: reqwest::Client,
}

impl VCenters {
    pub fn from_env(env: &TestEnv, concurrency: usize) -> VCenters {
        let list = [env.source(), env.target()]
            .into_iter()
            .map(|vc| VCenter {
                host: vc.host(),
                server: vc.server(),
                port: vc.port(),
                username: vc.username.clone(),
                password: Arc::new(std::sync::Mutex::new(vc.password.clone())),
                control_url: vc.control_url.clone(),
            })
            .collect();
        VCenters {
            list,
            ca_pem: env.ca_pem().to_string(),
            pool: SessionPool::new(ClientOptions::default()),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            control: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("an HTTP client without TLS settings"),
        }
    }

    pub fn by_host(&self, host: &str) -> Option<&VCenter> {
        self.list.iter().find(|v| v.host == host)
    }

    pub fn hosts(&self) -> Vec<String> {
        self.list.iter().map(|v| v.host.clone()).collect()
    }

    /// Every VM of `vc` as its guest sees itself (templates left out).
    pub async fn guest_vms(&self, vc: &VCenter) -> Result<Vec<crate::vcsim::GuestVm>> {
        crate::vcsim::guest_vms_at(&self.control, &vc.control_url).await
    }

    /// The guest of VM `uuid` in `vc` reports `ip` (VMware Tools).
    pub async fn set_guest_ip(&self, vc: &VCenter, uuid: &str, ip: &str) -> Result<()> {
        crate::vcsim::set_guest_ip_at(&self.control, &vc.control_url, uuid, ip).await
    }

    pub async fn client(&self, vc: &VCenter, creds: Credentials) -> Result<Arc<Client>, vsm_vsphere::VsphereError> {
        let tls = TlsPolicy { ca_bundle_pem: Some(self.ca_pem.clone()), ..Default::default() };
        self.pool.client(&ServerSpec { server: vc.server.clone(), credentials: creds, tls }).await
    }
}

/// The credentials `kube-system/vsphere-creds` holds for `host` (keys `<host>.username`
/// and `<host>.password`), as machine-api gets them (through the cloud credential operator).
pub(crate) async fn cluster_credentials(client: &kube::Client, host: &str) -> Result<Option<Credentials>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    let Some(secret) = api.get_opt(o::CREDS_NAME).await.context("reading kube-system/vsphere-creds")? else {
        return Ok(None);
    };
    Ok(credentials_in(&secret, host))
}

pub(crate) fn credentials_in(secret: &Secret, host: &str) -> Option<Credentials> {
    let data = secret.data.as_ref()?;
    let get = |k: String| data.get(&k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).filter(|s| !s.is_empty());
    Some(Credentials::new(get(format!("{host}.username"))?, get(format!("{host}.password"))?))
}
