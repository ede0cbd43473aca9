//! UpdateInfrastructure: add each target vCenter (server, port, datacenters) and each
//! target failure domain to `spec.platformSpec.vsphere` of the Infrastructure `cluster`.
//!
//! - Merged by server and failure-domain name ([`vsm_common::infra::add_targets`]): a
//!   re-run yields the identical object (the Go controller appended the failure domains
//!   again), datacenters come in a fixed order (the Go controller used map order), and
//!   every other field is kept as it was.
//! - A legacy install (vCenters but no failure domains) first gets its source described
//!   as a failure domain, from a control-plane machine's provider spec, so machines there
//!   keep working once failure domains exist.
//! - The Infrastructure CRD is never edited (the Go controller loosened its validation and
//!   then failed to put it back); Preflight reports a CRD that refuses another vCenter.
//! - One conflict-checked update, re-read and recomputed on a conflict.
//!
//! Rollback restores the journalled before-image of the Infrastructure.

use vsm_common::infra::{self, LEGACY_FAILURE_DOMAIN, Targets};
use vsm_sdk::KubeError;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{INFRASTRUCTURE, MACHINE_API_NAMESPACE, MACHINE_ROLE_LABEL};

const ATTEMPTS: usize = 5;

pub struct UpdateInfrastructure;

impl Phase for UpdateInfrastructure {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "UpdateInfrastructure",
            env!("CARGO_PKG_VERSION"),
            "Add the target vCenters and failure domains to the Infrastructure (spec.platformSpec.vsphere)",
        )
        .kube("config.openshift.io", "infrastructures", &["get", "update"], None)
        .kube("machine.openshift.io", "machines", &["list"], Some(MACHINE_API_NAMESPACE))
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
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

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let port = |server: &str| spec.connection(server).and_then(|c| c.port).unwrap_or(443);
    let targets: Vec<&str> = spec.target_servers();
    for _ in 0..ATTEMPTS {
        let live = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
        infra::require_vsphere(&live)?;
        let infra_id = infra::infra_id(&live)?;
        let current = infra::vsphere_spec(&live);
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
        let legacy = infra::undescribed_sources(&current, &targets);
        let t = Targets {
            failure_domains: &spec.failure_domains,
            infra_id,
            port: &port,
            legacy_sources: describe_sources(cx, &legacy)?,
        };
        let desired = infra::add_targets(&current, &t)?;
        let names: Vec<&str> = spec.failure_domains.iter().map(|f| f.name.as_str()).collect();
        if desired == current {
            return Ok(done(format!(
                "the Infrastructure already lists vCenter(s) {} and failure domain(s) {}",
                targets.join(", "),
                names.join(", ")
            )));
        }
        let mut next = live.clone();
        next.set(infra::VSPHERE_SPEC, desired);
        next.remove("/metadata/managedFields");
        match cx.kube().replace(&types::INFRASTRUCTURE, &next) {
            Ok(_) => {
                let mut msg = format!(
                    "{} the Infrastructure: vCenter(s) {} and failure domain(s) {}",
                    if cx.dry_run() { "would update" } else { "updated" },
                    targets.join(", "),
                    names.join(", ")
                );
                if !legacy.is_empty() {
                    msg.push_str(&format!(
                        "; the source vCenter(s) {} first described as failure domain(s) ({LEGACY_FAILURE_DOMAIN}) from the control-plane machines",
                        legacy.join(", ")
                    ));
                }
                cx.log().event(EventType::Normal, "InfrastructureUpdated", &msg);
                return Ok(done(msg));
            }
            Err(PhaseError::Kube { error: KubeError::Conflict(_), .. }) => {
                cx.info("the Infrastructure changed while it was being updated; reading it again");
            }
            Err(PhaseError::Kube { error: KubeError::Invalid(why), .. }) => {
                let hint = if why.contains("cannot be added or removed") {
                    " The Infrastructure CRD of this OpenShift release does not allow adding a vCenter; \
                     the migration does not edit the CRD (see Preflight): upgrade to a release that allows it."
                } else {
                    ""
                };
                return Err(PhaseError::invalid(format!(
                    "the API server refused the Infrastructure update: {why}.{hint}"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Err(PhaseError::retryable(format!("the Infrastructure kept changing during {ATTEMPTS} attempts to update it")))
}

export_phase!(UpdateInfrastructure);

#[cfg(test)]
mod tests;
