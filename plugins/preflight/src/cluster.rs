//! Checks against the cluster: the Infrastructure, credentials, the Infrastructure CRD and
//! cluster health.

use vsm_common::infra::{self, InfraError, LEGACY_FAILURE_DOMAIN, MAX_VCENTERS};
use vsm_common::{creds, health, replacements};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{
    CLUSTER_VERSION, INFRASTRUCTURE, INFRASTRUCTURE_CRD, MACHINE_API_NAMESPACE, MACHINE_ROLE_LABEL, VSPHERE_CREDS,
    VSPHERE_CREDS_NAMESPACE,
};

use crate::Findings;

/// The Infrastructure, if it can be read; its problems go to `f`.
pub fn check_infrastructure(cx: &Cx, spec: &MigrationSpec, f: &mut Findings) -> Result<Option<Object>, PhaseError> {
    let Some(infra) = cx.kube().get(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)? else {
        f.problem("Infrastructure cluster does not exist: is this an OpenShift cluster?");
        return Ok(None);
    };
    if let Err(e) = infra::require_vsphere(&infra) {
        f.problem(e.to_string());
        return Ok(Some(infra));
    }
    let infra_id = match infra::infra_id(&infra) {
        Ok(id) => id.to_string(),
        Err(e) => {
            f.problem(e.to_string());
            String::new()
        }
    };
    let vsphere = infra::vsphere_spec(&infra);
    let listed = infra::vcenter_servers(&vsphere);
    if listed.is_empty() {
        f.problem("Infrastructure cluster lists no vCenter in spec.platformSpec.vsphere.vcenters");
    }
    let targets = spec.target_servers();
    let sources = cx.source_servers();
    if sources.is_empty() {
        f.problem(
            "no source vCenter was recorded for this migration (every vCenter of the Infrastructure is a target?)",
        );
    }
    for s in sources {
        if targets.contains(&s.as_str()) {
            f.problem(format!("vCenter {s} is both a recorded source and a target failure domain's server"));
        } else if !listed.contains(s) {
            f.problem(format!(
                "source vCenter {s} (recorded when the migration started) is no longer in the Infrastructure"
            ));
        }
    }
    for s in listed.iter().filter(|s| !targets.contains(&s.as_str()) && !sources.contains(s)) {
        f.problem(format!(
            "vCenter {s} is in the Infrastructure but is neither a target nor a recorded source: the migration would leave it behind"
        ));
    }
    for t in targets.iter().filter(|t| listed.iter().any(|l| l == *t)) {
        f.note(format!("target vCenter {t} is already in the Infrastructure"));
    }

    // Would UpdateInfrastructure accept the targets?
    let legacy = infra::undescribed_sources(&vsphere, &targets);
    let mut legacy_fds = Vec::new();
    if !legacy.is_empty() {
        let masters = cx.kube().list(
            &types::MACHINE,
            Some(MACHINE_API_NAMESPACE),
            Some(&format!("{MACHINE_ROLE_LABEL}=master")),
        )?;
        for server in &legacy {
            let spec = masters
                .iter()
                .filter_map(|m| m.at("/spec/providerSpec/value"))
                .find(|ps| ps.pointer("/workspace/server").and_then(Value::as_str) == Some(server.as_str()));
            let described = match spec {
                Some(ps) => infra::describe_source(LEGACY_FAILURE_DOMAIN, server, ps),
                None => Err(InfraError::CannotDescribeSource {
                    server: server.clone(),
                    reason: format!("no control-plane Machine in {MACHINE_API_NAMESPACE} runs there"),
                }),
            };
            match described {
                Ok(fd) => legacy_fds.push(fd),
                Err(e) => f.problem(e.to_string()),
            }
        }
        f.note(format!(
            "the Infrastructure has no failure domains yet: source vCenter(s) {} will be described as {LEGACY_FAILURE_DOMAIN}",
            legacy.join(", ")
        ));
    }
    // Names UpdateInfrastructure could not merge (the vCenter count is the CRD check's).
    let existing = infra::failure_domains(&vsphere).iter().chain(&legacy_fds);
    for e in existing {
        let (name, server) = (e["name"].as_str().unwrap_or_default(), e["server"].as_str().unwrap_or_default());
        if let Some(fd) = spec.failure_domains.iter().find(|fd| fd.name == name && fd.server != server) {
            f.problem(
                InfraError::NameTaken {
                    name: name.into(),
                    existing_server: server.into(),
                    wanted_server: fd.server.clone(),
                }
                .to_string(),
            );
        }
    }
    f.checked(format!(
        "Infrastructure is vSphere (infraID {}), sources {}",
        if infra_id.is_empty() { "?" } else { &infra_id },
        sources.join(", ")
    ));
    Ok(Some(infra))
}

