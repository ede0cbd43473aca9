use serde_json::{Value, json};
use vsm_sdk::Object;
use vsm_sdk::spec::FailureDomain;

use super::*;

fn source_fd() -> Value {
    json!({"name": "source-fd", "region": "src-region", "zone": "src-zone-a", "server": "vc-src",
           "topology": {"datacenter": "src-dc", "computeCluster": "/src-dc/host/c", "datastore": "/src-dc/datastore/ds",
                        "networks": ["VM Network"], "resourcePool": "/src-dc/host/c/Resources", "folder": "/src-dc/vm/id"}})
}

fn vsphere() -> Value {
    json!({
        "vcenters": [{"server": "vc-src", "port": 443, "datacenters": ["src-dc"]}],
        "failureDomains": [source_fd()],
        "apiServerInternalIPs": ["10.0.0.5"],
        "nodeNetworking": {"external": {"networkSubnetCidr": ["10.0.0.0/16"]}},
    })
}

fn fd(name: &str, server: &str, dc: &str) -> FailureDomain {
    serde_json::from_value(json!({
        "name": name, "region": "r", "zone": format!("z-{name}"), "server": server,
        "topology": {"datacenter": dc, "computeCluster": format!("/{dc}/host/c"), "datastore": format!("/{dc}/datastore/ds"),
                     "networks": ["VM Network"], "template": format!("/{dc}/vm/rhcos")},
        "zoneAffinity": {"type": "ComputeCluster"}
    }))
    .unwrap()
}

fn port(server: &str) -> u16 {
    if server == "vc-dst" { 8443 } else { 443 }
}

fn targets(fds: &[FailureDomain]) -> Targets<'_> {
    Targets { failure_domains: fds, infra_id: "id-x", port: &port, legacy_sources: vec![] }
}

#[test]
fn targets_are_added_once_and_everything_else_is_kept() {
    let fds = [fd("t1", "vc-dst", "dst-dc")];
    let once = add_targets(&vsphere(), &targets(&fds)).unwrap();
    assert_eq!(
        once["vcenters"],
        json!([{"server": "vc-src", "port": 443, "datacenters": ["src-dc"]},
               {"server": "vc-dst", "port": 8443, "datacenters": ["dst-dc"]}])
    );
    let names: Vec<&str> =
        once["failureDomains"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["source-fd", "t1"]);
    let added = &once["failureDomains"][1];
    assert_eq!(added["topology"]["folder"], json!("/dst-dc/vm/id-x"), "the default folder is made explicit");
    assert_eq!(added["topology"]["template"], json!("/dst-dc/vm/rhcos"));
    assert_eq!(
        added["zoneAffinity"],
        json!({"type": "ComputeCluster"}),
        "affinity is kept (the Go controller dropped it)"
    );
    assert_eq!(once["failureDomains"][0], source_fd());
    assert_eq!(once["apiServerInternalIPs"], vsphere()["apiServerInternalIPs"]);
    assert_eq!(once["nodeNetworking"], vsphere()["nodeNetworking"]);
    // The Go controller appended every failure domain again on a re-run.
    let twice = add_targets(&once, &targets(&fds)).unwrap();
    assert_eq!(twice, once);
}

#[test]
fn datacenters_come_in_a_deterministic_order_and_merge_into_listed_vcenters() {
    let fds =
        [fd("a", "vc-dst", "dc-b"), fd("b", "vc-dst", "dc-a"), fd("c", "vc-dst", "dc-b"), fd("d", "vc-src", "dc-c")];
    let out = add_targets(&vsphere(), &targets(&fds)).unwrap();
    assert_eq!(out["vcenters"][1]["datacenters"], json!(["dc-b", "dc-a"]), "first mention first, no duplicates");
    assert_eq!(out["vcenters"][0]["datacenters"], json!(["src-dc", "dc-c"]), "a listed vCenter gains datacenters");
    for _ in 0..5 {
        assert_eq!(add_targets(&out, &targets(&fds)).unwrap(), out);
    }
}

#[test]
fn a_changed_target_failure_domain_is_replaced_in_place() {
    let mut fds = vec![fd("t1", "vc-dst", "dst-dc")];
    let once = add_targets(&vsphere(), &targets(&fds)).unwrap();
    fds[0].zone = "other-zone".into();
    let again = add_targets(&once, &targets(&fds)).unwrap();
    assert_eq!(again["failureDomains"].as_array().unwrap().len(), 2);
    assert_eq!(again["failureDomains"][1]["zone"], json!("other-zone"));
}

#[test]
fn a_name_taken_by_another_vcenter_and_a_fourth_vcenter_are_refused() {
    let fds = [fd("source-fd", "vc-dst", "dst-dc")];
    let err = add_targets(&vsphere(), &targets(&fds)).unwrap_err();
    assert!(matches!(&err, InfraError::NameTaken { existing_server, .. } if existing_server == "vc-src"));
    assert!(err.to_string().contains("failure domain \"source-fd\" already exists"), "{err}");

    let fds = [fd("a", "vc-1", "d"), fd("b", "vc-2", "d"), fd("c", "vc-3", "d")];
    let err = add_targets(&vsphere(), &targets(&fds)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Infrastructure can list at most 3 vCenters, but adding the targets would make 4 (vc-src, vc-1, vc-2, vc-3)"
    );
}

