//! One in-memory cluster per phase, in the state a migration reaches just before that
//! phase, so its first `execute` call does the phase's real work (reads, writes, vSphere
//! calls, state). Adapted from the phases' own unit tests; the health-checking phases get
//! the 31 ClusterOperators and 6 Nodes (3 masters, 3 workers) of the seeded test cluster.

use serde_json::{Value, json};
use vsm_sdk::testing::{FakeHost, migration};
use vsm_sdk::types::names::*;
use vsm_sdk::{Migration, ObjectKind};

/// Source and target vCenters, and the cluster's infraID.
pub const SRC: &str = "vc-a";
pub const DST: &str = "vc-b";
const INFRA_ID: &str = "cl-1";

/// The ClusterOperators of the seeded test cluster.
pub use vsm_testenv::sim::CLUSTER_OPERATORS;

fn encode(s: &str) -> String {
    vsm_common::creds::encode(s)
}

fn condition(t: &str, s: &str) -> Value {
    json!({"type": t, "status": s, "reason": "AsExpected", "message": format!("{t} is {s}")})
}

fn cluster_operator(name: &str, degraded: bool) -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name},
           "status": {"conditions": [condition("Available", "True"), condition("Degraded", if degraded { "True" } else { "False" }),
                                     condition("Progressing", "False")],
                      "versions": [{"name": "operator", "version": "4.18.12"}]}})
}

fn node(name: &str, role: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {format!("node-role.kubernetes.io/{role}"): ""}},
           "spec": {"providerID": format!("vsphere://{name}")},
           "status": {"conditions": [condition("MemoryPressure", "False"), condition("DiskPressure", "False"),
                                     condition("Ready", "True")],
                      "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}, {"type": "Hostname", "address": name}]}})
}

/// Every ClusterOperator healthy (machine-config Degraded while two vCenters are listed),
/// 3 master and 3 worker Nodes Ready.
fn health(h: &FakeHost, machine_config_degraded: bool) {
    for name in CLUSTER_OPERATORS {
        h.put(cluster_operator(name, machine_config_degraded && *name == "machine-config"));
    }
    for i in 0..3 {
        h.put(node(&format!("{INFRA_ID}-master-{i}"), "master"));
        h.put(node(&format!("{INFRA_ID}-worker-{i}"), "worker"));
    }
}

fn topology(dc: &str) -> Value {
    json!({"datacenter": dc, "computeCluster": format!("/{dc}/host/c"), "datastore": format!("/{dc}/datastore/ds"),
           "networks": ["VM Network"], "resourcePool": format!("/{dc}/host/c/Resources"), "template": format!("/{dc}/vm/rhcos")})
}

/// The usual target: failure domain fd-b in vCenter vc-b, datacenter dc-b.
fn target_spec() -> Value {
    json!({"targetVCenterCredentialsSecret": {"name": "target-creds"},
           "failureDomains": [{"name": "fd-b", "region": "r-b", "zone": "z-b", "server": DST, "topology": topology("dc-b")}],
           "machineSetConfig": {"failureDomain": "fd-b"},
           "controlPlaneMachineSetConfig": {"failureDomain": "fd-b"},
           "health": {"stabilityWindow": "0s"}})
}

fn provider_spec(server: &str, dc: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "VSphereMachineProviderSpec",
           "workspace": {"server": server, "datacenter": dc, "datastore": format!("/{dc}/datastore/ds"),
                         "folder": format!("/{dc}/vm/{INFRA_ID}"), "resourcePool": format!("/{dc}/host/c/Resources")},
           "network": {"devices": [{"networkName": "VM Network"}]}, "template": format!("{INFRA_ID}-rhcos"),
           "numCPUs": 4, "memoryMiB": 16384, "diskGiB": 120})
}

fn machine(name: &str, role: &str, set: Option<&str>, server: &str, dc: &str) -> Value {
    let mut labels = json!({MACHINE_ROLE_LABEL: role, "machine.openshift.io/cluster-api-machine-type": role});
    if let Some(s) = set {
        labels[MACHINESET_LABEL] = json!(s);
    }
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE, "labels": labels},
           "spec": {"providerSpec": {"value": provider_spec(server, dc)}},
           "status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": name}}})
}

fn machine_set(name: &str, server: &str, dc: &str, replicas: i64) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {MACHINESET_LABEL: name}},
                    "template": {"metadata": {"labels": {MACHINESET_LABEL: name, MACHINE_ROLE_LABEL: "worker"}},
                                 "spec": {"providerSpec": {"value": provider_spec(server, dc)}}}},
           "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}})
}

