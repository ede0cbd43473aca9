use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

fn m(tolerated: Option<&[&str]>) -> Migration {
    let mut spec = json!({
        "targetVCenterCredentialsSecret": {"name": "t"},
        "failureDomains": [],
        "machineSetConfig": {"failureDomain": "a"},
        "controlPlaneMachineSetConfig": {"failureDomain": "a"}
    });
    if let Some(t) = tolerated {
        spec["health"] = json!({"toleratedOperators": t});
    }
    migration(&spec, &["vc-a"])
}

fn co(name: &str, available: &str, degraded: &str) -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name},
           "status": {"conditions": [{"type": "Available", "status": available},
                                     {"type": "Degraded", "status": degraded, "message": format!("{name} is unwell")}]}})
}

fn node(name: &str, ready: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"conditions": [{"type": "Ready", "status": ready}]}})
}

fn cluster(vcenters: usize) -> FakeHost {
    let h = FakeHost::new();
    let vc: Vec<Value> = (0..vcenters).map(|i| json!({"server": format!("vc-{i}")})).collect();
    h.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
                 "spec": {"platformSpec": {"type": "VSphere", "vsphere": {"vcenters": vc}}}}));
    h.put(co("storage", "True", "False"));
    h.put(co("machine-config", "True", "True"));
    h.put(node("n1", "True"));
    h
}

fn first_wait(run: &vsm_sdk::testing::Run) -> String {
    run.outcomes
        .iter()
        .find_map(|o| match o {
            Outcome::Wait(w) => Some(w.message.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn machine_config_is_tolerated_while_two_vcenters_are_configured_but_nodes_are_checked() {
    let h = cluster(2);
    h.put(node("n2", "False"));
    h.on_wait(|h| {
        h.put(node("n2", "True"));
    });
    let run = h.run::<MonitorHealth>(Direction::Execute, &m(None));
    assert!(run.done(), "{:?}", run.outcome);
    assert!(first_wait(&run).contains("node n2 not Ready"), "{}", first_wait(&run));
    assert!(run.message().contains("1/2 ClusterOperators available"), "{}", run.message());
    assert!(run.message().contains("tolerated while 2 vCenters are configured: machine-config"), "{}", run.message());
}

#[test]
fn the_tolerated_set_is_configurable_and_only_applies_with_several_vcenters() {
    let h = cluster(2);
    h.put(co("storage", "True", "True"));
    h.on_wait(|h| {
        h.put(co("machine-config", "True", "False"));
    });
    let run = h.run::<MonitorHealth>(Direction::Execute, &m(Some(&["storage"])));
    assert!(run.done());
    assert!(
        first_wait(&run).contains("operator machine-config (available=True, degraded=True)"),
        "{}",
        first_wait(&run)
    );
    assert!(!first_wait(&run).contains("storage"));

    let single = cluster(1);
    single.on_wait(|h| {
        h.put(co("machine-config", "True", "False"));
    });
    let run = single.run::<MonitorHealth>(Direction::Execute, &m(None));
    assert!(run.done());
    assert!(first_wait(&run).contains("machine-config"), "not tolerated with one vCenter");
}
