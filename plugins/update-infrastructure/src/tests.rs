use serde_json::json;
use vsm_sdk::testing::{Direction, FakeHost, migration};
use vsm_sdk::types::names::MACHINE_ROLE_LABEL;
use vsm_sdk::{KubeError, Migration};

use super::*;

fn source_fd() -> Value {
    json!({"name": "source-fd", "region": "src-region", "zone": "src-zone-a", "server": "vc-src",
           "topology": {"datacenter": "src-dc", "computeCluster": "/src-dc/host/c", "datastore": "/src-dc/datastore/ds",
                        "networks": ["VM Network"], "resourcePool": "/src-dc/host/c/Resources", "folder": "/src-dc/vm/cl-1"}})
}

fn infra(with_fds: bool) -> Value {
    let mut vsphere = json!({
        "vcenters": [{"server": "vc-src", "port": 443, "datacenters": ["src-dc"]}],
        "apiServerInternalIPs": ["10.0.0.5"], "ingressIPs": ["10.0.0.6"], "machineNetworks": ["10.0.0.0/16"],
    });
    if with_fds {
        vsphere["failureDomains"] = json!([source_fd()]);
    }
    json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
           "metadata": {"name": "cluster", "labels": {"a": "b"}},
           "spec": {"cloudConfig": {"name": "cloud-provider-config", "key": "config"},
                    "platformSpec": {"type": "VSphere", "vsphere": vsphere}},
           "status": {"infrastructureName": "cl-1", "platform": "VSphere", "platformStatus": {"type": "VSphere"}}})
}

fn target_fd(name: &str, dc: &str) -> Value {
    json!({"name": name, "region": "dst-region", "zone": format!("zone-{name}"), "server": "vc-dst",
           "topology": {"datacenter": dc, "computeCluster": format!("/{dc}/host/c"), "datastore": format!("/{dc}/datastore/ds"),
                        "networks": ["VM Network"], "template": format!("/{dc}/vm/rhcos")}})
}

fn m(fds: Vec<Value>) -> Migration {
    migration(
        &json!({"targetVCenterCredentialsSecret": {"name": "c"}, "failureDomains": fds,
                "vcenters": [{"server": "vc-dst", "port": 8443}],
                "machineSetConfig": {"failureDomain": "t1"}, "controlPlaneMachineSetConfig": {"failureDomain": "t1"}}),
        &["vc-src"],
    )
}

fn master(i: usize) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
           "metadata": {"name": format!("cl-1-master-{i}"), "namespace": MACHINE_API_NAMESPACE,
                        "labels": {MACHINE_ROLE_LABEL: "master"}},
           "spec": {"providerSpec": {"value": {
               "workspace": {"server": "vc-src", "datacenter": "src-dc", "datastore": "/src-dc/datastore/ds",
                             "folder": "/src-dc/vm/cl-1", "resourcePool": "/src-dc/host/c/Resources"},
               "network": {"devices": [{"networkName": "VM Network"}]}, "template": "cl-1-rhcos"}}}})
}

fn cluster(with_fds: bool) -> FakeHost {
    let host = FakeHost::new();
    host.put(infra(with_fds));
    for i in 0..3 {
        host.put(master(i));
    }
    host
}

fn live(h: &FakeHost) -> Object {
    h.get(&types::INFRASTRUCTURE, None, "cluster").unwrap()
}

fn names(o: &Object) -> Vec<String> {
    o.array_at("/spec/platformSpec/vsphere/failureDomains")
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn adds_the_target_vcenter_and_failure_domains_and_keeps_everything_else() {
    let host = cluster(true);
    let before = live(&host);
    let run = host
        .run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dc-b"), target_fd("t2", "dc-a")]));
    assert_eq!(run.message(), "updated the Infrastructure: vCenter(s) vc-dst and failure domain(s) t1, t2");
    let after = live(&host);
    assert_eq!(
        after.at("/spec/platformSpec/vsphere/vcenters"),
        Some(&json!([{"server": "vc-src", "port": 443, "datacenters": ["src-dc"]},
                     {"server": "vc-dst", "port": 8443, "datacenters": ["dc-b", "dc-a"]}]))
    );
    assert_eq!(names(&after), ["source-fd", "t1", "t2"]);
    assert_eq!(after.at("/spec/platformSpec/vsphere/failureDomains/1/topology/folder"), Some(&json!("/dc-b/vm/cl-1")));
    for field in ["/metadata/labels", "/spec/cloudConfig", "/spec/platformSpec/vsphere/apiServerInternalIPs", "/status"]
    {
        assert_eq!(after.at(field), before.at(field), "{field}");
    }
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn a_rerun_yields_the_identical_object_without_writing() {
    let host = cluster(true);
    let m = m(vec![target_fd("t1", "dc-b"), target_fd("t2", "dc-a")]);
    host.run::<UpdateInfrastructure>(Direction::Execute, &m);
    let once = live(&host);
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m);
    assert_eq!(run.message(), "the Infrastructure already lists vCenter(s) vc-dst and failure domain(s) t1, t2");
    assert_eq!(live(&host), once, "no duplicated failure domains, same resourceVersion");
}

#[test]
fn a_legacy_install_gets_its_source_described_first() {
    let host = cluster(false);
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(run.message().ends_with("the source vCenter(s) vc-src first described as failure domain(s) (generated-failure-domain) from the control-plane machines"), "{}", run.message());
    let after = live(&host);
    assert_eq!(names(&after), ["generated-failure-domain", "t1"]);
    assert_eq!(
        after.at("/spec/platformSpec/vsphere/failureDomains/0/topology"),
        Some(&json!({"datacenter": "src-dc", "computeCluster": "/src-dc/host/c", "datastore": "/src-dc/datastore/ds",
                     "networks": ["VM Network"], "resourcePool": "/src-dc/host/c/Resources", "folder": "/src-dc/vm/cl-1",
                     "template": "/src-dc/vm/cl-1-rhcos"}))
    );
    let once = live(&host);
    host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert_eq!(live(&host), once);
}

#[test]
fn a_legacy_install_without_a_master_on_the_source_is_a_clear_failure() {
    let host = FakeHost::new();
    host.put(infra(false));
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "the Infrastructure has no failure domains, and source vCenter vc-src cannot be described as one: \
         no control-plane Machine in openshift-machine-api runs there (workspace.server vc-src)"
    );
}

