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
    {"rule": "!has(self.machineSetConfig.failureDomain) || self.failureDomains.exists(f, f.name == self.machineSetConfig.failureDomain)",
     "message": "spec.machineSetConfig.failureDomain must name one of spec.failureDomains", "fieldPath": ".machineSetConfig.failureDomain"},
    {"rule": "!has(self.machineSetConfig.failureDomain) || self.failureDomains.exists(f, f.name == self.machineSetConfig.failureDomain && has(f.topology.template))",
     "message": "the failure domain named by spec.machineSetConfig.failureDomain needs topology.template (new machines clone it)", "fieldPath": ".machineSetConfig.failureDomain"},
    {"rule": "!has(self.machineSetConfig.failureDomainMap) || self.machineSetConfig.failureDomainMap.all(m, self.failureDomains.exists(f, f.name == m.target && has(f.topology.template)))",
     "message": "every spec.machineSetConfig.failureDomainMap[].target must name one of spec.failureDomains, with topology.template", "fieldPath": ".machineSetConfig.failureDomainMap"},
    {"rule": "!has(self.machineSetConfig.overrides) || self.machineSetConfig.overrides.all(o, !has(o.failureDomain) || self.failureDomains.exists(f, f.name == o.failureDomain && has(f.topology.template)))",
     "message": "every spec.machineSetConfig.overrides[].failureDomain must name one of spec.failureDomains, with topology.template", "fieldPath": ".machineSetConfig.overrides"},
    {"rule": "!has(self.controlPlaneMachineSetConfig.failureDomain) || self.failureDomains.exists(f, f.name == self.controlPlaneMachineSetConfig.failureDomain)",
     "message": "spec.controlPlaneMachineSetConfig.failureDomain must name one of spec.failureDomains", "fieldPath": ".controlPlaneMachineSetConfig.failureDomain"},
    {"rule": "!has(self.controlPlaneMachineSetConfig.failureDomains) || self.controlPlaneMachineSetConfig.failureDomains.all(d, self.failureDomains.exists(f, f.name == d))",
     "message": "every spec.controlPlaneMachineSetConfig.failureDomains entry must name one of spec.failureDomains", "fieldPath": ".controlPlaneMachineSetConfig.failureDomains"},
    {"rule": "!has(self.staticIPs) || self.staticIPs.all(s, self.failureDomains.exists(f, f.name == s.failureDomain))",
     "message": "every spec.staticIPs[].failureDomain must name one of spec.failureDomains", "fieldPath": ".staticIPs"},
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

    /// Static IP settings of the new machines, per target failure domain. Needed for every
    /// target failure domain that receives machines whose network devices have static
    /// addresses (`ipAddrs` or `addressesFromPools`): the source's addresses, pools, gateway
    /// and nameservers belong to the source network and are never copied.
    #[serde(default, rename = "staticIPs", skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["failureDomain"])))]
    pub static_ips: Vec<StaticIpConfig>,

    /// What Cleanup removes besides the source vCenters' entries in the cluster's
    /// configuration.
    #[serde(default)]
    pub cleanup: CleanupPolicy,
}

/// The static IP settings of the new machines in one target failure domain: what replaces
/// the source's on every network device that had static addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StaticIpConfig {
    /// One of `spec.failureDomains`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub failure_domain: String,
    /// The IP pools the machines' addresses come from: machine-api claims an address from
    /// each (an `IPAddressClaim`, bound by the pool's IPAM controller) before it creates the
    /// VM.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 8)))]
    pub addresses_from_pools: Vec<AddressPool>,
    /// DNS servers of the target network.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 8)))]
    pub nameservers: Vec<String>,
    /// The default gateway, for pools whose addresses carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// An IP pool, as machine-api's `addressesFromPools` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct AddressPool {
    /// API group of the pool kind, e.g. `ipamcontroller.openshift.io`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 253)))]
    pub group: String,
    /// The pool's kind, e.g. `IPPool`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 63)))]
    pub resource: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 253)))]
    pub name: String,
}

/// What Cleanup removes in the source vCenters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CleanupPolicy {
    /// Remove what the installer made for the cluster in each source vCenter once no
    /// machine runs there: the tag category `openshift-<infraID>` with its tags, and the
    /// cluster's VM folder `/<datacenter>/vm/<infraID>` if it is empty (a folder with
    /// anything in it, or one the failure domain names itself, stays). Journalled: a
    /// rollback creates them again. Off (the default): they stay, and Cleanup lists them.
    #[serde(default, rename = "sourceVSphereObjects")]
    pub source_vsphere_objects: bool,
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

