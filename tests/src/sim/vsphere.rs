//! The environment's vCenters (all of them, sources and targets) as the simulated
//! controllers see them: known by the address OpenShift stores (`127.0.0.1`, `127.0.0.2`), with the credentials each accepts (to judge
//! the cluster's) and its launcher's control API (the guests' view, for the kubelets). The
//! simulator opens no vSphere session: the real machine-api does the vSphere work.

use std::sync::Arc;

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret;
use vsm_vsphere::Credentials;

use crate::TestEnv;

#[derive(Clone, Debug)]
pub(crate) struct VCenter {
    /// Address as OpenShift stores it (no port).
    pub host: String,
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
    /// For the launchers' control APIs.
    control: reqwest::Client,
}

impl VCenters {
    pub fn from_env(env: &TestEnv) -> VCenters {
        let list = env
            .vcenters()
            .into_iter()
            .map(|(_, vc)| VCenter {
                host: vc.host(),
                port: vc.port(),
                username: vc.username.clone(),
                password: Arc::new(std::sync::Mutex::new(vc.password.clone())),
                control_url: vc.control_url.clone(),
            })
            .collect();
        VCenters {
            list,
            control: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("an HTTP client without TLS settings"),
        }
    }

    pub fn by_host(&self, host: &str) -> Option<&VCenter> {
        self.list.iter().find(|v| v.host == host)
    }

    /// Every VM of `vc` as its guest sees itself (templates left out).
    pub async fn guest_vms(&self, vc: &VCenter) -> Result<Vec<crate::vcsim::GuestVm>> {
        crate::vcsim::guest_vms_at(&self.control, &vc.control_url).await
    }

    /// The guest of VM `uuid` in `vc` reports `ip` (VMware Tools).
    pub async fn set_guest_ip(&self, vc: &VCenter, uuid: &str, ip: &str) -> Result<()> {
        crate::vcsim::set_guest_ip_at(&self.control, &vc.control_url, uuid, ip).await
    }
}

/// The credentials `secret` (`kube-system/vsphere-creds` or its copy) holds for `host` (keys
/// `<host>.username` and `<host>.password`).
pub(crate) fn credentials_in(secret: &Secret, host: &str) -> Option<Credentials> {
    let data = secret.data.as_ref()?;
    let get = |k: String| data.get(&k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).filter(|s| !s.is_empty());
    Some(Credentials::new(get(format!("{host}.username"))?, get(format!("{host}.password"))?))
}