#[test]
fn a_conflict_is_retried_on_the_fresh_object() {
    let host = cluster(true);
    let mut fired = false;
    host.on_kube("update", "Infrastructure", move |h| {
        if !std::mem::replace(&mut fired, true) {
            h.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
                o["metadata"]["annotations"] = json!({"someone": "else"})
            });
        }
        None
    });
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(run.done(), "{:?}", run.outcome);
    let after = live(&host);
    assert_eq!(after.annotation("someone"), Some("else"));
    assert_eq!(names(&after), ["source-fd", "t1"]);
}

#[test]
fn the_api_servers_refusal_is_explained() {
    let host = cluster(true);
    host.on_kube("update", "Infrastructure", |_| {
        Some(KubeError::Invalid(
            "spec.platformSpec.vsphere.vcenters: Invalid value: vcenters cannot be added or removed once set".into(),
        ))
    });
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(run.failed() && !run.retryable());
    assert!(run.message().starts_with("the API server refused the Infrastructure update: spec.platformSpec.vsphere.vcenters: Invalid value: vcenters cannot be added or removed once set. The Infrastructure CRD of this OpenShift release does not allow adding a vCenter"), "{}", run.message());
}

#[test]
fn bad_input_names_the_problem() {
    let host = cluster(true);
    let mut clash = target_fd("source-fd", "dst-dc");
    clash["server"] = json!("vc-dst");
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![clash]));
    assert_eq!(
        run.message(),
        "failure domain \"source-fd\" already exists in the Infrastructure for vCenter vc-src, but the migration puts it on vc-dst: \
         rename the target failure domain in spec.failureDomains"
    );
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| o["spec"]["platformSpec"]["type"] = json!("AWS"));
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(
        run.message().starts_with("Infrastructure cluster is not a vSphere cluster (platform \"AWS\")"),
        "{}",
        run.message()
    );
}

#[test]
fn rollback_restores_the_before_image() {
    let host = cluster(true);
    let before = live(&host);
    let m = m(vec![target_fd("t1", "dst-dc")]);
    host.run::<UpdateInfrastructure>(Direction::Execute, &m);
    let run = host.run::<UpdateInfrastructure>(Direction::Rollback, &m);
    assert_eq!(run.message(), "undid 1 journalled change(s): every object as it was before the phase");
    let after = live(&host);
    for field in ["/spec", "/metadata/labels", "/metadata/annotations", "/status"] {
        assert_eq!(after.at(field), before.at(field), "{field}");
    }
    assert_eq!(host.run::<UpdateInfrastructure>(Direction::Rollback, &m).message(), "nothing to undo");
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges() {
    let host = cluster(false);
    let m = m(vec![target_fd("t1", "dst-dc")]);
    let mut expected = None;
    let points = host.crash_everywhere::<UpdateInfrastructure>(
        Direction::Execute,
        &m,
        |h, _| {
            h.run::<UpdateInfrastructure>(Direction::Rollback, &m);
            assert_eq!(names(&live(h)), Vec::<String>::new());
        },
        |h, n| {
            let spec = live(h).at("/spec").cloned();
            let first = expected.get_or_insert_with(|| spec.clone());
            assert_eq!(&spec, first, "crash at {n}");
            assert_eq!(names(&live(h)), ["generated-failure-domain", "t1"], "crash at {n}");
        },
    );
    assert!(points >= 3, "{points}");
}

#[test]
fn plan_mode_changes_nothing() {
    let host = cluster(true);
    let before = live(&host);
    let run = host.plan_run::<UpdateInfrastructure>(&m(vec![target_fd("t1", "dst-dc")]));
    assert_eq!(run.message(), "would update the Infrastructure: vCenter(s) vc-dst and failure domain(s) t1");
    assert_eq!(live(&host), before);
    assert_eq!(host.plan().len(), 1);
}

#[test]
fn an_infrastructure_without_the_recorded_source_is_never_written() {
    // The Go controller treated a missing vSphere spec as success; writing the targets
    // alone would drop the source vCenter the cluster still runs on.
    let host = cluster(true);
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"] = json!({});
    });
    let before = live(&host);
    let run = host.run::<UpdateInfrastructure>(Direction::Execute, &m(vec![target_fd("t1", "dst-dc")]));
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "the Infrastructure does not list the source vCenter(s) vc-src recorded when the migration started \
         (spec.platformSpec.vsphere.vcenters: empty); refusing to write vCenters without them"
    );
    assert_eq!(live(&host), before);
}