fn master_provider_spec() -> Value {
    json!({"workspace": {"server": "vc-src", "datacenter": "src-dc", "datastore": "/src-dc/datastore/ds",
                         "folder": "/src-dc/vm/id-x", "resourcePool": "/src-dc/host/c/Resources"},
           "network": {"devices": [{"networkName": "VM Network"}, {"networkName": ""}]},
           "template": "rhcos-template"})
}

#[test]
fn a_legacy_source_is_described_from_a_machine_and_put_first() {
    let described = describe_source(LEGACY_FAILURE_DOMAIN, "vc-src", &master_provider_spec()).unwrap();
    assert_eq!(
        described,
        json!({"name": "generated-failure-domain", "region": "generated-region", "zone": "generated-zone", "server": "vc-src",
               "topology": {"datacenter": "src-dc", "computeCluster": "/src-dc/host/c", "datastore": "/src-dc/datastore/ds",
                            "networks": ["VM Network"], "resourcePool": "/src-dc/host/c/Resources",
                            "folder": "/src-dc/vm/id-x", "template": "/src-dc/vm/rhcos-template"}})
    );
    let mut legacy = vsphere();
    legacy.as_object_mut().unwrap().remove("failureDomains");
    assert_eq!(undescribed_sources(&legacy, &["vc-dst"]), ["vc-src"]);
    assert!(undescribed_sources(&vsphere(), &["vc-dst"]).is_empty());
    let fds = [fd("t1", "vc-dst", "dst-dc")];
    let t = Targets { legacy_sources: vec![described.clone()], ..targets(&fds) };
    let out = add_targets(&legacy, &t).unwrap();
    assert_eq!(out["failureDomains"][0], described);
    assert_eq!(out["failureDomains"][1]["name"], json!("t1"));
    assert_eq!(add_targets(&out, &t).unwrap(), out, "a re-run does not describe the source twice");
}

#[test]
fn a_source_without_a_usable_machine_is_a_clear_error() {
    let mut spec = master_provider_spec();
    spec["workspace"]["resourcePool"] = json!("");
    let err = describe_source("x", "vc-src", &spec).unwrap_err();
    assert!(err.to_string().contains("does not name a compute cluster"), "{err}");
    let err = describe_source("x", "other", &master_provider_spec()).unwrap_err();
    assert!(err.to_string().contains("workspace.server is \"vc-src\""), "{err}");
    // Relative names are placed in the datacenter.
    let mut spec = master_provider_spec();
    spec["workspace"]["datastore"] = json!("ds2");
    spec["workspace"]["folder"] = json!("f");
    let d = describe_source("x", "vc-src", &spec).unwrap();
    assert_eq!(d["topology"]["datastore"], json!("/src-dc/datastore/ds2"));
    assert_eq!(d["topology"]["folder"], json!("/src-dc/vm/f"));
}

#[test]
fn remove_servers_takes_out_the_source_only_and_is_safe_to_repeat() {
    let fds = [fd("t1", "vc-dst", "dst-dc")];
    let both = add_targets(&vsphere(), &targets(&fds)).unwrap();
    let removal = remove_servers(&both, &["vc-src"]).unwrap();
    assert!(removal.changed());
    assert_eq!(removal.removed_vcenters, ["vc-src"]);
    assert_eq!(removal.removed_failure_domains, ["source-fd"]);
    assert_eq!(vcenter_servers(&removal.vsphere), ["vc-dst"]);
    assert_eq!(failure_domains(&removal.vsphere).len(), 1);
    assert_eq!(removal.vsphere["apiServerInternalIPs"], both["apiServerInternalIPs"]);
    let again = remove_servers(&removal.vsphere, &["vc-src"]).unwrap();
    assert!(!again.changed());
    assert_eq!(again.vsphere, removal.vsphere);
    // The Go controller's Cleanup re-run removed vcenters[0], by then the target.
    let err = remove_servers(&removal.vsphere, &["vc-dst"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to remove vCenter(s) vc-dst from the Infrastructure: no vCenter would be left"
    );
}

fn infra(platform: &str, id: &str) -> Object {
    Object(json!({"spec": {"platformSpec": {"type": platform, "vsphere": vsphere()}},
                  "status": {"infrastructureName": id, "platformStatus": {"type": platform}}}))
}

#[test]
fn platform_and_infra_id_are_checked() {
    assert!(require_vsphere(&infra("VSphere", "a")).is_ok());
    let err = require_vsphere(&infra("AWS", "a")).unwrap_err();
    assert!(err.to_string().contains("not a vSphere cluster (platform \"AWS\")"), "{err}");
    assert_eq!(infra_id(&infra("VSphere", "id-1")).unwrap(), "id-1");
    assert_eq!(infra_id(&infra("VSphere", "")), Err(InfraError::NoInfraId));
    assert_eq!(vsphere_spec(&infra("VSphere", "a")), vsphere());
    assert_eq!(vsphere_spec(&Object(json!({}))), json!({}));
}
