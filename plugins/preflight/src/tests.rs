use serde_json::json;
use vsm_common::creds::encode;
use vsm_sdk::testing::{Direction, FakeHost, migration};
use vsm_sdk::{KubeError, Migration, VsphereError};

use super::*;

const SRC: &str = "vc-src";
const DST: &str = "vc-dst";

fn spec() -> Value {
    json!({"targetVCenterCredentialsSecret": {"name": "target-creds"},
           "failureDomains": [{"name": "target-fd", "region": "r", "zone": "z", "server": DST,
               "topology": {"datacenter": "dst-dc", "computeCluster": "/dst-dc/host/c", "datastore": "/dst-dc/datastore/ds",
                            "networks": ["VM Network"], "resourcePool": "/dst-dc/host/c/Resources", "template": "/dst-dc/vm/rhcos"}}],
           "machineSetConfig": {"failureDomain": "target-fd"},
           "controlPlaneMachineSetConfig": {"failureDomain": "target-fd"}})
}

fn m() -> Migration {
    migration(&spec(), &[SRC])
}

/// What the API server answers a dry run that a CEL rule of the Infrastructure CRD refuses.
const REFUSED: &str = "Infrastructure.config.openshift.io \"cluster\" is invalid: spec.platformSpec.vsphere.vcenters: \
                       Invalid value: \"array\": vcenters cannot be added or removed once set";

fn condition(t: &str, s: &str) -> Value {
    json!({"type": t, "status": s, "reason": "R", "message": format!("{t} is {s}")})
}

fn machine_set(name: &str, pool: &str, replicas: i64) -> Value {
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
           "metadata": {"name": name, "namespace": "openshift-machine-api"},
           "spec": {"replicas": replicas, "template": {"spec": {"providerSpec": {"value": {"workspace": {
               "server": SRC, "datacenter": "src-dc", "datastore": "/src-dc/datastore/ds", "resourcePool": pool}}}}}}})
}

fn cluster() -> FakeHost {
    let host = FakeHost::new();
    host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
        "spec": {"platformSpec": {"type": "VSphere", "vsphere": {
            "vcenters": [{"server": SRC, "port": 443, "datacenters": ["src-dc"]}],
            "failureDomains": [{"name": "source-fd", "region": "sr", "zone": "sz", "server": SRC,
                "topology": {"datacenter": "src-dc", "computeCluster": "/src-dc/host/c", "datastore": "/src-dc/datastore/ds", "networks": ["VM Network"]}}]}}},
        "status": {"infrastructureName": "cl-1", "platformStatus": {"type": "VSphere"}}}));
    host.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vsphere-creds", "namespace": "kube-system"},
                    "data": {"vc-src.username": encode("u"), "vc-src.password": encode("p")}}),
    );
    host.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "target-creds", "namespace": "vsphere-migration"},
                    "data": {"vc-dst.username": encode("u"), "vc-dst.password": encode("p")}}));
    host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "FeatureGate", "metadata": {"name": "cluster"},
        "spec": {}, "status": {"featureGates": [{"version": "4.20.0", "enabled": [{"name": "GatewayAPI"}],
                                                  "disabled": [{"name": "VSphereMultiVCenterDay2"}]}]}}));
    for name in ["authentication", "machine-api", "machine-config", "storage"] {
        host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name},
                        "status": {"conditions": [condition("Available", "True"), condition("Degraded", "False")]}}));
    }
    host.put(json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"},
                    "status": {"conditions": [condition("Progressing", "False")]}}));
    host.put(machine_set("cl-1-worker-0", "/src-dc/host/c/Resources", 2));
    for name in ["master-0", "worker-0"] {
        host.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                        "status": {"conditions": [condition("Ready", "True")]}}));
    }
    host.vcenter(SRC, |v| {
        v.add_datacenter("src-dc");
        v.add(ObjectKind::ComputeCluster, "/src-dc/host/c", false);
        v.add(ObjectKind::ResourcePool, "/src-dc/host/c/Resources", false);
        v.add(ObjectKind::Datastore, "/src-dc/datastore/ds", false);
        v.add(ObjectKind::Network, "/src-dc/network/VM Network", false);
    });
    host.vcenter(DST, |v| {
        v.add_datacenter("dst-dc");
        v.add(ObjectKind::ComputeCluster, "/dst-dc/host/c", false);
        v.add(ObjectKind::ResourcePool, "/dst-dc/host/c/Resources", false);
        v.add(ObjectKind::Datastore, "/dst-dc/datastore/ds", false);
        v.add(ObjectKind::Network, "/dst-dc/network/VM Network", false);
        v.add(ObjectKind::VirtualMachine, "/dst-dc/vm/rhcos", true);
    });
    host
}

