//! Where an OpenShift cluster gets the CA it trusts for a vCenter's certificate, and the
//! CA certificates a migration was given for a vCenter (`spec.vcenters[].caSecret`).
//!
//! Read in OpenShift's sources (docs/ARCHITECTURE.md, "How the cluster trusts a vCenter"):
//! the machine-api vSphere actuator, the vSphere cloud controller manager and the vSphere
//! CSI driver operator verify a vCenter with their container's system trust store, which
//! OpenShift mounts from a ConfigMap at `/etc/pki/ca-trust/extracted/pem`. The
//! cluster-network-operator fills every ConfigMap labelled
//! `config.openshift.io/inject-trusted-cabundle=true` with the Proxy `cluster`'s
//! `spec.trustedCA` ConfigMap (in `openshift-config`, key `ca-bundle.crt`) merged with the
//! system CAs; the cloud controller manager operator builds `ccm-trusted-ca` from the same
//! ConfigMap plus the cloud config's `ca-bundle.pem`. None of them reads a per-vCenter
//! `caFile`. So a vCenter's private CA reaches all of them through the Proxy's trusted CA
//! ConfigMap, and Go reads a trust store once per process: the pods must restart after the
//! injection (RestartPods).

use crate::pem::{self, Cert};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::CLOUD_CONFIG_NAMESPACE;

/// The Proxy singleton.
pub const PROXY: &str = "cluster";
/// The ConfigMap the installer makes for `additionalTrustBundle`, and the one this
/// migration creates when the Proxy names none.
pub const USER_CA_BUNDLE: &str = "user-ca-bundle";
/// The key of the Proxy's trusted CA ConfigMap and of every injected one.
pub const TRUSTED_CA_KEY: &str = "ca-bundle.crt";
/// The key OpenShift keeps the cloud provider's CA bundle under, next to `config`.
pub const CLOUD_CA_KEY: &str = "ca-bundle.pem";
/// The largest CA Secret value read (a bundle of a few hundred certificates).
pub const MAX_CA_BYTES: usize = 1 << 20;

/// A ConfigMap a vCenter client's pods mount as their trust store, and who fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    pub namespace: &'static str,
    pub name: &'static str,
    pub filled_by: &'static str,
}

/// The machine-api controllers' trust store (machine-api-operator
/// `install/0000_30_machine-api-operator_01_trusted-ca-configmap.yaml`).
pub const MACHINE_API_TRUST: Injected = Injected {
    namespace: "openshift-machine-api",
    name: "mao-trusted-ca",
    filled_by: "the cluster-network-operator (trusted CA injection)",
};
/// The vSphere cloud controller manager's (cluster-cloud-controller-manager-operator
/// `pkg/controllers/trusted_ca_bundle_controller.go`).
pub const CCM_TRUST: Injected = Injected {
    namespace: "openshift-cloud-controller-manager",
    name: "ccm-trusted-ca",
    filled_by: "the cluster-cloud-controller-manager-operator",
};
/// The vSphere CSI driver's (vmware-vsphere-csi-driver-operator `assets/ca_configmap.yaml`).
pub const CSI_DRIVER_TRUST: Injected = Injected {
    namespace: "openshift-cluster-csi-drivers",
    name: "vmware-vsphere-csi-driver-trusted-ca-bundle",
    filled_by: "the cluster-network-operator (trusted CA injection)",
};
/// The vSphere CSI driver operator's own (cluster-storage-operator
/// `assets/csidriveroperators/vsphere/02_configmap.yaml`).
pub const CSI_OPERATOR_TRUST: Injected = Injected {
    namespace: "openshift-cluster-csi-drivers",
    name: "vsphere-csi-driver-operator-trusted-ca-bundle",
    filled_by: "the cluster-network-operator (trusted CA injection)",
};

/// The name of the Proxy's trusted CA ConfigMap, if it names one.
pub fn proxy_trusted_ca(proxy: &Object) -> Option<&str> {
    proxy.str_at("/spec/trustedCA/name").filter(|n| !n.is_empty())
}

/// The certificates of a bundle, or why it cannot be used, with `what` it is.
pub fn certificates_of(text: &str, what: &str) -> Result<Vec<Cert>, PhaseError> {
    let certs = pem::certificates(text).map_err(|e| PhaseError::invalid(format!("{what} {e}")))?;
    if certs.is_empty() {
        return Err(PhaseError::invalid(format!("{what} holds no PEM certificate")));
    }
    Ok(certs)
}

/// The CA certificates the migration was given for `server` (`spec.vcenters[].caSecret`),
/// or none when it was given no CA for it. Refuses, naming the field, a Secret that is
/// missing, too large, or holds anything but certificates.
pub fn vcenter_ca(cx: &Cx, server: &str) -> Result<Vec<Cert>, PhaseError> {
    let spec = cx.spec()?;
    let Some((index, conn)) = spec.vcenters.iter().enumerate().find(|(_, c)| c.server == server) else {
        return Ok(Vec::new());
    };
    let Some(reference) = &conn.ca_secret else { return Ok(Vec::new()) };
    let namespace = reference.namespace.clone().unwrap_or_else(|| cx.call().migration.namespace.clone());
    let key = reference.key.clone().unwrap_or_else(|| "ca.crt".into());
    let what = format!("spec.vcenters[{index}].caSecret (Secret {namespace}/{}, key {key})", reference.name);
    let secret = cx
        .kube()
        .get(&types::SECRET, Some(&namespace), &reference.name)?
        .ok_or_else(|| PhaseError::invalid(format!("{what} does not exist")))?;
    let b64 = secret
        .str_at(&format!("/data/{}", json_pointer_escape(&key)))
        .ok_or_else(|| PhaseError::invalid(format!("{what} has no such key")))?;
    if b64.len() > MAX_CA_BYTES * 4 / 3 + 4 {
        return Err(PhaseError::invalid(format!("{what} is larger than {MAX_CA_BYTES} bytes")));
    }
    let text = crate::creds::decode(b64).ok_or_else(|| PhaseError::invalid(format!("{what} is not UTF-8 text")))?;
    certificates_of(&text, &what)
}

/// The Proxy's trusted CA ConfigMap in `openshift-config`, as a pointer for messages.
pub fn describe(name: &str) -> String {
    format!("ConfigMap {CLOUD_CONFIG_NAMESPACE}/{name} (key {TRUSTED_CA_KEY})")
}

fn json_pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}
