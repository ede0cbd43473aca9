//! The simulated cluster around the real machine-api: a MachineSet scaled up becomes VMs
//! (the real actuator) and Ready Nodes (the simulated kubelets) and back, and a deleted
//! MachineSet takes its Machines along (the simulated garbage collector). The actuator's own
//! behaviour (a Machine in the vCenter it names, a missing template) is in
//! `machine_api_machines`.

mod sim_support;

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use sim_support::{World, names, node_ready, phase};
use vsm_testenv::sim::objects::{self as o, str_at};
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
    // Upstream's default policy (Random) would remove any of them; Newest makes it checkable.
    api.patch(&set, &PatchParams::default(), &Patch::Merge(json!({"spec": {"deletePolicy": "Newest"}}))).await.unwrap();
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
    assert_eq!(w.sim().stats().nodes_created, 2, "a kubelet per new VM");
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
