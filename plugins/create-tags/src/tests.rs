use serde_json::json;
use vsm_sdk::Migration;
use vsm_sdk::testing::vsphere::Inventory;
use vsm_sdk::testing::{Direction, FakeHost, JournalRecord, migration};

use super::*;

const VC: &str = "vc-dst";
const INFRA_ID: &str = "cl-x7k2p";

fn fd(name: &str, region: &str, zone: &str, dc: &str, cluster: &str) -> Value {
    json!({"name": name, "region": region, "zone": zone, "server": VC,
           "topology": {"datacenter": dc, "computeCluster": format!("/{dc}/host/{cluster}"),
                        "datastore": format!("/{dc}/datastore/ds"), "networks": ["VM Network"], "template": format!("/{dc}/vm/t")}})
}

fn spec(fds: Vec<Value>) -> Value {
    json!({"targetVCenterCredentialsSecret": {"name": "c"}, "failureDomains": fds,
           "machineSetConfig": {"failureDomain": "a"}, "controlPlaneMachineSetConfig": {"failureDomain": "a"}})
}

fn m() -> Migration {
    migration(
        &spec(vec![fd("a", "us-east", "us-east-1a", "dc", "c1"), fd("b", "us-east", "us-east-1b", "dc", "c2")]),
        &["vc-src"],
    )
}

fn inventory(v: &mut Inventory) {
    v.add_datacenter("dc");
    v.add(ObjectKind::ComputeCluster, "/dc/host/c1", false);
    v.add(ObjectKind::ComputeCluster, "/dc/host/c2", false);
}

fn cluster() -> FakeHost {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
                    "spec": {}, "status": {"infrastructureName": INFRA_ID}}));
    host.vcenter(VC, inventory);
    host.vcenter("vc-src", |_| {});
    host
}

fn tags_on(h: &FakeHost, path: &str) -> Vec<String> {
    h.vcenter(VC, |v| {
        let r = v.by_path(path).unwrap();
        v.attached(&r).unwrap().into_iter().map(|t| format!("{}={}", t.category_name, t.name)).collect()
    })
}

fn snapshot(h: &FakeHost) -> (usize, usize, usize, Vec<JournalRecord>) {
    let (c, t, a) = h.vcenter(VC, |v| (v.categories.len(), v.tags.len(), v.attachments.len()));
    (c, t, a, h.journal())
}

#[test]
fn creates_single_cardinality_categories_tags_and_attachments() {
    let host = cluster();
    let run = host.run::<CreateTags>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message().starts_with(
            "tagged 3 object(s) (3 attachment(s) new): datacenter /dc in vCenter vc-dst has openshift-region us-east;"
        ),
        "{}",
        run.message()
    );
    assert!(
        run.message().ends_with("; the cluster's tag cl-x7k2p (category openshift-cl-x7k2p) is in vCenter(s) vc-dst"),
        "{}",
        run.message()
    );
    host.vcenter(VC, |v| {
        assert_eq!(v.categories.len(), 3);
        for c in &v.categories {
            assert_eq!(c.cardinality, Cardinality::Single);
            let want: &[&str] = if c.name == "openshift-cl-x7k2p" {
                &["VirtualMachine", "ResourcePool", "Folder", "Datastore", "StoragePod"]
            } else {
                &["Datacenter", "ClusterComputeResource"]
            };
            assert_eq!(c.associable_types, want, "{}", c.name);
        }
        let names: Vec<&str> = v.tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["us-east", "us-east-1a", "us-east-1b", INFRA_ID],
            "one region tag shared by both failure domains, and the cluster's tag"
        );
    });
    assert_eq!(tags_on(&host, "/dc"), ["openshift-region=us-east"]);
    assert_eq!(tags_on(&host, "/dc/host/c1"), ["openshift-zone=us-east-1a"]);
    assert_eq!(tags_on(&host, "/dc/host/c2"), ["openshift-zone=us-east-1b"]);
    assert!(host.denials().is_empty(), "{:?}", host.denials());
}

#[test]
fn a_second_run_changes_nothing() {
    let host = cluster();
    host.run::<CreateTags>(Direction::Execute, &m());
    let before = snapshot(&host);
    let run = host.run::<CreateTags>(Direction::Execute, &m());
    assert!(run.message().starts_with("tagged 3 object(s) (0 attachment(s) new)"), "{}", run.message());
    assert_eq!(snapshot(&host), before);
}

#[test]
fn another_tag_of_a_single_category_on_an_object_is_a_clear_failure_and_nothing_is_created() {
    let host = cluster();
    host.vcenter(VC, |v| {
        let (cat, _) = v.ensure_category(&category_spec(REGION_CATEGORY)).unwrap();
        let (tag, _) = v.ensure_tag(&cat, "eu-west", "").unwrap();
        let dc = v.by_path("/dc").unwrap();
        v.attach(&tag, &dc).unwrap();
    });
    let before = snapshot(&host);
    let run = host.run::<CreateTags>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    assert_eq!(
        run.message(),
        "datacenter /dc in vCenter vc-dst already carries tag \"eu-west\" of the single-cardinality category openshift-region, \
         so it cannot also carry \"us-east\" (failure domain a, b): detach \"eu-west\" from it, or set the failure domain's region to \"eu-west\""
    );
    assert_eq!(snapshot(&host), before, "checked before anything was made");
}

