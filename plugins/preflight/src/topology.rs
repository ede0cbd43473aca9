//! The spec's failure domains on their own: every path inside the failure domain's
//! datacenter, and the paths Preflight looks up in vCenter.

use vsm_sdk::ObjectKind;
use vsm_sdk::spec::{FailureDomain, MigrationSpec};

use crate::Findings;

/// A network as an inventory path (names are looked up under `/<dc>/network/`).
pub fn network_path(datacenter: &str, network: &str) -> String {
    if network.starts_with('/') { network.to_string() } else { format!("/{datacenter}/network/{network}") }
}

/// The resource pool machines use: the given one, else the cluster's root pool.
pub fn resource_pool(fd: &FailureDomain) -> String {
    fd.topology.resource_pool.clone().unwrap_or_else(|| format!("{}/Resources", fd.topology.compute_cluster))
}

/// Every object of a failure domain that must exist in its vCenter: `(kind, path, what)`.
pub fn required_objects(fd: &FailureDomain) -> Vec<(ObjectKind, String, &'static str)> {
    let t = &fd.topology;
    let mut out = vec![
        (ObjectKind::Datacenter, format!("/{}", t.datacenter), "datacenter"),
        (ObjectKind::ComputeCluster, t.compute_cluster.clone(), "compute cluster"),
        (ObjectKind::Datastore, t.datastore.clone(), "datastore"),
    ];
    for n in &t.networks {
        out.push((ObjectKind::Network, network_path(&t.datacenter, n), "network"));
    }
    out.push((ObjectKind::ResourcePool, resource_pool(fd), "resource pool"));
    if let Some(template) = &t.template {
        out.push((ObjectKind::VirtualMachine, template.clone(), "template VM"));
    }
    out
}

/// Paths outside their failure domain's datacenter, unknown failure-domain names.
pub fn check_spec(spec: &MigrationSpec, f: &mut Findings) {
    for fd in &spec.failure_domains {
        let t = &fd.topology;
        let dc = &t.datacenter;
        let inside = |field: &str, value: &str, root: &str| -> Option<String> {
            let prefix = format!("/{dc}/{root}/");
            (!value.starts_with(&prefix) || value.len() == prefix.len()).then(|| {
                format!(
                    "failure domain {}: topology.{field} {value:?} is not inside datacenter {dc} ({prefix}...)",
                    fd.name
                )
            })
        };
        let mut found =
            vec![inside("computeCluster", &t.compute_cluster, "host"), inside("datastore", &t.datastore, "datastore")];
        if let Some(p) = &t.resource_pool {
            found.push(inside("resourcePool", p, "host"));
            if !p.starts_with(&format!("{}/Resources", t.compute_cluster)) {
                found.push(Some(format!(
                    "failure domain {}: topology.resourcePool {p:?} is not in compute cluster {}",
                    fd.name, t.compute_cluster
                )));
            }
        }
        if let Some(p) = &t.folder {
            found.push(inside("folder", p, "vm"));
        }
        if let Some(p) = &t.template {
            found.push(inside("template", p, "vm"));
        }
        for n in t.networks.iter().filter(|n| n.starts_with('/')) {
            found.push(inside("networks", n, "network"));
        }
        for p in found.into_iter().flatten() {
            f.problem(p);
        }
    }
    let cfg = &spec.machine_set_config;
    let mut named: Vec<(String, &str)> = Vec::new();
    if let Some(d) = &cfg.failure_domain {
        named.push(("machineSetConfig.failureDomain".into(), d));
    }
    for m in &cfg.failure_domain_map {
        named.push((format!("machineSetConfig.failureDomainMap[{}].target", m.source), &m.target));
    }
    for o in &cfg.overrides {
        if let Some(d) = &o.failure_domain {
            named.push((format!("machineSetConfig.overrides[{}].failureDomain", o.machine_set), d));
        }
    }
    for d in spec.control_plane_machine_set_config.domains() {
        named.push(("controlPlaneMachineSetConfig".into(), d));
    }
    for (field, name) in named {
        match spec.failure_domain(name) {
            None => f.problem(format!(
                "spec.{field} names failure domain {name:?}, which spec.failureDomains does not define"
            )),
            Some(fd) if fd.topology.template.is_none() => f.problem(format!(
                "failure domain {name} (spec.{field}) has no topology.template: new machines are cloned from it"
            )),
            Some(_) => {}
        }
    }
    let cp = spec.control_plane_machine_set_config.domains();
    if cp.is_empty() || cp.len() > 3 {
        f.problem(format!(
            "spec.controlPlaneMachineSetConfig lists {} failure domain(s): the control plane needs one to three",
            cp.len()
        ));
    }
    f.checked(format!("{} target failure domain(s) well-formed", spec.failure_domains.len()));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(topology: serde_json::Value) -> MigrationSpec {
        serde_json::from_value(json!({
            "targetVCenterCredentialsSecret": {"name": "c"},
            "failureDomains": [{"name": "a", "region": "r", "zone": "z", "server": "vc", "topology": topology}],
            "machineSetConfig": {"failureDomain": "a"},
            "controlPlaneMachineSetConfig": {"failureDomain": "b"}
        }))
        .unwrap()
    }

    #[test]
    fn paths_outside_the_datacenter_and_unknown_names_are_problems() {
        let s = spec(json!({"datacenter": "dc", "computeCluster": "/other/host/c", "datastore": "/dc/datastore/ds",
                            "networks": ["VM Network", "/x/network/n"], "resourcePool": "/dc/host/c2/Resources",
                            "folder": "/dc/vm/", "template": "/dc/vm/t"}));
        let mut f = Findings::default();
        check_spec(&s, &mut f);
        let texts: Vec<&str> = f.problems.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "failure domain a: topology.computeCluster \"/other/host/c\" is not inside datacenter dc (/dc/host/...)",
                "failure domain a: topology.resourcePool \"/dc/host/c2/Resources\" is not in compute cluster /other/host/c",
                "failure domain a: topology.folder \"/dc/vm/\" is not inside datacenter dc (/dc/vm/...)",
                "failure domain a: topology.networks \"/x/network/n\" is not inside datacenter dc (/dc/network/...)",
                "spec.controlPlaneMachineSetConfig names failure domain \"b\", which spec.failureDomains does not define",
            ]
        );
        assert!(f.problems.iter().all(|p| !p.transient));
    }

    #[test]
    fn required_objects_cover_the_whole_topology() {
        let s = spec(json!({"datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/ds",
                            "networks": ["VM Network"], "template": "/dc/vm/t"}));
        let paths: Vec<String> = required_objects(&s.failure_domains[0]).into_iter().map(|(_, p, _)| p).collect();
        assert_eq!(
            paths,
            ["/dc", "/dc/host/c", "/dc/datastore/ds", "/dc/network/VM Network", "/dc/host/c/Resources", "/dc/vm/t"]
        );
    }
}
