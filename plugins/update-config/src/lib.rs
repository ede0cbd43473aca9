//! UpdateConfig: add every target vCenter to the vSphere cloud provider configuration
//! (`openshift-config/cloud-provider-config`, key `config`), in the format the cluster uses
//! (YAML `vcenter.<server>` entries or the legacy INI `[VirtualCenter "<server>"]`
//! sections), with the datacenters of its failure domains, its port, and the TLS trust the
//! migration was given for it. Every other line of the file stays as it was.
//!
//! A target given a CA (`spec.vcenters[].caSecret`) is made trusted by the cluster, in this
//! order (see [`vsm_common::trust`] for where OpenShift reads it):
//! 1. its certificates are recorded in the migration's state (fingerprints only), so
//!    RestartPods can wait until the pods' trust stores hold them;
//! 2. they are merged into the Proxy's trusted CA ConfigMap (`user-ca-bundle`, created when
//!    the Proxy names none, and then named by the Proxy): every certificate there stays;
//! 3. they are merged into the cloud config's own `ca-bundle.pem` too when the cluster uses
//!    one (the key exists, or the config names a CA file, which then replaces the system
//!    roots of the cloud controller manager), in the same write as the config.
//!
//! The config's vCenter entry gets a `caFile` only when the config already uses one:
//! machine-api and the CSI driver never read it, and the cloud controller manager would
//! trust only that file.
//!
//! Unlike the Go controller: the INI format works, comments, key order and unrelated
//! settings are kept, and `insecureFlag` is true only when the migration marks the vCenter
//! insecure. Rollback restores the journalled before-images (a trust ConfigMap this phase
//! created is deleted).

mod trust_step;

use vsm_common::cloud_config::{self, Trust, VCenter};
use vsm_common::trust::CLOUD_CA_KEY;
use vsm_common::{infra, pem};
use vsm_sdk::prelude::*;
use vsm_sdk::spec::MigrationSpec;
use vsm_sdk::types::names::{CLOUD_CONFIG, CLOUD_CONFIG_KEY, CLOUD_CONFIG_NAMESPACE};

pub struct UpdateConfig;

impl Phase for UpdateConfig {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "UpdateConfig",
            env!("CARGO_PKG_VERSION"),
            "Add the target vCenters to the cloud provider config, keeping every other line, and their CAs to the cluster's trust",
        )
        .kube("", "configmaps", &["get", "update", "create"], Some(CLOUD_CONFIG_NAMESPACE))
        .kube("config.openshift.io", "proxies", &["get", "patch"], None)
        // A target's CA Secret may be in any namespace the spec names.
        .kube("", "secrets", &["get"], None)
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

/// The config's entry for one target server, as the migration describes it; `ca_file` is
/// the CA file the config already uses, if any.
pub fn entry_for(spec: &MigrationSpec, server: &str, ca_file: Option<&str>) -> VCenter {
    let conn = spec.connection(server);
    let trust = match conn {
        Some(c) if c.insecure => Trust::Insecure,
        Some(c) if c.thumbprint.as_deref().is_some_and(|t| !t.is_empty()) => {
            Trust::Thumbprint(c.thumbprint.clone().unwrap_or_default())
        }
        Some(c) if c.ca_secret.is_some() => match ca_file {
            Some(f) => Trust::CaFile(f.to_string()),
            None => Trust::Default,
        },
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
    let ca_file = cloud_config::ca_file(&text);

    let trust = trust_step::trust_targets(cx, &targets)?;
    let mut changes = Vec::new();
    changes.extend(trust.message.clone());

    let mut edited = text.clone();
    let mut added = Vec::new();
    for server in &targets {
        let entry = entry_for(spec, server, ca_file.as_deref());
        let next = cloud_config::add_vcenter(&edited, &entry).context(format!("adding vCenter {server} to {what}"))?;
        if next != edited {
            added.push(format!(
                "{server} (port {}, datacenters {}, {})",
                entry.port,
                entry.datacenters.join(", "),
                describe_trust(&entry.trust)
            ));
        }
        edited = next;
    }
    let mut write = false;
    if !added.is_empty() {
        cm.set(&pointer, Value::String(edited));
        changes.push(format!("added to {what} ({format}; every other line kept): {}", added.join("; ")));
        write = true;
    }
    // The cloud config's own CA bundle, when the cluster uses one.
    let bundle_pointer = format!("/data/{CLOUD_CA_KEY}");
    let bundle = cm.str_at(&bundle_pointer).map(str::to_string);
    if !trust.certs.is_empty() && (bundle.is_some() || ca_file.is_some()) {
        let current = bundle.unwrap_or_default();
        let (merged, new) = pem::merge(&current, &trust.certs)
            .map_err(|e| PhaseError::invalid(format!("{what} key {CLOUD_CA_KEY} {e}: refusing to edit it")))?;
        if !new.is_empty() {
            cm.set(&bundle_pointer, Value::String(merged));
            changes.push(format!("{} CA certificate(s) added to {what} key {CLOUD_CA_KEY}", new.len()));
            write = true;
        }
    }
    if !write && changes.is_empty() {
        return Ok(done(format!(
            "{what} ({format}) already lists {} with the settings the migration asks for{}",
            targets.join(", "),
            if trust.certs.is_empty() { String::new() } else { "; the cluster trusts their CAs".into() }
        )));
    }
    if write {
        cx.kube().replace(&types::CONFIG_MAP, &cm)?;
    }
    if let Some(note) = insecure_note(&text, &trust) {
        cx.warn(&note);
        changes.push(note);
    }
    let message = changes.join("; ");
    cx.log().event(EventType::Normal, "CloudConfigUpdated", &message);
    Ok(done(message))
}

/// A cluster whose cloud config turns verification off for every vCenter (the installer's
/// default `insecure-flag`) does not check the CA the migration added.
fn insecure_note(text: &str, trust: &trust_step::Trusted) -> Option<String> {
    (!trust.certs.is_empty() && cloud_config::globally_insecure(text)).then(|| {
        "note: the cloud config's global settings turn certificate verification off (insecure-flag), so the cluster \
         does not check the target vCenters' certificates yet; their CAs are in its trust for when it does"
            .to_string()
    })
}

export_phase!(UpdateConfig);

#[cfg(test)]
mod tests;