#[test]
fn a_healthy_cluster_passes_and_nothing_is_changed() {
    let host = cluster();
    let before = host.list(&types::INFRASTRUCTURE);
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert_eq!(
        run.message(),
        "all checks passed: 1 target failure domain(s) well-formed; Infrastructure is vSphere (infraID cl-1), sources vc-src; \
         the API server accepts the Infrastructure with the targets added, 2 vCenters (a dry run; feature set Default, \
         VSphereMultiVCenterDay2 off); credentials present for every source and target vCenter; \
         the cloud credential operator copies vsphere-creds to the components (passthrough); \
         1 MachineSet(s) have a destination: cl-1-worker-0 → cl-1-worker-0-target-fd in target-fd (2); \
         source vCenter vc-src (VMware vCenter Server (fake) 8.0.3); 4 source topology objects found in vCenter vc-src; target vCenter vc-dst (VMware vCenter Server (fake) 8.0.3); \
         6 topology objects found in vCenter vc-dst; target vCenter vc-dst: its user holds the privileges OpenShift needs on 6 objects; 4 cluster operators and 2 nodes healthy; \
         no vSphere volumes among 0 PersistentVolume(s); 0 PodDisruptionBudget(s) allow a drain \
         (note: VM folder /dst-dc/vm/cl-1 does not exist yet in vCenter vc-dst; CreateFolder will create it)"
    );
    assert!(host.denials().is_empty(), "{:?}", host.denials());
    assert!(host.journal().is_empty() && host.all_state().is_empty() && host.plan().is_empty());
    assert_eq!(host.list(&types::INFRASTRUCTURE), before, "a dry run stores nothing");
    assert!(!Preflight::describe().has_rollback);
    let info = Preflight::describe();
    let verbs: Vec<&String> = info.capabilities.kube.iter().flat_map(|c| &c.verbs).collect();
    assert!(verbs.iter().all(|v| ["get", "list", "validate"].contains(&v.as_str())), "read-only: {verbs:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let host = cluster();
    host.on_kube("validate", "Infrastructure", |_| Some(KubeError::Invalid(REFUSED.into())));
    host.edit(&types::SECRET, Some("vsphere-migration"), "target-creds", |o| {
        o["data"].as_object_mut().unwrap().remove("vc-dst.password");
    });
    host.edit(&types::CLUSTER_OPERATOR, None, "storage", |o| {
        o["status"]["conditions"] = json!([condition("Available", "True"), condition("Degraded", "True")]);
    });
    host.edit(&types::NODE, None, "worker-0", |o| o["status"]["conditions"] = json!([condition("Ready", "False")]));
    host.vcenter(DST, |v| {
        v.objects.remove("/dst-dc/host/c");
    });
    host.vcenter(SRC, |v| {
        v.down =
            Some(VsphereError::AuthFailed("Cannot complete login due to an incorrect user name or password".into()))
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.failed() && !run.retryable());
    let msg = run.message();
    let refused = format!(
        "(1) the API server refuses the Infrastructure with the target vCenter(s) added (a dry run of UpdateInfrastructure's \
         update, 2 vCenters; feature set Default, VSphereMultiVCenterDay2 off; the migration never edits the CRD): {REFUSED}; \
         if it refuses adding a vCenter at all: this cluster runs feature set Default, with the VSphereMultiVCenterDay2 \
         feature gate off, and a feature set that enables it (TechPreviewNoUpgrade, which cannot be undone, or CustomNoUpgrade) \
         lets vCenters be added, as does a release where it is on by default; "
    );
    assert!(msg.starts_with(&format!("Preflight found 6 problems: {refused}")), "{msg}");
    for part in [
        "(2) spec.targetVCenterCredentialsSecret: Secret vsphere-migration/target-creds lacks (or has empty) keys vc-dst.password",
        "(3) source vCenter vc-src: login failed (Cannot complete login due to an incorrect user name or password): check the username and password",
        "(4) failure domain target-fd: compute cluster /dst-dc/host/c not found in vCenter vc-dst",
        "(5) operator storage (available=True, degraded=True): Degraded is True",
        "(6) node worker-0 not Ready (False)",
    ] {
        assert!(msg.contains(part), "missing {part:?} in {msg}");
    }
    assert!(host.journal().is_empty() && host.plan().is_empty());

    // Without the gate in the FeatureGate, the refusal means an older release.
    host.remove(&types::FEATURE_GATE, None, "cluster");
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(
        run.message().contains(&format!(
            "2 vCenters; no FeatureGate cluster; the migration never edits the CRD): {REFUSED}; if it refuses adding a \
             vCenter at all, this OpenShift release does not let one be added to a running cluster: upgrade first"
        )),
        "{}",
        run.message()
    );
}

#[test]
fn health_problems_alone_are_retryable() {
    let host = cluster();
    host.edit(&types::CLUSTER_VERSION, None, "version", |o| {
        o["status"]["conditions"] =
            json!([{"type": "Progressing", "status": "True", "message": "Working towards 4.18.13"}]);
    });
    host.vcenter(DST, |v| v.down = Some(VsphereError::Timeout("no answer in 30s".into())));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.retryable(), "{:?}", run.outcome);
    assert_eq!(
        run.message(),
        "Preflight found 2 problems: (1) target vCenter vc-dst: not answering (no answer in 30s); \
         (2) the cluster version is progressing (an update is in flight): Working towards 4.18.13"
    );
}

#[test]
fn the_infrastructure_must_be_vsphere_list_the_sources_and_take_the_targets() {
    let host = cluster();
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"]["vcenters"] = json!([
            {"server": "vc-other", "datacenters": ["d"]}, {"server": "vc-3", "datacenters": ["d"]}, {"server": "vc-4", "datacenters": ["d"]}]);
        o["spec"]["platformSpec"]["vsphere"]["failureDomains"][0]["name"] = json!("target-fd");
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    let msg = run.message();
    for part in [
        "source vCenter vc-src (recorded when the migration started) is no longer in the Infrastructure",
        "vCenter vc-other is in the Infrastructure but is neither a target nor a recorded source",
    ] {
        assert!(msg.contains(part), "missing {part:?} in {msg}");
    }
    // Once the sources are right, the update itself: a failure-domain name taken by the
    // source; a vCenter too many, as the API server says it.
    let host = cluster();
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"]["failureDomains"][0]["name"] = json!("target-fd");
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(
        run.message().contains(
            "failure domain \"target-fd\" already exists in the Infrastructure for vCenter vc-src, but the migration puts it on vc-dst"
        ),
        "{}",
        run.message()
    );
    let host = cluster();
    let too_many = "spec.platformSpec.vsphere.vcenters: Too many: 4: must have at most 3 items";
    host.on_kube("validate", "Infrastructure", move |_| Some(KubeError::Invalid(too_many.into())));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.message().contains(&format!(
            "2 vCenters; feature set Default, VSphereMultiVCenterDay2 off; the migration never edits the CRD): {too_many}"
        )), "{}", run.message());
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| o["spec"]["platformSpec"]["type"] = json!("None"));
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| o["status"]["platformStatus"]["type"] = json!("None"));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(
        run.message().contains("Infrastructure cluster is not a vSphere cluster (platform \"None\")"),
        "{}",
        run.message()
    );
}

