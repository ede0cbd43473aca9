use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration, outcome_message};

use super::*;

fn target_domain(name: &str) -> Value {
    json!({"name": name, "region": "r", "zone": format!("zone-{name}"), "server": "vc-b",
           "topology": {"datacenter": "dc", "computeCluster": format!("/dc/host/{name}"), "datastore": "/dc/datastore/d",
                        "networks": ["net-b"], "template": "/dc/vm/rhcos"}})
}

/// A migration of the zonal source (domains src-1, src-2 on vc-a) onto fd-x and fd-y of vc-b.
fn m(machine_set_config: Value) -> Migration {
    migration(
        &json!({
            "targetVCenterCredentialsSecret": {"name": "t"},
            "failureDomains": [target_domain("fd-x"), target_domain("fd-y"), target_domain("FD_Z")],
            "machineSetConfig": machine_set_config,
            "controlPlaneMachineSetConfig": {"failureDomains": ["fd-x", "fd-y"]}
        }),
        &["vc-a"],
    )
}

fn zonal() -> Migration {
    m(json!({"failureDomainMap": [{"source": "src-1", "target": "fd-x"}, {"source": "src-2", "target": "fd-y"}]}))
}

fn set(name: &str, role: &str, cluster: &str, replicas: i64) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {MACHINESET_LABEL: name}},
                    "template": {"metadata": {"labels": {MACHINESET_LABEL: name, "machine.openshift.io/cluster-api-machine-role": role}},
                                 "spec": {"providerSpec": {"value": {"workspace": {"server": "vc-a", "datacenter": "src",
                                          "resourcePool": format!("/src/host/{cluster}/Resources")}, "template": "/a/vm/t",
                                          "network": {"devices": [{"networkName": "net-a", "gateway": "10.0.0.1"}]}}}}}}})
}

/// machine-api in miniature: on every wait, each MachineSet gets its machines, Running with
/// a Ready node.
fn machine_api(h: &FakeHost) {
    for s in h.list(&types::MACHINE_SET) {
        let want = s.i64_at("/spec/replicas").unwrap_or(0) as usize;
        let mine: Vec<Object> =
            h.list(&types::MACHINE).into_iter().filter(|m| m.label(MACHINESET_LABEL) == Some(s.name())).collect();
        for i in mine.len()..want {
            let name = format!("{}-{i}", s.name());
            h.put(json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
                         "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE, "labels": {MACHINESET_LABEL: s.name()}},
                         "status": {"phase": "Running", "nodeRef": {"name": name}}}));
            h.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                         "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        }
        for extra in mine.iter().skip(want) {
            h.remove(&types::MACHINE, Some(MACHINE_API_NAMESPACE), extra.name());
        }
    }
}

fn source_domain(name: &str, cluster: &str) -> Value {
    json!({"name": name, "region": "r", "zone": name, "server": "vc-a",
           "topology": {"datacenter": "src", "computeCluster": format!("/src/host/{cluster}"), "datastore": "/src/datastore/d", "networks": ["net-a"]}})
}

/// Two source domains; a worker set in each, and an infra set with a taint in the first.
fn cluster() -> FakeHost {
    let h = FakeHost::new();
    h.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
                 "spec": {"platformSpec": {"type": "VSphere", "vsphere": {
                     "vcenters": [{"server": "vc-a"}, {"server": "vc-b"}],
                     "failureDomains": [source_domain("src-1", "c1"), source_domain("src-2", "c2")]}}},
                 "status": {"infrastructureName": "inf"}}));
    let mut infra = set("inf-infra-src-1", "infra", "c1", 1);
    infra["spec"]["template"]["spec"]["taints"] =
        json!([{"key": "node-role.kubernetes.io/infra", "effect": "NoSchedule"}]);
    h.put(infra);
    h.put(set("inf-worker-src-1", "worker", "c1", 2));
    h.put(set("inf-worker-src-2", "worker", "c2", 1));
    h.on_wait(machine_api);
    h
}

fn replacements(h: &FakeHost) -> Vec<Replacement> {
    serde_json::from_str(&h.shared_state(MACHINE_SET_REPLACEMENTS).expect("the plan is recorded")).unwrap()
}

