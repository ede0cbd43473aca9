use serde_json::json;
use vsm_common::creds::encode;
use vsm_sdk::testing::{Direction, FakeHost, migration};
use vsm_sdk::{CategorySpec, Migration, ObjectRef};

use super::*;
use vsm_common::pem::test_certificate as mk_cert;

fn m(sources: &[&str]) -> Migration {
    migration(
        &json!({
            "targetVCenterCredentialsSecret": {"name": "t"},
            "failureDomains": [{"name": "fd-b", "region": "r", "zone": "z", "server": "vc-b",
                "topology": {"datacenter": "dc-b", "computeCluster": "/dc-b/host/c", "datastore": "/dc-b/datastore/ds",
                             "networks": ["n"], "template": "/dc-b/vm/t"}}],
            "machineSetConfig": {"failureDomain": "fd-b"},
            "controlPlaneMachineSetConfig": {"failureDomain": "fd-b"}
        }),
        sources,
    )
}

const CONFIG: &str = "# keep\nvcenter:\n  vc-a:\n    server: vc-a\n    datacenters:\n    - dc-a\n  vc-b:\n    server: vc-b\n    datacenters:\n    - dc-b\nlabels: {}\n";

fn cluster() -> FakeHost {
    let h = FakeHost::new();
    h.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
        "spec": {"platformSpec": {"type": "VSphere", "vsphere": {
            "vcenters": [{"server": "vc-a", "datacenters": ["dc-a"]}, {"server": "vc-b", "datacenters": ["dc-b"]}],
            "failureDomains": [{"name": "fd-a", "server": "vc-a"}, {"name": "fd-b", "server": "vc-b"}],
            "apiServerInternalIPs": ["10.0.0.5"]}}},
        "status": {"infrastructureName": "inf"}}));
    h.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": CLOUD_CONFIG, "namespace": CLOUD_CONFIG_NAMESPACE}, "data": {"config": CONFIG}}));
    h.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": VSPHERE_CREDS, "namespace": VSPHERE_CREDS_NAMESPACE},
                 "data": {"vc-a.username": encode("a"), "vc-a.password": encode("pa"),
                          "vc-b.username": encode("b"), "vc-b.password": encode("pb")}}));
    h
}

fn snapshot(h: &FakeHost) -> (Value, String, Value) {
    (
        h.get(&types::INFRASTRUCTURE, None, "cluster").unwrap().at("/spec").cloned().unwrap(),
        h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)
            .unwrap()
            .str_at("/data/config")
            .unwrap()
            .into(),
        h.get(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS).unwrap().at("/data").cloned().unwrap(),
    )
}

#[test]
fn removes_only_the_recorded_source_and_a_rerun_never_touches_the_target() {
    let h = cluster();
    let before = snapshot(&h);
    let run = h.run::<Cleanup>(Direction::Execute, &m(&["vc-a"]));
    assert!(run.done(), "{:?}", run.outcome);
    let (infra, config, data) = snapshot(&h);
    assert_eq!(infra["platformSpec"]["vsphere"]["vcenters"], json!([{"server": "vc-b", "datacenters": ["dc-b"]}]));
    assert_eq!(infra["platformSpec"]["vsphere"]["failureDomains"], json!([{"name": "fd-b", "server": "vc-b"}]));
    assert_eq!(infra["platformSpec"]["vsphere"]["apiServerInternalIPs"], json!(["10.0.0.5"]));
    assert_eq!(config, "# keep\nvcenter:\n  vc-b:\n    server: vc-b\n    datacenters:\n    - dc-b\nlabels: {}\n");
    assert_eq!(data, json!({"vc-b.username": encode("b"), "vc-b.password": encode("pb")}));

    // Now vcenters[0] is the target: the Go controller's re-run removed it. Ours removes
    // nothing, because the source is the recorded one.
    let after = snapshot(&h);
    let again = h.run::<Cleanup>(Direction::Execute, &m(&["vc-a"]));
    assert!(again.message().starts_with("nothing left to remove"), "{}", again.message());
    assert_eq!(snapshot(&h), after);

    let back = h.run::<Cleanup>(Direction::Rollback, &m(&["vc-a"]));
    assert!(back.done(), "{:?}", back.outcome);
    assert_eq!(snapshot(&h), before);
}

