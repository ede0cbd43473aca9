//! Simulated control-plane machine set operator: a deleted CPMS comes back Inactive and
//! leaves the masters alone; an Active CPMS pointed at a target failure domain replaces the
//! masters there one at a time.

mod sim_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use sim_support::{World, health, names, node_ready, phase};
use vsm_testenv::sim::objects::{self as o, str_at};
use vsm_testenv::sim::{SeedOptions, SimOptions};

const FDS: &str = "/spec/template/machines_v1beta1_machine_openshift_io/failureDomains/vsphere";

fn masters(machines: Vec<kube::api::DynamicObject>) -> Vec<kube::api::DynamicObject> {
    machines.into_iter().filter(|m| m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cpms_comes_back_inactive_and_inactive_touches_no_machine() {
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let api = o::cpms_api(&w.client());
    let old = api.get(o::CPMS_NAME).await.unwrap();
    api.delete(o::CPMS_NAME, &DeleteParams::default()).await.unwrap();

    let new = w
        .eventually("a regenerated CPMS", || async {
            match api.get_opt(o::CPMS_NAME).await.unwrap() {
                Some(c) if c.uid() != old.uid() => Ok(c),
                other => Err(format!("{:?}", other.map(|c| c.uid()))),
            }
        })
        .await;
    assert_eq!(new.data["spec"]["state"], "Inactive");
    assert_eq!(new.data["spec"]["replicas"], 3);
    assert_eq!(new.data["spec"]["selector"], old.data["spec"]["selector"]);
    assert_eq!(str_at(&new.data, &format!("{FDS}/0/name")), Some("source-fd"));
    let master0 = w.machine(&w.cluster.masters[0]).await.unwrap();
    let template = "/spec/template/machines_v1beta1_machine_openshift_io/spec/providerSpec/value";
    assert_eq!(new.data.pointer(template), master0.data.pointer("/spec/providerSpec/value"));
    assert_eq!(w.sim().stats().cpms_regenerated, 1);
    w.eventually("status of the regenerated CPMS", || async {
        let c = api.get(o::CPMS_NAME).await.unwrap();
        let want = json!({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "observedGeneration": c.metadata.generation});
        if o::covers(&c.data["status"], &want) { Ok(()) } else { Err(c.data["status"].to_string()) }
    })
    .await;

    // Inactive and pointed elsewhere: the status says the masters are outdated, and no
    // machine is touched.
    w.vcenter(false).await.create_folder(&w.cluster.target.folder).await.unwrap();
    w.add_target("target-fd").await;
    let patch = json!([{"op": "replace", "path": format!("{FDS}/0/name"), "value": "target-fd"}]);
    api.patch(o::CPMS_NAME, &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(patch).unwrap()))
        .await
        .unwrap();
    w.eventually("outdated masters reported", || async {
        let c = api.get(o::CPMS_NAME).await.unwrap();
        let want = json!({"replicas": 3, "updatedReplicas": 0, "observedGeneration": c.metadata.generation});
        if o::covers(&c.data["status"], &want) { Ok(()) } else { Err(c.data["status"].to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(names(&masters(w.machines().await)), w.cluster.masters);
    let s = w.sim().stats();
    assert_eq!(s.machines_created, 0, "{s:?}");
    w.stop().await;
}

/// What a watcher of the masters saw during a rollout.
#[derive(Default, Debug)]
struct Seen {
    /// Most masters not being deleted at the same time.
    max_present: usize,
    /// Most masters at the same time that were neither Running nor being deleted.
    max_coming: usize,
    /// Most masters being deleted at the same time.
    max_going: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_cpms_rolls_the_masters_to_the_target_one_at_a_time() {
    // Small delays so each step of the rollout is visible to the watcher below.
    let opts = SimOptions {
        machine_boot: Duration::from_millis(500),
        pod_start: Duration::from_millis(200),
        pod_stop: Duration::from_millis(200),
        ..SimOptions::instant()
    };
    let w = World::start(SeedOptions::default(), Some(opts)).await;
    let api = o::cpms_api(&w.client());
    w.vcenter(false).await.create_folder(&w.cluster.target.folder).await.unwrap();
    w.add_target("target-fd").await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watching = {
        let (client, seen) = (w.client(), seen.clone());
        tokio::spawn(async move {
            loop {
                let ms = masters(o::machines_api(&client).list(&Default::default()).await.unwrap().items);
                let going = ms.iter().filter(|m| o::is_deleting(*m)).count();
                let coming = ms.iter().filter(|m| !o::is_deleting(*m) && phase(m) != "Running").count();
                {
                    let mut s = seen.lock().unwrap();
                    s.max_present = s.max_present.max(ms.len() - going);
                    s.max_coming = s.max_coming.max(coming);
                    s.max_going = s.max_going.max(going);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let started = Instant::now();
    let before = w.sim().stats();
    let patch = json!([{"op": "replace", "path": format!("{FDS}/0/name"), "value": "target-fd"}]);
    api.patch(o::CPMS_NAME, &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(patch).unwrap()))
        .await
        .unwrap();
    let target_host = w.env.target().host();
    let new_masters = w
        .eventually("masters rolled to the target", || async {
            let c = api.get(o::CPMS_NAME).await.unwrap();
            let want = json!({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "unavailableReplicas": 0,
                              "observedGeneration": c.metadata.generation});
            let ms = masters(w.machines().await);
            let moved = ms.len() == 3
                && ms.iter().all(|m| {
                    str_at(&m.data, "/spec/providerSpec/value/workspace/server") == Some(target_host.as_str())
                });
            if o::covers(&c.data["status"], &want) && moved { Ok(ms) } else { Err(c.data["status"].to_string()) }
        })
        .await;
    let elapsed = started.elapsed();
    watching.abort();
    let after = w.sim().stats();
    println!(
        "TIMING master rollout (3 masters, boot 0.5 s, pods 0.2 s): {elapsed:?}, simulated delays \
         (wall) {:?}, overhead {:?}",
        after.delay_wall - before.delay_wall,
        elapsed.saturating_sub(after.delay_wall - before.delay_wall)
    );

    // One at a time: never more than one extra master, never two coming or going at once.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.max_present <= 4 && seen.max_coming <= 1 && seen.max_going <= 1, "{seen:?}");
    assert!(seen.max_present == 4, "a replacement was seen next to the three masters: {seen:?}");

    // The new masters: in the target folder, named by the operator, Ready Nodes; the old
    // ones gone with their VMs and Nodes.
    let target_vms = w.vm_names(false, &w.cluster.target.folder).await;
    for m in &new_masters {
        let name = m.name_any();
        assert!(name.starts_with(&format!("{}-master-", w.cluster.infra_id)), "{name}");
        assert!(!w.cluster.masters.contains(&name));
        assert!(target_vms.contains(&name), "{name} in {target_vms:?}");
        assert!(w.node(&name).await.is_some_and(|n| node_ready(&n)), "{name}");
        let ps = &m.data["spec"]["providerSpec"]["value"];
        assert_eq!(ps["template"], w.cluster.target.template);
        assert_eq!(ps["workspace"]["folder"], w.cluster.target.folder);
        assert_eq!(ps["numCPUs"], 4, "sizing kept");
    }
    let indexes: Vec<u32> = new_masters.iter().filter_map(|m| o::machine_index(&m.name_any())).collect();
    assert_eq!(indexes.iter().copied().collect::<std::collections::BTreeSet<_>>(), [0, 1, 2].into());
    let source_vms = w.vm_names(true, &w.cluster.source.folder).await;
    for old in &w.cluster.masters {
        assert!(!source_vms.contains(old), "{old} destroyed");
        assert!(w.node(old).await.is_none(), "{old} node");
    }
    let s = w.sim().stats();
    assert_eq!(s.machines_created, 3, "{s:?}");

    // The control-plane pods moved to the new masters, and the vSphere operators are
    // healthy again (machine-config stays Degraded while two vCenters are listed).
    w.eventually("operators healthy after the rollout", || async {
        let mut bad = Vec::new();
        for name in ["cloud-controller-manager", "storage", "machine-api"] {
            let h = health(&w.operator(name).await);
            if h != ("True".into(), "False".into()) {
                bad.push(format!("{name} {h:?}"));
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(bad.join(", ")) }
    })
    .await;
    assert_eq!(health(&w.operator("machine-config").await), ("True".into(), "True".into()));
    for p in w.pods(o::CCM_NS, "k8s-app=vsphere-cloud-controller-manager").await {
        let node = p.spec.unwrap().node_name.unwrap();
        assert!(names(&new_masters).contains(&node), "CCM pod on {node}");
    }
    w.stop().await;
}