#[test]
fn rollback_removes_only_what_this_phase_made() {
    let host = cluster();
    // The region category and tag exist already, and the region tag is on the datacenter.
    host.vcenter(VC, |v| {
        let (cat, _) = v.ensure_category(&category_spec(REGION_CATEGORY)).unwrap();
        let (tag, _) = v.ensure_tag(&cat, "us-east", "").unwrap();
        let dc = v.by_path("/dc").unwrap();
        v.attach(&tag, &dc).unwrap();
    });
    host.run::<CreateTags>(Direction::Execute, &m());
    assert_eq!(
        host.journal().len(),
        7,
        "zone category, two zone tags, two attachments, the cluster's category and tag"
    );
    let run = host.run::<CreateTags>(Direction::Rollback, &m());
    assert_eq!(run.message(), "undid 7 journalled change(s): every object as it was before the phase");
    host.vcenter(VC, |v| {
        let cats: Vec<&str> = v.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cats, ["openshift-region"]);
        assert_eq!(v.tags.len(), 1);
    });
    assert_eq!(tags_on(&host, "/dc"), ["openshift-region=us-east"]);
    assert!(tags_on(&host, "/dc/host/c1").is_empty());
    let run = host.run::<CreateTags>(Direction::Rollback, &m());
    assert_eq!(run.message(), "nothing to undo");
}

#[test]
fn two_failure_domains_giving_one_object_different_tags_are_refused() {
    let host = cluster();
    let m = migration(&spec(vec![fd("a", "r1", "z", "dc", "c1"), fd("b", "r2", "z", "dc", "c1")]), &[]);
    let run = host.run::<CreateTags>(Direction::Execute, &m);
    assert_eq!(
        run.message(),
        "failure domains a and b put datacenter /dc in vCenter vc-dst in different openshift-region tags (r1 and r2); \
         a openshift-region tag is single-valued per object"
    );
}

#[test]
fn missing_objects_are_all_reported() {
    let host = cluster();
    let m = migration(&spec(vec![fd("a", "r", "z", "nodc", "c9"), fd("b", "r", "z2", "dc", "c9")]), &[]);
    let run = host.run::<CreateTags>(Direction::Execute, &m);
    assert_eq!(
        run.message(),
        "datacenter /nodc not found in vCenter vc-dst (failure domain a); compute cluster /nodc/host/c9 not found in vCenter vc-dst (failure domain a); \
         compute cluster /dc/host/c9 not found in vCenter vc-dst (failure domain b)"
    );
}

#[test]
fn a_crash_at_any_point_then_a_rerun_converges() {
    let host = cluster();
    let points = host.crash_everywhere::<CreateTags>(
        Direction::Execute,
        &m(),
        |h, _| {
            h.run::<CreateTags>(Direction::Rollback, &m());
            h.vcenter(VC, |v| assert!(v.categories.is_empty() && v.attachments.is_empty()));
        },
        |h, n| {
            assert_eq!(tags_on(h, "/dc"), ["openshift-region=us-east"], "crash at {n}");
            assert_eq!(tags_on(h, "/dc/host/c2"), ["openshift-zone=us-east-1b"], "crash at {n}");
            h.vcenter(VC, |v| assert_eq!((v.categories.len(), v.tags.len()), (3, 4), "crash at {n}"));
        },
    );
    assert!(points >= 10, "{points}");
}

#[test]
fn plan_mode_reads_for_real_and_creates_nothing() {
    let host = cluster();
    let run = host.plan_run::<CreateTags>(&m());
    assert!(run.message().starts_with("would tag 3 object(s)"), "{}", run.message());
    host.vcenter(VC, |v| assert!(v.categories.is_empty() && v.tags.is_empty() && v.attachments.is_empty()));
    let actions: Vec<String> = host.plan().into_iter().map(|p| p.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "create-tag-category").count(), 3);
    assert_eq!(actions.iter().filter(|a| *a == "attach-tag").count(), 3);
}

#[test]
fn the_clusters_own_tag_is_made_once_per_target_vcenter_and_an_existing_one_is_used() {
    let host = cluster();
    host.vcenter(VC, |v| {
        let (cat, _) = v.ensure_category(&cluster_category_spec(INFRA_ID)).unwrap();
        v.ensure_tag(&cat, INFRA_ID, CLUSTER_TAG_DESCRIPTION).unwrap();
    });
    let run = host.run::<CreateTags>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    host.vcenter(VC, |v| {
        assert_eq!(v.categories.iter().filter(|c| c.name == "openshift-cl-x7k2p").count(), 1);
        assert_eq!(v.tags.iter().filter(|t| t.name == INFRA_ID).count(), 1);
    });
    // The rollback leaves what was there before.
    host.run::<CreateTags>(Direction::Rollback, &m());
    host.vcenter(VC, |v| {
        let cats: Vec<&str> = v.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cats, ["openshift-cl-x7k2p"]);
    });
}

#[test]
fn without_the_infrastructure_nothing_is_made() {
    let host = FakeHost::new();
    host.vcenter(VC, inventory);
    let run = host.run::<CreateTags>(Direction::Execute, &m());
    assert!(run.failed(), "{:?}", run.outcome);
    assert_eq!(run.message(), "Infrastructure cluster does not exist");
    host.vcenter(VC, |v| assert!(v.categories.is_empty() && v.tags.is_empty()));
}
