//! Checks against the cluster: the Infrastructure and the update UpdateInfrastructure will
//! make of it (a dry run), credentials, placement and cluster health.

use vsm_common::infra::{self, LEGACY_FAILURE_DOMAIN};
use vsm_common::{creds, health, infra_update, machines, replacements};
use vsm_sdk::KubeError;
use vsm_sdk::prelude::*;
use vsm_sdk::spec::FailureDomain;
use vsm_sdk::types::names::{
    CLOUD_CREDENTIAL, CLUSTER_VERSION, CPMS, FEATURE_GATE, INFRASTRUCTURE, MACHINE_API_NAMESPACE, VSPHERE_CREDS,
    VSPHERE_CREDS_NAMESPACE,
};

use crate::Findings;

/// The Infrastructure, if it can be read; its problems go to `f`.
pub fn check_infrastructure(cx: &Cx, spec: &MigrationSpec, f: &mut Findings) -> Result<Option<Object>, PhaseError> {
    let problems_before = f.problems.len();
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

    f.checked(format!(
        "Infrastructure is vSphere (infraID {}), sources {}",
        if infra_id.is_empty() { "?" } else { &infra_id },
        sources.join(", ")
    ));

    // Would UpdateInfrastructure's update be accepted? Checked once the Infrastructure
    // itself is sound (the update would fail on the same problems).
    let legacy = infra::undescribed_sources(&vsphere, &targets);
    if !legacy.is_empty() {
        f.note(format!(
            "the Infrastructure has no failure domains yet: source vCenter(s) {} will be described as {LEGACY_FAILURE_DOMAIN}",
            legacy.join(", ")
        ));
    }
    if f.problems.len() == problems_before {
        match infra_update::add_targets(cx, spec, &infra) {
            Ok(update) => check_update(cx, &update, f)?,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => f.problem(e.to_string()),
        }
    }
    Ok(Some(infra))
}

/// The feature gate that lets vCenters be added to and removed from a running cluster's
/// Infrastructure (OpenShift 4.17+, TechPreviewNoUpgrade at first).
pub const MULTI_VCENTER_GATE: &str = "VSphereMultiVCenterDay2";

/// The cluster's feature set and whether [`MULTI_VCENTER_GATE`] is on (`None` inside when
/// the FeatureGate does not name the gate); `None` without a FeatureGate `cluster`.
fn feature_gate(cx: &Cx) -> Result<Option<(String, Option<bool>)>, PhaseError> {
    let Some(fg) = cx.kube().get(&types::FEATURE_GATE, None, FEATURE_GATE)? else { return Ok(None) };
    let set = fg.str_at("/spec/featureSet").filter(|s| !s.is_empty()).unwrap_or("Default").to_string();
    let named = |list: &str| {
        fg.array_at("/status/featureGates").iter().any(|v| {
            v.get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|g| g.get("name").and_then(Value::as_str) == Some(MULTI_VCENTER_GATE))
        })
    };
    let gate = if named("enabled") {
        Some(true)
    } else if named("disabled") {
        Some(false)
    } else {
        None
    };
    Ok(Some((set, gate)))
}