#[test]
fn unsafe_inputs_are_refused_before_anything_changes() {
    let h = cluster();
    let before = snapshot(&h);
    let run = h.run::<Cleanup>(Direction::Execute, &m(&[]));
    assert!(run.message().contains("no source vCenter was recorded"), "{}", run.message());
    let run = h.run::<Cleanup>(Direction::Execute, &m(&["vc-b"]));
    assert!(
        run.message().contains("recorded as a source and named by spec.failureDomains as a target"),
        "{}",
        run.message()
    );
    h.edit(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS, |s| {
        s["data"].as_object_mut().unwrap().remove("vc-b.password");
    });
    let run = h.run::<Cleanup>(Direction::Execute, &m(&["vc-a"]));
    assert!(run.message().contains("has no credentials for target vCenter(s) vc-b"), "{}", run.message());
    assert_eq!(snapshot(&h).0, before.0);
    assert_eq!(snapshot(&h).1, before.1);
}

#[test]
fn the_source_ca_leaves_the_cloud_config_bundle_but_a_ca_a_target_shares_stays() {
    let h = cluster();
    // vc-a was given CAs 1 and 2; vc-b (the target) CA 2: one corporate CA signs both.
    for (name, pem) in [("ca-a", format!("{}{}", mk_cert(1), mk_cert(2))), ("ca-b", mk_cert(2))] {
        h.put(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "vsphere-migration"},
                     "data": {"ca.crt": encode(&pem)}}),
        );
    }
    h.edit(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG, |cm| {
        cm["data"]["ca-bundle.pem"] = json!(format!("# cloud\n{}{}{}", mk_cert(3), mk_cert(1), mk_cert(2)));
    });
    h.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Proxy", "metadata": {"name": "cluster"},
                 "spec": {"trustedCA": {"name": "user-ca-bundle"}}}));
    let user = format!("{}{}", mk_cert(1), mk_cert(2));
    h.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "user-ca-bundle", "namespace": "openshift-config"},
                 "data": {"ca-bundle.crt": user}}));
    let mut m = m(&["vc-a"]);
    let mut spec: Value = serde_json::from_str(&m.spec_json).unwrap();
    spec["vcenters"] =
        json!([{"server": "vc-a", "caSecret": {"name": "ca-a"}}, {"server": "vc-b", "caSecret": {"name": "ca-b"}}]);
    m.spec_json = spec.to_string();

    let run = h.run::<Cleanup>(Direction::Execute, &m);
    assert!(run.done(), "{:?}", run.outcome);
    let cm = h.get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG).unwrap();
    assert_eq!(cm.str_at("/data/ca-bundle.pem").unwrap(), format!("# cloud\n{}{}", mk_cert(3), mk_cert(2)));
    let one = pem::certificates(&mk_cert(1)).unwrap()[0].fingerprint.clone();
    assert!(run.message().contains(&format!("ca-bundle.pem: source CA(s) {}", &one[..16])), "{}", run.message());
    // The cluster-wide trust is left alone, and said so.
    let user_after = h.get(&types::CONFIG_MAP, Some("openshift-config"), "user-ca-bundle").unwrap();
    assert_eq!(user_after.str_at("/data/ca-bundle.crt"), Some(user.as_str()));
    assert!(run.message().contains("left in ConfigMap openshift-config/user-ca-bundle"), "{}", run.message());
}

/// The source as the installer left it: the cluster's folder (empty once the machines are
/// gone), its tag category and tag, still attached to the template beside the folder.
fn installer_objects(h: &FakeHost) -> ObjectRef {
    h.edit(&types::INFRASTRUCTURE, None, "cluster", |i| {
        i["spec"]["platformSpec"]["vsphere"]["failureDomains"][0] = json!({"name": "fd-a", "region": "r", "zone": "a",
            "server": "vc-a", "topology": {"datacenter": "dc-a", "computeCluster": "/dc-a/host/c",
            "datastore": "/dc-a/datastore/ds", "networks": ["n"], "folder": "/dc-a/vm/inf"}});
    });
    h.vcenter("vc-a", |v| {
        v.add_datacenter("dc-a");
        v.create_folder("/dc-a/vm/inf").unwrap();
        let template = v.add(ObjectKind::VirtualMachine, "/dc-a/vm/inf-rhcos", true);
        let spec = CategorySpec {
            name: "openshift-inf".into(),
            description: "Added by openshift-install do not remove".into(),
            cardinality: vsm_sdk::Cardinality::Single,
            associable_types: vec!["VirtualMachine".into(), "Folder".into()],
        };
        let (category, _) = v.ensure_category(&spec).unwrap();
        let (tag, _) = v.ensure_tag(&category, "inf", "Added by openshift-install do not remove").unwrap();
        v.attach(&tag, &template).unwrap();
        template
    })
}

