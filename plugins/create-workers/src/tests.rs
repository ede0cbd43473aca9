use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

fn m(fd_name: &str) -> Migration {
    migration(
        &json!({
            "targetVCenterCredentialsSecret": {"name": "t"},
            "failureDomains": [{"name": fd_name, "region": "r", "zone": "z", "server": "vc-b",
                "topology": {"datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/d",
                             "networks": ["net-b"], "template": "/dc/vm/rhcos"}}],
            "machineSetConfig": {"replicas": 2, "failureDomain": fd_name},
            "controlPlaneMachineSetConfig": {"failureDomain": fd_name}
        }),
        &["vc-a"],
    )
}

fn set(name: &str, role: &str) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE},
           "spec": {"replicas": 1, "selector": {"matchLabels": {MACHINESET_LABEL: name}},
                    "template": {"metadata": {"labels": {MACHINESET_LABEL: name, "machine.openshift.io/cluster-api-machine-role": role}},
                                 "spec": {"providerSpec": {"value": {"workspace": {"server": "vc-a"}, "template": "/a/vm/t",
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

fn cluster() -> FakeHost {
    let h = FakeHost::new();
    h.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
                 "spec": {"platformSpec": {"type": "VSphere", "vsphere": {"vcenters": [{"server": "vc-a"}, {"server": "vc-b"}]}}},
                 "status": {"infrastructureName": "inf"}}));
    h.put(set("inf-a-infra", "infra"));
    h.put(set("inf-worker-0", "worker"));
    h.on_wait(machine_api);
    h
}

#[test]
fn creates_a_set_from_the_worker_template_waits_for_it_and_rolls_back() {
    let h = cluster();
    let run = h.run::<CreateWorkers>(Direction::Execute, &m("fd-b"));
    assert!(run.done(), "{:?}", run.outcome);
    let new = h.get(&types::MACHINE_SET, NS, "inf-worker-fd-b").unwrap();
    assert_eq!(new.str_at("/spec/template/spec/providerSpec/value/workspace/server"), Some("vc-b"));
    assert_eq!(new.str_at("/spec/template/spec/providerSpec/value/network/devices/0/gateway"), Some("10.0.0.1"));
    assert!(run.message().contains("2/2 workers Running with Ready nodes"), "{}", run.message());
    assert!(h.run::<CreateWorkers>(Direction::Execute, &m("fd-b")).done(), "a re-run finds it done");

    let back = h.run::<CreateWorkers>(Direction::Rollback, &m("fd-b"));
    assert!(back.done(), "{:?}", back.outcome);
    assert!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-b").is_none());
    assert!(h.list(&types::MACHINE).iter().all(|m| !m.name().starts_with("inf-worker-fd-b")));
}

#[test]
fn a_set_the_phase_did_not_create_survives_a_rollback() {
    let h = cluster();
    let mut existing = set("inf-worker-fd-b", "worker");
    existing["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"] = json!("vc-b");
    h.put(existing);
    assert!(h.run::<CreateWorkers>(Direction::Execute, &m("fd-b")).done());
    let back = h.run::<CreateWorkers>(Direction::Rollback, &m("fd-b"));
    assert!(back.message().contains("nothing to undo"), "{}", back.message());
    assert!(h.get(&types::MACHINE_SET, NS, "inf-worker-fd-b").is_some());
}

#[test]
fn bad_names_and_a_missing_vcenter_are_refused() {
    let h = cluster();
    let run = h.run::<CreateWorkers>(Direction::Execute, &m("FD_B"));
    assert!(run.failed() && !run.retryable());
    assert!(run.message().contains("not a valid Kubernetes name"), "{}", run.message());
    h.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"]["vcenters"] = json!([{"server": "vc-a"}]);
    });
    let run = h.run::<CreateWorkers>(Direction::Execute, &m("fd-b"));
    assert!(run.message().contains("UpdateInfrastructure must run before CreateWorkers"), "{}", run.message());
}
