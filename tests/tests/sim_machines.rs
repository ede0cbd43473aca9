//! Simulated machine-api: MachineSets scale into VMs and Ready Nodes and back, a Machine
//! lands in whichever vCenter its provider spec names, bad inputs fail visibly, and a
//! deleted MachineSet takes its Machines along.

mod sim_support;

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sim_support::{World, names, node_ready, phase};
use vsm_testenv::sim::objects::{self as o, str_at};
use vsm_testenv::sim::provider::inject_failure_domain;
use vsm_testenv::sim::{SeedOptions, SimOptions};

async fn set_machines(w: &World, set: &str) -> Vec<DynamicObject> {
    let lp = ListParams::default().labels(&format!("{}={set}", o::LABEL_MACHINESET));
    o::machines_api(&w.client()).list(&lp).await.unwrap().items
}

/// Every Machine of the set Running with a Ready Node and a VM; `Err` says what is missing.
async fn all_running(w: &World, set: &str, want: usize) -> Result<Vec<DynamicObject>, String> {
    let ms = set_machines(w, set).await;
    if ms.len() != want {
        return Err(format!("{} machines: {:?}", ms.len(), names(&ms)));
    }
    let vms: BTreeSet<String> = w.vm_names(true, &w.cluster.source.folder).await.into_iter().collect();
    for m in &ms {
        let name = m.name_any();
        if phase(m) != "Running" || !w.node(&name).await.is_some_and(|n| node_ready(&n)) || !vms.contains(&name) {
            return Err(format!("{name}: phase {:?}, VM {}", phase(m), vms.contains(&name)));
        }
    }
    Ok(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_worker_machineset_up_and_down() {
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let set = w.cluster.worker_machinesets[0].clone();
    let api = o::machine_sets_api(&w.client());
    let scale = |n: i64| json!({"spec": {"replicas": n}});
    api.patch_scale(&set, &PatchParams::default(), &Patch::Merge(scale(5))).await.unwrap();

    let grown = w.eventually("5 running workers", || all_running(&w, &set, 5)).await;
    let vms = w.vcenter(true).await.list_vms(&w.cluster.source.folder).await.unwrap();
    for m in &grown {
        let name = m.name_any();
        assert!(m.finalizers().contains(&o::MACHINE_FINALIZER.to_string()), "{name}");
        assert_eq!(m.owner_references()[0].name, set);
        let vm = vms.iter().find(|v| v.name == name).unwrap();
        assert_eq!(str_at(&m.data, "/spec/providerID"), Some(format!("vsphere://{}", vm.uuid).as_str()));
        assert_eq!(str_at(&m.data, "/status/nodeRef/name"), Some(name.as_str()));
        assert!(name.starts_with(&format!("{set}-")));
    }
    w.eventually("MachineSet status", || async {
        let ms = api.get(&set).await.unwrap();
        let st = &ms.data["status"];
        let want = json!({"replicas": 5, "readyReplicas": 5, "availableReplicas": 5, "fullyLabeledReplicas": 5,
                          "observedGeneration": ms.metadata.generation});
        if o::covers(st, &want) { Ok(()) } else { Err(st.to_string()) }
    })
    .await;

    api.patch_scale(&set, &PatchParams::default(), &Patch::Merge(scale(1))).await.unwrap();
    let left = w.eventually("1 running worker", || all_running(&w, &set, 1)).await;
    assert!(w.cluster.workers.contains(&left[0].name_any()), "the newest machines go first: {:?}", names(&left));
    let gone: Vec<String> = names(&grown).into_iter().filter(|n| *n != left[0].name_any()).collect();
    let vms: BTreeSet<String> = w.vm_names(true, &w.cluster.source.folder).await.into_iter().collect();
    for n in &gone {
        assert!(!vms.contains(n), "VM {n} destroyed");
        assert!(w.node(n).await.is_none(), "Node {n} deleted");
        assert!(w.machine(n).await.is_none(), "Machine {n} deleted");
    }
    let s = w.sim().stats();
    assert_eq!((s.machines_created, s.vms_cloned, s.machines_deleted, s.vms_destroyed), (2, 2, 4, 4), "{s:?}");
    assert_eq!((s.nodes_created, s.nodes_deleted), (2, 4), "{s:?}");
    w.stop().await;
}

fn machine(name: &str, role: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
        "metadata": {"name": name, "namespace": o::MACHINE_API_NS,
                     "labels": {o::LABEL_ROLE: role, o::LABEL_TYPE: role}},
        "spec": {"providerSpec": {"value": spec}},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_lands_in_the_vcenter_it_names_and_bad_inputs_fail() {
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let api = o::machines_api(&w.client());
    let worker = w.machine(&w.cluster.workers[0]).await.unwrap();
    let worker_spec = worker.data["spec"]["providerSpec"]["value"].clone();
    let target_fd = w.cluster.target_failure_domain("target-fd");
    let target_spec = inject_failure_domain(&worker_spec, &target_fd, &w.cluster.infra_id);
    w.vcenter(false).await.create_folder(&w.cluster.target.folder).await.unwrap();

    // No credentials for the target yet: retried, visible in the provider status.
    let name = format!("{}-worker-target-a", w.cluster.infra_id);
    api.create(&PostParams::default(), &machine(&name, "worker", target_spec.clone())).await.unwrap();
    w.eventually("waiting for credentials", || async {
        let m = w.machine(&name).await.unwrap();
        let msg = str_at(&m.data, "/status/providerStatus/conditions/0/message").unwrap_or_default().to_string();
        if phase(&m) == "Provisioning" && msg.contains("no credentials") {
            Ok(())
        } else {
            Err(m.data["status"].to_string())
        }
    })
    .await;
    w.add_target_credentials().await;
    let m = w
        .eventually("running in the target", || async {
            let m = w.machine(&name).await.unwrap();
            if phase(&m) == "Running" { Ok(m) } else { Err(m.data["status"].to_string()) }
        })
        .await;
    let vm = w.vcenter(false).await.vm(&format!("{}/{name}", w.cluster.target.folder)).await.unwrap();
    assert_eq!(str_at(&m.data, "/spec/providerID"), Some(format!("vsphere://{}", vm.uuid).as_str()));
    assert!(!w.vm_names(true, &w.cluster.source.folder).await.contains(&name), "not in the source");
    assert!(node_ready(&w.node(&name).await.unwrap()));

    // Bad inputs: Failed with a message that names the problem.
    let mut bad_template = target_spec.clone();
    bad_template["template"] = json!("/dst-dc/vm/no-such-template");
    let mut bad_server = target_spec.clone();
    bad_server["workspace"]["server"] = json!("10.255.0.1");
    let mut bad_folder = target_spec.clone();
    bad_folder["workspace"]["folder"] = json!("/dst-dc/vm/no-such-folder");
    let cases = [
        ("bad-template", bad_template, "no-such-template"),
        ("bad-server", bad_server, "10.255.0.1"),
        ("bad-folder", bad_folder, "no-such-folder"),
    ];
    for (suffix, spec, _) in &cases {
        let n = format!("{}-{suffix}", w.cluster.infra_id);
        api.create(&PostParams::default(), &machine(&n, "worker", spec.clone())).await.unwrap();
    }
    for (suffix, _, needle) in &cases {
        let n = format!("{}-{suffix}", w.cluster.infra_id);
        let m = w
            .eventually(&format!("{n} failed"), || async {
                let m = w.machine(&n).await.unwrap();
                if phase(&m) == "Failed" { Ok(m) } else { Err(m.data["status"].to_string()) }
            })
            .await;
        let msg = str_at(&m.data, "/status/errorMessage").unwrap_or_default();
        assert!(msg.contains(needle), "{n}: {msg}");
        assert_eq!(str_at(&m.data, "/status/errorReason"), Some("InvalidConfiguration"));
        assert!(w.node(&n).await.is_none());
    }
    assert_eq!(w.sim().stats().machines_failed, 3);

    // Deleting: the target VM and the Node go; a failed Machine just goes.
    for n in
        [name.clone(), format!("{}-bad-template", w.cluster.infra_id), format!("{}-bad-server", w.cluster.infra_id)]
    {
        api.delete(&n, &DeleteParams::default()).await.unwrap();
    }
    w.eventually("machines deleted", || async {
        let left: Vec<String> = names(&w.machines().await)
            .into_iter()
            .filter(|n| n.contains("target-a") || n.contains("-bad-t") || n.contains("-bad-s"))
            .collect();
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    assert!(w.vm_names(false, &w.cluster.target.folder).await.is_empty(), "target VM destroyed");
    assert!(w.node(&name).await.is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_machineset_deletes_its_machines() {
    let seed = SeedOptions { workers: 4, worker_machinesets: 2, ..Default::default() };
    let w = World::start(seed, Some(SimOptions::instant())).await;
    let (keep, doomed) = (w.cluster.worker_machinesets[0].clone(), w.cluster.worker_machinesets[1].clone());
    let doomed_machines = names(&set_machines(&w, &doomed).await);
    assert_eq!(doomed_machines.len(), 2);
    o::machine_sets_api(&w.client()).delete(&doomed, &DeleteParams::default()).await.unwrap();
    w.eventually("the set's machines are gone", || async {
        let left = set_machines(&w, &doomed).await;
        if left.is_empty() { Ok(()) } else { Err(format!("{:?}", names(&left))) }
    })
    .await;
    let vms: BTreeSet<String> = w.vm_names(true, &w.cluster.source.folder).await.into_iter().collect();
    for n in &doomed_machines {
        assert!(!vms.contains(n), "VM {n}");
        assert!(w.node(n).await.is_none(), "Node {n}");
    }
    all_running(&w, &keep, 2).await.expect("the other set is untouched");
    w.stop().await;
}
