//! vSphere failure domains and Machine provider specs (`VSphereMachineProviderSpec`), and
//! how the control-plane machine set operator puts a failure domain into a provider spec.

use serde_json::{Value, json};

use super::objects::{nonempty_at, str_at};

/// One `Infrastructure.spec.platformSpec.vsphere.failureDomains[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureDomain {
    pub name: String,
    pub region: String,
    pub zone: String,
    /// The vCenter address (no port), as in `vcenters[].server`.
    pub server: String,
    pub datacenter: String,
    /// `/<dc>/host/<cluster>`
    pub compute_cluster: String,
    /// `/<dc>/datastore/<ds>`
    pub datastore: String,
    pub networks: Vec<String>,
    /// `/<dc>/host/<cluster>/Resources...`; empty means the cluster's root pool.
    pub resource_pool: String,
    /// `/<dc>/vm/...`; empty means `/<dc>/vm/<infraID>`.
    pub folder: String,
    /// `/<dc>/vm/<template>`; empty means the provider spec keeps its template.
    pub template: String,
}

impl FailureDomain {
    pub fn from_json(v: &Value) -> FailureDomain {
        let s = |p: &str| str_at(v, p).unwrap_or_default().to_string();
        FailureDomain {
            name: s("/name"),
            region: s("/region"),
            zone: s("/zone"),
            server: s("/server"),
            datacenter: s("/topology/datacenter"),
            compute_cluster: s("/topology/computeCluster"),
            datastore: s("/topology/datastore"),
            networks: v
                .pointer("/topology/networks")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default(),
            resource_pool: s("/topology/resourcePool"),
            folder: s("/topology/folder"),
            template: s("/topology/template"),
        }
    }

    /// The entry as the Infrastructure stores it (empty optional fields left out).
    pub fn to_json(&self) -> Value {
        let mut topology = json!({
            "datacenter": self.datacenter,
            "computeCluster": self.compute_cluster,
            "datastore": self.datastore,
            "networks": self.networks,
        });
        for (k, v) in [("resourcePool", &self.resource_pool), ("folder", &self.folder), ("template", &self.template)] {
            if !v.is_empty() {
                topology[k] = json!(v);
            }
        }
        json!({"name": self.name, "region": self.region, "zone": self.zone, "server": self.server, "topology": topology})
    }

    /// The resource pool machines in this failure domain use.
    pub fn effective_resource_pool(&self) -> String {
        if self.resource_pool.is_empty() {
            format!("{}/Resources", self.compute_cluster)
        } else {
            self.resource_pool.clone()
        }
    }

    pub fn effective_folder(&self, infra_id: &str) -> String {
        if self.folder.is_empty() { format!("/{}/vm/{infra_id}", self.datacenter) } else { self.folder.clone() }
    }

    /// Does a provider spec's workspace place a machine in this failure domain?
    pub fn contains(&self, provider_spec: &Value) -> bool {
        let w = |k: &str| str_at(provider_spec, &format!("/workspace/{k}")).unwrap_or_default();
        w("server") == self.server
            && w("datacenter") == self.datacenter
            && w("datastore") == self.datastore
            && w("resourcePool") == self.effective_resource_pool()
    }
}

/// Failure domains of an Infrastructure object (`data` of the dynamic object).
pub fn failure_domains(infra: &Value) -> Vec<FailureDomain> {
    infra
        .pointer("/spec/platformSpec/vsphere/failureDomains")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(FailureDomain::from_json).collect())
        .unwrap_or_default()
}

/// `spec.platformSpec.vsphere.vcenters[].server` of an Infrastructure.
pub fn vcenter_servers(infra: &Value) -> Vec<String> {
    infra
        .pointer("/spec/platformSpec/vsphere/vcenters")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| nonempty_at(v, "/server")).map(String::from).collect())
        .unwrap_or_default()
}

/// Sizing and secrets of a machine role.
#[derive(Clone, Copy, Debug)]
pub struct Sizing {
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub user_data: &'static str,
}

pub const MASTER: Sizing = Sizing { cpus: 4, memory_mib: 16384, disk_gib: 120, user_data: "master-user-data" };
pub const WORKER: Sizing = Sizing { cpus: 4, memory_mib: 16384, disk_gib: 120, user_data: "worker-user-data" };

