//! UpdateConfig: add every target vCenter to the vSphere cloud provider configuration
//! (`openshift-config/cloud-provider-config`, key `config`), in the format the cluster uses
//! (YAML `vcenter.<server>` entries or the legacy INI `[VirtualCenter "<server>"]`
//! sections), with the datacenters of its failure domains, its port, and the TLS trust the
//! migration was given for it. Every other line of the file stays as it was.
//!
//! Unlike the Go controller: the INI format works, comments, key order and unrelated
//! settings are kept, and `insecureFlag` is true only when the migration marks the vCenter
//! insecure.

use vsm_common::cloud_config::{self, Trust, VCenter};
use vsm_common::infra;
use vsm_sdk::prelude::*;
use vsm_sdk::spec::MigrationSpec;
use vsm_sdk::types::names::{CLOUD_CONFIG, CLOUD_CONFIG_KEY, CLOUD_CONFIG_NAMESPACE};

/// The key OpenShift keeps the cloud provider's CA bundle under, next to `config`.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.pem";

pub struct UpdateConfig;

impl Phase for UpdateConfig {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "UpdateConfig",
            env!("CARGO_PKG_VERSION"),
            "Add the target vCenters to the cloud provider config, keeping every other line",
        )
        .kube("", "configmaps", &["get", "update"], Some(CLOUD_CONFIG_NAMESPACE))
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

/// The config's entry for one target server, as the migration describes it.
pub fn entry_for(spec: &MigrationSpec, server: &str, ca_file: &str) -> VCenter {
    let conn = spec.connection(server);
    let trust = match conn {
        Some(c) if c.insecure => Trust::Insecure,
        Some(c) if c.thumbprint.as_deref().is_some_and(|t| !t.is_empty()) => {
            Trust::Thumbprint(c.thumbprint.clone().unwrap_or_default())
        }
        Some(c) if c.ca_secret.is_some() => Trust::CaFile(ca_file.to_string()),
        _ => Trust::Default,
    };
    VCenter {
        server: server.to_string(),
        port: conn.and_then(|c| c.port).unwrap_or(443),
        datacenters: infra::datacenters_of(&spec.failure_domains, server),
        trust,
    }
}

fn describe_trust(t: &Trust) -> String {
    match t {
        Trust::Default => "certificate verified as the config's global settings say".into(),
        Trust::CaFile(f) => format!("certificate verified with the CA bundle {f}"),
        Trust::Thumbprint(t) => format!("certificate pinned to thumbprint {t}"),
        Trust::Insecure => "certificate NOT verified (spec.vcenters marks it insecure)".into(),
    }
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let targets = spec.target_servers();
    if targets.is_empty() {
        return Err(PhaseError::invalid("spec.failureDomains names no vCenter server: nothing to add"));
    }
    let what = format!("ConfigMap {CLOUD_CONFIG_NAMESPACE}/{CLOUD_CONFIG}");
    let mut cm = cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)?.ok_or_else(|| {
        PhaseError::invalid(format!(
            "{what} does not exist: the cluster has no vSphere cloud provider config to update"
        ))
    })?;
    let pointer = format!("/data/{CLOUD_CONFIG_KEY}");
    let text = cm.str_at(&pointer).unwrap_or_default().to_string();
    if text.trim().is_empty() {
        return Err(PhaseError::invalid(format!(
            "{what} has no key {CLOUD_CONFIG_KEY:?} (or it is empty): nothing to add the target vCenters to"
        )));
    }
    let format = cloud_config::format_of(&text);
    let ca_file = cloud_config::ca_file(&text).unwrap_or_else(|| cloud_config::DEFAULT_CA_FILE.to_string());

    let mut edited = text.clone();
    let mut added = Vec::new();
    for server in &targets {
        let entry = entry_for(spec, server, &ca_file);
        let next = cloud_config::add_vcenter(&edited, &entry).context(format!("adding vCenter {server} to {what}"))?;
        if next != edited {
            added.push(format!(
                "{server} (port {}, datacenters {}, {})",
                entry.port,
                entry.datacenters.join(", "),
                describe_trust(&entry.trust)
            ));
            if matches!(entry.trust, Trust::CaFile(_)) && cm.str_at(&format!("/data/{CA_BUNDLE_KEY}")).is_none() {
                cx.warn(format!(
                    "vCenter {server} is verified with {ca_file}, but {what} has no {CA_BUNDLE_KEY}: \
                     the cluster's CA bundle must include that vCenter's CA"
                ));
            }
        }
        edited = next;
    }
    if added.is_empty() {
        return Ok(done(format!(
            "{what} ({format}) already lists {} with the settings the migration asks for",
            targets.join(", ")
        )));
    }
    cm.set(&pointer, Value::String(edited));
    cx.kube().replace(&types::CONFIG_MAP, &cm)?;
    let message = format!("added to {what} ({format}; every other line kept): {}", added.join("; "));
    cx.log().event(EventType::Normal, "CloudConfigUpdated", &message);
    Ok(done(message))
}

export_phase!(UpdateConfig);

#[cfg(test)]
mod tests;
