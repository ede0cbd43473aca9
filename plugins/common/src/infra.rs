//! The Infrastructure singleton (`config.openshift.io/v1`, `cluster`) on vSphere: the
//! infraID, the vCenters and failure domains in `spec.platformSpec.vsphere`, adding the
//! target vCenters and failure domains (UpdateInfrastructure), describing a legacy
//! install's source as a failure domain, removing the source (Cleanup), and what the
//! Infrastructure CRD allows.
//!
//! Everything here is a pure function over JSON. Merges are keyed (vCenters by `server`,
//! failure domains by `name`) and keep every other entry and field as it was, so applying
//! the same targets twice yields the identical object.

use serde_json::{Map, Value, json};
use vsm_sdk::spec::FailureDomain;
use vsm_sdk::{Object, PhaseError};

/// Most vCenters the Infrastructure CRD accepts today (`vcenters` maxItems).
pub const MAX_VCENTERS: usize = 3;

/// Names OpenShift gives the failure domain it derives for a cluster installed before
/// failure domains existed.
pub const LEGACY_FAILURE_DOMAIN: &str = "generated-failure-domain";
pub const LEGACY_REGION: &str = "generated-region";
pub const LEGACY_ZONE: &str = "generated-zone";

/// Pointer to the vSphere platform spec inside the Infrastructure.
pub const VSPHERE_SPEC: &str = "/spec/platformSpec/vsphere";

/// What is wrong with an Infrastructure for the change asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfraError {
    /// Not a vSphere cluster.
    NotVsphere { platform: String },
    /// `status.infrastructureName` is empty.
    NoInfraId,
    /// A target failure domain's name is taken by a failure domain of another vCenter.
    NameTaken { name: String, existing_server: String, wanted_server: String },
    /// The result would list more vCenters than the CRD allows.
    TooManyVCenters { wanted: Vec<String>, max: usize },
    /// Removing these servers would leave no vCenter at all.
    WouldRemoveEveryVCenter { servers: Vec<String> },
    /// A legacy source vCenter could not be described as a failure domain.
    CannotDescribeSource { server: String, reason: String },
}

impl std::fmt::Display for InfraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfraError::NotVsphere { platform } => write!(
                f,
                "Infrastructure cluster is not a vSphere cluster (platform {platform:?}); this migration only moves vSphere clusters"
            ),
            InfraError::NoInfraId => {
                f.write_str("Infrastructure cluster has no status.infrastructureName (the cluster's infraID)")
            }
            InfraError::NameTaken { name, existing_server, wanted_server } => write!(
                f,
                "failure domain {name:?} already exists in the Infrastructure for vCenter {existing_server}, \
                 but the migration puts it on {wanted_server}: rename the target failure domain in spec.failureDomains"
            ),
            InfraError::TooManyVCenters { wanted, max } => write!(
                f,
                "the Infrastructure can list at most {max} vCenters, but adding the targets would make {} ({})",
                wanted.len(),
                wanted.join(", ")
            ),
            InfraError::WouldRemoveEveryVCenter { servers } => write!(
                f,
                "refusing to remove vCenter(s) {} from the Infrastructure: no vCenter would be left",
                servers.join(", ")
            ),
            InfraError::CannotDescribeSource { server, reason } => write!(
                f,
                "the Infrastructure has no failure domains, and source vCenter {server} cannot be described as one: {reason}"
            ),
        }
    }
}

impl std::error::Error for InfraError {}

impl From<InfraError> for PhaseError {
    fn from(e: InfraError) -> Self {
        PhaseError::invalid(e.to_string())
    }
}

/// The platform type (`spec.platformSpec.type`, else `status.platformStatus.type`, else
/// `status.platform`).
pub fn platform(infra: &Object) -> &str {
    ["/spec/platformSpec/type", "/status/platformStatus/type", "/status/platform"]
        .iter()
        .find_map(|p| infra.str_at(p).filter(|s| !s.is_empty()))
        .unwrap_or("")
}

/// Fails unless the Infrastructure is a vSphere one.
pub fn require_vsphere(infra: &Object) -> Result<(), InfraError> {
    match platform(infra) {
        "VSphere" => Ok(()),
        other => Err(InfraError::NotVsphere { platform: other.to_string() }),
    }
}

/// The cluster's infraID (`status.infrastructureName`).
pub fn infra_id(infra: &Object) -> Result<&str, InfraError> {
    infra.str_at("/status/infrastructureName").filter(|s| !s.is_empty()).ok_or(InfraError::NoInfraId)
}

/// `spec.platformSpec.vsphere`, or an empty object.
pub fn vsphere_spec(infra: &Object) -> Value {
    infra.at(VSPHERE_SPEC).filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}))
}

