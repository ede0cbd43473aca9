use serde_json::{Value, json};
use vsm_sdk::Object;
use vsm_sdk::spec::{FailureDomain, StaticIpConfig};

use super::*;

fn fd() -> FailureDomain {
    serde_json::from_value(json!({
        "name": "target-fd", "region": "r", "zone": "z", "server": "10.0.0.2",
        "topology": {"datacenter": "dst-dc", "computeCluster": "/dst-dc/host/c1", "networks": ["dst-net"],
                     "datastore": "/dst-dc/datastore/ds1", "template": "/dst-dc/vm/rhcos"}
    }))
    .unwrap()
}

/// The target network's IP pool for the failure domains named.
fn ips_for(domains: &[&str]) -> Vec<StaticIpConfig> {
    domains
        .iter()
        .map(|d| {
            serde_json::from_value(json!({"failureDomain": d, "nameservers": ["10.1.0.53"],
                "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": "target-pool"}]}))
            .unwrap()
        })
        .collect()
}

fn ips() -> Vec<StaticIpConfig> {
    ips_for(&["target-fd", "target-b"])
}

fn provider(server: &str) -> Value {
    json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "VSphereMachineProviderSpec",
        "credentialsSecret": {"name": "vsphere-cloud-credentials"}, "userDataSecret": {"name": "worker-user-data"},
        "numCPUs": 4, "memoryMiB": 16384, "diskGiB": 120, "snapshot": "", "template": "/src-dc/vm/rhcos",
        "network": {"devices": [{"networkName": "src-net", "gateway": "192.168.10.1",
                                 "nameservers": ["192.168.10.53"],
                                 "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": "pool"}]}]},
        "workspace": {"server": server, "datacenter": "src-dc", "datastore": "/src-dc/datastore/ds",
                      "folder": "/src-dc/vm/infra", "resourcePool": "/src-dc/host/c/Resources", "vmGroup": "old-group"}
    })
}

fn set(name: &str, role: &str, server: &str, replicas: i64) -> Object {
    Object(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
        "metadata": {"name": name, "namespace": "openshift-machine-api", "uid": "u-1", "resourceVersion": "9",
                     "labels": {"machine.openshift.io/cluster-api-cluster": "infra"},
                     "annotations": {"machine.openshift.io/vCPU": "4"}, "ownerReferences": [{"name": "x"}]},
        "spec": {"replicas": replicas, "deletePolicy": "Oldest",
                 "selector": {"matchLabels": {"machine.openshift.io/cluster-api-cluster": "infra",
                                              "machine.openshift.io/cluster-api-machineset": name}},
                 "template": {"metadata": {"labels": {"machine.openshift.io/cluster-api-cluster": "infra",
                                                      "machine.openshift.io/cluster-api-machine-role": role,
                                                      "machine.openshift.io/cluster-api-machine-type": role,
                                                      "machine.openshift.io/cluster-api-machineset": name}},
                              "spec": {"metadata": {}, "providerSpec": {"value": provider(server)}}}},
        "status": {"replicas": replicas, "readyReplicas": replicas}
    }))
}

fn machine(name: &str, phase: &str, node: Option<&str>) -> Object {
    let mut m = json!({"metadata": {"name": name}, "spec": {"providerSpec": {"value": provider("10.0.0.1")}},
                       "status": {"phase": phase}});
    if let Some(n) = node {
        m["status"]["nodeRef"] = json!({"kind": "Node", "name": n});
    }
    Object(m)
}