/// Where the compute MachineSets go. Every MachineSet of the source vCenters (workers,
/// infra and any custom role) gets a replacement in one target failure domain, with its
/// labels, taints, annotations, replica count and machine settings (CPU, memory, disks,
/// static-IP settings) kept; only the placement changes. A set's destination is, first
/// match wins: its entry in `overrides`, the `failureDomainMap` entry of the source
/// failure domain it runs in, then `failureDomain`. A source set with none of these is
/// refused by Preflight with the set named, before anything changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MachineSetConfig {
    /// The target failure domain of every source MachineSet that neither `overrides` nor
    /// `failureDomainMap` places: on a single-zone or legacy cluster (sets in no failure
    /// domain), this alone says where the machines go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub failure_domain: Option<String>,
    /// Source failure domain (a name in the Infrastructure's failure domains) to target
    /// failure domain (a name in `spec.failureDomains`): keeps a zonal cluster zonal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["source"])))]
    pub failure_domain_map: Vec<DomainMapping>,
    /// Per source MachineSet: another target failure domain, replica count or name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["machineSet"])))]
    pub overrides: Vec<MachineSetOverride>,
}

/// The sets of one source failure domain go to one target failure domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct DomainMapping {
    /// A failure domain of the cluster today (the Infrastructure's).
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub source: String,
    /// A failure domain of `spec.failureDomains`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub target: String,
}

/// Another shape for one source MachineSet's replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MachineSetOverride {
    /// The source MachineSet (in `openshift-machine-api`).
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))
    )]
    pub machine_set: String,
    /// Target failure domain of its replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub failure_domain: Option<String>,
    /// Replicas of its replacement (default: the source set's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 1000)))]
    pub replicas: Option<i32>,
    /// Name of its replacement (default: the source name with its failure domain suffix
    /// replaced by the target's, or the target's appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))
    )]
    pub name: Option<String>,
}

/// Where the control plane goes: one to three target failure domains, which the
/// ControlPlaneMachineSet gets as its failure domains (three masters over three domains:
/// one in each). `failureDomain` is the one-domain shorthand; set exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.failureDomain) != has(self.failureDomains)",
     "message": "set exactly one of failureDomain and failureDomains"}
])))]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneMachineSetConfig {
    /// The one failure domain the control plane moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub failure_domain: Option<String>,
    /// The failure domains the masters spread over, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set", "items" = {"type": "string", "minLength": 1, "maxLength": 256})))]
    pub failure_domains: Vec<String>,
}

impl ControlPlaneMachineSetConfig {
    /// The control plane's failure domains, the shorthand included.
    pub fn domains(&self) -> Vec<&str> {
        match &self.failure_domain {
            Some(one) => vec![one.as_str()],
            None => self.failure_domains.iter().map(String::as_str).collect(),
        }
    }
}