/// Every MachineSet of the source vCenters has a destination (CreateWorkers' plan, made
/// here the same way), and the failure-domain map names domains the cluster has.
pub fn check_placement(
    cx: &Cx,
    spec: &MigrationSpec,
    infra: Option<&Object>,
    f: &mut Findings,
) -> Result<(), PhaseError> {
    let vsphere = infra.map(infra::vsphere_spec).unwrap_or(Value::Null);
    let domains = infra::failure_domains(&vsphere);
    if let Some(problem) = replacements::unknown_map_sources(spec, domains) {
        f.problem(problem);
    }
    let sets = cx.kube().list(&types::MACHINE_SET, Some(MACHINE_API_NAMESPACE), None)?;
    match replacements::plan(&sets, domains, spec, cx.source_servers()) {
        Ok(plan) => {
            let moves: Vec<String> = plan
                .iter()
                .map(|r| format!("{} → {} in {} ({})", r.source, r.name, r.failure_domain, r.replicas))
                .collect();
            f.checked(format!("{} MachineSet(s) have a destination: {}", plan.len(), moves.join(", ")));
        }
        Err(problems) => f.problem(problems),
    }
    Ok(())
}

/// Keys in vsphere-creds for every source and in the spec's Secret for every target.
pub fn check_credentials(cx: &Cx, spec: &MigrationSpec, f: &mut Findings) -> Result<(), PhaseError> {
    let sources: Vec<&str> = cx.source_servers().iter().map(String::as_str).collect();
    match cx.kube().get(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS)? {
        None => f.problem(format!(
            "Secret {VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS} (the cluster's vCenter credentials) does not exist"
        )),
        Some(s) => {
            let missing = creds::missing_keys(&s, &sources);
            if !missing.is_empty() {
                f.problem(format!(
                    "Secret {VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS} lacks (or has empty) keys {} for the source vCenter(s)",
                    missing.join(", ")
                ));
            }
        }
    }
    let r = &spec.target_credentials_secret;
    let ns = r.namespace.clone().unwrap_or_else(|| cx.call().migration.namespace.clone());
    match cx.kube().get(&types::SECRET, Some(&ns), &r.name)? {
        None => f.problem(format!("spec.targetVCenterCredentialsSecret: Secret {ns}/{} does not exist", r.name)),
        Some(s) => {
            let missing = creds::missing_keys(&s, &spec.target_servers());
            if !missing.is_empty() {
                f.problem(format!(
                    "spec.targetVCenterCredentialsSecret: Secret {ns}/{} lacks (or has empty) keys {}",
                    r.name,
                    missing.join(", ")
                ));
            }
        }
    }
    f.checked("credentials present for every source and target vCenter");
    Ok(())
}

/// The Infrastructure CRD must let the list of vCenters grow (and later shrink).
pub fn check_crd(cx: &Cx, spec: &MigrationSpec, infra: Option<&Object>, f: &mut Findings) -> Result<(), PhaseError> {
    let Some(crd) = cx.kube().get(&types::CUSTOM_RESOURCE_DEFINITION, None, INFRASTRUCTURE_CRD)? else {
        f.problem(format!("CustomResourceDefinition {INFRASTRUCTURE_CRD} does not exist"));
        return Ok(());
    };
    let listed = infra.map(|i| infra::vcenter_servers(&infra::vsphere_spec(i))).unwrap_or_default();
    let needed = listed.len() + spec.target_servers().iter().filter(|t| !listed.iter().any(|l| l == *t)).count();
    let schemas = infra::vcenters_schema(&crd);
    if schemas.is_empty() {
        f.problem(format!(
            "CustomResourceDefinition {INFRASTRUCTURE_CRD} has no schema for spec.platformSpec.vsphere.vcenters: this OpenShift release cannot list several vCenters"
        ));
    }
    for s in &schemas {
        for (message, rule) in &s.blocking_rules {
            f.problem(format!(
                "the Infrastructure CRD ({INFRASTRUCTURE_CRD}, version {}) has the rule \"{message}\" (x-kubernetes-validations: {rule}) \
                 on spec.platformSpec.vsphere.vcenters, so no vCenter can be added: this OpenShift release does not support \
                 moving to another vCenter; upgrade first (the migration never edits the CRD)",
                s.version
            ));
        }
        if let Some(max) = s.max_items
            && (max as usize) < needed
        {
            f.problem(format!(
                "the Infrastructure CRD (version {}) allows at most {max} vCenters, but the migration needs {needed} at once",
                s.version
            ));
        }
    }
    let max = schemas.iter().filter_map(|s| s.max_items).min().unwrap_or(MAX_VCENTERS as u64);
    f.checked(format!("the Infrastructure CRD accepts {needed} vCenters (at most {max})"));
    Ok(())
}

/// ClusterOperators, the ClusterVersion and Nodes.
pub fn check_health(cx: &Cx, spec: &MigrationSpec, f: &mut Findings) -> Result<(), PhaseError> {
    let operators = cx.kube().list(&types::CLUSTER_OPERATOR, None, None)?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let mut h = health::operators(&operators, &spec.health.tolerated_operators) + health::nodes(&nodes);
    match cx.kube().get(&types::CLUSTER_VERSION, None, CLUSTER_VERSION)? {
        Some(cv) => h = h + health::cluster_version(&cv),
        None => f.problem(format!("ClusterVersion {CLUSTER_VERSION} does not exist: is this an OpenShift cluster?")),
    }
    if operators.is_empty() {
        f.problem("no ClusterOperator exists: is this an OpenShift cluster?");
    }
    for p in h.problems {
        f.transient(p);
    }
    f.checked(format!("{} cluster operators and {} nodes healthy", operators.len(), nodes.len()));
    Ok(())
}