fn node(name: &str, ready: &str) -> Object {
    Object(json!({"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
}

#[test]
fn machine_readiness_needs_running_a_node_ref_and_a_ready_node() {
    let nodes = [node("a", "True"), node("b", "False")];
    assert_eq!(machine_state(&machine("a", "Running", Some("a")), &nodes), MachineState::Ready);
    assert_eq!(
        machine_state(&machine("b", "Running", Some("b")), &nodes),
        MachineState::Waiting("Running, node b not Ready".into())
    );
    assert_eq!(
        machine_state(&machine("c", "Running", Some("c")), &nodes),
        MachineState::Waiting("Running, node c not registered".into())
    );
    assert_eq!(
        machine_state(&machine("d", "Running", None), &nodes),
        MachineState::Waiting("Running, no node yet".into())
    );
    assert_eq!(machine_state(&machine("e", "Provisioned", None), &nodes), MachineState::Waiting("Provisioned".into()));
    assert_eq!(machine_state(&machine("f", "", None), &nodes), MachineState::Waiting("Pending".into()));
    let mut failed = machine("g", "Failed", None);
    failed.set("/status/errorMessage", json!("template not found"));
    assert_eq!(machine_state(&failed, &nodes), MachineState::Failed("template not found".into()));
    let mut going = machine("h", "Running", Some("a"));
    going.set("/metadata/deletionTimestamp", json!("2025-01-01T00:00:00Z"));
    assert_eq!(machine_state(&going, &nodes), MachineState::Waiting("Deleting".into()));

    let r = Readiness::of(&[machine("z", "Running", Some("a")), machine("y", "Provisioning", None)], &nodes);
    assert_eq!(r.ready, ["z"]);
    assert_eq!(r.waiting, ["y Provisioning"]);
    assert!(!r.complete(2));
    assert!(!Readiness::of(&[machine("z", "Running", Some("a"))], &nodes).complete(2), "too few is not complete");
    assert!(Readiness::of(&[machine("z", "Running", Some("a"))], &nodes).complete(1));
    assert!(!Readiness::default().complete(1));
}

#[test]
fn placing_moves_workspace_template_networks_and_static_ips() {
    let (placed, dropped) = place(&provider("10.0.0.1"), &fd(), "infra", &ips()).unwrap();
    assert_eq!(
        dropped,
        ["network device 0: the source's static IP settings (pools IPPool/pool; nameservers 192.168.10.53; gateway \
          192.168.10.1), replaced by failure domain target-fd's from spec.staticIPs"]
    );
    assert_eq!(
        placed["workspace"],
        json!({"server": "10.0.0.2", "datacenter": "dst-dc", "datastore": "/dst-dc/datastore/ds1",
               "folder": "/dst-dc/vm/infra", "resourcePool": "/dst-dc/host/c1/Resources"}),
        "a VM group of the source is not carried over"
    );
    assert_eq!(placed["template"], "/dst-dc/vm/rhcos");
    let dev = &placed["network"]["devices"][0];
    assert_eq!(dev["networkName"], "dst-net");
    assert_eq!(
        *dev,
        json!({"networkName": "dst-net", "nameservers": ["10.1.0.53"],
               "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": "target-pool"}]}),
        "the source's pool, gateway and nameservers are not copied"
    );
    for k in ["credentialsSecret", "userDataSecret", "numCPUs", "memoryMiB", "diskGiB", "apiVersion", "kind"] {
        assert_eq!(placed[k], provider("10.0.0.1")[k], "{k} is kept");
    }
    // Placing again changes nothing.
    assert_eq!(place(&placed, &fd(), "infra", &ips()).unwrap(), (placed.clone(), vec![]));

    // A host group and an explicit folder and pool.
    let mut f = fd();
    f.topology.folder = Some("/dst-dc/vm/custom".into());
    f.topology.resource_pool = Some("/dst-dc/host/c1/Resources/pool".into());
    f.zone_affinity = Some(
        serde_json::from_value(
            json!({"type": "HostGroup", "hostGroup": {"vmGroup": "vmg", "hostGroup": "hg", "vmHostRule": "r"}}),
        )
        .unwrap(),
    );
    let (p, _) = place(&provider("10.0.0.1"), &f, "infra", &ips()).unwrap();
    assert_eq!(p["workspace"]["folder"], "/dst-dc/vm/custom");
    assert_eq!(p["workspace"]["resourcePool"], "/dst-dc/host/c1/Resources/pool");
    assert_eq!(p["workspace"]["vmGroup"], "vmg");
}

#[test]
fn placing_drops_source_tags_and_snapshots_and_refuses_missing_networks_or_template() {
    let mut spec = provider("10.0.0.1");
    spec["tagIDs"] = json!(["urn:vmomi:InventoryServiceTag:1"]);
    spec["snapshot"] = json!("snap-1");
    let (p, dropped) = place(&spec, &fd(), "infra", &ips()).unwrap();
    assert!(p.get("tagIDs").is_none());
    assert_eq!(p["snapshot"], "");
    assert_eq!(dropped.len(), 3, "{dropped:?}");

    spec["network"]["devices"] = json!([{"networkName": "a"}, {"networkName": "b"}]);
    let err = place(&spec, &fd(), "infra", &ips()).unwrap_err();
    assert_eq!(err, PlaceError::TooFewNetworks { failure_domain: "target-fd".into(), devices: 2, networks: 1 });
    assert!(err.to_string().contains("2 network devices"));

    let mut f = fd();
    f.topology.networks = vec!["n1".into(), "n2".into()];
    let (p, _) = place(&provider("10.0.0.1"), &f, "infra", &ips()).unwrap();
    assert_eq!(p["network"]["devices"][1], json!({"networkName": "n2"}), "a device per network");

    f.topology.template = None;
    assert!(place(&provider("x"), &f, "i", &ips()).unwrap_err().to_string().contains("no topology.template"));
    // An empty provider spec still gets a placement.
    let (p, _) = place(&Value::Null, &fd(), "infra", &ips()).unwrap();
    assert_eq!(p["network"]["devices"], json!([{"networkName": "dst-net"}]));
}

#[test]
fn a_replacement_is_a_copy_with_a_new_name_selector_placement_and_zone() {
    let mut template = set("a-worker-0", "worker", "10.0.0.1", 3);
    template.set("/metadata/annotations/machine.openshift.io~1cluster-api-autoscaler-node-group-min-size", json!("1"));
    template.set("/metadata/annotations/machine.openshift.io~1cluster-api-autoscaler-node-group-max-size", json!("6"));
    template.set("/spec/template/metadata/labels/machine.openshift.io~1zone", json!("src-zone"));
    template.set(
        "/spec/template/spec/metadata/labels",
        json!({"node-role.kubernetes.io/infra": "", "topology.kubernetes.io/zone": "src-zone", "topology.kubernetes.io/region": "src-r"}),
    );
    template
        .set("/spec/template/spec/taints", json!([{"key": "node-role.kubernetes.io/infra", "effect": "NoSchedule"}]));
    let (new, _) = replacement_set(&template, "a-worker-target-fd", &fd(), "infra", 2, &ips()).unwrap();
    assert_eq!(new["metadata"]["name"], "a-worker-target-fd");
    assert_eq!(new["metadata"]["namespace"], "openshift-machine-api");
    for gone in ["uid", "resourceVersion", "ownerReferences", "creationTimestamp"] {
        assert!(new["metadata"].get(gone).is_none(), "{gone} is not copied");
    }
    assert!(new.get("status").is_none());
    assert_eq!(new["metadata"]["labels"]["machine.openshift.io/cluster-api-cluster"], "infra");
    assert_eq!(new["metadata"]["labels"]["machine.openshift.io/failure-domain"], "target-fd");
    assert_eq!(new["metadata"]["annotations"]["machine.openshift.io/vCPU"], "4");
    assert_eq!(new["metadata"]["annotations"]["migration.openshift.io/replaces"], "a-worker-0");
    assert!(
        !new["metadata"]["annotations"].as_object().unwrap().keys().any(|k| k.contains("autoscaler")),
        "the autoscaler's annotations are not copied: {}",
        new["metadata"]["annotations"]
    );
    assert_eq!(new["spec"]["template"]["metadata"]["labels"]["machine.openshift.io/zone"], "z");
    assert_eq!(
        new["spec"]["template"]["spec"]["metadata"]["labels"],
        json!({"node-role.kubernetes.io/infra": "", "topology.kubernetes.io/zone": "z", "topology.kubernetes.io/region": "r"})
    );
    assert_eq!(new["spec"]["template"]["spec"]["taints"], template.at("/spec/template/spec/taints").unwrap().clone());
    assert_eq!(new["spec"]["replicas"], 2);
    assert_eq!(new["spec"]["deletePolicy"], "Oldest");
    assert_eq!(
        new["spec"]["selector"]["matchLabels"],
        json!({"machine.openshift.io/cluster-api-cluster": "infra",
               "machine.openshift.io/cluster-api-machineset": "a-worker-target-fd"})
    );
    let labels = &new["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["machine.openshift.io/cluster-api-machineset"], "a-worker-target-fd");
    assert_eq!(labels["machine.openshift.io/cluster-api-machine-role"], "worker");
    let ps = &new["spec"]["template"]["spec"]["providerSpec"]["value"];
    assert_eq!(ps["workspace"]["server"], "10.0.0.2");
    assert_eq!(ps["network"]["devices"][0]["addressesFromPools"][0]["name"], "target-pool");
    // The template itself is untouched.
    assert_eq!(machine_set_server(&template), "10.0.0.1");
    assert_eq!(
        selector_string(&Object(new.clone())).unwrap(),
        "machine.openshift.io/cluster-api-cluster=infra,machine.openshift.io/cluster-api-machineset=a-worker-target-fd"
    );
}

#[test]
fn set_names_must_be_valid_names_and_label_values() {
    assert!(check_set_name("vsm-x-worker-target-fd").is_ok());
    assert!(check_set_name("vsm-x-worker-Target_FD").unwrap_err().contains("not a valid Kubernetes name"));
    let long = format!("vsm-x-{}", "f".repeat(60));
    assert!(check_set_name(&long).unwrap_err().contains("63 at most"));
    assert!(valid_label_value("a.b-c_d"));
    assert!(!valid_label_value("-a"));
    assert!(!valid_label_value(""));
    assert!(valid_subdomain("a.b-c"));
    assert!(!valid_subdomain("a..b"));
}

#[test]
fn the_cpms_template_names_the_target_domains_and_is_placed_in_the_first() {
    let cpms = Object(
        json!({"spec": {"state": "Inactive", "template": {"machineType": "machines_v1beta1_machine_openshift_io",
        "machines_v1beta1_machine_openshift_io": {
            "failureDomains": {"platform": "VSphere", "vsphere": [{"name": "source-fd"}, {"name": "other"}]},
            "metadata": {"labels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
            "spec": {"lifecycleHooks": {}, "providerSpec": {"value": provider("10.0.0.1")}}}}}}),
    );
    let (t, _) = cpms_template_for(&cpms, &[&fd()], "infra", &ips()).unwrap();
    assert_eq!(t["failureDomains"], json!({"platform": "VSphere", "vsphere": [{"name": "target-fd"}]}));
    let mut b = fd();
    b.name = "target-b".into();
    b.topology.datacenter = "dst-dc2".into();
    let (t3, _) = cpms_template_for(&cpms, &[&fd(), &b], "infra", &ips()).unwrap();
    assert_eq!(t3["failureDomains"]["vsphere"], json!([{"name": "target-fd"}, {"name": "target-b"}]));
    assert_eq!(t3["spec"]["providerSpec"]["value"]["workspace"]["datacenter"], "dst-dc");
    b.topology.template = None;
    assert!(cpms_template_for(&cpms, &[&fd(), &b], "infra", &ips()).unwrap_err().to_string().contains("target-b"));
    assert!(cpms_template_for(&cpms, &[], "infra", &ips()).is_err());
    assert_eq!(t["spec"]["providerSpec"]["value"]["workspace"]["server"], "10.0.0.2");
    assert_eq!(t["spec"]["lifecycleHooks"], json!({}));
    assert_eq!(
        t["metadata"],
        cpms.at("/spec/template/machines_v1beta1_machine_openshift_io/metadata").unwrap().clone()
    );
}

#[test]
fn lists_are_shortened() {
    let items: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
    assert_eq!(list_some(&items, 3), "1, 2, 3 and 2 more");
    assert_eq!(list_some(&items[..2], 3), "1, 2");
}

#[test]
fn a_waiting_machine_says_what_machine_api_says_holds_it_back() {
    let mut m = machine("w", "Provisioning", None);
    m.set(
        "/status/providerStatus/conditions",
        json!([{"type": "MachineCreation", "status": "True", "reason": "MachineCreationSucceeded", "message": "ok"},
               {"type": "IPAddressClaimed", "status": "False", "reason": "WaitingForIPAddress",
                "message": "Waiting on 1 IP address claims to be bound"}]),
    );
    assert_eq!(
        machine_state(&m, &[]),
        MachineState::Waiting("Provisioning (WaitingForIPAddress: Waiting on 1 IP address claims to be bound)".into())
    );
    let mut long = machine("l", "", None);
    long.set("/status/conditions", json!([{"type": "Drainable", "status": "False", "message": "x".repeat(300)}]));
    let MachineState::Waiting(s) = machine_state(&long, &[]) else { panic!() };
    assert!(s.starts_with("Pending (xxx") && s.ends_with("…)") && s.chars().count() < 230, "{s}");
    assert_eq!(machine_state(&machine("p", "Provisioned", None), &[]), MachineState::Waiting("Provisioned".into()));
}

#[test]
fn a_source_address_never_reaches_a_target_machine() {
    // No entry for the domain: refused, naming what the device has.
    let err = place(&provider("10.0.0.1"), &fd(), "infra", &ips_for(&["other"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "network device 0 of the machines has static addresses (pools IPPool/pool; nameservers 192.168.10.53; \
         gateway 192.168.10.1), which belong to the source network, and failure domain target-fd has no \
         spec.staticIPs entry: give the target network's IP pools and nameservers"
    );
    // Fixed addresses (a Machine's, or a set someone gave one) are replaced too.
    let mut spec = provider("10.0.0.1");
    spec["network"]["devices"][0] =
        json!({"networkName": "src-net", "ipAddrs": ["192.168.10.7/24"], "gateway": "192.168.10.1"});
    let (p, _) = place(&spec, &fd(), "infra", &ips()).unwrap();
    assert!(p["network"]["devices"][0].get("ipAddrs").is_none());
    assert_eq!(p["network"]["devices"][0]["addressesFromPools"][0]["name"], "target-pool");
    // A DHCP device stays DHCP, even with an entry for the domain; its DNS settings stay.
    spec["network"]["devices"][0] = json!({"networkName": "src-net", "nameservers": ["1.1.1.1"]});
    let (p, dropped) = place(&spec, &fd(), "infra", &ips()).unwrap();
    assert_eq!(p["network"]["devices"][0], json!({"networkName": "dst-net", "nameservers": ["1.1.1.1"]}));
    assert!(dropped.is_empty());
}

#[test]
fn the_control_planes_domains_must_agree_on_static_ips() {
    let cpms = Object(json!({"spec": {"template": {"machines_v1beta1_machine_openshift_io": {
        "spec": {"providerSpec": {"value": provider("10.0.0.1")}}}}}}));
    let mut b = fd();
    b.name = "target-b".into();
    let mut differ = ips();
    differ[1].nameservers = vec!["10.2.0.53".into()];
    let err = cpms_template_for(&cpms, &[&fd(), &b], "infra", &differ).unwrap_err();
    assert_eq!(err, PlaceError::StaticIpsDiffer { failure_domains: vec!["target-fd".into(), "target-b".into()] });
    assert!(cpms_template_for(&cpms, &[&fd(), &b], "infra", &ips()).is_ok());
}
