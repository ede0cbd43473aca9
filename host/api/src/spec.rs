//! `VSphereMigration.spec`: what a user asks for. The operator derives the CRD schema from
//! it (feature `schema`: the CEL rules the API server checks are attributes here); the
//! phases read it from their call context.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use crate::PHASES;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// The desired state of a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.failureDomains.exists(f, f.name == self.machineSetConfig.failureDomain)",
     "message": "spec.machineSetConfig.failureDomain must name one of spec.failureDomains", "fieldPath": ".machineSetConfig.failureDomain"},
    {"rule": "self.failureDomains.exists(f, f.name == self.controlPlaneMachineSetConfig.failureDomain)",
     "message": "spec.controlPlaneMachineSetConfig.failureDomain must name one of spec.failureDomains", "fieldPath": ".controlPlaneMachineSetConfig.failureDomain"},
    {"rule": "self.failureDomains.exists(f, f.name == self.machineSetConfig.failureDomain && has(f.topology.template))",
     "message": "the failure domain named by spec.machineSetConfig.failureDomain needs topology.template (new workers clone it)", "fieldPath": ".machineSetConfig.failureDomain"},
    {"rule": "oldSelf.state == 'Pending' || self.failureDomains == oldSelf.failureDomains",
     "message": "spec.failureDomains cannot change once the migration has started", "fieldPath": ".failureDomains"},
    {"rule": "oldSelf.state == 'Pending' || self.mode == oldSelf.mode",
     "message": "spec.mode cannot change once the migration has started", "fieldPath": ".mode"},
    {"rule": "oldSelf.state != 'Rollback' || self.state == 'Rollback'",
     "message": "a rollback cannot be cancelled: spec.state stays Rollback", "fieldPath": ".state"},
    {"rule": "self.state != 'Pending' || oldSelf.state == 'Pending'",
     "message": "spec.state cannot go back to Pending once the migration has started", "fieldPath": ".state"}
])))]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Pending: nothing runs. Running: phases run in order. Paused: stop at the next phase
    /// boundary. Rollback: undo the completed phases in reverse order.
    #[serde(default)]
    pub state: MigrationState,

    /// Manual: every phase waits until its name is listed in `approvals`.
    #[serde(default)]
    pub approval_mode: ApprovalMode,

    /// Phases a user approved (Manual mode). Approving is an edit of this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 16), extend("x-kubernetes-list-type" = "set", "items" = {"type": "string", "enum": PHASES})))]
    pub approvals: Vec<String>,

    /// Apply changes, or Plan: run every phase with mutations recorded, not applied.
    #[serde(default)]
    pub mode: Mode,

    /// Secret holding `<server>.username` / `<server>.password` for every target vCenter.
    #[serde(rename = "targetVCenterCredentialsSecret")]
    pub target_credentials_secret: SecretRef,

    /// Where the cluster moves to: OpenShift's vSphere failure-domain shape. Every
    /// `server` named here is a target vCenter.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub failure_domains: Vec<FailureDomain>,

    /// Connection settings per vCenter (source or target): port and TLS trust. Without an
    /// entry a server is reached on port 443 and verified against the system roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["server"])))]
    pub vcenters: Vec<VCenterConnection>,

    /// The new worker MachineSet.
    pub machine_set_config: MachineSetConfig,

    /// The failure domain for the control plane.
    pub control_plane_machine_set_config: ControlPlaneMachineSetConfig,

    /// Roll back automatically when a phase fails.
    #[serde(default = "default_true")]
    pub rollback_on_failure: bool,

    /// Per-phase deadline overrides, e.g. `CreateWorkers: 45m`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(extend(
        "additionalProperties" = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
        "maxProperties" = 16,
        "x-kubernetes-validations" = [{"rule": "self.all(k, k in ['Preflight', 'Backup', 'DisableCVO', 'UpdateSecrets', 'CreateTags', 'CreateFolder', 'DeleteCPMS', 'UpdateInfrastructure', 'UpdateConfig', 'RestartPods', 'MonitorHealth', 'CreateWorkers', 'RecreateCPMS', 'ScaleOldMachines', 'Cleanup', 'Verify'])", "message": "spec.phaseDeadlines keys must be phase names"}]
    )))]
    pub phase_deadlines: BTreeMap<String, String>,

    /// Per-phase plugin selection and pins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(extend(
        "maxProperties" = 16,
        "x-kubernetes-validations" = [{"rule": "self.all(k, k in ['Preflight', 'Backup', 'DisableCVO', 'UpdateSecrets', 'CreateTags', 'CreateFolder', 'DeleteCPMS', 'UpdateInfrastructure', 'UpdateConfig', 'RestartPods', 'MonitorHealth', 'CreateWorkers', 'RecreateCPMS', 'ScaleOldMachines', 'Cleanup', 'Verify'])", "message": "spec.plugins keys must be phase names"}]
    )))]
    pub plugins: BTreeMap<String, PluginSelection>,

    /// Health policy for the phases that wait on cluster health.
    #[serde(default)]
    pub health: HealthPolicy,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub enum MigrationState {
    #[default]
    Pending,
    Running,
    Paused,
    Rollback,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub enum ApprovalMode {
    #[default]
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub enum Mode {
    #[default]
    Apply,
    Plan,
}

/// A Secret by name; the namespace defaults to the migration's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SecretRef {
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One key of a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SecretKeyRef {
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Defaults to `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// How to reach one vCenter and trust its certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.insecure) && self.insecure) || (!has(self.caSecret) && !has(self.thumbprint))",
     "message": "insecure cannot be combined with caSecret or thumbprint"}
])))]
#[serde(rename_all = "camelCase")]
pub struct VCenterConnection {
    /// The server as named in failure domains and the Infrastructure.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 255)))]
    pub server: String,
    /// HTTPS port; default 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 65535)))]
    pub port: Option<u16>,
    /// PEM CA bundle, added to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    /// SHA-256 fingerprint of the exact leaf certificate to accept (hex, colons optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")))]
    pub thumbprint: Option<String>,
    /// Skip verification entirely. Reported as a warning condition on the migration.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MachineSetConfig {
    /// Worker replicas of the new MachineSet.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000)))]
    pub replicas: i32,
    /// Name of the failure domain the new workers go to.
    pub failure_domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneMachineSetConfig {
    /// Name of the failure domain the control plane moves to.
    pub failure_domain: String,
}

/// Which component runs a phase, and what it must be.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginSelection {
    /// Component name in the plugin directory (default: the shipped one for the phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Refuse to run unless the component's sha256 is this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^[0-9a-fA-F]{64}$")))]
    pub sha256: Option<String>,
    /// Refuse to run unless the component's describe() version matches (semver req).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// ClusterOperators allowed to be unavailable or degraded while two vCenters are
    /// configured (machine-config re-renders on every vCenter change).
    #[serde(default = "default_tolerated")]
    pub tolerated_operators: Vec<String>,
    /// A phase whose progress does not change for this long makes the migration Degraded
    /// (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^([0-9]+(ms|s|m|h))+$")))]
    pub stall_timeout: Option<String>,
    /// How long the control plane must stay healthy after its rollout (RecreateCPMS;
    /// default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^([0-9]+(ms|s|m|h))+$")))]
    pub stability_window: Option<String>,
}

fn default_tolerated() -> Vec<String> {
    vec!["machine-config".to_string()]
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy { tolerated_operators: default_tolerated(), stall_timeout: None, stability_window: None }
    }
}

/// OpenShift's `VSpherePlatformFailureDomainSpec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FailureDomain {
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub name: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 80)))]
    pub region: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 80)))]
    pub zone: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 255)))]
    pub server: String,
    pub topology: Topology,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_affinity: Option<RegionAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_affinity: Option<ZoneAffinity>,
}

