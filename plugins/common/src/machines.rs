//! Machines, MachineSets, Nodes and the ControlPlaneMachineSet on vSphere: where a machine
//! runs (its provider spec's `workspace.server`), whether it is ready (phase Running, a
//! `nodeRef`, and that Node Ready), how a provider spec is moved into a failure domain, and
//! how a MachineSet's replacement and the control plane's template are made from it.
//!
//! Pure functions over JSON; the phases do the I/O.

use serde_json::{Value, json};
use vsm_sdk::Object;
use vsm_sdk::spec::{FailureDomain, StaticIpConfig};
use vsm_sdk::types::names::MACHINESET_LABEL;

/// Provider spec of a Machine.
pub const MACHINE_PROVIDER_SPEC: &str = "/spec/providerSpec/value";
/// Provider spec of a MachineSet's machine template.
pub const SET_PROVIDER_SPEC: &str = "/spec/template/spec/providerSpec/value";
/// The machine template of a ControlPlaneMachineSet.
pub const CPMS_TEMPLATE: &str = "/spec/template/machines_v1beta1_machine_openshift_io";
/// Machine type label (`worker`, `master`, `infra`...).
pub const MACHINE_TYPE_LABEL: &str = "machine.openshift.io/cluster-api-machine-type";
/// Prefix of the Node role labels a MachineSet's template puts on its Nodes.
pub const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// `workspace.server` of a provider spec ("" when absent).
pub fn server_of(provider_spec: &Value) -> &str {
    provider_spec.pointer("/workspace/server").and_then(Value::as_str).unwrap_or_default()
}

/// The vCenter a Machine runs in.
pub fn machine_server(machine: &Object) -> &str {
    machine.at(MACHINE_PROVIDER_SPEC).map(server_of).unwrap_or_default()
}

/// The vCenter a MachineSet puts its machines in.
pub fn machine_set_server(set: &Object) -> &str {
    set.at(SET_PROVIDER_SPEC).map(server_of).unwrap_or_default()
}

/// `status.phase` of a Machine ("" before machine-api has seen it).
pub fn phase(machine: &Object) -> &str {
    machine.str_at("/status/phase").unwrap_or_default()
}

/// The Node a Machine points at.
pub fn node_ref(machine: &Object) -> Option<&str> {
    machine.str_at("/status/nodeRef/name").filter(|n| !n.is_empty())
}

/// Whether a Node's Ready condition is True.
pub fn node_ready(node: &Object) -> bool {
    node.condition_true("Ready")
}

/// Where one Machine stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    /// Running, with a Ready Node.
    Ready,
    /// Not there yet: a short status for messages ("Provisioned", "Running, node x not Ready").
    Waiting(String),
    /// machine-api gave up on it (`phase: Failed`): the reason.
    Failed(String),
}

/// Where a Machine stands, looking its Node up in `nodes`.
pub fn machine_state(machine: &Object, nodes: &[Object]) -> MachineState {
    if machine.is_deleting() {
        return MachineState::Waiting("Deleting".into());
    }
    match phase(machine) {
        "Failed" => {
            let reason = machine
                .str_at("/status/errorMessage")
                .or_else(|| machine.str_at("/status/errorReason"))
                .unwrap_or("no reason given");
            MachineState::Failed(reason.to_string())
        }
        "Running" => match node_ref(machine) {
            None => MachineState::Waiting("Running, no node yet".into()),
            Some(n) => match nodes.iter().find(|node| node.name() == n) {
                None => MachineState::Waiting(format!("Running, node {n} not registered")),
                Some(node) if node_ready(node) => MachineState::Ready,
                Some(_) => MachineState::Waiting(format!("Running, node {n} not Ready")),
            },
        },
        "" => MachineState::Waiting(format!("Pending{}", why_not_yet(machine))),
        other => MachineState::Waiting(format!("{other}{}", why_not_yet(machine))),
    }
}