/// UpdateInfrastructure's very update, sent to the API server as a dry run: its schema,
/// the vCenter limit and the CEL rules of this release and feature set decide, not a
/// reading of the CRD's text (which took "cannot add and remove vCenters at the same
/// time" for "cannot add one"). The removal Cleanup makes later cannot be tried from
/// today's state; on the releases known, a removal alone is accepted wherever an addition
/// alone is (docs/ARCHITECTURE.md).
fn check_update(cx: &Cx, update: &infra_update::Update, f: &mut Findings) -> Result<(), PhaseError> {
    let features = feature_gate(cx)?;
    let gate_text = match &features {
        Some((set, Some(true))) => format!("feature set {set}, {MULTI_VCENTER_GATE} on"),
        Some((set, Some(false))) => format!("feature set {set}, {MULTI_VCENTER_GATE} off"),
        Some((set, None)) => format!("feature set {set}"),
        None => "no FeatureGate cluster".to_string(),
    };
    if update.desired == update.current {
        f.checked(format!("the Infrastructure already lists the targets ({gate_text})"));
        return Ok(());
    }
    let vcenters = infra::vcenter_servers(&update.desired).len();
    match cx.kube().validate_replace(&types::INFRASTRUCTURE, &update.object) {
        Ok(_) => f.checked(format!(
            "the API server accepts the Infrastructure with the targets added, {vcenters} vCenters (a dry run; {gate_text})"
        )),
        Err(PhaseError::Kube { error: KubeError::Invalid(why), .. }) => {
            let hint = match &features {
                Some((feature_set, Some(false))) => format!(
                    "if it refuses adding a vCenter at all: this cluster runs feature set {feature_set}, with the \
                     {MULTI_VCENTER_GATE} feature gate off, and a feature set that enables it (TechPreviewNoUpgrade, which \
                     cannot be undone, or CustomNoUpgrade) lets vCenters be added, as does a release where it is on by default"
                ),
                _ => "if it refuses adding a vCenter at all, this OpenShift release does not let one be added to a \
                      running cluster: upgrade first"
                    .into(),
            };
            f.problem(format!(
                "the API server refuses the Infrastructure with the target vCenter(s) added (a dry run of \
                 UpdateInfrastructure's update, {vcenters} vCenters; {gate_text}; the migration never edits the CRD): \
                 {why}; {hint}"
            ));
        }
        Err(PhaseError::Kube { error: KubeError::Conflict(_), .. }) => {
            f.transient("the Infrastructure changed while Preflight checked it")
        }
        Err(e) => return Err(e),
    }
    Ok(())
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
    let infra_id = infra.and_then(|i| infra::infra_id(i).ok()).unwrap_or_default();
    match replacements::plan(&sets, domains, spec, cx.source_servers()) {
        Ok(plan) => {
            let moves: Vec<String> = plan
                .iter()
                .map(|r| format!("{} → {} in {} ({})", r.source, r.name, r.failure_domain, r.replicas))
                .collect();
            f.checked(format!("{} MachineSet(s) have a destination: {}", plan.len(), moves.join(", ")));
            // Each replacement as CreateWorkers will make it: its networks, template and
            // static IPs fit the target domain.
            for r in &plan {
                let (Some(source), Some(fd)) =
                    (sets.iter().find(|s| s.name() == r.source), spec.failure_domain(&r.failure_domain))
                else {
                    continue;
                };
                if let Err(e) = machines::replacement_set(source, &r.name, fd, infra_id, r.replicas, &spec.static_ips) {
                    f.problem(format!("MachineSet {}: {e}", r.source));
                }
            }
        }
        Err(problems) => f.problem(problems),
    }
    // The control plane's template as RecreateCPMS will make it.
    let fds: Vec<&FailureDomain> =
        spec.control_plane_machine_set_config.domains().iter().filter_map(|n| spec.failure_domain(n)).collect();
    if let Some(cpms) = cx.kube().get(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS)?
        && !fds.is_empty()
        && let Err(e) = machines::cpms_template_for(&cpms, &fds, infra_id, &spec.static_ips)
    {
        f.problem(format!("the control plane: {e}"));
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

/// The cloud credential operator's mode (`CloudCredential cluster`, `spec.credentialsMode`).
/// By default (and in Passthrough) it copies `kube-system/vsphere-creds`, where UpdateSecrets
/// puts the targets' credentials, into every component's Secret. In Manual mode nothing
/// copies them: every component Secret must hold the targets' keys before anything
/// changes, or the components could not log in to a target.
pub fn check_credentials_mode(cx: &Cx, spec: &MigrationSpec, f: &mut Findings) -> Result<(), PhaseError> {
    let mode = match cx.kube().get(&types::CLOUD_CREDENTIAL, None, CLOUD_CREDENTIAL) {
        Ok(c) => c.and_then(|c| c.str_at("/spec/credentialsMode").map(str::to_string)).unwrap_or_default(),
        // No CloudCredential kind (a cluster without the capability): the default mode.
        Err(PhaseError::Kube { error: KubeError::NotFound(_), .. }) => String::new(),
        Err(e) => return Err(e),
    };
    match mode.as_str() {
        "" | "Passthrough" => {
            f.checked("the cloud credential operator copies vsphere-creds to the components (passthrough)");
        }
        "Manual" => {
            let targets = spec.target_servers();
            let mut lacking = Vec::new();
            for (ns, name) in creds::COMPONENT_SECRETS {
                match cx.kube().get(&types::SECRET, Some(ns), name)? {
                    None => lacking.push(format!("{ns}/{name} (does not exist)")),
                    Some(s) => {
                        let missing = creds::missing_keys(&s, &targets);
                        if !missing.is_empty() {
                            lacking.push(format!("{ns}/{name} (lacks {})", missing.join(", ")));
                        }
                    }
                }
            }
            if lacking.is_empty() {
                f.checked("Manual credentials mode: every component Secret holds the target vCenters' credentials");
            } else {
                f.problem(format!(
                    "the cloud credential operator runs in Manual mode (CloudCredential {CLOUD_CREDENTIAL}): nothing copies \
                     vsphere-creds to the components, so add the target vCenters' <server>.username and <server>.password \
                     to each of their Secrets before migrating: {}",
                    lacking.join("; ")
                ));
            }
        }
        other => f.problem(format!(
            "the cloud credential operator runs in mode {other:?} (CloudCredential {CLOUD_CREDENTIAL}), which vSphere \
             does not support: only the default (passthrough) and Manual modes are handled"
        )),
    }
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
