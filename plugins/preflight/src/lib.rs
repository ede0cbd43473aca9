//! Preflight: check, without changing anything, that the migration can run, and report
//! every problem found in one message (the Go controller stopped at the first, and did not
//! look at the cluster's health at all):
//!
//! - the spec: each failure domain's paths lie in its own datacenter, the failure domains
//!   named for workers and the control plane exist;
//! - the Infrastructure is vSphere, has an infraID, lists the recorded source vCenter(s),
//!   and takes the targets: UpdateInfrastructure's very update
//!   (`vsm_common::infra_update`) is sent to the API server as a dry run, so the schema,
//!   the vCenter limit and the CEL rules of this release and feature set decide (the
//!   FeatureGate's feature set and `VSphereMultiVCenterDay2` are reported; a refusal says
//!   what to enable or that an upgrade is needed; the CRD is never read as text, nor
//!   edited);
//! - credentials: `kube-system/vsphere-creds` for every source, the spec's Secret for
//!   every target (`<server>.username` / `<server>.password`);
//! - logins to every vCenter with the configured TLS settings, the source datacenters, and
//!   every target topology path (datacenter, compute cluster, datastore, networks, resource
//!   pool, template VM; the VM folder exists or can be created);
//! - cluster health: ClusterOperators Available and not Degraded (tolerated ones aside),
//!   the ClusterVersion not progressing (no upgrade under way), every Node Ready;
//! - workloads ([`workloads`]): no vSphere PersistentVolume (moving volumes is not
//!   supported yet: their pods could not start on the target's nodes), no
//!   PodDisruptionBudget that can never allow the evictions a drain needs.
//!
//! The failure is retryable only when every problem may clear up by itself (health, a
//! vCenter not answering); anything else needs a person.

mod cluster;
mod findings;
mod topology;
mod vcenter;
pub mod workloads;

use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{MACHINE_API_NAMESPACE, VSPHERE_CREDS_NAMESPACE};

pub use findings::{Findings, Problem};

/// What Preflight checks, one line each: the "Before you start" checklist of
/// docs/OPERATIONS.md (a test keeps the two in step).
pub const CHECKS: &[&str] = &[
    "The spec: each target failure domain's paths lie in its own datacenter, and the failure domains named for the machine sets and the control plane are defined.",
    "The Infrastructure `cluster` is vSphere, has an infrastructure name, lists every source vCenter, and lists no vCenter that is neither a source nor a target.",
    "The API server accepts the Infrastructure with the target vCenters and failure domains added (a dry run of UpdateInfrastructure's update, on your release's own CRD and feature set; at most three vCenters at once).",
    "`kube-system/vsphere-creds` holds `<server>.username` and `<server>.password` for every source vCenter, and the target credentials Secret for every target vCenter.",
    "The cloud credential operator copies `vsphere-creds` to the components (its default mode), or, in Manual mode, every component's credentials Secret (machine-api, CSI driver, vSphere problem detector, cloud controller manager) already holds the target vCenters' keys.",
    "Every MachineSet in a source vCenter has a destination (`failureDomainMap`, an override or `failureDomain`), and no two replacements share a name.",
    "Every replacement MachineSet and the control plane's template fit their target failure domain: a port group per network device, a template, and for network devices with static addresses (`ipAddrs` or `addressesFromPools`) a `spec.staticIPs` entry with the target network's IP pools and nameservers (the source's are never copied).",
    "Every vCenter answers with the TLS settings of `spec.vcenters` and its credentials, and the source datacenters exist.",
    "Every target topology path exists: datacenter, compute cluster, datastore, networks, resource pool, template VM, and the VM folder or its datacenter (CreateFolder makes the folder).",
    "The target vCenter's user holds, on each of those objects and on the vCenter itself, every privilege the OpenShift installer requires of a vSphere cluster's user (the vCenter's own computation of roles and permissions; a privilege your vCenter release does not define is not asked for).",
    "Cluster operators are Available and not Degraded (tolerated ones aside), no upgrade is in progress, and every Node is Ready (these alone are retried until the phase's deadline, as they may clear up by themselves).",
    "No vSphere PersistentVolume exists (moving volumes is not supported yet).",
    "No PodDisruptionBudget can never allow an eviction (`maxUnavailable: 0`, `minAvailable: 100%`, or `minAvailable` at least its pods).",
];

pub struct Preflight;

impl Phase for Preflight {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "Preflight",
            env!("CARGO_PKG_VERSION"),
            "Check (read-only) the spec, the Infrastructure and the update it will get (a dry run), where every MachineSet goes, credentials, every vCenter and the target user's privileges, cluster health, volumes and disruption budgets; report every problem",
        )
        .kube("config.openshift.io", "infrastructures", &["get", "validate"], None)
        .kube("config.openshift.io", "clusteroperators", &["list"], None)
        .kube("config.openshift.io", "clusterversions", &["get"], None)
        .kube("", "nodes", &["list"], None)
        .kube("", "persistentvolumes", &["list"], None)
        .kube("policy", "poddisruptionbudgets", &["list"], None)
        .kube("", "secrets", &["get"], Some(VSPHERE_CREDS_NAMESPACE))
        // The target credentials Secret may be in any namespace the spec names.
        .kube("", "secrets", &["get"], None)
        .kube("config.openshift.io", "featuregates", &["get"], None)
        .kube("operator.openshift.io", "cloudcredentials", &["get"], None)
        .kube("machine.openshift.io", "machines", &["list"], Some(MACHINE_API_NAMESPACE))
        .kube("machine.openshift.io", "machinesets", &["list"], Some(MACHINE_API_NAMESPACE))
        .kube("machine.openshift.io", "controlplanemachinesets", &["get"], Some(MACHINE_API_NAMESPACE))
        .vsphere(VsphereCapability::ReadInventory)
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        let spec = cx.spec()?;
        let mut f = Findings::default();
        topology::check_spec(spec, &mut f);
        let infra = cluster::check_infrastructure(cx, spec, &mut f)?;
        cluster::check_credentials(cx, spec, &mut f)?;
        cluster::check_credentials_mode(cx, spec, &mut f)?;
        cluster::check_placement(cx, spec, infra.as_ref(), &mut f)?;
        let infra_id = infra.as_ref().and_then(|i| vsm_common::infra::infra_id(i).ok()).map(str::to_string);
        vcenter::check_vcenters(cx, spec, infra.as_ref(), infra_id.as_deref(), &mut f);
        cluster::check_health(cx, spec, &mut f)?;
        workloads::check_volumes(cx, &mut f)?;
        workloads::check_disruption_budgets(cx, &mut f)?;
        f.outcome()
    }
}

export_phase!(Preflight);

#[cfg(test)]
mod tests;
