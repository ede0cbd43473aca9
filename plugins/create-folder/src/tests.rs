use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::{Direction, FakeHost, migration};

use super::*;

const VC: &str = "vc-dst";
const ID: &str = "cl-x7k2p";

fn fd(name: &str, folder: Option<&str>) -> Value {
    let mut f = json!({"name": name, "region": "r", "zone": name, "server": VC,
           "topology": {"datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/ds",
                        "networks": ["VM Network"], "template": "/dc/vm/t"}});
    if let Some(folder) = folder {
        f["topology"]["folder"] = json!(folder);
    }
    f
}

fn m(fds: Vec<Value>) -> Migration {
    migration(
        &json!({"targetVCenterCredentialsSecret": {"name": "c"}, "failureDomains": fds,
                "machineSetConfig": {"failureDomain": "a"}, "controlPlaneMachineSetConfig": {"failureDomain": "a"}}),
        &["vc-src"],
    )
}

fn cluster() -> FakeHost {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
                    "spec": {"platformSpec": {"type": "VSphere"}}, "status": {"infrastructureName": ID}}));
    host.vcenter(VC, |v| {
        v.add_datacenter("dc");
    });
    host
}

fn exists(h: &FakeHost, path: &str) -> bool {
    h.vcenter(VC, |v| v.by_path(path).is_some())
}

#[test]
fn the_default_folder_is_named_after_the_infra_id() {
    let host = cluster();
    let run = host.run::<CreateFolder>(Direction::Execute, &m(vec![fd("a", None)]));
    assert_eq!(run.message(), "VM folders ready in vCenter vc-dst: /dc/vm/cl-x7k2p created");
    assert!(exists(&host, "/dc/vm/cl-x7k2p"));
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn topology_folder_is_honoured_and_nested_paths_are_made_level_by_level() {
    let host = cluster();
    let run = host.run::<CreateFolder>(
        Direction::Execute,
        &m(vec![fd("a", Some("/dc/vm/team/cluster-1")), fd("b", Some("/dc/vm/team/cluster-1/"))]),
    );
    assert_eq!(run.message(), "VM folders ready in vCenter vc-dst: /dc/vm/team/cluster-1 created");
    assert!(exists(&host, "/dc/vm/team") && exists(&host, "/dc/vm/team/cluster-1"));
    assert!(!exists(&host, "/dc/vm/cl-x7k2p"), "the Go controller always made <infraID>");
    let created: Vec<Created> = serde_json::from_str(&host.phase_state("CreateFolder", CREATED_KEY).unwrap()).unwrap();
    assert_eq!(
        created,
        [Created { server: VC.into(), path: "/dc/vm/team/cluster-1".into(), from: "/dc/vm/team".into() }]
    );
}

#[test]
fn a_second_run_changes_nothing() {
    let host = cluster();
    let m = m(vec![fd("a", Some("/dc/vm/team/cluster-1"))]);
    host.run::<CreateFolder>(Direction::Execute, &m);
    let (state, journal) = (host.all_state(), host.journal());
    let run = host.run::<CreateFolder>(Direction::Execute, &m);
    assert_eq!(run.message(), "VM folders ready in vCenter vc-dst: /dc/vm/team/cluster-1 existed");
    assert_eq!((host.all_state(), host.journal()), (state, journal));
}

#[test]
fn rollback_removes_only_the_levels_this_migration_made() {
    let host = cluster();
    host.vcenter(VC, |v| {
        v.create_folder("/dc/vm/team").unwrap();
    });
    let m = m(vec![fd("a", Some("/dc/vm/team/cluster-1/nodes"))]);
    host.run::<CreateFolder>(Direction::Execute, &m);
    let run = host.run::<CreateFolder>(Direction::Rollback, &m);
    assert_eq!(
        run.message(),
        "removed the folder(s) this migration created: /dc/vm/team/cluster-1/nodes, /dc/vm/team/cluster-1"
    );
    assert!(exists(&host, "/dc/vm/team"), "a level that existed before stays");
    assert!(!exists(&host, "/dc/vm/team/cluster-1"));
    assert_eq!(
        host.run::<CreateFolder>(Direction::Rollback, &m).message(),
        "nothing to undo: this phase created no folder"
    );
}

#[test]
fn rollback_keeps_a_folder_that_is_not_empty_and_still_finishes() {
    let host = cluster();
    let m = m(vec![fd("a", Some("/dc/vm/team/cluster-1"))]);
    host.run::<CreateFolder>(Direction::Execute, &m);
    host.vcenter(VC, |v| {
        v.add(ObjectKind::VirtualMachine, "/dc/vm/team/cluster-1/leftover-vm", false);
    });
    let run = host.run::<CreateFolder>(Direction::Rollback, &m);
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(
        run.message(),
        "removed no folder; kept /dc/vm/team/cluster-1 in vCenter vc-dst (folder /dc/vm/team/cluster-1 is not empty (1 object(s), e.g. /dc/vm/team/cluster-1/leftover-vm)) because it is not empty; remove it by hand once it is"
    );
    assert!(exists(&host, "/dc/vm/team/cluster-1") && exists(&host, "/dc/vm/team"));
    assert!(host.events().iter().any(|(_, r, _)| r == "FolderKept"));
    // Once emptied, a second rollback finishes the job.
    host.vcenter(VC, |v| {
        v.objects.remove("/dc/vm/team/cluster-1/leftover-vm");
    });
    let run = host.run::<CreateFolder>(Direction::Rollback, &m);
    assert_eq!(run.message(), "removed the folder(s) this migration created: /dc/vm/team/cluster-1, /dc/vm/team");
}

#[test]
fn a_folder_outside_its_datacenter_or_a_missing_datacenter_is_refused() {
    let host = cluster();
    let run =
        host.run::<CreateFolder>(Direction::Execute, &m(vec![fd("a", Some("/other/vm/x")), fd("b", Some("/dc/vm/"))]));
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "failure domain a: topology.folder \"/other/vm/x\" is not a folder inside datacenter dc's VM folder (/dc/vm/<name>); \
         failure domain b: topology.folder \"/dc/vm\" is not a folder inside datacenter dc's VM folder (/dc/vm/<name>)"
    );
    let mut f = fd("a", None);
    f["topology"]["datacenter"] = json!("nodc");
    let run = host.run::<CreateFolder>(Direction::Execute, &m(vec![f]));
    assert_eq!(
        run.message(),
        "datacenter nodc (its VM folder /nodc/vm) not found in vCenter vc-dst (failure domain a)"
    );
}