/// What machine-api says holds a Machine back: the first condition with status False and a
/// message, from the provider's status (the vSphere actuator's `MachineCreation` and IP
/// address conditions) or the Machine's own, as ` (Reason: message)`; empty when none.
fn why_not_yet(machine: &Object) -> String {
    const MAX: usize = 200;
    let conditions = ["/status/providerStatus/conditions", "/status/conditions"];
    let held = conditions.iter().flat_map(|p| machine.array_at(p)).find(|c| {
        c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty())
    });
    let Some(c) = held else { return String::new() };
    let reason = c.get("reason").and_then(Value::as_str).unwrap_or_default();
    let message = c.get("message").and_then(Value::as_str).unwrap_or_default();
    let short: String = message.chars().take(MAX).collect();
    let more = if message.chars().count() > MAX { "…" } else { "" };
    match reason.is_empty() {
        true => format!(" ({short}{more})"),
        false => format!(" ({reason}: {short}{more})"),
    }
}

/// Readiness of a group of Machines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    pub ready: Vec<String>,
    /// `name status` of every machine not ready yet.
    pub waiting: Vec<String>,
    /// `name: reason` of every failed machine.
    pub failed: Vec<String>,
}

impl Readiness {
    pub fn of(machines: &[Object], nodes: &[Object]) -> Readiness {
        let mut r = Readiness::default();
        let mut sorted: Vec<&Object> = machines.iter().collect();
        sorted.sort_by(|a, b| a.name().cmp(b.name()));
        for m in sorted {
            match machine_state(m, nodes) {
                MachineState::Ready => r.ready.push(m.name().to_string()),
                MachineState::Waiting(s) => r.waiting.push(format!("{} {s}", m.name())),
                MachineState::Failed(s) => r.failed.push(format!("{}: {s}", m.name())),
            }
        }
        r
    }

    /// Every machine ready, and exactly `want` of them.
    pub fn complete(&self, want: usize) -> bool {
        self.waiting.is_empty() && self.failed.is_empty() && self.ready.len() == want
    }

    pub fn total(&self) -> usize {
        self.ready.len() + self.waiting.len() + self.failed.len()
    }
}

/// `a, b, c` (at most `max`, then "and N more").
pub fn list_some(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        s.push_str(&format!(" and {} more", items.len() - max));
    }
    s
}

/// Why a provider spec cannot be placed in a failure domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    NoDomain,
    NoTemplate {
        failure_domain: String,
    },
    TooFewNetworks {
        failure_domain: String,
        devices: usize,
        networks: usize,
    },
    /// A device has static addresses and the failure domain has no `spec.staticIPs` entry.
    NoStaticIps {
        failure_domain: String,
        device: usize,
        settings: String,
    },
    /// The control plane's failure domains give a static device different settings, which
    /// one CPMS template cannot hold.
    StaticIpsDiffer {
        failure_domains: Vec<String>,
    },
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::NoDomain => write!(f, "no failure domain to place the machines in"),
            PlaceError::NoTemplate { failure_domain } => write!(
                f,
                "failure domain {failure_domain} has no topology.template: new machines need an RHCOS template in the target vCenter"
            ),
            PlaceError::TooFewNetworks { failure_domain, devices, networks } => write!(
                f,
                "the machines have {devices} network devices but failure domain {failure_domain} lists {networks} network(s) in topology.networks: list one port group per device"
            ),
            PlaceError::NoStaticIps { failure_domain, device, settings } => write!(
                f,
                "network device {device} of the machines has static addresses ({settings}), which belong to the source network, and failure domain {failure_domain} has no spec.staticIPs entry: give the target network's IP pools and nameservers"
            ),
            PlaceError::StaticIpsDiffer { failure_domains } => write!(
                f,
                "the control plane's failure domains {} have different spec.staticIPs, and one ControlPlaneMachineSet template holds one setting for every master: give them the same pools, nameservers and gateway",
                failure_domains.join(", ")
            ),
        }
    }
}

/// The resource pool machines of a failure domain use.
pub fn resource_pool(fd: &FailureDomain) -> String {
    match &fd.topology.resource_pool {
        Some(p) if !p.is_empty() => p.clone(),
        _ => format!("{}/Resources", fd.topology.compute_cluster),
    }
}

/// The settings of a network device that give a machine fixed addresses.
const STATIC_KEYS: [&str; 4] = ["ipAddrs", "addressesFromPools", "gateway", "nameservers"];

