//! Nodes as kubelets register them, and what the machine controllers count as ready;
//! shared by the seed, the kubelets and the control-plane machine set operator.

use std::collections::{BTreeMap, HashSet};

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::objects::{self as o, nonempty_at, str_at};
use super::provider::FailureDomain;
use super::runtime::Shared;

/// Names of the Ready Nodes (computed once per pass, not per Machine).
pub(crate) fn ready_nodes(sh: &Shared) -> HashSet<String> {
    sh.stores.nodes.state().iter().filter(|n| super::workloads::node_ready(n)).map(|n| n.name_any()).collect()
}

/// Running with a Ready Node: what the MachineSet and the CPMS call ready.
pub(crate) fn machine_ready(ready_nodes: &HashSet<String>, m: &DynamicObject) -> bool {
    str_at(&m.data, "/status/phase") == Some("Running")
        && nonempty_at(&m.data, "/status/nodeRef/name").is_some_and(|n| ready_nodes.contains(n))
}

/// The Node a kubelet registers: `name` (its hostname), the role labels of its machine
/// config pool (`master` also gets `control-plane`), `extra` labels, `spec.providerID`.
pub(crate) fn node_manifest(name: &str, role: &str, extra: &BTreeMap<String, String>, provider_id: &str) -> Value {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node.openshift.io/os_id", "rhcos"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.insert(format!("node-role.kubernetes.io/{role}"), String::new());
    if role == "master" {
        labels.insert("node-role.kubernetes.io/control-plane".into(), String::new());
    }
    labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": provider_id},
    })
}

/// The Node of a seeded Machine: named like the
/// Machine, its role, its `spec.metadata.labels`, and the annotation nodelink would add.
pub(crate) fn machine_node_manifest(machine: &DynamicObject, provider_id: &str) -> Value {
    let name = machine.name_any();
    let role = machine.labels().get(o::LABEL_ROLE).cloned().unwrap_or_else(|| "worker".into());
    let extra: BTreeMap<String, String> = machine
        .data
        .pointer("/spec/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let mut node = node_manifest(&name, &role, &extra, provider_id);
    node["metadata"]["annotations"] = json!({o::ANNOTATION_NODE_MACHINE: format!("{}/{name}", o::MACHINE_API_NS)});
    node
}

/// `topology.kubernetes.io/region`
pub const LABEL_TOPOLOGY_REGION: &str = "topology.kubernetes.io/region";
/// `topology.kubernetes.io/zone`
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// The topology labels of a Node whose VM runs in compute cluster `compute_cluster` of the
/// vCenter at `server`: the region and zone of the failure domain (of `domains`, the
/// Infrastructure's) with that server and compute cluster; none when no domain has them.
/// (In a cluster the vSphere cloud controller manager sets them from the region and zone
/// tags of the VM's datacenter and cluster, which OpenShift tags per failure domain.)
pub fn topology_labels(domains: &[FailureDomain], server: &str, compute_cluster: &str) -> BTreeMap<String, String> {
    domains
        .iter()
        .find(|fd| fd.server == server && fd.compute_cluster == compute_cluster)
        .map(|fd| {
            [(LABEL_TOPOLOGY_REGION, &fd.region), (LABEL_TOPOLOGY_ZONE, &fd.zone)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Node's condition as a kubelet (`Ready`) or the node lifecycle controller (`Unknown`)
/// reports it.
fn condition(t: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": status, "reason": reason, "message": message,
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// A Ready Node's status.
pub(crate) fn node_status(name: &str, ip: &str) -> Value {
    let now = o::now();
    json!({
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "", &now),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "", &now),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "", &now),
            condition("Ready", "True", "KubeletReady", "", &now),
        ],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": "v1.31.6", "osImage": "Red Hat Enterprise Linux CoreOS", "architecture": "amd64",
                     "operatingSystem": "linux", "containerRuntimeVersion": "cri-o://1.31.6", "kernelVersion": "5.14.0",
                     "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
    })
}

/// The conditions of a Node whose kubelet stopped posting its status (its VM is off).
pub(crate) fn node_unreachable_conditions() -> Value {
    let now = o::now();
    let msg = "Kubelet stopped posting node status.";
    json!([
        condition("MemoryPressure", "Unknown", "NodeStatusUnknown", msg, &now),
        condition("DiskPressure", "Unknown", "NodeStatusUnknown", msg, &now),
        condition("PIDPressure", "Unknown", "NodeStatusUnknown", msg, &now),
        condition("Ready", "Unknown", "NodeStatusUnknown", msg, &now),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(name: &str, server: &str, cluster: &str, zone: &str) -> FailureDomain {
        FailureDomain {
            name: name.into(),
            region: "r".into(),
            zone: zone.into(),
            server: server.into(),
            datacenter: "dc".into(),
            compute_cluster: cluster.into(),
            datastore: String::new(),
            networks: Vec::new(),
            resource_pool: String::new(),
            folder: String::new(),
            template: String::new(),
        }
    }

    #[test]
    fn topology_comes_from_the_domain_with_that_server_and_cluster() {
        let fds = [
            fd("a", "10.0.0.1", "/dc/host/a", "za"),
            fd("b", "10.0.0.1", "/dc/host/b", "zb"),
            fd("c", "10.0.0.2", "/dc/host/a", "zc"),
        ];
        let zone =
            |server: &str, cluster: &str| topology_labels(&fds, server, cluster).get(LABEL_TOPOLOGY_ZONE).cloned();
        assert_eq!(zone("10.0.0.1", "/dc/host/b").as_deref(), Some("zb"));
        assert_eq!(zone("10.0.0.2", "/dc/host/a").as_deref(), Some("zc"), "the same path in another vCenter");
        assert_eq!(topology_labels(&fds, "10.0.0.1", "/dc/host/a")[LABEL_TOPOLOGY_REGION], "r");
        assert!(topology_labels(&fds, "10.0.0.3", "/dc/host/a").is_empty(), "a vCenter without domains");
        assert!(topology_labels(&[], "10.0.0.1", "/dc/host/a").is_empty(), "no failure domains (legacy)");
    }
}