#[test]
fn every_source_set_gets_a_replacement_in_its_mapped_domain_and_a_rollback_removes_them() {
    let h = cluster();
    let run = h.run::<CreateWorkers>(Direction::Execute, &zonal());
    assert!(run.done(), "{:?}", run.outcome);
    for (name, server_cluster, replicas) in [
        ("inf-infra-fd-x", "/dc/host/fd-x", 1),
        ("inf-worker-fd-x", "/dc/host/fd-x", 2),
        ("inf-worker-fd-y", "/dc/host/fd-y", 1),
    ] {
        let new = h.get(&types::MACHINE_SET, NS, name).unwrap_or_else(|| panic!("{name} created"));
        assert_eq!(new.str_at("/spec/template/spec/providerSpec/value/workspace/server"), Some("vc-b"));
        assert_eq!(
            new.str_at("/spec/template/spec/providerSpec/value/workspace/resourcePool"),
            Some(format!("{server_cluster}/Resources").as_str())
        );
        assert_eq!(new.str_at("/spec/template/spec/providerSpec/value/network/devices/0/gateway"), Some("10.0.0.1"));
        assert_eq!(new.i64_at("/spec/replicas"), Some(replicas), "{name}");
    }
    let infra = h.get(&types::MACHINE_SET, NS, "inf-infra-fd-x").unwrap();
    assert_eq!(infra.array_at("/spec/template/spec/taints").len(), 1, "the infra set keeps its taint");
    assert!(
        run.message().contains("3 replacement MachineSet(s), 4 machine(s) Running with Ready nodes"),
        "{}",
        run.message()
    );
    let plan: Vec<(String, String)> = replacements(&h).into_iter().map(|r| (r.source, r.name)).collect();
    assert_eq!(plan.len(), 3, "{plan:?}");
    assert!(h.run::<CreateWorkers>(Direction::Execute, &zonal()).done(), "a re-run finds it done");

    let back = h.run::<CreateWorkers>(Direction::Rollback, &zonal());
    assert!(back.done(), "{:?}", back.outcome);
    for name in ["inf-infra-fd-x", "inf-worker-fd-x", "inf-worker-fd-y"] {
        assert!(h.get(&types::MACHINE_SET, NS, name).is_none(), "{name} removed");
    }
    assert!(h.list(&types::MACHINE).iter().all(|m| !m.name().contains("fd-")));
    assert!(h.shared_state(MACHINE_SET_REPLACEMENTS).is_none(), "the plan goes with the sets");
    assert_eq!(h.list(&types::MACHINE_SET).len(), 3, "the source sets are untouched");
}

#[test]
fn the_plan_is_made_once_so_a_set_resized_meanwhile_keeps_its_planned_size() {
    let h = cluster();
    h.clear_hooks();
    let first = h.call::<CreateWorkers>(Direction::Execute, &zonal(), 1);
    assert!(outcome_message(&first).contains("created MachineSet(s)"), "{first:?}");
    h.edit(&types::MACHINE_SET, NS, "inf-worker-src-2", |o| o["spec"]["replicas"] = json!(5));
    h.remove(&types::MACHINE_SET, NS, "inf-worker-fd-y");
    h.on_wait(machine_api);
    assert!(h.run::<CreateWorkers>(Direction::Execute, &zonal()).done());
    assert_eq!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-y").unwrap().i64_at("/spec/replicas"), Some(1));
}

#[test]
fn a_set_the_phase_did_not_create_survives_a_rollback() {
    let h = cluster();
    let mut existing = set("inf-worker-fd-y", "worker", "c2", 1);
    existing["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"] = json!("vc-b");
    h.put(existing);
    assert!(h.run::<CreateWorkers>(Direction::Execute, &zonal()).done());
    let back = h.run::<CreateWorkers>(Direction::Rollback, &zonal());
    assert!(back.done(), "{:?}", back.outcome);
    assert!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-y").is_some(), "not the phase's");
    assert!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-x").is_none(), "the phase's");
}