/// A provider spec placing a machine in `fd`, as the installer writes it.
pub fn provider_spec(fd: &FailureDomain, infra_id: &str, size: Sizing) -> Value {
    json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "VSphereMachineProviderSpec",
        "credentialsSecret": {"name": "vsphere-cloud-credentials"},
        "userDataSecret": {"name": size.user_data},
        "numCPUs": size.cpus,
        "numCoresPerSocket": size.cpus,
        "memoryMiB": size.memory_mib,
        "diskGiB": size.disk_gib,
        "snapshot": "",
        "template": fd.template,
        "network": {"devices": fd.networks.iter().map(|n| json!({"networkName": n})).collect::<Vec<_>>()},
        "workspace": {
            "server": fd.server,
            "datacenter": fd.datacenter,
            "datastore": fd.datastore,
            "folder": fd.effective_folder(infra_id),
            "resourcePool": fd.effective_resource_pool(),
        },
    })
}

/// Do two provider specs say the same, as the controllers read them (into Go structs)? A
/// field missing on one side equals an empty one on the other: machine-api's defaulting
/// webhook re-encodes every Machine's provider spec, adding the fields its struct does not
/// omit when empty (`metadata`, `snapshot`, ...), so a Machine's spec never equals the
/// template it was made from byte for byte.
pub fn same_provider_spec(a: &Value, b: &Value) -> bool {
    super::objects::covers(a, b) && super::objects::covers(b, a)
}

/// What the control-plane machine set operator does with a failure domain: workspace,
/// template and network names come from the domain; every other field (CPU, memory,
/// secrets, other network device settings) stays as in `spec`.
pub fn inject_failure_domain(spec: &Value, fd: &FailureDomain, infra_id: &str) -> Value {
    let mut out = spec.clone();
    if !out.is_object() {
        out = json!({});
    }
    out["workspace"] = json!({
        "server": fd.server,
        "datacenter": fd.datacenter,
        "datastore": fd.datastore,
        "folder": fd.effective_folder(infra_id),
        "resourcePool": fd.effective_resource_pool(),
    });
    if !fd.template.is_empty() {
        out["template"] = json!(fd.template);
    }
    if !fd.networks.is_empty() {
        let mut devices = out.pointer("/network/devices").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, net) in fd.networks.iter().enumerate() {
            match devices.get_mut(i) {
                Some(d) if d.is_object() => d["networkName"] = json!(net),
                _ => devices.push(json!({"networkName": net})),
            }
        }
        if !out["network"].is_object() {
            out["network"] = json!({});
        }
        out["network"]["devices"] = Value::Array(devices);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(name: &str, server: &str, dc: &str) -> FailureDomain {
        FailureDomain {
            name: name.into(),
            region: "r".into(),
            zone: "z".into(),
            server: server.into(),
            datacenter: dc.into(),
            compute_cluster: format!("/{dc}/host/c"),
            datastore: format!("/{dc}/datastore/ds"),
            networks: vec!["net-a".into()],
            resource_pool: String::new(),
            folder: String::new(),
            template: format!("/{dc}/vm/tmpl"),
        }
    }

    #[test]
    fn json_round_trip() {
        let a = fd("a", "10.0.0.1", "dc1");
        assert_eq!(FailureDomain::from_json(&a.to_json()), a);
        assert!(a.to_json()["topology"].get("folder").is_none());
    }

    #[test]
    fn injection_replaces_placement_and_keeps_the_rest() {
        let src = fd("src", "10.0.0.1", "dc1");
        let mut spec = provider_spec(&src, "infra-1", WORKER);
        spec["network"]["devices"][0]["nameservers"] = json!(["10.0.0.53"]);
        assert!(src.contains(&spec));
        let dst = fd("dst", "10.0.0.2", "dc2");
        let moved = inject_failure_domain(&spec, &dst, "infra-1");
        assert!(dst.contains(&moved));
        assert!(!src.contains(&moved));
        assert_eq!(moved["workspace"]["folder"], "/dc2/vm/infra-1");
        assert_eq!(moved["workspace"]["resourcePool"], "/dc2/host/c/Resources");
        assert_eq!(moved["template"], "/dc2/vm/tmpl");
        assert_eq!(moved["network"]["devices"][0]["networkName"], "net-a");
        assert_eq!(moved["network"]["devices"][0]["nameservers"][0], "10.0.0.53");
        assert_eq!(moved["numCPUs"], spec["numCPUs"]);
        // Fields added empty (as machine-api's defaulting webhook does) change nothing.
        let mut defaulted = spec.clone();
        defaulted["metadata"] = json!({"creationTimestamp": null});
        defaulted["cloneMode"] = json!("");
        assert!(same_provider_spec(&spec, &defaulted));
        assert!(!same_provider_spec(&spec, &moved));
        // Injecting the domain a spec is already in changes nothing.
        assert_eq!(inject_failure_domain(&spec, &src, "infra-1"), spec);
    }
}