/// Where one source MachineSet goes ([`MigrationSpec::destination`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination<'a> {
    pub failure_domain: &'a FailureDomain,
    /// The field that decided it, for messages (`spec.machineSetConfig.overrides[infra-0]`).
    pub decided_by: String,
    pub replicas: Option<i32>,
    pub name: Option<&'a str>,
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
    /// The static IP settings for the failure domain with this name.
    pub fn static_ip(&self, failure_domain: &str) -> Option<&StaticIpConfig> {
        self.static_ips.iter().find(|s| s.failure_domain == failure_domain)
    }

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

    /// Where the source MachineSet `set`, running in source failure domain `source_domain`
    /// (None: in no failure domain), goes: its override, else the map entry of its domain,
    /// else `machineSetConfig.failureDomain`. Err says which field would place it.
    pub fn destination(&self, set: &str, source_domain: Option<&str>) -> Result<Destination<'_>, String> {
        let cfg = &self.machine_set_config;
        let ov = cfg.overrides.iter().find(|o| o.machine_set == set);
        let (name, decided_by) = if let Some(fd) = ov.and_then(|o| o.failure_domain.as_deref()) {
            (fd, format!("spec.machineSetConfig.overrides[{set}].failureDomain"))
        } else if let Some(m) = source_domain.and_then(|d| cfg.failure_domain_map.iter().find(|m| m.source == d)) {
            (m.target.as_str(), format!("spec.machineSetConfig.failureDomainMap[{}]", m.source))
        } else if let Some(fd) = cfg.failure_domain.as_deref() {
            (fd, "spec.machineSetConfig.failureDomain".to_string())
        } else {
            let domain = match source_domain {
                Some(d) => format!(
                    "runs in source failure domain {d}, which spec.machineSetConfig.failureDomainMap does not map"
                ),
                None => "runs in no failure domain".to_string(),
            };
            return Err(format!(
                "MachineSet {set} {domain}, and neither spec.machineSetConfig.overrides nor spec.machineSetConfig.failureDomain places it: say where it goes"
            ));
        };
        let failure_domain = self
            .failure_domain(name)
            .ok_or_else(|| format!("{decided_by} is {name:?}, which is not one of spec.failureDomains"))?;
        Ok(Destination {
            failure_domain,
            decided_by,
            replicas: ov.and_then(|o| o.replicas),
            name: ov.and_then(|o| o.name.as_deref()),
        })
    }

    /// The failure domain a cluster-wide default placement (the legacy cloud config's
    /// `[Workspace]`) moves to: `machineSetConfig.failureDomain`, else the control
    /// plane's first.
    pub fn default_domain(&self) -> Option<&FailureDomain> {
        let name = self
            .machine_set_config
            .failure_domain
            .as_deref()
            .or_else(|| self.control_plane_machine_set_config.domains().first().copied())?;
        self.failure_domain(name)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mk_domain(name: &str) -> serde_json::Value {
        json!({"name": name, "region": "r", "zone": name, "server": "vc", "topology": {
            "datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/ds",
            "networks": ["n"], "template": "/dc/vm/t"}})
    }

    fn mk_spec(machine_set_config: serde_json::Value) -> MigrationSpec {
        serde_json::from_value(json!({
            "targetVCenterCredentialsSecret": {"name": "c"},
            "failureDomains": [mk_domain("dst-a"), mk_domain("dst-b"), mk_domain("dst-c")],
            "machineSetConfig": machine_set_config,
            "controlPlaneMachineSetConfig": {"failureDomains": ["dst-a", "dst-b", "dst-c"]},
        }))
        .unwrap()
    }

    #[test]
    fn an_override_wins_over_the_map_which_wins_over_the_default() {
        let spec = mk_spec(json!({
            "failureDomain": "dst-c",
            "failureDomainMap": [{"source": "src-a", "target": "dst-a"}, {"source": "src-b", "target": "dst-b"}],
            "overrides": [{"machineSet": "infra-0", "failureDomain": "dst-b", "replicas": 2, "name": "infra-new"}],
        }));
        let d = spec.destination("infra-0", Some("src-a")).unwrap();
        assert_eq!((d.failure_domain.name.as_str(), d.replicas, d.name), ("dst-b", Some(2), Some("infra-new")));
        assert_eq!(d.decided_by, "spec.machineSetConfig.overrides[infra-0].failureDomain");
        let d = spec.destination("worker-1", Some("src-b")).unwrap();
        assert_eq!((d.failure_domain.name.as_str(), d.replicas), ("dst-b", None));
        assert_eq!(d.decided_by, "spec.machineSetConfig.failureDomainMap[src-b]");
        for (set, domain) in [("legacy", None), ("elsewhere", Some("src-z"))] {
            let d = spec.destination(set, domain).unwrap();
            assert_eq!(
                (d.failure_domain.name.as_str(), d.decided_by.as_str()),
                ("dst-c", "spec.machineSetConfig.failureDomain")
            );
        }
    }

    #[test]
    fn a_set_nothing_places_is_refused_with_the_set_and_the_fields_named() {
        let spec = mk_spec(json!({"failureDomainMap": [{"source": "src-a", "target": "dst-a"}]}));
        let e = spec.destination("worker-2", Some("src-c")).unwrap_err();
        assert!(
            e.contains("MachineSet worker-2 runs in source failure domain src-c") && e.contains("failureDomainMap"),
            "{e}"
        );
        let e = spec.destination("legacy-0", None).unwrap_err();
        assert!(e.contains("runs in no failure domain") && e.contains("spec.machineSetConfig.failureDomain"), "{e}");
        // An override of replicas alone still needs a destination from the map or default.
        let spec = mk_spec(json!({"overrides": [{"machineSet": "w", "replicas": 0}], "failureDomain": "dst-a"}));
        let d = spec.destination("w", None).unwrap();
        assert_eq!((d.failure_domain.name.as_str(), d.replicas), ("dst-a", Some(0)));
    }

    #[test]
    fn the_control_plane_shorthand_is_one_domain() {
        let one: ControlPlaneMachineSetConfig = serde_json::from_value(json!({"failureDomain": "a"})).unwrap();
        let three: ControlPlaneMachineSetConfig =
            serde_json::from_value(json!({"failureDomains": ["a", "b", "c"]})).unwrap();
        assert_eq!((one.domains(), three.domains()), (vec!["a"], vec!["a", "b", "c"]));
    }
}