#[test]
fn without_an_infrastructure_the_infra_id_is_missing() {
    let host = cluster();
    host.remove(&types::INFRASTRUCTURE, None, "cluster");
    let run = host.run::<CreateFolder>(Direction::Execute, &m(vec![fd("a", None)]));
    assert_eq!(run.message(), "Infrastructure cluster does not exist");
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges_and_rollback_still_cleans_up() {
    let host = cluster();
    let m = m(vec![fd("a", Some("/dc/vm/team/cluster-1")), fd("b", None)]);
    let points = host.crash_everywhere::<CreateFolder>(
        Direction::Execute,
        &m,
        |h, _| {
            h.run::<CreateFolder>(Direction::Rollback, &m);
            assert!(!exists(h, "/dc/vm/team") && !exists(h, "/dc/vm/cl-x7k2p"));
        },
        |h, n| {
            assert!(exists(h, "/dc/vm/team/cluster-1") && exists(h, "/dc/vm/cl-x7k2p"), "crash at {n}");
        },
    );
    assert!(points >= 8, "{points}");
    host.run::<CreateFolder>(Direction::Rollback, &m);
    assert!(!exists(&host, "/dc/vm/team"));
}

#[test]
fn plan_mode_creates_nothing() {
    let host = cluster();
    let run = host.plan_run::<CreateFolder>(&m(vec![fd("a", Some("/dc/vm/team/cluster-1"))]));
    assert_eq!(run.message(), "VM folders planned in vCenter vc-dst: /dc/vm/team/cluster-1 to be created");
    assert!(!exists(&host, "/dc/vm/team"));
    assert_eq!(host.phase_state("CreateFolder", CREATED_KEY), None);
    assert_eq!(host.plan().len(), 1);
}