fn cpms(state: &str, fd: &str, server: &str, dc: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
           "metadata": {"name": CPMS, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"replicas": 3, "state": state, "strategy": {"type": "RollingUpdate"},
                    "selector": {"matchLabels": {MACHINE_ROLE_LABEL: "master", "machine.openshift.io/cluster-api-machine-type": "master"}},
                    "template": {"machineType": "machines_v1beta1_machine_openshift_io",
                                 "machines_v1beta1_machine_openshift_io": {
                                     "failureDomains": {"platform": "VSphere", "vsphere": [{"name": fd}]},
                                     "metadata": {"labels": {MACHINE_ROLE_LABEL: "master"}},
                                     "spec": {"providerSpec": {"value": provider_spec(server, dc)}}}}},
           "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "observedGeneration": 1}})
}

fn infrastructure(servers: &[(&str, &str, &str)]) -> Value {
    let vcenters: Vec<Value> =
        servers.iter().map(|(s, dc, _)| json!({"server": s, "port": 443, "datacenters": [dc]})).collect();
    let fds: Vec<Value> = servers
        .iter()
        .map(|(s, dc, fd)| json!({"name": fd, "region": format!("r-{fd}"), "zone": format!("z-{fd}"), "server": s, "topology": topology(dc)}))
        .collect();
    json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": INFRASTRUCTURE},
           "spec": {"cloudConfig": {"name": CLOUD_CONFIG, "key": CLOUD_CONFIG_KEY},
                    "platformSpec": {"type": "VSphere", "vsphere": {"vcenters": vcenters, "failureDomains": fds,
                                     "apiServerInternalIPs": ["10.0.0.5"], "ingressIPs": ["10.0.0.6"]}}},
           "status": {"infrastructureName": INFRA_ID, "platform": "VSphere", "platformStatus": {"type": "VSphere"}}})
}

fn cloud_config(servers: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "# written by the installer\nglobal:\n  secretName: vsphere-creds\n  secretNamespace: kube-system\nvcenter:\n",
    );
    for (s, dc) in servers {
        text.push_str(&format!("  {s}:\n    server: {s}\n    datacenters:\n    - {dc}\n"));
    }
    text.push_str("labels:\n  region: openshift-region\n  zone: openshift-zone\n");
    text
}

fn config_map(text: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CLOUD_CONFIG, "namespace": CLOUD_CONFIG_NAMESPACE},
           "data": {CLOUD_CONFIG_KEY: text}})
}

fn root_creds(servers: &[&str]) -> Value {
    let mut data = serde_json::Map::new();
    for s in servers {
        data.insert(format!("{s}.username"), json!(encode(&format!("user@{s}"))));
        data.insert(format!("{s}.password"), json!(encode(&format!("pass-{s}"))));
    }
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": VSPHERE_CREDS, "namespace": VSPHERE_CREDS_NAMESPACE,
                        "annotations": {"cloudcredential.openshift.io/mode": "passthrough"}},
           "type": "Opaque", "data": data})
}

fn target_creds() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "target-creds", "namespace": "vsphere-migration"},
           "stringData": {format!("{DST}.username"): format!("user@{DST}"), format!("{DST}.password"): format!("pass-{DST}")}})
}

fn cvo(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": CVO, "namespace": CVO_NAMESPACE},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"k8s-app": "cluster-version-operator"}}},
           "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                      "updatedReplicas": replicas, "observedGeneration": 1}})
}

fn inventory(h: &FakeHost, server: &str, dc: &str) {
    h.vcenter(server, |v| {
        v.add_datacenter(dc);
        v.add(ObjectKind::ComputeCluster, &format!("/{dc}/host/c"), false);
        v.add(ObjectKind::ResourcePool, &format!("/{dc}/host/c/Resources"), false);
        v.add(ObjectKind::Datastore, &format!("/{dc}/datastore/ds"), false);
        v.add(ObjectKind::Network, &format!("/{dc}/network/VM Network"), false);
        v.add(ObjectKind::VirtualMachine, &format!("/{dc}/vm/rhcos"), true);
    });
}

fn m(spec: Value) -> Migration {
    migration(&spec, &[SRC])
}

// ----- the phases, in migration order -----

