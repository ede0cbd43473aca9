use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;
use vsm_common::pem::test_certificate as mk_cert;
use vsm_common::shared_state::TARGET_CA_FINGERPRINTS;

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

fn ca_secret(h: &FakeHost, name: &str, pem: &str) {
    h.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "vsphere-migration"},
                 "data": {"ca.crt": vsm_common::creds::encode(pem)}}));
}

fn proxy(h: &FakeHost, trusted_ca: Option<&str>) {
    let spec = match trusted_ca {
        Some(n) => json!({"trustedCA": {"name": n}}),
        None => json!({"trustedCA": {"name": ""}}),
    };
    h.put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "Proxy", "metadata": {"name": "cluster"}, "spec": spec}),
    );
}

fn data(h: &FakeHost, name: &str, key: &str) -> Option<String> {
    h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), name)?.str_at(&format!("/data/{key}")).map(String::from)
}

#[test]
fn a_target_ca_goes_into_a_new_user_ca_bundle_the_proxy_names_and_rollback_removes_both() {
    let h = host(INI);
    proxy(&h, None);
    ca_secret(&h, "ca", &mk_cert(1));
    let vcenters = json!([{"server": "vc-b", "caSecret": {"name": "ca"}}]);
    let run = h.run::<UpdateConfig>(Direction::Execute, &m(vcenters.clone()));
    assert!(run.done(), "{:?}", run.outcome);
    // No per-vCenter CA file: nothing the cluster runs reads it.
    assert_eq!(
        config(&h),
        format!("{INI}\n[VirtualCenter \"vc-b\"]\ndatacenters = \"dc1,dc2\"\nport = \"443\"\ninsecure-flag = \"0\"\n")
    );
    assert_eq!(data(&h, "user-ca-bundle", "ca-bundle.crt").as_deref(), Some(mk_cert(1).as_str()));
    let p = h.get(&types::PROXY, None, "cluster").unwrap();
    assert_eq!(p.str_at("/spec/trustedCA/name"), Some("user-ca-bundle"));
    assert_eq!(data(&h, CLOUD_CONFIG, "ca-bundle.pem"), None, "the cluster uses no cloud config CA bundle");
    let recorded: Vec<String> = serde_json::from_str(&h.shared_state(TARGET_CA_FINGERPRINTS).unwrap()).unwrap();
    assert_eq!(recorded.len(), 1);
    assert!(
        run.message().contains("user-ca-bundle") && run.message().contains(&recorded[0][..16]),
        "{}",
        run.message()
    );
    // Idempotent.
    let again = h.run::<UpdateConfig>(Direction::Execute, &m(vcenters));
    assert!(again.message().contains("the cluster trusts their CAs"), "{}", again.message());
    // Rollback: the ConfigMap it created is gone, the Proxy as it was.
    let back = h.run::<UpdateConfig>(Direction::Rollback, &m(json!([])));
    assert!(back.done(), "{:?}", back.outcome);
    assert!(h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), "user-ca-bundle").is_none());
    assert_eq!(h.get(&types::PROXY, None, "cluster").unwrap().str_at("/spec/trustedCA/name"), Some(""));
    assert_eq!(config(&h), INI);
}

#[test]
fn the_proxys_own_bundle_and_the_cloud_config_bundle_keep_every_certificate() {
    let yaml = YAML.replace(
        "global:\n",
        "global:\n  caFile: /etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem\n",
    );
    let h = host(&yaml);
    let mut cm = h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG).unwrap();
    cm.set("/data/ca-bundle.pem", Value::String(format!("# source\n{}", mk_cert(7))));
    h.put(cm.0);
    proxy(&h, Some("corporate"));
    h.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "corporate", "namespace": "openshift-config"},
                 "data": {"ca-bundle.crt": format!("# proxy\n{}", mk_cert(9))}}));
    // Two targets, the second's bundle repeats the first's CA.
    let spec =
        spec(json!([{"server": "vc-b", "caSecret": {"name": "ca"}}, {"server": "vc-c", "caSecret": {"name": "ca2"}}]));
    let mut spec = spec;
    spec["failureDomains"][1]["server"] = json!("vc-c");
    ca_secret(&h, "ca", &mk_cert(1));
    ca_secret(&h, "ca2", &format!("{}{}", mk_cert(1), mk_cert(2)));
    let run = h.run::<UpdateConfig>(Direction::Execute, &migration(&spec, &["vc-a"]));
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(
        data(&h, "corporate", "ca-bundle.crt").unwrap(),
        format!("# proxy\n{}{}{}", mk_cert(9), mk_cert(1), mk_cert(2))
    );
    assert!(h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), "user-ca-bundle").is_none());
    assert_eq!(
        data(&h, CLOUD_CONFIG, "ca-bundle.pem").unwrap(),
        format!("# source\n{}{}{}", mk_cert(7), mk_cert(1), mk_cert(2))
    );
    // The config names a CA file, so the new entries use it.
    let text = config(&h);
    assert_eq!(
        text.matches("caFile: /etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem").count(),
        3,
        "{text}"
    );
}

#[test]
fn a_ca_secret_with_a_private_key_or_no_certificate_is_refused_before_anything_changes() {
    for (pem, expected) in [
        (
            format!("{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", mk_cert(1)),
            "may hold certificates only",
        ),
        ("just text\n".to_string(), "holds no PEM certificate"),
    ] {
        let h = host(YAML);
        proxy(&h, None);
        ca_secret(&h, "ca", &pem);
        let run =
            h.run::<UpdateConfig>(Direction::Execute, &m(json!([{"server": "vc-b", "caSecret": {"name": "ca"}}])));
        assert!(run.failed() && !run.retryable(), "{:?}", run.outcome);
        assert!(
            run.message().contains("spec.vcenters[0].caSecret") && run.message().contains(expected),
            "{}",
            run.message()
        );
        assert_eq!(config(&h), YAML, "nothing written");
        assert!(h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), "user-ca-bundle").is_none());
    }
}

#[test]
fn a_globally_insecure_cluster_gets_the_ca_and_a_note() {
    let h = host("[Global]\ninsecure-flag = \"1\"\n\n[VirtualCenter \"vc-a\"]\ndatacenters = \"src\"\n");
    proxy(&h, None);
    ca_secret(&h, "ca", &mk_cert(1));
    let run = h.run::<UpdateConfig>(Direction::Execute, &m(json!([{"server": "vc-b", "caSecret": {"name": "ca"}}])));
    assert!(run.done(), "{:?}", run.outcome);
    assert!(run.message().contains("turn certificate verification off"), "{}", run.message());
    assert!(data(&h, "user-ca-bundle", "ca-bundle.crt").is_some());
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