fn list<'a>(vsphere: &'a Value, field: &str) -> &'a [Value] {
    vsphere.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn server_of(v: &Value) -> &str {
    v.get("server").and_then(Value::as_str).unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// `vcenters[].server`, in order.
pub fn vcenter_servers(vsphere: &Value) -> Vec<String> {
    list(vsphere, "vcenters").iter().map(|v| server_of(v).to_string()).filter(|s| !s.is_empty()).collect()
}

/// `vcenters[server].datacenters`, in order (none if the server is not listed).
pub fn vcenter_datacenters(vsphere: &Value, server: &str) -> Vec<String> {
    list(vsphere, "vcenters")
        .iter()
        .find(|v| server_of(v) == server)
        .and_then(|v| v.get("datacenters"))
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// `failureDomains[]`, as stored.
pub fn failure_domains(vsphere: &Value) -> &[Value] {
    list(vsphere, "failureDomains")
}

/// The failure domain as the Infrastructure stores it: the spec's shape, with the VM
/// folder made explicit (`/<datacenter>/vm/<infraID>` when the spec leaves it out), so
/// every consumer puts machines where CreateFolder made the folder.
pub fn failure_domain_json(fd: &FailureDomain, infra_id: &str) -> Value {
    let mut fd = fd.clone();
    fd.topology.folder = Some(fd.topology.folder_or_default(infra_id));
    serde_json::to_value(&fd).expect("failure domains serialize")
}

/// The datacenters of `server`'s failure domains, first mention first.
pub fn datacenters_of(fds: &[FailureDomain], server: &str) -> Vec<String> {
    let mut dcs: Vec<String> = Vec::new();
    for fd in fds.iter().filter(|fd| fd.server == server) {
        if !dcs.contains(&fd.topology.datacenter) {
            dcs.push(fd.topology.datacenter.clone());
        }
    }
    dcs
}

/// Servers listed in `vcenters` that no failure domain describes, when the
/// Infrastructure has no failure domain at all (a legacy install). Targets are excluded.
pub fn undescribed_sources(vsphere: &Value, targets: &[&str]) -> Vec<String> {
    if !failure_domains(vsphere).is_empty() {
        return Vec::new();
    }
    vcenter_servers(vsphere).into_iter().filter(|s| !targets.contains(&s.as_str())).collect()
}

fn in_datacenter(dc: &str, root: &str, value: &str) -> String {
    if value.starts_with('/') { value.to_string() } else { format!("/{dc}/{root}/{value}") }
}

/// Describe a legacy install's source vCenter as a failure domain, from the provider spec
/// of a machine running there (its `workspace`, network devices and template), so that
/// machines on the source keep working once failure domains exist. `name` is usually
/// [`LEGACY_FAILURE_DOMAIN`].
pub fn describe_source(name: &str, server: &str, provider_spec: &Value) -> Result<Value, InfraError> {
    let fail = |reason: &str| InfraError::CannotDescribeSource { server: server.into(), reason: reason.into() };
    let ws = |k: &str| provider_spec.pointer(&format!("/workspace/{k}")).and_then(Value::as_str).unwrap_or_default();
    if ws("server") != server {
        return Err(fail(&format!("the machine's workspace.server is {:?}", ws("server"))));
    }
    let dc = ws("datacenter");
    if dc.is_empty() {
        return Err(fail("the machine's workspace has no datacenter"));
    }
    let pool = in_datacenter(dc, "host", ws("resourcePool"));
    let cluster = match pool.split_once("/Resources") {
        Some((cluster, _)) if ws("resourcePool").starts_with('/') && cluster.contains("/host/") => cluster.to_string(),
        _ => {
            return Err(fail(&format!(
                "workspace.resourcePool {:?} does not name a compute cluster",
                ws("resourcePool")
            )));
        }
    };
    if ws("datastore").is_empty() {
        return Err(fail("the machine's workspace has no datastore"));
    }
    let networks: Vec<String> = provider_spec
        .pointer("/network/devices")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|d| d.get("networkName")?.as_str())
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if networks.is_empty() {
        return Err(fail("the machine has no network device with a networkName"));
    }
    let mut topology = Map::new();
    topology.insert("datacenter".into(), json!(dc));
    topology.insert("computeCluster".into(), json!(cluster));
    topology.insert("datastore".into(), json!(in_datacenter(dc, "datastore", ws("datastore"))));
    topology.insert("networks".into(), json!(networks));
    topology.insert("resourcePool".into(), json!(pool));
    if !ws("folder").is_empty() {
        topology.insert("folder".into(), json!(in_datacenter(dc, "vm", ws("folder"))));
    }
    if let Some(t) = provider_spec.get("template").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        topology.insert("template".into(), json!(in_datacenter(dc, "vm", t)));
    }
    Ok(json!({"name": name, "region": LEGACY_REGION, "zone": LEGACY_ZONE, "server": server, "topology": topology}))
}

