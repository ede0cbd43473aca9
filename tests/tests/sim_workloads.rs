//! Simulated workloads and ClusterOperators: restarted pods come back and their operators
//! go Degraded and recover; the CVO Deployment scales; an inconsistent vSphere
//! configuration keeps the vSphere operators Degraded until it is consistent. The trusted
//! CA injection, `ccm-trusted-ca` and `kube-cloud-config` follow their sources, and the real
//! machine controller restarts with its pod's trust store.

mod sim_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use sim_support::{World, health, names, pod_ready};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::operators::degraded_message;
use vsm_testenv::sim::{SeedOptions, SimOptions};

const CCM: &str = "k8s-app=vsphere-cloud-controller-manager";
const CSI_NODE: &str = "app=vmware-vsphere-csi-driver-node";

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Records every distinct `(Available, Degraded)` an operator shows, polling it.
fn record(w: &World, name: &'static str) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (client, seen2) = (w.client(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let co = o::operators_api(&client).get(name).await.unwrap();
            let h = health(&co);
            {
                let mut s = seen2.lock().unwrap();
                if s.last() != Some(&h) {
                    s.push(h);
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    (seen, task)
}

async fn healthy(w: &World, name: &str) -> Result<(), String> {
    let h = health(&w.operator(name).await);
    if h == ("True".into(), "False".into()) { Ok(()) } else { Err(format!("{name} {h:?}")) }
}

fn last_is_healthy(seen: &Seen) -> Result<(), String> {
    let s = seen.lock().unwrap();
    if s.last() == Some(&("True".into(), "False".into())) { Ok(()) } else { Err(format!("{s:?}")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_vsphere_pods_come_back_and_their_operators_degrade_then_recover() {
    let opts = SimOptions {
        pod_start: Duration::from_secs(2),
        pod_stop: Duration::from_millis(500),
        operator_recover: Duration::from_secs(1),
        ..SimOptions::instant()
    };
    let w = World::start(SeedOptions::default(), Some(opts)).await;

    // A CCM pod: replaced under a new name; cloud-controller-manager Degraded meanwhile.
    let (ccm_seen, ccm_task) = record(&w, "cloud-controller-manager");
    let before = w.pods(o::CCM_NS, CCM).await;
    let victim = before[0].name_any();
    Api::<Pod>::namespaced(w.client(), o::CCM_NS).delete(&victim, &DeleteParams::default()).await.unwrap();
    w.eventually("two ready CCM pods again", || async {
        let pods = w.pods(o::CCM_NS, CCM).await;
        let ok = pods.len() == 2 && pods.iter().all(pod_ready) && !names(&pods).contains(&victim);
        if ok { Ok(()) } else { Err(format!("{:?}", names(&pods))) }
    })
    .await;
    w.eventually("cloud-controller-manager recovered", || healthy(&w, "cloud-controller-manager")).await;
    // The recorder polls on its own: the recovery is its last record once it has looked.
    w.eventually("the recovery recorded", || async { last_is_healthy(&ccm_seen) }).await;
    ccm_task.abort();
    let seen = ccm_seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, d)| d == "True"), "went Degraded: {seen:?}");

    // A CSI node pod: replaced on the same Node; storage Degraded meanwhile.
    let (storage_seen, storage_task) = record(&w, "storage");
    let victim = w.pods(o::CSI_NS, CSI_NODE).await.into_iter().next().unwrap();
    let node = victim.spec.clone().unwrap().node_name.unwrap();
    Api::<Pod>::namespaced(w.client(), o::CSI_NS).delete(&victim.name_any(), &DeleteParams::default()).await.unwrap();
    w.eventually("a new CSI node pod on the same node", || async {
        let pods = w.pods(o::CSI_NS, CSI_NODE).await;
        let on_node: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
            .collect();
        let ok = pods.len() == 6
            && pods.iter().all(pod_ready)
            && on_node.len() == 1
            && on_node[0].name_any() != victim.name_any();
        if ok { Ok(()) } else { Err(format!("{:?}", names(&pods))) }
    })
    .await;
    w.eventually("storage recovered", || healthy(&w, "storage")).await;
    storage_task.abort();
    let seen = storage_seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, d)| d == "True"), "went Degraded: {seen:?}");

    // Every machine-api controller pod at once: machine-api unavailable, then back.
    let (mapi_seen, mapi_task) = record(&w, "machine-api");
    let pods: Api<Pod> = Api::namespaced(w.client(), o::MACHINE_API_NS);
    let old = names(&w.pods(o::MACHINE_API_NS, "api=clusterapi").await);
    pods.delete_collection(&DeleteParams::default(), &kube::api::ListParams::default().labels("api=clusterapi"))
        .await
        .unwrap();
    w.eventually("machine-api recovered", || async {
        let now = w.pods(o::MACHINE_API_NS, "api=clusterapi").await;
        let replaced = now.len() == 1 && pod_ready(&now[0]) && !old.contains(&now[0].name_any());
        healthy(&w, "machine-api").await.and(if replaced { Ok(()) } else { Err(format!("{:?}", names(&now))) })
    })
    .await;
    mapi_task.abort();
    let seen = mapi_seen.lock().unwrap().clone();
    assert!(seen.contains(&("False".into(), "True".into())), "went unavailable: {seen:?}");
    let s = w.sim().stats();
    assert!(s.pods_created >= 3 && s.pods_deleted >= 3 && s.operator_transitions >= 6, "{s:?}");
    assert!(s.delay_wall >= Duration::from_secs(2), "pod starts are simulated waits: {s:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cvo_deployment_scales_to_zero_and_back() {
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let api: Api<Deployment> = Api::namespaced(w.client(), o::CVO_NS);
    let selector = "k8s-app=cluster-version-operator";
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    let status_is = |want: serde_json::Value| {
        let api = api.clone();
        async move {
            let d = api.get(o::CVO_NAME).await.unwrap();
            let mut want = want;
            want["observedGeneration"] = json!(d.metadata.generation);
            let have = serde_json::to_value(&d.status).unwrap();
            if o::covers(&have, &want) { Ok(()) } else { Err(have.to_string()) }
        }
    };

    api.patch(o::CVO_NAME, &PatchParams::default(), &Patch::Merge(scale(0))).await.unwrap();
    w.eventually("no CVO pod left", || async {
        let pods = w.pods(o::CVO_NS, selector).await;
        if pods.is_empty() { Ok(()) } else { Err(format!("{:?}", names(&pods))) }
    })
    .await;
    w.eventually("scaled-down status", || {
        status_is(json!({"replicas": 0, "readyReplicas": 0, "unavailableReplicas": 0}))
    })
    .await;

    api.patch(o::CVO_NAME, &PatchParams::default(), &Patch::Merge(scale(1))).await.unwrap();
    w.eventually("one ready CVO pod", || async {
        let pods = w.pods(o::CVO_NS, selector).await;
        if pods.len() == 1 && pod_ready(&pods[0]) { Ok(()) } else { Err(format!("{:?}", names(&pods))) }
    })
    .await;
    w.eventually("scaled-up status", || {
        status_is(json!({"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1,
                         "unavailableReplicas": 0}))
    })
    .await;
    let pod = w.pods(o::CVO_NS, selector).await.remove(0);
    let node = pod.spec.unwrap().node_name.unwrap();
    assert!(w.cluster.masters.contains(&node), "scheduled on a master: {node}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_vsphere_configuration_degrades_the_operators_until_it_is_fixed() {
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let infra_api = o::infra_api(&w.client());
    let target = w.env.target().host();

    // The target in the Infrastructure only: no credentials, no cloud config entry.
    let infra = infra_api.get(o::INFRA_NAME).await.unwrap();
    let mut vsphere = infra.data["spec"]["platformSpec"]["vsphere"].clone();
    vsphere["vcenters"].as_array_mut().unwrap().push(w.cluster.target_vcenter_json());
    vsphere["failureDomains"].as_array_mut().unwrap().push(w.cluster.target_failure_domain("target-fd").to_json());
    let patch = json!({"spec": {"platformSpec": {"vsphere": vsphere.clone()}}});
    infra_api.patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();

    let degraded_with = |name: &'static str, needles: &'static [&'static str]| {
        let w = &w;
        async move {
            let co = w.operator(name).await;
            let msg = degraded_message(&co).unwrap_or_default().to_string();
            if needles.iter().all(|n| msg.contains(n)) { Ok(msg) } else { Err(format!("{name}: {:?}", health(&co))) }
        }
    };
    let msg = w
        .eventually("CCM degraded", || {
            degraded_with("cloud-controller-manager", &["vsphere-creds", "cloud-provider-config"])
        })
        .await;
    assert!(msg.contains(&target), "{msg}");
    w.eventually("storage degraded", || degraded_with("storage", &["vsphere-creds", "cloud-provider-config"])).await;
    w.eventually("machine-api degraded", || degraded_with("machine-api", &["vsphere-creds"])).await;
    w.eventually("machine-config degraded", || degraded_with("machine-config", &["2 vCenters"])).await;
    assert_eq!(health(&w.operator("machine-config").await).0, "True", "still Available");

    // Credentials: machine-api recovers; the cloud config still lacks the target.
    w.add_target_credentials().await;
    w.eventually("machine-api recovered", || healthy(&w, "machine-api")).await;
    let msg = w
        .eventually("CCM still degraded", || degraded_with("cloud-controller-manager", &["cloud-provider-config"]))
        .await;
    assert!(!msg.contains("vsphere-creds"), "{msg}");

    // The cloud config entry: CCM and storage recover; machine-config stays Degraded.
    w.add_target_to_cloud_config().await;
    w.eventually("CCM recovered", || healthy(&w, "cloud-controller-manager")).await;
    w.eventually("storage recovered", || healthy(&w, "storage")).await;
    assert_eq!(health(&w.operator("machine-config").await), ("True".into(), "True".into()));

    // The cloud provider connects to the port the cloud config gives (443 when unset), and
    // logs in with the credentials in vsphere-creds.
    let cms: Api<ConfigMap> = Api::namespaced(w.client(), o::CLOUD_CONFIG_NS);
    let good = cms.get(o::CLOUD_CONFIG_NAME).await.unwrap();
    let text = good.data.clone().unwrap()[o::CLOUD_CONFIG_KEY].clone();
    let port_line = format!("port: {}", w.cluster.target.port);
    assert!(text.contains(&port_line), "{text}");
    let wrong = json!({"data": {o::CLOUD_CONFIG_KEY: text.replace(&port_line, "port: 443")}});
    cms.patch(o::CLOUD_CONFIG_NAME, &PatchParams::default(), &Patch::Merge(wrong)).await.unwrap();
    w.eventually("CCM cannot connect", || degraded_with("cloud-controller-manager", &["cannot connect", ":443"])).await;
    let right = json!({"data": {o::CLOUD_CONFIG_KEY: text}});
    cms.patch(o::CLOUD_CONFIG_NAME, &PatchParams::default(), &Patch::Merge(right)).await.unwrap();
    w.eventually("CCM connects again", || healthy(&w, "cloud-controller-manager")).await;
    let secrets: Api<Secret> = Api::namespaced(w.client(), o::CREDS_NS);
    let bad = json!({"stringData": {format!("{target}.password"): "not-the-password"}});
    secrets.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(bad)).await.unwrap();
    w.eventually("machine-api login fails", || degraded_with("machine-api", &["rejects the credentials"])).await;
    w.add_target_credentials().await;
    w.eventually("machine-api logs in again", || healthy(&w, "machine-api")).await;

    // A failure domain whose datacenter the cloud config does not list for its vCenter.
    let mut odd = w.cluster.target_failure_domain("target-fd-2");
    odd.datacenter = "other-dc".into();
    vsphere["failureDomains"].as_array_mut().unwrap().push(odd.to_json());
    let patch = json!({"spec": {"platformSpec": {"vsphere": vsphere.clone()}}});
    infra_api.patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    w.eventually("CCM degraded by the datacenter", || degraded_with("cloud-controller-manager", &["other-dc"])).await;

    // Only the target left: machine-config recovers too.
    let only_target = json!({"spec": {"platformSpec": {"vsphere": {
        "vcenters": [w.cluster.target_vcenter_json()],
        "failureDomains": [w.cluster.target_failure_domain("target-fd").to_json()],
    }}}});
    infra_api.patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(only_target)).await.unwrap();
    for name in vsm_testenv::sim::operators::RULED {
        w.eventually(&format!("{name} healthy"), || healthy(&w, name)).await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_bundles_follow_the_proxy_and_the_machine_controller_restarts_with_its_pod() {
    use vsm_testenv::sim::trust;
    let w = World::start(SeedOptions::default(), Some(SimOptions::instant())).await;
    let c = w.client();
    let system = w.env.system_trust_pem().to_string();
    let data = |ns: &'static str, name: &'static str, key: &'static str| {
        let c = c.clone();
        async move {
            let cm = Api::<ConfigMap>::namespaced(c, ns).get_opt(name).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(cm.and_then(|cm| cm.data).and_then(|d| d.get(key).cloned()).unwrap_or_default())
        }
    };
    // Seeded: the Proxy names no bundle, so the injected ones hold the system CAs alone.
    w.eventually("mao-trusted-ca injected", || async {
        let got = data(o::MACHINE_API_NS, trust::MAO_TRUSTED_CA, trust::TRUSTED_CA_KEY).await?;
        if got == system { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;

    // A CA in the Proxy's bundle reaches every injected ConfigMap, after the system CAs'
    // own, and ccm-trusted-ca with the cloud config's bundle first.
    let extra = vsm_testenv::pki::TestCa::new("vsm-sim-extra-ca").unwrap().cert_pem;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), o::CLOUD_CONFIG_NS);
    let pp = PatchParams::apply("test").force();
    let bundle = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "corporate"}, "data": {"ca-bundle.crt": extra}});
    cms.patch("corporate", &pp, &Patch::Apply(&bundle)).await.unwrap();
    let proxies = w.env.dynamic("config.openshift.io", "v1", "Proxy", "proxies", None);
    proxies
        .patch("cluster", &PatchParams::default(), &Patch::Merge(json!({"spec": {"trustedCA": {"name": "corporate"}}})))
        .await
        .unwrap();
    let cloud_ca = vsm_testenv::pki::TestCa::new("vsm-sim-cloud-ca").unwrap().cert_pem;
    cms.patch(
        o::CLOUD_CONFIG_NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca-bundle.pem": cloud_ca}})),
    )
    .await
    .unwrap();
    let (extra2, system2, cloud2) = (extra.clone(), system.clone(), cloud_ca.clone());
    w.eventually("the Proxy's CA injected everywhere", || {
        let (extra, system, cloud) = (extra2.clone(), system2.clone(), cloud2.clone());
        let data = &data;
        async move {
            for (ns, name) in trust::INJECTED.iter().copied().chain([(trust::MANAGED_NS, trust::TRUSTED_CA_BUNDLE)]) {
                let got = data(ns, name, trust::TRUSTED_CA_KEY).await?;
                let g = got.trim_end();
                if !(g.starts_with(extra.trim_end()) && g.ends_with(system.trim_end())) {
                    return Err(format!("{ns}/{name}: {got:?}"));
                }
            }
            let ccm = data(o::CCM_NS, trust::CCM_TRUSTED_CA, trust::TRUSTED_CA_KEY).await?;
            let parts = [cloud.trim_end(), extra.trim_end(), system.trim_end()];
            let mut at = 0;
            for p in parts {
                at = ccm[at..]
                    .find(p)
                    .map(|i| at + i + p.len())
                    .ok_or(format!("ccm-trusted-ca lacks a part: {ccm:?}"))?;
            }
            let copy = data(trust::MANAGED_NS, trust::KUBE_CLOUD_CONFIG, "ca-bundle.pem").await?;
            if copy != cloud {
                return Err(format!("kube-cloud-config: {copy:?}"));
            }
            Ok(())
        }
    })
    .await;

    // The machine-api-controllers pod is replaced: the real machine controller restarts with
    // what its pod mounts, and runs.
    let mapi = w.env.machine_api().unwrap();
    let before = mapi.pid(vsm_testenv::machine_api::Component::MachineController);
    let pods: Api<Pod> = Api::namespaced(c.clone(), o::MACHINE_API_NS);
    for p in w.pods(o::MACHINE_API_NS, "api=clusterapi").await {
        pods.delete(&p.name_any(), &DeleteParams::default()).await.unwrap();
    }
    w.eventually("the machine controller restarted", || async {
        let restarts = w.sim().stats().machine_controller_restarts;
        if restarts >= 1 { Ok(()) } else { Err(format!("{restarts} restarts")) }
    })
    .await;
    assert_ne!(mapi.pid(vsm_testenv::machine_api::Component::MachineController), before);
    let trust_file = std::fs::read_to_string(mapi.trust_file()).unwrap();
    assert!(trust_file.contains(extra.trim_end()), "the restarted controller trusts the injected bundle");
    mapi.check_running().unwrap();
    w.stop().await;
}
