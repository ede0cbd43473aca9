use serde_json::{Value, json};
use vsm_sdk::Object;
use vsm_sdk::spec::MigrationSpec;

use super::*;

const SRC: &str = "vc-src";

fn mk_domain(name: &str, server: &str, dc: &str, cluster: &str, ds: &str) -> Value {
    json!({"name": name, "region": "region-1", "zone": format!("{name}-zone"), "server": server,
           "topology": {"datacenter": dc, "computeCluster": format!("/{dc}/host/{cluster}"),
                        "datastore": format!("/{dc}/datastore/{ds}"), "networks": ["net"],
                        "template": format!("/{dc}/vm/rhcos")}})
}

/// A zonal source: three domains, two of them sharing a compute cluster (told apart by datastore).
fn mk_infra_domains() -> Vec<Value> {
    vec![
        mk_domain("src-a", SRC, "dc1", "c1", "ds1"),
        mk_domain("src-b", SRC, "dc1", "c2", "ds2"),
        mk_domain("src-c", SRC, "dc1", "c2", "ds3"),
    ]
}

fn mk_set(name: &str, server: &str, cluster: &str, ds: &str, replicas: i64) -> Object {
    Object(json!({
        "metadata": {"name": name, "namespace": "openshift-machine-api"},
        "spec": {"replicas": replicas, "template": {"spec": {"providerSpec": {"value": {"workspace": {
            "server": server, "datacenter": "dc1", "datastore": format!("/dc1/datastore/{ds}"),
            "resourcePool": format!("/dc1/host/{cluster}/Resources")}}}}}}
    }))
}

fn mk_spec(machine_set_config: Value) -> MigrationSpec {
    let target = |name: &str| {
        let mut d = mk_domain(name, "vc-dst", "dst", name, "dsx");
        d["zone"] = json!(name);
        d
    };
    serde_json::from_value(json!({
        "targetVCenterCredentialsSecret": {"name": "c"},
        "failureDomains": [target("dst-a"), target("dst-b"), target("dst-c")],
        "machineSetConfig": machine_set_config,
        "controlPlaneMachineSetConfig": {"failureDomains": ["dst-a", "dst-b", "dst-c"]},
    }))
    .unwrap()
}

fn zonal_map() -> Value {
    json!({"failureDomainMap": [{"source": "src-a", "target": "dst-a"}, {"source": "src-b", "target": "dst-b"},
                                {"source": "src-c", "target": "dst-c"}]})
}

fn sources() -> Vec<String> {
    vec![SRC.to_string()]
}

#[test]
fn a_provider_spec_runs_in_the_domain_whose_cluster_holds_its_pool_and_the_datastore_decides_a_tie() {
    let domains = mk_infra_domains();
    let spec_of = |s: &Object| s.at(crate::machines::SET_PROVIDER_SPEC).unwrap().clone();
    assert_eq!(domain_of(&spec_of(&mk_set("x", SRC, "c1", "any", 1)), &domains).as_deref(), Some("src-a"));
    assert_eq!(domain_of(&spec_of(&mk_set("x", SRC, "c2", "ds3", 1)), &domains).as_deref(), Some("src-c"));
    // Shared cluster and a datastore of neither: ambiguous, so none.
    assert_eq!(domain_of(&spec_of(&mk_set("x", SRC, "c2", "ds9", 1)), &domains), None);
    // Another server, or a cluster whose name only starts like one: none.
    assert_eq!(domain_of(&spec_of(&mk_set("x", "vc-other", "c1", "ds1", 1)), &domains), None);
    let mut nested = spec_of(&mk_set("x", SRC, "c1", "ds1", 1));
    nested["workspace"]["resourcePool"] = json!("/dc1/host/c10/Resources");
    assert_eq!(domain_of(&nested, &domains), None);
    assert_eq!(domain_of(&spec_of(&mk_set("x", SRC, "c1", "ds1", 1)), &[]), None, "legacy: no domains");
}