/// What [`add_targets`] asks for beyond the failure domains themselves.
pub struct Targets<'a> {
    pub failure_domains: &'a [FailureDomain],
    pub infra_id: &'a str,
    /// Port to record for a target server (from the migration's `spec.vcenters`).
    pub port: &'a dyn Fn(&str) -> u16,
    /// Failure domains describing legacy sources ([`describe_source`]), put first.
    pub legacy_sources: Vec<Value>,
}

/// `spec.platformSpec.vsphere` with the targets added: each target server in `vcenters`
/// (datacenters of its failure domains, first mention first, after any already listed),
/// each target failure domain in `failureDomains` (replacing one of the same name and
/// server in place, else appended), legacy source descriptions first. Everything else is
/// kept as it was. Idempotent.
pub fn add_targets(vsphere: &Value, t: &Targets) -> Result<Value, InfraError> {
    let mut out = if vsphere.is_object() { vsphere.clone() } else { json!({}) };

    let mut vcenters: Vec<Value> = list(vsphere, "vcenters").to_vec();
    let mut targets: Vec<&str> = Vec::new();
    for fd in t.failure_domains {
        if !targets.contains(&fd.server.as_str()) {
            targets.push(&fd.server);
        }
    }
    for server in &targets {
        let dcs = datacenters_of(t.failure_domains, server);
        match vcenters.iter_mut().find(|v| server_of(v) == *server) {
            Some(existing) => {
                let mut have: Vec<Value> =
                    existing.get("datacenters").and_then(Value::as_array).cloned().unwrap_or_default();
                for dc in dcs {
                    if !have.iter().any(|h| h.as_str() == Some(dc.as_str())) {
                        have.push(json!(dc));
                    }
                }
                existing["datacenters"] = Value::Array(have);
            }
            None => vcenters.push(json!({"server": server, "port": (t.port)(server), "datacenters": dcs})),
        }
    }
    if vcenters.len() > MAX_VCENTERS {
        return Err(InfraError::TooManyVCenters {
            wanted: vcenters.iter().map(|v| server_of(v).to_string()).collect(),
            max: MAX_VCENTERS,
        });
    }

    let mut fds: Vec<Value> = Vec::new();
    let existing = failure_domains(vsphere);
    for legacy in &t.legacy_sources {
        if !existing.iter().any(|e| name_of(e) == name_of(legacy)) {
            fds.push(legacy.clone());
        }
    }
    fds.extend(existing.iter().cloned());
    for fd in t.failure_domains {
        let desired = failure_domain_json(fd, t.infra_id);
        match fds.iter_mut().find(|e| name_of(e) == fd.name) {
            Some(e) if server_of(e) != fd.server => {
                return Err(InfraError::NameTaken {
                    name: fd.name.clone(),
                    existing_server: server_of(e).to_string(),
                    wanted_server: fd.server.clone(),
                });
            }
            Some(e) => *e = desired,
            None => fds.push(desired),
        }
    }
    out["vcenters"] = Value::Array(vcenters);
    out["failureDomains"] = Value::Array(fds);
    Ok(out)
}

/// What [`remove_servers`] took out.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    /// The new `spec.platformSpec.vsphere`.
    pub vsphere: Value,
    pub removed_vcenters: Vec<String>,
    pub removed_failure_domains: Vec<String>,
}

impl Removal {
    pub fn changed(&self) -> bool {
        !self.removed_vcenters.is_empty() || !self.removed_failure_domains.is_empty()
    }
}

/// `spec.platformSpec.vsphere` without the given vCenters and their failure domains
/// (Cleanup removes the recorded source servers). Everything else is kept. Removing
/// servers that are not there changes nothing, so a re-run is safe; a removal that would
/// leave no vCenter is refused.
pub fn remove_servers(vsphere: &Value, servers: &[&str]) -> Result<Removal, InfraError> {
    let mut out = if vsphere.is_object() { vsphere.clone() } else { json!({}) };
    let vcenters = list(vsphere, "vcenters");
    let (gone, kept): (Vec<&Value>, Vec<&Value>) = vcenters.iter().partition(|v| servers.contains(&server_of(v)));
    if kept.is_empty() && !vcenters.is_empty() {
        return Err(InfraError::WouldRemoveEveryVCenter { servers: servers.iter().map(|s| s.to_string()).collect() });
    }
    let (fds_gone, fds_kept): (Vec<&Value>, Vec<&Value>) =
        failure_domains(vsphere).iter().partition(|f| servers.contains(&server_of(f)));
    if vsphere.get("vcenters").is_some() {
        out["vcenters"] = Value::Array(kept.into_iter().cloned().collect());
    }
    if vsphere.get("failureDomains").is_some() {
        out["failureDomains"] = Value::Array(fds_kept.into_iter().cloned().collect());
    }
    Ok(Removal {
        vsphere: out,
        removed_vcenters: gone.iter().map(|v| server_of(v).to_string()).collect(),
        removed_failure_domains: fds_gone.iter().map(|f| name_of(f).to_string()).collect(),
    })
}

#[cfg(test)]
mod tests;