#[test]
fn a_legacy_install_needs_a_master_on_the_source() {
    let host = cluster();
    host.edit(&types::INFRASTRUCTURE, None, "cluster", |o| {
        o["spec"]["platformSpec"]["vsphere"].as_object_mut().unwrap().remove("failureDomains");
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert_eq!(
        run.message(),
        "Preflight found 1 problem: (1) the Infrastructure has no failure domains, and source vCenter vc-src cannot be described as one: \
         no control-plane Machine in openshift-machine-api runs there (workspace.server vc-src)"
    );
    host.put(json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
        "metadata": {"name": "cl-1-master-0", "namespace": "openshift-machine-api", "labels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
        "spec": {"providerSpec": {"value": {"workspace": {"server": SRC, "datacenter": "src-dc", "datastore": "ds",
            "resourcePool": "/src-dc/host/c/Resources", "folder": "/src-dc/vm/cl-1"}, "network": {"devices": [{"networkName": "VM Network"}]}}}}}));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message().contains("source vCenter(s) vc-src will be described as generated-failure-domain"),
        "{}",
        run.message()
    );
}

#[test]
fn a_missing_folder_whose_datacenter_is_missing_too_cannot_be_created() {
    let host = cluster();
    let mut s = spec();
    s["failureDomains"][0]["topology"]["datacenter"] = json!("gone");
    for (k, v) in [
        ("computeCluster", "/gone/host/c"),
        ("datastore", "/gone/datastore/ds"),
        ("resourcePool", "/gone/host/c/Resources"),
        ("template", "/gone/vm/rhcos"),
    ] {
        s["failureDomains"][0]["topology"][k] = json!(v);
    }
    let run = host.run::<Preflight>(Direction::Execute, &migration(&s, &[SRC]));
    let msg = run.message();
    assert!(
        msg.starts_with(
            "Preflight found 7 problems: (1) failure domain target-fd: datacenter /gone not found in vCenter vc-dst"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("(7) failure domain target-fd: VM folder /gone/vm/cl-1 cannot be created: /gone/vm not found in vCenter vc-dst"), "{msg}");
}

#[test]
fn plan_mode_is_the_same_read_only_check() {
    let host = cluster();
    let run = host.plan_run::<Preflight>(&m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(host.plan().is_empty());
}

#[test]
fn a_source_object_missing_from_vcenter_is_a_note_not_a_blocker() {
    let host = cluster();
    host.vcenter(SRC, |v| {
        v.objects.remove("/src-dc/datastore/ds");
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);
    assert!(
        run.message().contains(
            "source failure domain source-fd: datastore /src-dc/datastore/ds not found in vCenter vc-src \
             (a rollback that scales the source machines back up needs it)"
        ),
        "{}",
        run.message()
    );
}

#[test]
fn a_machine_set_without_a_destination_and_an_unknown_source_domain_are_refused() {
    let host = cluster();
    host.put(machine_set("cl-1-infra", "/src-dc/host/c/Resources", 1));
    let mut zonal = spec();
    zonal["machineSetConfig"] = json!({
        "failureDomainMap": [{"source": "nowhere", "target": "target-fd"}],
        "overrides": [{"machineSet": "cl-1-infra", "failureDomain": "target-fd"}]});
    let run = host.run::<Preflight>(Direction::Execute, &migration(&zonal, &[SRC]));
    assert!(run.failed() && !run.retryable(), "{:?}", run.outcome);
    for part in [
        "spec.machineSetConfig.failureDomainMap names source failure domain(s) nowhere that the Infrastructure does not define (it has: source-fd)",
        "MachineSet cl-1-worker-0 runs in source failure domain source-fd, which spec.machineSetConfig.failureDomainMap does not map",
    ] {
        assert!(run.message().contains(part), "{part}\nin {}", run.message());
    }
    assert!(!run.message().contains("cl-1-infra runs"), "the override places it: {}", run.message());
}

#[test]
fn vsphere_volumes_and_budgets_that_block_every_drain_are_refused_by_name() {
    let host = cluster();
    host.put(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pvc-1a2b"},
        "spec": {"csi": {"driver": "csi.vsphere.vmware.com", "volumeHandle": "5c7a-fcd"},
                 "claimRef": {"namespace": "openshift-image-registry", "name": "image-registry-storage"}}}));
    host.put(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "nfs-1"},
        "spec": {"nfs": {"server": "10.0.0.5", "path": "/export"}}}));
    host.put(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"minAvailable": 2}, "status": {"expectedPods": 2}}));
    host.put(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"maxUnavailable": 1}, "status": {"expectedPods": 3}}));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(!run.done() && !run.retryable(), "a person must act: {:?}", run.outcome);
    assert_eq!(
        run.message(),
        "Preflight found 2 problems: (1) 1 vSphere PersistentVolume(s) live in the source vCenter's storage, and moving \
         volumes is not supported yet: their pods could not start on the target's nodes. Move their data off vSphere \
         volumes (or delete the volumes) first: pvc-1a2b (CSI volume 5c7a-fcd, claim openshift-image-registry/image-registry-storage); \
         (2) 1 PodDisruptionBudget(s) can never allow an eviction, so draining the nodes being replaced would wait forever: \
         shop/db (minAvailable 2 over 2 pod(s)) (relax them, or scale their workloads up, before migrating)"
    );
    assert!(host.journal().is_empty() && host.plan().is_empty());
}