/// The migration with `spec.cleanup.sourceVSphereObjects` on.
fn removing_source_objects(mut m: Migration) -> Migration {
    let mut spec: Value = serde_json::from_str(&m.spec_json).unwrap();
    spec["cleanup"] = json!({"sourceVSphereObjects": true});
    m.spec_json = spec.to_string();
    m
}

fn installer_objects_left(h: &FakeHost) -> (bool, Vec<String>, bool) {
    h.vcenter("vc-a", |v| {
        let category = v.find_category("openshift-inf").unwrap();
        let tags: Vec<String> = category
            .as_ref()
            .map(|c| v.list_tags(&c.id).unwrap().into_iter().map(|t| t.name).collect())
            .unwrap_or_default();
        let attached = v.by_path("/dc-a/vm/inf-rhcos").map(|t| !v.attached(&t).unwrap().is_empty()).unwrap_or(false);
        (category.is_some(), tags, v.by_path("/dc-a/vm/inf").is_some() && attached)
    })
}

#[test]
fn the_installers_source_objects_stay_by_default_and_are_named() {
    let h = cluster();
    installer_objects(&h);
    let run = h.run::<Cleanup>(Direction::Execute, &m(&["vc-a"]));
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message().ends_with(
            "; left in the source (spec.cleanup.sourceVSphereObjects removes them): vCenter vc-a: tag category openshift-inf, folder /dc-a/vm/inf"
        ),
        "{}",
        run.message()
    );
    assert_eq!(installer_objects_left(&h), (true, vec!["inf".to_string()], true));
}

#[test]
fn asked_for_the_installers_source_objects_go_journalled_and_come_back_on_rollback() {
    let h = cluster();
    installer_objects(&h);
    let m = removing_source_objects(m(&["vc-a"]));

    let run = h.run::<Cleanup>(Direction::Execute, &m);
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message().contains(
            "source vSphere objects: vCenter vc-a: tag category openshift-inf with tag(s) inf, folder /dc-a/vm/inf"
        ),
        "{}",
        run.message()
    );
    assert_eq!(installer_objects_left(&h), (false, vec![], false));
    let subjects: Vec<String> = h.journal().iter().map(|r| r.entry.subject()).collect();
    assert!(subjects.contains(&"vCenter vc-a removed tag category openshift-inf".to_string()), "{subjects:?}");
    assert!(subjects.contains(&"vCenter vc-a removed folder /dc-a/vm/inf".to_string()), "{subjects:?}");
    // The template stays: nothing but the category, its tags and the empty folder goes.
    assert!(h.vcenter("vc-a", |v| v.by_path("/dc-a/vm/inf-rhcos").is_some()));

    // A re-run (after a crash) finds nothing left and changes nothing.
    let again = h.run::<Cleanup>(Direction::Execute, &m);
    assert!(again.message().starts_with("nothing left to remove"), "{}", again.message());

    let back = h.run::<Cleanup>(Direction::Rollback, &m);
    assert!(back.done(), "{:?}", back.outcome);
    assert_eq!(installer_objects_left(&h), (true, vec!["inf".to_string()], true), "recreated and re-attached");
}

#[test]
fn a_folder_with_something_in_it_stays_and_says_what() {
    let h = cluster();
    installer_objects(&h);
    h.vcenter("vc-a", |v| v.add(ObjectKind::VirtualMachine, "/dc-a/vm/inf/leftover-vm", false));
    let m = removing_source_objects(m(&["vc-a"]));
    let run = h.run::<Cleanup>(Direction::Execute, &m);
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message()
            .contains("; left in the source: vCenter vc-a: folder /dc-a/vm/inf (folder /dc-a/vm/inf is not empty"),
        "{}",
        run.message()
    );
    assert!(h.vcenter("vc-a", |v| v.by_path("/dc-a/vm/inf/leftover-vm").is_some()));
    assert!(!h.journal().iter().any(|r| r.entry.subject().contains("removed folder")), "no entry for what stayed");
}