/// Where machines of a failure domain live in vCenter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// Datacenter name.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 80)))]
    pub datacenter: String,
    /// `/<datacenter>/host/<cluster>`.
    #[cfg_attr(feature = "schema", schemars(length(max = 2048), regex(pattern = "^/.*?/host/.*?")))]
    pub compute_cluster: String,
    /// Port group names; machines use them in order.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 10)))]
    pub networks: Vec<String>,
    /// `/<datacenter>/datastore/<datastore>`.
    #[cfg_attr(feature = "schema", schemars(length(max = 2048), regex(pattern = "^/.*?/datastore/.*?")))]
    pub datastore: String,
    /// `/<datacenter>/host/<cluster>/Resources[/...]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(max = 2048), regex(pattern = "^/.*?/host/.*?/Resources.*")))]
    pub resource_pool: Option<String>,
    /// `/<datacenter>/vm/<folder>`; default `/<datacenter>/vm/<infraID>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(max = 2048), regex(pattern = "^/.*?/vm/.*?")))]
    pub folder: Option<String>,
    /// `/<datacenter>/vm/<template>`: the RHCOS template new machines clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 2048), regex(pattern = "^/.*?/vm/.*?")))]
    pub template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct RegionAffinity {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["Datacenter", "ComputeCluster"])))]
    pub type_: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.hostGroup) == (self.type == 'HostGroup')", "message": "hostGroup is required when type is HostGroup, and forbidden otherwise"}
])))]
#[serde(rename_all = "camelCase")]
pub struct ZoneAffinity {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["ComputeCluster", "HostGroup"])))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_group: Option<HostGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostGroup {
    pub vm_group: String,
    pub host_group: String,
    pub vm_host_rule: String,
}

impl MigrationSpec {
    /// The failure domain with this name.
    pub fn failure_domain(&self, name: &str) -> Option<&FailureDomain> {
        self.failure_domains.iter().find(|fd| fd.name == name)
    }

    /// Target servers in first-mention order, without duplicates.
    pub fn target_servers(&self) -> Vec<&str> {
        let mut servers: Vec<&str> = Vec::new();
        for fd in &self.failure_domains {
            if !servers.contains(&fd.server.as_str()) {
                servers.push(&fd.server);
            }
        }
        servers
    }

    /// The connection settings for a server, if any.
    pub fn connection(&self, server: &str) -> Option<&VCenterConnection> {
        self.vcenters.iter().find(|t| t.server == server)
    }
}

impl Topology {
    /// The VM folder machines go to: `folder`, or `/<datacenter>/vm/<infra_id>`.
    pub fn folder_or_default(&self, infra_id: &str) -> String {
        match &self.folder {
            Some(f) if !f.is_empty() => f.clone(),
            _ => format!("/{}/vm/{infra_id}", self.datacenter),
        }
    }
}
