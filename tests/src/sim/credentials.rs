//! The cloud credential operator's part: in passthrough mode it copies the root credentials
//! `kube-system/vsphere-creds` into the Secret each component's CredentialsRequest names;
//! machine-api's is `openshift-machine-api/vsphere-cloud-credentials`, which the vSphere
//! machine actuator reads (`<server>.username` / `<server>.password`). The copy follows the
//! root Secret: a migration's UpdateSecrets phase and a password rotation rewrite the root
//! Secret only. In Manual mode (`CloudCredential cluster`, `spec.credentialsMode`) it copies
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

use super::objects as o;
use super::runtime::{Shared, inc};

/// The Secret machine-api's CredentialsRequest names.
pub const MACHINE_API_CREDS_NAME: &str = "vsphere-cloud-credentials";

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    // In Manual mode the operator copies nothing (the administrator fills the Secrets).
    let modes: Api<DynamicObject> = Api::all_with(sh.client.clone(), &o::cloud_credential());
    let manual = modes
        .get_opt("cluster")
        .await
        .ok()
        .flatten()
        .is_some_and(|c| o::str_at(&c.data, "/spec/credentialsMode") == Some("Manual"));
    if manual {
        return Ok(());
    }
    if sync_copy(&sh.client).await? {
        inc(&sh.counters.credential_copies);
    }
    Ok(())
}

/// Makes `openshift-machine-api/vsphere-cloud-credentials` hold exactly the root Secret's
/// data; returns whether it wrote. Without a root Secret the copy is left as it is (the
/// operator reports the CredentialsRequest as failing instead).
pub async fn sync_copy(client: &kube::Client) -> Result<bool> {
    let root: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    let Some(root) = root.get_opt(o::CREDS_NAME).await.context("reading kube-system/vsphere-creds")? else {
        return Ok(false);
    };
    let want: BTreeMap<String, ByteString> = root.data.unwrap_or_default();
    let copies: Api<Secret> = Api::namespaced(client.clone(), o::MACHINE_API_NS);
    match copies.get_opt(MACHINE_API_CREDS_NAME).await? {
        None => {
            let copy: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": MACHINE_API_CREDS_NAME, "namespace": o::MACHINE_API_NS,
                             "annotations": {"cloudcredential.openshift.io/credentials-request":
                                             "openshift-cloud-credential-operator/openshift-machine-api-vsphere"}},
                "type": "Opaque",
            }))?;
            let copy = Secret { data: Some(want), ..copy };
            // A conflict (made meanwhile) fails the pass, which is retried.
            copies.create(&PostParams::default(), &copy).await.context("creating the copy")?;
            Ok(true)
        }
        Some(copy) if copy.data.as_ref() == Some(&want) => Ok(false),
        Some(copy) => {
            // A merge patch of `data` would keep keys the root no longer has: replace the
            // whole object, guarded by the resourceVersion read.
            let copy = Secret { data: Some(want), string_data: None, ..copy };
            copies.replace(MACHINE_API_CREDS_NAME, &PostParams::default(), &copy).await.context("updating the copy")?;
            Ok(true)
        }
    }
}