/// Everything Preflight reads: Infrastructure, both credential Secrets, the Infrastructure
/// CRD, health, both inventories.
pub fn preflight() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a")]));
    h.put(root_creds(&[SRC]));
    h.put(target_creds());
    h.put(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": INFRASTRUCTURE_CRD},
           "spec": {"versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"properties": {
               "spec": {"properties": {"platformSpec": {"properties": {"vsphere": {"properties": {
                   "vcenters": {"maxItems": 3, "minItems": 1, "x-kubernetes-validations": [
                       {"message": "vcenters must have unique server values", "rule": "self.all(x, self.exists_one(y, y.server == x.server))"}]}}}}}}}}}}}]}}));
    h.put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": CLUSTER_VERSION},
                 "status": {"conditions": [condition("Available", "True"), condition("Progressing", "False")]}}),
    );
    health(&h, false);
    inventory(&h, SRC, "dc-a");
    inventory(&h, DST, "dc-b");
    (h, m(target_spec()))
}

/// Snapshots of the 5 singletons and 2 worker MachineSets.
pub fn backup() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a")]));
    h.put(config_map(&cloud_config(&[(SRC, "dc-a")])));
    h.put(root_creds(&[SRC]));
    h.put(cpms("Active", "fd-a", SRC, "dc-a"));
    h.put(cvo(2));
    h.put(machine_set(&format!("{INFRA_ID}-worker-0"), SRC, "dc-a", 2));
    h.put(machine_set(&format!("{INFRA_ID}-worker-1"), SRC, "dc-a", 1));
    (h, m(target_spec()))
}

/// The target's credentials copied into vsphere-creds.
pub fn update_secrets() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(root_creds(&[SRC]));
    h.put(target_creds());
    (h, m(target_spec()))
}

/// Region and zone categories, tags and attachments for two failure domains, and the
/// cluster's own tag (named by the Infrastructure's infrastructure name).
pub fn create_tags() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a")]));
    inventory(&h, DST, "dc-b");
    h.vcenter(DST, |v| {
        v.add(ObjectKind::ComputeCluster, "/dc-b/host/c2", false);
    });
    inventory(&h, SRC, "dc-a");
    let mut spec = target_spec();
    let mut second = spec["failureDomains"][0].clone();
    second["name"] = json!("fd-b2");
    second["zone"] = json!("z-b2");
    second["topology"]["computeCluster"] = json!("/dc-b/host/c2");
    spec["failureDomains"].as_array_mut().expect("an array").push(second);
    (h, m(spec))
}

/// The cluster's VM folder in the target datacenter.
pub fn create_folder() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a")]));
    inventory(&h, DST, "dc-b");
    (h, m(target_spec()))
}

/// The target vCenter and failure domain added to the Infrastructure.
pub fn update_infrastructure() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a")]));
    for i in 0..3 {
        h.put(machine(&format!("{INFRA_ID}-master-{i}"), "master", None, SRC, "dc-a"));
    }
    (h, m(target_spec()))
}

/// The target vCenter added to the cloud provider config (YAML).
pub fn update_config() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(config_map(&cloud_config(&[(SRC, "dc-a")])));
    (h, m(target_spec()))
}

/// The CVO scaled to zero (its count remembered); waits for its 2 pods to stop.
pub fn disable_cvo() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(cvo(2));
    for i in 0..2 {
        h.put(json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": format!("cluster-version-operator-{i}"), "namespace": CVO_NAMESPACE,
                                  "labels": {"k8s-app": "cluster-version-operator"}},
                     "status": {"phase": "Running"}}));
    }
    (h, m(target_spec()))
}

/// A worker MachineSet in the target made from the source's worker template (an infra set
/// beside it); waits for its machines.
pub fn create_workers() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a"), (DST, "dc-b", "fd-b")]));
    let mut infra = machine_set(&format!("{INFRA_ID}-infra-0"), SRC, "dc-a", 1);
    infra["spec"]["template"]["metadata"]["labels"][MACHINE_ROLE_LABEL] = json!("infra");
    h.put(infra);
    h.put(machine_set(&format!("{INFRA_ID}-worker-0"), SRC, "dc-a", 3));
    (h, m(target_spec()))
}

/// The Active ControlPlaneMachineSet deleted (its before-image kept); waits for the
/// regenerated one.
pub fn delete_cpms() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(cpms("Active", "fd-a", SRC, "dc-a"));
    (h, m(target_spec()))
}