#[test]
fn the_operations_checklist_is_what_preflight_checks() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/OPERATIONS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("## Before you start").nth(1).expect("a \"Before you start\" section");
    let section = section.split("\n## ").next().unwrap();
    let listed: Vec<&str> = section.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    assert_eq!(listed, CHECKS, "docs/OPERATIONS.md \"Before you start\" and CHECKS differ");
}

#[test]
fn manual_credentials_mode_needs_the_targets_keys_in_every_component_secret() {
    let host = cluster();
    host.put(
        json!({"apiVersion": "operator.openshift.io/v1", "kind": "CloudCredential", "metadata": {"name": "cluster"},
                    "spec": {"credentialsMode": "Manual"}}),
    );
    let keys = json!({format!("{DST}.username"): encode("u"), format!("{DST}.password"): encode("p")});
    for (ns, name) in vsm_common::creds::COMPONENT_SECRETS.iter().skip(1) {
        host.put(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": keys}),
        );
    }
    let (ns0, name0) = vsm_common::creds::COMPONENT_SECRETS[0];
    host.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name0, "namespace": ns0},
                    "data": {format!("{DST}.username"): encode("u")}}));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(!run.done() && !run.retryable(), "{:?}", run.outcome);
    assert!(run.message().contains("runs in Manual mode"), "{}", run.message());
    assert!(
        run.message().contains(&format!("openshift-machine-api/vsphere-cloud-credentials (lacks {DST}.password)")),
        "{}",
        run.message()
    );
    assert!(
        !run.message().contains("vmware-vsphere-cloud-credentials"),
        "only the Secret that lacks keys: {}",
        run.message()
    );

    // The administrator adds them: Preflight passes.
    host.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name0, "namespace": ns0}, "data": keys}),
    );
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.done(), "{:?}", run.outcome);

    // A mode vSphere does not have is refused.
    host.put(
        json!({"apiVersion": "operator.openshift.io/v1", "kind": "CloudCredential", "metadata": {"name": "cluster"},
                    "spec": {"credentialsMode": "Mint"}}),
    );
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(run.message().contains("mode \"Mint\""), "{}", run.message());
}