/// Whether a network device has static addresses (fixed `ipAddrs` or addresses claimed
/// from IP pools); a device without them uses DHCP.
pub fn is_static(device: &Value) -> bool {
    ["ipAddrs", "addressesFromPools"]
        .iter()
        .any(|k| device.get(*k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
}

/// A device's static settings in a few words.
fn static_settings(device: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        device
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => format!("{}/{}", v["resource"].as_str().unwrap_or("?"), v["name"].as_str().unwrap_or("?")),
            })
            .collect()
    };
    let mut parts = Vec::new();
    for (k, what) in [("ipAddrs", "addresses"), ("addressesFromPools", "pools"), ("nameservers", "nameservers")] {
        let l = list(k);
        if !l.is_empty() {
            parts.push(format!("{what} {}", l.join(", ")));
        }
    }
    if let Some(g) = device.get("gateway").and_then(Value::as_str).filter(|g| !g.is_empty()) {
        parts.push(format!("gateway {g}"));
    }
    parts.join("; ")
}

/// A static device's settings for `cfg`'s network.
fn apply_static(device: &mut Value, cfg: &StaticIpConfig) {
    let obj = device.as_object_mut().expect("devices are objects");
    for k in STATIC_KEYS {
        obj.remove(k);
    }
    obj.insert("addressesFromPools".into(), json!(cfg.addresses_from_pools));
    obj.insert("nameservers".into(), json!(cfg.nameservers));
    if let Some(g) = &cfg.gateway {
        obj.insert("gateway".into(), json!(g));
    }
}

/// A provider spec moved into a failure domain: `workspace` (server, datacenter,
/// datastore, folder, resource pool; a VM group when the domain uses a host group),
/// `template`, the port group of each network device, and for each device with static
/// addresses the failure domain's IP pools, nameservers and gateway (`static_ips`, the
/// spec's `staticIPs`) in place of the source's: a source address, pool, gateway or
/// nameserver is never copied (a device with static addresses and no entry for the domain
/// is an error). Everything else (CPU, memory, disks, secrets, a DHCP device's settings)
/// stays as it was. vCenter-specific leftovers that would break a clone in another vCenter
/// (tag IDs, a linked-clone snapshot) are dropped; what was dropped or replaced is named
/// in the second value.
pub fn place(
    provider_spec: &Value,
    fd: &FailureDomain,
    infra_id: &str,
    static_ips: &[StaticIpConfig],
) -> Result<(Value, Vec<String>), PlaceError> {
    let template = fd
        .topology
        .template
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| PlaceError::NoTemplate { failure_domain: fd.name.clone() })?;
    let mut out = if provider_spec.is_object() { provider_spec.clone() } else { json!({}) };
    let mut dropped = Vec::new();

    let mut workspace = json!({
        "server": fd.server,
        "datacenter": fd.topology.datacenter,
        "datastore": fd.topology.datastore,
        "folder": fd.topology.folder_or_default(infra_id),
        "resourcePool": resource_pool(fd),
    });
    if let Some(hg) = fd.zone_affinity.as_ref().and_then(|z| z.host_group.as_ref()) {
        workspace["vmGroup"] = json!(hg.vm_group);
    }
    out["workspace"] = workspace;
    out["template"] = json!(template);

    let networks = &fd.topology.networks;
    let mut devices = out.pointer("/network/devices").and_then(Value::as_array).cloned().unwrap_or_default();
    if devices.len() > networks.len() {
        return Err(PlaceError::TooFewNetworks {
            failure_domain: fd.name.clone(),
            devices: devices.len(),
            networks: networks.len(),
        });
    }
    for (i, net) in networks.iter().enumerate() {
        match devices.get_mut(i) {
            Some(d) if d.is_object() => d["networkName"] = json!(net),
            Some(d) => *d = json!({"networkName": net}),
            None => devices.push(json!({"networkName": net})),
        }
    }
    let cfg = static_ips.iter().find(|c| c.failure_domain == fd.name);
    for (i, d) in devices.iter_mut().enumerate().filter(|(_, d)| is_static(d)) {
        let before = static_settings(d);
        let Some(cfg) = cfg else {
            return Err(PlaceError::NoStaticIps { failure_domain: fd.name.clone(), device: i, settings: before });
        };
        let was = d.clone();
        apply_static(d, cfg);
        if *d != was {
            dropped.push(format!(
                "network device {i}: the source's static IP settings ({before}), replaced by failure domain {}'s from spec.staticIPs",
                fd.name
            ));
        }
    }
    if !out.get("network").is_some_and(Value::is_object) {
        out["network"] = json!({});
    }
    out["network"]["devices"] = Value::Array(devices);

    let obj = out.as_object_mut().expect("made an object above");
    if obj.get("tagIDs").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
        dropped.push("tagIDs (tags of the source vCenter)".to_string());
        obj.remove("tagIDs");
    }
    if obj.get("snapshot").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        dropped.push("snapshot (a snapshot of the source template)".to_string());
        obj.insert("snapshot".into(), json!(""));
    }
    Ok((out, dropped))
}