#[test]
fn unplaced_sets_and_bad_names_are_refused_and_a_fixed_spec_is_planned_again() {
    let h = cluster();
    let run = h.run::<CreateWorkers>(
        Direction::Execute,
        &m(json!({"failureDomainMap": [{"source": "src-1", "target": "fd-x"}]})),
    );
    assert!(run.failed() && !run.retryable());
    assert!(
        run.message().contains("MachineSet inf-worker-src-2 runs in source failure domain src-2"),
        "{}",
        run.message()
    );
    assert!(h.list(&types::MACHINE_SET).len() == 3, "nothing created");

    let run = h.run::<CreateWorkers>(Direction::Execute, &m(json!({"failureDomain": "FD_Z"})));
    assert!(run.message().contains("not a valid Kubernetes name"), "{}", run.message());

    // A plan recorded before a refusal is made again when the spec is fixed...
    let mut clash = set("inf-worker-fd-y", "worker", "c9", 1);
    clash["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"] = json!("vc-c");
    h.put(clash);
    h.clear_hooks();
    let run = h.run::<CreateWorkers>(Direction::Execute, &zonal());
    assert!(run.message().contains("MachineSet inf-worker-fd-y already exists"), "{}", run.message());
    let renamed =
        m(json!({"failureDomainMap": [{"source": "src-1", "target": "fd-x"}, {"source": "src-2", "target": "fd-y"}],
                          "overrides": [{"machineSet": "inf-worker-src-2", "name": "inf-worker-fd-y2"}]}));
    h.on_wait(machine_api);
    let run = h.run::<CreateWorkers>(Direction::Execute, &renamed);
    assert!(run.done(), "{:?}", run.outcome);
    assert!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-y2").is_some());
    // ...and refused once replacements exist.
    let run = h.run::<CreateWorkers>(Direction::Execute, &zonal());
    assert!(run.message().contains("spec.machineSetConfig changed after MachineSet(s)"), "{}", run.message());
}

#[test]
fn a_target_vcenter_missing_from_the_infrastructure_is_refused() {
    let h = cluster();
    h.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"]["vcenters"] = json!([{"server": "vc-a"}]);
    });
    let run = h.run::<CreateWorkers>(Direction::Execute, &zonal());
    assert!(run.message().contains("UpdateInfrastructure must run before CreateWorkers"), "{}", run.message());
    assert_eq!(h.list(&types::MACHINE_SET).len(), 3, "nothing created");
}

fn health_check(name: &str, role: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineHealthCheck",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"selector": {"matchLabels": {"machine.openshift.io/cluster-api-machine-role": role}}}})
}

fn paused(h: &FakeHost, name: &str) -> Option<String> {
    h.get(&types::MACHINE_HEALTH_CHECK, NS, name)
        .and_then(|m| m.str_at("/metadata/annotations/cluster.x-k8s.io~1paused").map(String::from))
}

#[test]
fn health_checks_over_the_new_machines_hold_still_while_they_are_made_and_removed() {
    let h = cluster();
    h.clear_hooks();
    h.put(health_check("workers", "worker"));
    h.put(health_check("masters", "master"));
    let mut owners = health_check("owners", "worker");
    owners["metadata"]["annotations"] = json!({"cluster.x-k8s.io/paused": ""});
    h.put(owners);

    let first = h.call::<CreateWorkers>(Direction::Execute, &zonal(), 1);
    assert!(outcome_message(&first).contains("created MachineSet(s)"), "{first:?}");
    assert_eq!(paused(&h, "workers").as_deref(), Some("vsphere-migration"), "paused while machines are made");
    assert_eq!(paused(&h, "masters"), None, "it selects none of them");
    h.on_wait(machine_api);
    assert!(h.run::<CreateWorkers>(Direction::Execute, &zonal()).done());
    assert_eq!(paused(&h, "workers"), None, "resumed once they are Ready");
    assert_eq!(paused(&h, "owners").as_deref(), Some(""), "the owner's pause is theirs");

    // Rollback: paused while the machines go, resumed after.
    h.clear_hooks();
    let first = h.call::<CreateWorkers>(Direction::Rollback, &zonal(), 1);
    assert!(matches!(first, Outcome::Wait(_)), "{first:?}");
    assert_eq!(paused(&h, "workers").as_deref(), Some("vsphere-migration"));
    h.on_wait(machine_api);
    assert!(h.run::<CreateWorkers>(Direction::Rollback, &zonal()).done());
    assert_eq!(paused(&h, "workers"), None);
    assert_eq!(paused(&h, "owners").as_deref(), Some(""));
}