#[test]
fn every_missing_target_privilege_is_named_by_object_in_one_problem() {
    let host = cluster();
    host.vcenter(DST, |v| {
        v.withhold("/dst-dc/datastore/ds", &["Datastore.AllocateSpace"]);
        // On the datacenter: everything below it (the cluster, its pool) loses it too.
        v.withhold("/dst-dc", &["VApp.Import"]);
        v.withhold("/dst-dc/network/VM Network", &["Network.Assign"]);
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    let msg = run.message();
    assert!(run.failed(), "{:?}", run.outcome);
    assert!(
        msg.contains(
            "the user of target vCenter vc-dst lacks privileges an OpenShift cluster needs (the installer's list; grant them, \
             with propagation where an object's children need them too): datacenter /dst-dc: VApp.Import; \
             compute cluster /dst-dc/host/c: VApp.Import; network /dst-dc/network/VM Network: Network.Assign; \
             datastore /dst-dc/datastore/ds: Datastore.AllocateSpace; resource pool /dst-dc/host/c/Resources: VApp.Import"
        ),
        "{msg}"
    );
    assert!(!msg.contains("vCenter /:"), "the vCenter itself keeps its privileges: {msg}");
}

#[test]
fn a_vcenter_that_defines_none_of_a_groups_privileges_cannot_be_verified() {
    let host = cluster();
    host.vcenter(DST, |v| v.privileges.retain(|p| p != "Network.Assign"));
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(
        run.message().contains(
            "cannot verify the privileges of target vCenter vc-dst's user on network /dst-dc/network/VM Network: \
             the vCenter defines none of those OpenShift needs there"
        ),
        "{}",
        run.message()
    );
}

#[test]
fn static_ip_machines_need_the_target_networks_pools() {
    let host = cluster();
    host.edit(&types::MACHINE_SET, Some("openshift-machine-api"), "cl-1-worker-0", |set| {
        set["spec"]["template"]["spec"]["providerSpec"]["value"]["network"] = json!({"devices": [{"networkName": "VM Network",
            "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": "src-pool"}],
            "nameservers": ["192.168.10.53"]}]});
    });
    let run = host.run::<Preflight>(Direction::Execute, &m());
    assert!(
        run.message().contains(
            "MachineSet cl-1-worker-0: network device 0 of the machines has static addresses (pools IPPool/src-pool; \
             nameservers 192.168.10.53), which belong to the source network, and failure domain target-fd has no \
             spec.staticIPs entry: give the target network's IP pools and nameservers"
        ),
        "{}",
        run.message()
    );
    let mut s = spec();
    s["staticIPs"] = json!([{"failureDomain": "target-fd", "nameservers": ["10.1.0.53"],
        "addressesFromPools": [{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": "dst-pool"}]}]);
    let run = host.run::<Preflight>(Direction::Execute, &migration(&s, &[SRC]));
    assert!(run.done(), "{:?}", run.outcome);
}