/// Whether a label value is valid (Kubernetes: at most 63 characters, alphanumerics,
/// `-`, `_`, `.`, starting and ending alphanumeric).
pub fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether a name is a DNS-1123 subdomain (what Machines and MachineSets are named).
pub fn valid_subdomain(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Checks a new MachineSet's name: usable as a name and as the value of the MachineSet
/// label its machines carry.
pub fn check_set_name(name: &str) -> Result<(), String> {
    if !valid_subdomain(name) {
        return Err(format!(
            "the new MachineSet would be named {name:?}, which is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')"
        ));
    }
    if !valid_label_value(name) {
        return Err(format!(
            "the new MachineSet would be named {name:?} ({} characters), too long for the label {MACHINESET_LABEL} (63 at most)",
            name.len()
        ));
    }
    Ok(())
}

/// Annotation on a replacement MachineSet: the source set it replaces.
pub const REPLACES_ANNOTATION: &str = "migration.openshift.io/replaces";
/// Annotations the cluster-autoscaler operator puts on the set a MachineAutoscaler points
/// at: a copy would make the autoscaler scale the replacement with no MachineAutoscaler.
const AUTOSCALER_ANNOTATIONS: [&str; 2] = [
    "machine.openshift.io/cluster-api-autoscaler-node-group-min-size",
    "machine.openshift.io/cluster-api-autoscaler-node-group-max-size",
];
/// Labels that name a zone or region: a replacement carries the target domain's.
const ZONE_LABELS: [&str; 3] =
    ["machine.openshift.io/zone", "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"];
const REGION_LABELS: [&str; 3] =
    ["machine.openshift.io/region", "topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"];

/// Zone and region labels present in `labels` get the failure domain's values.
fn relabel_zone(labels: &mut Value, fd: &FailureDomain) {
    let Some(map) = labels.as_object_mut() else { return };
    for (keys, value) in [(&ZONE_LABELS, &fd.zone), (&REGION_LABELS, &fd.region)] {
        for k in keys.iter() {
            if let Some(v) = map.get_mut(*k) {
                *v = json!(value);
            }
        }
    }
}

/// The MachineSet `name` that replaces `source` in `fd` with `replicas` machines: the
/// source's labels, annotations, taints, node labels, selector and machine template kept,
/// its provider spec placed in `fd` ([`place`]), zone and region labels set to `fd`'s, the
/// autoscaler's annotations left out (a MachineAutoscaler, moved to the replacement, puts
/// them back), and [`REPLACES_ANNOTATION`] naming the source.
pub fn replacement_set(
    source: &Object,
    name: &str,
    fd: &FailureDomain,
    infra_id: &str,
    replicas: i64,
    static_ips: &[StaticIpConfig],
) -> Result<(Value, Vec<String>), PlaceError> {
    let spec = source.at(SET_PROVIDER_SPEC).cloned().unwrap_or(Value::Null);
    let (placed, dropped) = place(&spec, fd, infra_id, static_ips)?;
    let keep = |p: &str| source.at(p).filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}));

    let mut labels = keep("/metadata/labels");
    labels[vsm_sdk::types::names::FAILURE_DOMAIN_LABEL] = json!(fd.name);
    relabel_zone(&mut labels, fd);
    let mut annotations = keep("/metadata/annotations");
    annotations[vsm_sdk::types::names::FAILURE_DOMAIN_LABEL] = json!(fd.name);
    annotations[REPLACES_ANNOTATION] = json!(source.name());
    if let Some(a) = annotations.as_object_mut() {
        for k in AUTOSCALER_ANNOTATIONS {
            a.remove(k);
        }
    }

    let mut selector = keep("/spec/selector");
    if !selector.get("matchLabels").is_some_and(Value::is_object) {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][MACHINESET_LABEL] = json!(name);

    let mut machine_template = keep("/spec/template");
    if !machine_template.get("metadata").is_some_and(Value::is_object) {
        machine_template["metadata"] = json!({});
    }
    if !machine_template["metadata"].get("labels").is_some_and(Value::is_object) {
        machine_template["metadata"]["labels"] = json!({});
    }
    machine_template["metadata"]["labels"][MACHINESET_LABEL] = json!(name);
    relabel_zone(&mut machine_template["metadata"]["labels"], fd);
    if !machine_template.get("spec").is_some_and(Value::is_object) {
        machine_template["spec"] = json!({});
    }
    if let Some(node_labels) = machine_template.pointer_mut("/spec/metadata/labels") {
        relabel_zone(node_labels, fd);
    }
    machine_template["spec"]["providerSpec"] = json!({"value": placed});
    // A Machine's providerID is set by machine-api, never copied.
    if let Some(s) = machine_template["spec"].as_object_mut() {
        s.remove("providerID");
    }

    let mut spec = source.at("/spec").filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}));
    spec["replicas"] = json!(replicas);
    spec["selector"] = selector;
    spec["template"] = machine_template;

    let set = json!({
        "apiVersion": source.str_at("/apiVersion").unwrap_or("machine.openshift.io/v1beta1"),
        "kind": "MachineSet",
        "metadata": {
            "name": name,
            "namespace": source.namespace().unwrap_or(vsm_sdk::types::names::MACHINE_API_NAMESPACE),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    });
    Ok((set, dropped))
}

