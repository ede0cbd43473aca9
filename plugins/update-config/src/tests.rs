use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

fn spec(vcenters: Value) -> Value {
    json!({
        "targetVCenterCredentialsSecret": {"name": "t"},
        "failureDomains": [
            {"name": "a", "region": "r", "zone": "z1", "server": "vc-b", "topology": {"datacenter": "dc1",
             "computeCluster": "/dc1/host/c", "datastore": "/dc1/datastore/d", "networks": ["n"], "template": "/dc1/vm/t"}},
            {"name": "b", "region": "r", "zone": "z2", "server": "vc-b", "topology": {"datacenter": "dc2",
             "computeCluster": "/dc2/host/c", "datastore": "/dc2/datastore/d", "networks": ["n"]}}
        ],
        "vcenters": vcenters,
        "machineSetConfig": {"failureDomain": "a"},
        "controlPlaneMachineSetConfig": {"failureDomain": "a"}
    })
}

fn m(vcenters: Value) -> Migration {
    migration(&spec(vcenters), &["vc-a"])
}

fn host(config: &str) -> FakeHost {
    let h = FakeHost::new();
    h.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": CLOUD_CONFIG, "namespace": CLOUD_CONFIG_NAMESPACE},
                 "data": {CLOUD_CONFIG_KEY: config}}));
    h
}

fn config(h: &FakeHost) -> String {
    h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)
        .unwrap()
        .str_at("/data/config")
        .unwrap()
        .to_string()
}

const YAML: &str = "# keep me\nglobal:\n  secretName: vsphere-creds\nvcenter:\n  vc-a:\n    server: vc-a\n    datacenters:\n    - src\nlabels:\n  zone: z\n";
const INI: &str = "[Global]\ninsecure-flag = \"0\"\n\n[VirtualCenter \"vc-a\"]\ndatacenters = \"src\"\n";

#[test]
fn adds_the_target_with_its_datacenters_port_and_trust_and_rolls_back() {
    let h = host(YAML);
    let run =
        h.run::<UpdateConfig>(Direction::Execute, &m(json!([{"server": "vc-b", "port": 8443, "insecure": true}])));
    assert!(run.done(), "{:?}", run.outcome);
    let text = config(&h);
    assert!(text.starts_with("# keep me\n"));
    assert!(
        text.contains("  vc-b:\n    server: vc-b\n    port: 8443\n    insecureFlag: true\n    datacenters:\n    - dc1\n    - dc2\n"),
        "{text}"
    );
    // A second run changes nothing.
    let again =
        h.run::<UpdateConfig>(Direction::Execute, &m(json!([{"server": "vc-b", "port": 8443, "insecure": true}])));
    assert!(again.message().contains("already lists vc-b"), "{}", again.message());
    let back = h.run::<UpdateConfig>(Direction::Rollback, &m(json!([])));
    assert!(back.done(), "{:?}", back.outcome);
    assert_eq!(config(&h), YAML);
}

#[test]
fn ini_configs_get_a_section_and_a_ca_when_the_migration_has_one() {
    let h = host(INI);
    let run = h.run::<UpdateConfig>(Direction::Execute, &m(json!([{"server": "vc-b", "caSecret": {"name": "ca"}}])));
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(
        config(&h),
        format!(
            "{INI}\n[VirtualCenter \"vc-b\"]\ndatacenters = \"dc1,dc2\"\nport = \"443\"\ninsecure-flag = \"0\"\nca-file = \"{}\"\n",
            cloud_config::DEFAULT_CA_FILE
        )
    );
    assert!(h.logged("has no ca-bundle.pem"), "the missing CA bundle is pointed out");
}

#[test]
fn a_missing_or_empty_config_is_refused_with_a_clear_message() {
    let h = host("");
    let run = h.run::<UpdateConfig>(Direction::Execute, &m(json!([])));
    assert!(run.failed() && !run.retryable());
    assert!(run.message().contains("has no key \"config\""), "{}", run.message());
    let none = FakeHost::new();
    let run = none.run::<UpdateConfig>(Direction::Execute, &m(json!([])));
    assert!(run.message().contains("does not exist"), "{}", run.message());
    let bad = host("vcenter: {a: {server: a}}\n");
    let run = bad.run::<UpdateConfig>(Direction::Execute, &m(json!([])));
    assert!(run.message().contains("cannot be edited safely"), "{}", run.message());
    assert_eq!(config(&bad), "vcenter: {a: {server: a}}\n", "nothing written");
}

#[test]
fn plan_mode_changes_nothing() {
    let h = host(YAML);
    let run = h.plan_run::<UpdateConfig>(&m(json!([])));
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(config(&h), YAML);
    assert_eq!(h.plan().len(), 1);
}
