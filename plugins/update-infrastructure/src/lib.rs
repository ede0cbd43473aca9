//! UpdateInfrastructure: add each target vCenter (server, port, datacenters) and each
//! target failure domain to `spec.platformSpec.vsphere` of the Infrastructure `cluster`.
//!
//! - Computed by [`vsm_common::infra_update::add_targets`] (which Preflight dry-runs first),
//!   merged by server and failure-domain name ([`vsm_common::infra::add_targets`]): a
//!   re-run yields the identical object (the Go controller appended the failure domains
//!   again), datacenters come in a fixed order (the Go controller used map order), and
//!   every other field is kept as it was.
//! - A legacy install (vCenters but no failure domains) first gets its source described
//!   as a failure domain, from a control-plane machine's provider spec, so machines there
//!   keep working once failure domains exist.
//! - The Infrastructure CRD is never edited (the Go controller loosened its validation and
//!   then failed to put it back); Preflight has the API server dry-run this very update.
//! - One conflict-checked update, re-read and recomputed on a conflict.
//!
//! Rollback restores the journalled before-image of the Infrastructure.

use vsm_common::infra::LEGACY_FAILURE_DOMAIN;
use vsm_common::infra_update;
use vsm_sdk::KubeError;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{INFRASTRUCTURE, MACHINE_API_NAMESPACE};

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

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let targets: Vec<&str> = spec.target_servers();
    for _ in 0..ATTEMPTS {
        let live = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
        let infra_update::Update { current, desired, object: next, legacy } =
            infra_update::add_targets(cx, spec, &live)?;
        let names: Vec<&str> = spec.failure_domains.iter().map(|f| f.name.as_str()).collect();
        if desired == current {
            return Ok(done(format!(
                "the Infrastructure already lists vCenter(s) {} and failure domain(s) {}",
                targets.join(", "),
                names.join(", ")
            )));
        }
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