/// The regenerated (Inactive) CPMS pointed at the target and set Active; waits for the
/// operator to see the change.
pub fn recreate_cpms() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a"), (DST, "dc-b", "fd-b")]));
    h.put(cpms("Inactive", "fd-a", SRC, "dc-a"));
    for i in 0..3 {
        h.put(machine(&format!("{INFRA_ID}-master-{i}"), "master", None, SRC, "dc-a"));
    }
    health(&h, true);
    (h, m(target_spec()))
}

/// The source worker set scaled to zero (its count remembered) once its replacement's
/// machines run; waits for the source machines to go.
pub fn scale_old_machines() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    let (old, new) = (format!("{INFRA_ID}-worker-0"), format!("{INFRA_ID}-worker-fd-b"));
    h.put(machine_set(&old, SRC, "dc-a", 3));
    h.put(machine_set(&new, DST, "dc-b", 3));
    for i in 0..3 {
        h.put(machine(&format!("{old}-{i}"), "worker", Some(&old), SRC, "dc-a"));
        h.put(machine(&format!("{new}-{i}"), "worker", Some(&new), DST, "dc-b"));
        h.put(node(&format!("{old}-{i}"), "worker"));
        h.put(node(&format!("{new}-{i}"), "worker"));
    }
    record_replacement(&h, &old, &new);
    (h, m(target_spec()))
}

/// CreateWorkers' recorded plan: `old` replaced by `new` in fd-b.
fn record_replacement(h: &FakeHost, old: &str, new: &str) {
    let plan = json!([{"source": old, "sourceDomain": "fd-a", "name": new, "failureDomain": "fd-b", "server": DST, "replicas": 3}]);
    h.set_shared_state("machine-set-replacements", &plan.to_string());
}

/// Two pods of each of the 4 groups deleted (recorded by uid first); waits for the
/// replacements.
pub fn restart_pods() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    for (i, g) in vsm_phase_restart_pods::GROUPS.iter().enumerate() {
        let (k, v) = g.selector.split_once('=').expect("k=v");
        for j in 0..2 {
            h.put(json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": format!("old-{i}-{j}"), "namespace": g.namespace, "labels": {k: v}},
                         "status": {"phase": "Running", "conditions": [condition("Ready", "True")]}}));
        }
    }
    (h, m(target_spec()))
}

/// Two vCenters configured: 31 operators (machine-config Degraded, tolerated) and 6 Nodes
/// checked; healthy.
pub fn monitor_health() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a"), (DST, "dc-b", "fd-b")]));
    health(&h, true);
    (h, m(target_spec()))
}

/// The source vCenter removed from the Infrastructure, the cloud config and vsphere-creds
/// once no machine runs there.
pub fn cleanup() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(SRC, "dc-a", "fd-a"), (DST, "dc-b", "fd-b")]));
    h.put(config_map(&cloud_config(&[(SRC, "dc-a"), (DST, "dc-b")])));
    h.put(root_creds(&[SRC, DST]));
    for i in 0..3 {
        h.put(machine(&format!("{INFRA_ID}-master-{i}"), "master", None, DST, "dc-b"));
    }
    (h, m(target_spec()))
}

/// The end state checked everywhere (configuration, 6 machines and nodes, sets, CPMS, 31
/// operators), then the CVO scaled back to the remembered 2; waits for it to be Ready.
pub fn verify() -> (FakeHost, Migration) {
    let h = FakeHost::new();
    h.put(infrastructure(&[(DST, "dc-b", "fd-b")]));
    h.put(config_map(&cloud_config(&[(DST, "dc-b")])));
    h.put(root_creds(&[DST]));
    let (old, new) = (format!("{INFRA_ID}-worker-0"), format!("{INFRA_ID}-worker-fd-b"));
    h.put(machine_set(&old, SRC, "dc-a", 0));
    h.put(machine_set(&new, DST, "dc-b", 3));
    for i in 0..3 {
        h.put(machine(&format!("{INFRA_ID}-master-{i}"), "master", None, DST, "dc-b"));
        h.put(machine(&format!("{INFRA_ID}-worker-{i}"), "worker", Some(&new), DST, "dc-b"));
    }
    h.put(cpms("Active", "fd-b", DST, "dc-b"));
    health(&h, false);
    h.put(cvo(0));
    h.set_shared_state("cvo-replicas", "2");
    record_replacement(&h, &old, &new);
    (h, m(target_spec()))
}