/// The machine template of a ControlPlaneMachineSet pointed at the failure domains `fds`
/// (one to three, in order): its `failureDomains` list names them and the provider spec
/// is placed in the first, so the CPMS operator spreads the masters over them (it places
/// each machine in its domain) and, on clusters that read only the provider spec, builds
/// them in the first.
pub fn cpms_template_for(
    cpms: &Object,
    fds: &[&FailureDomain],
    infra_id: &str,
    static_ips: &[StaticIpConfig],
) -> Result<(Value, Vec<String>), PlaceError> {
    let first = fds.first().ok_or(PlaceError::NoDomain)?;
    let mut template = cpms.at(CPMS_TEMPLATE).cloned().unwrap_or_else(|| json!({}));
    let spec = template.pointer("/spec/providerSpec/value").cloned().unwrap_or(Value::Null);
    let (placed, dropped) = place(&spec, first, infra_id, static_ips)?;
    let network = |p: &Value| {
        p.pointer("/network/devices").cloned().map(|mut d| {
            for dev in d.as_array_mut().into_iter().flatten() {
                if let Some(o) = dev.as_object_mut() {
                    o.remove("networkName");
                }
            }
            d
        })
    };
    for fd in &fds[1..] {
        // Every domain must be able to hold a master, not only the first, with the same
        // static settings (the CPMS operator sets only the port group per domain).
        let (other, _) = place(&spec, fd, infra_id, static_ips)?;
        if network(&other) != network(&placed) {
            return Err(PlaceError::StaticIpsDiffer { failure_domains: fds.iter().map(|f| f.name.clone()).collect() });
        }
    }
    let names: Vec<Value> = fds.iter().map(|fd| json!({"name": fd.name})).collect();
    template["failureDomains"] = json!({"platform": "VSphere", "vsphere": names});
    if !template.get("spec").is_some_and(Value::is_object) {
        template["spec"] = json!({});
    }
    template["spec"]["providerSpec"] = json!({"value": placed});
    Ok((template, dropped))
}

/// The `spec.selector.matchLabels` of a set or CPMS as a label selector string.
pub fn selector_string(obj: &Object) -> Option<String> {
    let labels = obj.at("/spec/selector/matchLabels")?.as_object()?;
    if labels.is_empty() {
        return None;
    }
    let mut parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    parts.sort();
    Some(parts.join(","))
}

#[cfg(test)]
mod tests;
