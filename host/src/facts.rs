//! Facts the controller reads from the cluster before the state machine decides: which
//! vCenters are the source, and spec problems the CRD schema cannot see (a field named in
//! every message).
//!
//! A check ends in one of two ways when it does not pass ([`CheckError`]): the spec is
//! wrong (the cluster answered, and the answer refutes it: the user must act), or the
//! check could not be made (the API server did not answer, or answered with an error of
//! its own). Only the first is shown as an invalid spec; the second stops the reconcile
//! before any phase runs, and it is tried again.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::api::{MigrationSpec, SourceVCenter};

/// Why a check of the spec against the cluster did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The cluster refutes the spec; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not be asked (transport failure, timeout, server error,
    /// throttling): nothing is known about the spec.
    #[error("{0}")]
    Unverified(String),
}

impl CheckError {
    /// A failed read, classified: an answer about the request (403 Forbidden for a Secret
    /// in a namespace the operator may not read, 400) refutes the spec; everything else
    /// (no answer, 5xx, 429, 401 while a token rotates) leaves it unverified.
    pub fn from_read(what: impl std::fmt::Display, e: &kube::Error) -> CheckError {
        let message = format!("{what}: {e}");
        match e {
            kube::Error::Api(s) if (400..500).contains(&s.code) && !matches!(s.code, 401 | 408 | 429) => {
                CheckError::Invalid(message)
            }
            _ => CheckError::Unverified(message),
        }
    }
}

fn infrastructure_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("config.openshift.io", "v1", "Infrastructure"),
        "infrastructures",
    );
    Api::all_with(client.clone(), &ar)
}

/// The source vCenters: those in the Infrastructure that no target failure domain names.
/// Err says why none can be determined (the migration cannot start).
pub async fn discover_sources(client: &kube::Client, spec: &MigrationSpec) -> Result<Vec<SourceVCenter>, CheckError> {
    let infra = infrastructure_api(client)
        .get_opt("cluster")
        .await
        .map_err(|e| CheckError::from_read("reading Infrastructure cluster", &e))?
        .ok_or_else(|| invalid("Infrastructure cluster does not exist: is this an OpenShift cluster?"))?;
    let vcenters = infra
        .data
        .pointer("/spec/platformSpec/vsphere/vcenters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if vcenters.is_empty() {
        return Err(invalid(
            "Infrastructure cluster lists no vCenter in spec.platformSpec.vsphere.vcenters: not a vSphere cluster",
        ));
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
        return Err(invalid(
            "every vCenter in the Infrastructure is also a target in spec.failureDomains: nothing to migrate from",
        ));
    }
    Ok(sources)
}

fn invalid(message: impl Into<String>) -> CheckError {
    CheckError::Invalid(message.into())
}

/// Problems with the spec that the schema cannot check: the target credentials Secret
/// must exist and hold `<server>.username` / `<server>.password` for every target server;
/// CA Secrets must exist.
pub async fn validate_spec(client: &kube::Client, namespace: &str, spec: &MigrationSpec) -> Result<(), CheckError> {
    let secret_ref = &spec.target_credentials_secret;
    let ns = secret_ref.namespace.clone().unwrap_or_else(|| namespace.to_string());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| {
            CheckError::from_read(
                format_args!("spec.targetVCenterCredentialsSecret: reading {ns}/{}", secret_ref.name),
                &e,
            )
        })?
        .ok_or_else(|| {
            invalid(format!("spec.targetVCenterCredentialsSecret: Secret {ns}/{} does not exist", secret_ref.name))
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
        return Err(invalid(format!(
            "spec.targetVCenterCredentialsSecret: Secret {ns}/{} lacks keys {}",
            secret_ref.name,
            missing.join(", ")
        )));
    }
    for (i, c) in spec.vcenters.iter().enumerate() {
        if let Some(ca) = &c.ca_secret {
            let ns = ca.namespace.clone().unwrap_or_else(|| namespace.to_string());
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
            let found = api
                .get_opt(&ca.name)
                .await
                .map_err(|e| CheckError::from_read(format_args!("spec.vcenters[{i}].caSecret"), &e))?;
            let has_key = found.as_ref().and_then(|s| s.data.as_ref()).is_some_and(|d| d.contains_key(&key));
            if !has_key {
                return Err(invalid(format!(
                    "spec.vcenters[{i}].caSecret: Secret {ns}/{} with key {key} does not exist",
                    ca.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("refused", "Reason").with_code(code)))
    }

    #[test]
    fn an_answer_about_the_request_refutes_the_spec_and_no_answer_proves_nothing() {
        for code in [400, 403, 404, 422] {
            assert!(matches!(CheckError::from_read("reading x", &api_error(code)), CheckError::Invalid(_)), "{code}");
        }
        for code in [401, 408, 429, 500, 503, 504] {
            assert!(
                matches!(CheckError::from_read("reading x", &api_error(code)), CheckError::Unverified(_)),
                "{code}"
            );
        }
        let refused = kube::Error::Service("client error (Connect)".into());
        let e = CheckError::from_read("spec.targetVCenterCredentialsSecret: reading ns/creds", &refused);
        assert_eq!(
            e,
            CheckError::Unverified(
                "spec.targetVCenterCredentialsSecret: reading ns/creds: ServiceError: client error (Connect)".into()
            )
        );
    }
}
