//! Facts the controller reads from the cluster before the state machine decides: which
//! vCenters are the source, and spec problems the CRD schema cannot see (a field named in
//! every message).

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::api::{MigrationSpec, SourceVCenter};

fn infrastructure_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("config.openshift.io", "v1", "Infrastructure"),
        "infrastructures",
    );
    Api::all_with(client.clone(), &ar)
}

/// The source vCenters: those in the Infrastructure that no target failure domain names.
/// Err says why none can be determined (the migration cannot start).
pub async fn discover_sources(client: &kube::Client, spec: &MigrationSpec) -> Result<Vec<SourceVCenter>, String> {
    let infra = infrastructure_api(client)
        .get_opt("cluster")
        .await
        .map_err(|e| format!("reading Infrastructure cluster: {e}"))?
        .ok_or("Infrastructure cluster does not exist: is this an OpenShift cluster?")?;
    let vcenters = infra
        .data
        .pointer("/spec/platformSpec/vsphere/vcenters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if vcenters.is_empty() {
        return Err(
            "Infrastructure cluster lists no vCenter in spec.platformSpec.vsphere.vcenters: not a vSphere cluster"
                .into(),
        );
    }
    let targets = spec.target_servers();
    let sources: Vec<SourceVCenter> = vcenters
        .iter()
        .filter_map(|v| {
            let server = v.get("server")?.as_str()?.to_string();
            let port = v.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443);
            (!targets.contains(&server.as_str())).then_some(SourceVCenter { server, port })
        })
        .collect();
    if sources.is_empty() {
        return Err(
            "every vCenter in the Infrastructure is also a target in spec.failureDomains: nothing to migrate from"
                .into(),
        );
    }
    Ok(sources)
}

/// Problems with the spec that the schema cannot check: the target credentials Secret
/// must exist and hold `<server>.username` / `<server>.password` for every target server;
/// CA Secrets must exist.
pub async fn validate_spec(client: &kube::Client, namespace: &str, spec: &MigrationSpec) -> Result<(), String> {
    let secret_ref = &spec.target_credentials_secret;
    let ns = secret_ref.namespace.clone().unwrap_or_else(|| namespace.to_string());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| format!("spec.targetVCenterCredentialsSecret: reading {ns}/{}: {e}", secret_ref.name))?
        .ok_or_else(|| {
            format!("spec.targetVCenterCredentialsSecret: Secret {ns}/{} does not exist", secret_ref.name)
        })?;
    let keys: Vec<String> =
        secret.data.unwrap_or_default().into_keys().chain(secret.string_data.unwrap_or_default().into_keys()).collect();
    let mut missing = Vec::new();
    for server in spec.target_servers() {
        for suffix in ["username", "password"] {
            let key = format!("{server}.{suffix}");
            if !keys.contains(&key) {
                missing.push(key);
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "spec.targetVCenterCredentialsSecret: Secret {ns}/{} lacks keys {}",
            secret_ref.name,
            missing.join(", ")
        ));
    }
    for (i, c) in spec.vcenters.iter().enumerate() {
        if let Some(ca) = &c.ca_secret {
            let ns = ca.namespace.clone().unwrap_or_else(|| namespace.to_string());
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
            let found = api.get_opt(&ca.name).await.map_err(|e| format!("spec.vcenters[{i}].caSecret: {e}"))?;
            let has_key = found.as_ref().and_then(|s| s.data.as_ref()).is_some_and(|d| d.contains_key(&key));
            if !has_key {
                return Err(format!(
                    "spec.vcenters[{i}].caSecret: Secret {ns}/{} with key {key} does not exist",
                    ca.name
                ));
            }
        }
    }
    Ok(())
}
