//! The target vCenters' CAs into the Proxy's trusted CA ConfigMap (steps 1 and 2 of the
//! phase's algorithm).

use vsm_common::pem::{self, Cert};
use vsm_common::shared_state::TARGET_CA_FINGERPRINTS;
use vsm_common::trust::{self, PROXY, TRUSTED_CA_KEY, USER_CA_BUNDLE};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::CLOUD_CONFIG_NAMESPACE;

/// What the cluster's trust got.
#[derive(Debug, Default)]
pub struct Trusted {
    /// Every target CA certificate (each once).
    pub certs: Vec<Cert>,
    /// What changed, when something did.
    pub message: Option<String>,
}

/// Steps 1 and 2: record the targets' CA fingerprints, then merge the certificates into
/// the Proxy's trusted CA ConfigMap (creating `user-ca-bundle` and naming it in the Proxy
/// when the Proxy names none).
pub fn trust_targets(cx: &Cx, targets: &[&str]) -> Result<Trusted, PhaseError> {
    let mut certs: Vec<Cert> = Vec::new();
    for server in targets {
        for cert in trust::vcenter_ca(cx, server)? {
            if !certs.iter().any(|c| c.fingerprint == cert.fingerprint) {
                certs.push(cert);
            }
        }
    }
    if certs.is_empty() {
        return Ok(Trusted::default());
    }
    let fingerprints: Vec<&str> = certs.iter().map(|c| c.fingerprint.as_str()).collect();
    cx.shared().put(TARGET_CA_FINGERPRINTS, &fingerprints)?;

    let proxy = cx.kube().get(&types::PROXY, None, PROXY)?.ok_or_else(|| {
        PhaseError::invalid(format!(
            "the Proxy {PROXY:?} (config.openshift.io) does not exist: it names the CA bundle every OpenShift \
             component trusts, and the target vCenters' CAs must go there"
        ))
    })?;
    let named = trust::proxy_trusted_ca(&proxy).map(str::to_string);
    let name = named.clone().unwrap_or_else(|| USER_CA_BUNDLE.to_string());
    let what = trust::describe(&name);
    let mut changes = Vec::new();

    let pointer = format!("/data/{TRUSTED_CA_KEY}");
    match cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), &name)? {
        Some(mut cm) => {
            let current = cm.str_at(&pointer).unwrap_or_default().to_string();
            let (merged, added) = pem::merge(&current, &certs)
                .map_err(|e| PhaseError::invalid(format!("{what} {e}: refusing to edit it")))?;
            if !added.is_empty() {
                cm.set(&pointer, Value::String(merged));
                cx.kube().replace(&types::CONFIG_MAP, &cm)?;
                changes.push(format!("{} CA certificate(s) added to {what}, every other kept", added.len()));
            }
        }
        None => {
            let (bundle, _) = pem::merge("", &certs).map_err(|e| PhaseError::invalid(e.to_string()))?;
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": CLOUD_CONFIG_NAMESPACE},
                            "data": {TRUSTED_CA_KEY: bundle}});
            cx.kube().create_if_absent(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), &cm)?;
            changes.push(format!("{what} created with {} CA certificate(s)", certs.len()));
        }
    }
    if named.is_none() {
        cx.kube().merge_patch(&types::PROXY, None, PROXY, &json!({"spec": {"trustedCA": {"name": name}}}))?;
        changes.push(format!("the Proxy {PROXY:?} names it as the cluster's trusted CA bundle"));
    }
    let short: Vec<&str> = fingerprints.iter().map(|f| pem::short(f)).collect();
    Ok(Trusted {
        message: (!changes.is_empty())
            .then(|| format!("target CA(s) {} trusted: {}", short.join(", "), changes.join(", "))),
        certs,
    })
}
