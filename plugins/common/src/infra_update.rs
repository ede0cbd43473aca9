//! The Infrastructure a migration writes: what UpdateInfrastructure stores and what
//! Preflight asks the API server about first (a dry-run of the same update), computed in
//! one place so the two cannot drift.
//!
//! From the live Infrastructure `cluster` and the spec: the source vCenters recorded when
//! the migration started must be listed; a legacy install (vCenters, no failure domains)
//! first gets each source described as a failure domain from a control-plane machine's
//! provider spec; then every target vCenter and failure domain is merged in
//! ([`infra::add_targets`]).

use vsm_sdk::prelude::*;
use vsm_sdk::spec::MigrationSpec;
use vsm_sdk::types::names::{MACHINE_API_NAMESPACE, MACHINE_ROLE_LABEL};

use crate::infra::{self, LEGACY_FAILURE_DOMAIN, Targets};

/// The update of the Infrastructure `live` that adds the targets.
pub struct Update {
    /// `spec.platformSpec.vsphere` now.
    pub current: Value,
    /// `spec.platformSpec.vsphere` with the targets added (equal to `current` when it
    /// already lists them).
    pub desired: Value,
    /// The whole object to write: `live` with `desired`, managed fields dropped.
    pub object: Object,
    /// Legacy sources first described as failure domains.
    pub legacy: Vec<String>,
}

/// Failure domains describing the legacy sources, from the masters' provider specs.
fn describe_sources(cx: &Cx, servers: &[String]) -> Result<Vec<Value>, PhaseError> {
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let mut masters =
        cx.kube().list(&types::MACHINE, Some(MACHINE_API_NAMESPACE), Some(&format!("{MACHINE_ROLE_LABEL}=master")))?;
    masters.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let name =
            if i == 0 { LEGACY_FAILURE_DOMAIN.to_string() } else { format!("{LEGACY_FAILURE_DOMAIN}-{}", i + 1) };
        let spec = masters
            .iter()
            .filter(|m| !m.is_deleting())
            .filter_map(|m| m.at("/spec/providerSpec/value"))
            .find(|ps| ps.pointer("/workspace/server").and_then(Value::as_str) == Some(server.as_str()))
            .ok_or_else(|| {
                PhaseError::from(infra::InfraError::CannotDescribeSource {
                    server: server.clone(),
                    reason: format!(
                        "no control-plane Machine in {MACHINE_API_NAMESPACE} runs there (workspace.server {server})"
                    ),
                })
            })?;
        out.push(infra::describe_source(&name, server, spec)?);
    }
    Ok(out)
}

/// The update that adds the spec's targets to `live`.
pub fn add_targets(cx: &Cx, spec: &MigrationSpec, live: &Object) -> Result<Update, PhaseError> {
    let port = |server: &str| spec.connection(server).and_then(|c| c.port).unwrap_or(443);
    infra::require_vsphere(live)?;
    let infra_id = infra::infra_id(live)?;
    let current = infra::vsphere_spec(live);
    let listed = infra::vcenter_servers(&current);
    let missing: Vec<&str> =
        cx.source_servers().iter().map(String::as_str).filter(|s| !listed.iter().any(|l| l == s)).collect();
    if !missing.is_empty() {
        return Err(PhaseError::invalid(format!(
            "the Infrastructure does not list the source vCenter(s) {} recorded when the migration started \
             (spec.platformSpec.vsphere.vcenters: {}); refusing to write vCenters without them",
            missing.join(", "),
            if listed.is_empty() { "empty".to_string() } else { listed.join(", ") }
        )));
    }
    let legacy = infra::undescribed_sources(&current, &spec.target_servers());
    let t = Targets {
        failure_domains: &spec.failure_domains,
        infra_id,
        port: &port,
        legacy_sources: describe_sources(cx, &legacy)?,
    };
    let desired = infra::add_targets(&current, &t)?;
    let mut object = live.clone();
    object.set(infra::VSPHERE_SPEC, desired.clone());
    object.remove("/metadata/managedFields");
    Ok(Update { current, desired, object, legacy })
}