#[test]
fn every_source_set_of_any_role_gets_a_replacement_in_its_mapped_domain_at_its_size() {
    let sets = vec![
        mk_set("ocp-worker-src-a", SRC, "c1", "ds1", 2),
        mk_set("ocp-worker-src-b", SRC, "c2", "ds2", 1),
        mk_set("ocp-worker-src-c-zone", SRC, "c2", "ds3", 0),
        mk_set("ocp-infra-0", SRC, "c1", "ds1", 3),
        mk_set("ocp-worker-dst-a", "vc-dst", "dst-a", "dsx", 2),
    ];
    let plan = plan(&sets, &mk_infra_domains(), &mk_spec(zonal_map()), &sources()).unwrap();
    let got: Vec<(&str, &str, &str, i64)> =
        plan.iter().map(|r| (r.source.as_str(), r.name.as_str(), r.failure_domain.as_str(), r.replicas)).collect();
    assert_eq!(
        got,
        vec![
            ("ocp-infra-0", "ocp-infra-0-dst-a", "dst-a", 3),
            ("ocp-worker-src-a", "ocp-worker-dst-a", "dst-a", 2),
            ("ocp-worker-src-b", "ocp-worker-dst-b", "dst-b", 1),
            // The suffix is the zone (`src-c-zone`), not the domain name.
            ("ocp-worker-src-c-zone", "ocp-worker-dst-c", "dst-c", 0),
        ]
    );
    assert!(plan.iter().all(|r| r.server == "vc-dst"));
    assert_eq!(plan[1].source_domain.as_deref(), Some("src-a"));
}

#[test]
fn overrides_change_domain_size_and_name() {
    let mut cfg = zonal_map();
    cfg["overrides"] =
        json!([{"machineSet": "ocp-infra-0", "failureDomain": "dst-c", "replicas": 1, "name": "ocp-infra-new"}]);
    let sets = vec![mk_set("ocp-infra-0", SRC, "c1", "ds1", 3)];
    let plan = plan(&sets, &mk_infra_domains(), &mk_spec(cfg), &sources()).unwrap();
    assert_eq!(
        (plan[0].name.as_str(), plan[0].failure_domain.as_str(), plan[0].replicas),
        ("ocp-infra-new", "dst-c", 1)
    );
}

#[test]
fn a_legacy_cluster_goes_where_the_default_says() {
    let sets = vec![mk_set("ocp-worker-0", SRC, "c1", "ds1", 2)];
    let plan = plan(&sets, &[], &mk_spec(json!({"failureDomain": "dst-b"})), &sources()).unwrap();
    assert_eq!((plan[0].name.as_str(), plan[0].source_domain.as_ref()), ("ocp-worker-0-dst-b", None));
}

#[test]
fn every_problem_is_named_at_once() {
    let sets = vec![
        mk_set("ocp-worker-src-a", SRC, "c1", "ds1", 2),
        mk_set("ocp-worker-src-b", SRC, "c2", "ds2", 1),
        mk_set("ocp-worker-src-c", SRC, "c2", "ds3", 1),
    ];
    let cfg = json!({"failureDomainMap": [{"source": "src-a", "target": "dst-a"}],
                     "overrides": [{"machineSet": "gone", "replicas": 2}]});
    let e = plan(&sets, &mk_infra_domains(), &mk_spec(cfg), &sources()).unwrap_err();
    for part in [
        "spec.machineSetConfig.overrides[gone]: no MachineSet gone",
        "MachineSet ocp-worker-src-b runs in source failure domain src-b",
        "MachineSet ocp-worker-src-c runs in source failure domain src-c",
    ] {
        assert!(e.contains(part), "{part} in {e}");
    }
    // Two sources mapped into one domain under one name, and a replacement named like a source.
    let cfg = json!({"failureDomain": "dst-a", "overrides": [{"machineSet": "w2", "name": "w1"}]});
    let sets = vec![
        mk_set("w-src-a", SRC, "c1", "ds1", 1),
        mk_set("w-src-a-zone", SRC, "c1", "ds1", 1),
        mk_set("w1", SRC, "c1", "ds1", 1),
        mk_set("w2", SRC, "c1", "ds1", 1),
    ];
    let e = plan(&sets, &mk_infra_domains(), &mk_spec(cfg), &sources()).unwrap_err();
    assert!(e.contains("MachineSets w-src-a and w-src-a-zone would all be replaced by w-dst-a"), "{e}");
    assert!(e.contains("the replacement of MachineSet w2 would be named w1"), "{e}");
    let long = format!("ocp-{}", "w".repeat(58));
    let e = plan(&[mk_set(&long, SRC, "c1", "ds1", 1)], &mk_infra_domains(), &mk_spec(zonal_map()), &sources())
        .unwrap_err();
    assert!(e.contains("63 at most") && e.contains("overrides"), "{e}");
}

#[test]
fn map_sources_must_be_domains_of_the_infrastructure() {
    let mut cfg = zonal_map();
    cfg["failureDomainMap"].as_array_mut().unwrap().push(json!({"source": "src-z", "target": "dst-a"}));
    let e = unknown_map_sources(&mk_spec(cfg), &mk_infra_domains()).unwrap();
    assert!(e.contains("src-z") && e.contains("it has: src-a, src-b, src-c"), "{e}");
    assert_eq!(unknown_map_sources(&mk_spec(zonal_map()), &mk_infra_domains()), None);
}
