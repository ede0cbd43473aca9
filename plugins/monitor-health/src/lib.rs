//! MonitorHealth: wait until the cluster is healthy with both vCenters configured: every
//! ClusterOperator Available and not Degraded (the operators in
//! `spec.health.toleratedOperators`, by default machine-config, are tolerated while the
//! Infrastructure lists more than one vCenter) and every Node Ready. The wait message lists
//! what is unhealthy. Unlike the Go controller, Nodes are checked, and the tolerated set is
//! configurable.

use vsm_common::{health, infra};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::INFRASTRUCTURE;

const POLL_MS: u64 = 15_000;

pub struct MonitorHealth;

impl Phase for MonitorHealth {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "MonitorHealth",
            env!("CARGO_PKG_VERSION"),
            "Wait until every ClusterOperator is available and not degraded and every Node is Ready",
        )
        .kube("config.openshift.io", "clusteroperators", &["list"], None)
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("", "nodes", &["list"], None)
        .deadline_minutes(30)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

/// The operators tolerated now: the spec's set while the Infrastructure lists several
/// vCenters, none otherwise.
pub fn tolerated(spec_tolerated: &[String], vcenters: usize) -> Vec<String> {
    if vcenters > 1 { spec_tolerated.to_vec() } else { Vec::new() }
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let vcenters = infra::vcenter_servers(&infra::vsphere_spec(&infra)).len();
    let tolerated = tolerated(&spec.health.tolerated_operators, vcenters);

    let operators = cx.kube().list(&types::CLUSTER_OPERATOR, None, None)?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let mut report = health::operators(&operators, &tolerated) + health::nodes(&nodes);
    if operators.is_empty() {
        report.problems.push("no ClusterOperator exists yet".into());
    }
    if nodes.is_empty() {
        report.problems.push("no Node exists".into());
    }
    if !report.is_healthy() {
        let healthy = (operators.len() + nodes.len()).saturating_sub(report.problems.len());
        return Ok(wait(
            POLL_MS,
            percent(healthy, operators.len() + nodes.len()),
            format!("waiting for the cluster to be healthy: {}", report.summary(5)),
        ));
    }
    let ok = operators.iter().filter(|o| health::operators(std::slice::from_ref(*o), &[]).is_healthy()).count();
    let excused: Vec<&str> = operators
        .iter()
        .filter(|o| !health::operators(std::slice::from_ref(*o), &[]).is_healthy())
        .map(|o| o.name())
        .collect();
    let note = if excused.is_empty() {
        String::new()
    } else {
        format!("; tolerated while {vcenters} vCenters are configured: {}", excused.join(", "))
    };
    Ok(done(format!(
        "cluster healthy: {ok}/{} ClusterOperators available and not degraded, {} Nodes Ready{note}",
        operators.len(),
        nodes.len()
    )))
}

export_phase!(MonitorHealth);

#[cfg(test)]
mod tests;
