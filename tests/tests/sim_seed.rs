//! Seeding a simulated OpenShift-on-vSphere cluster: every object the migration reads, the
//! same cluster in vcsim, nothing changed by a second seed, and a seeded cluster is at rest
//! under the simulated controllers.

mod sim_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use sim_support::{World, health, names, node_ready, phase, pod_ready};
use vsm_testenv::sim::cloud_config;
use vsm_testenv::sim::objects::{self as o, str_at};
use vsm_testenv::sim::{CLUSTER_OPERATORS, CloudConfigFormat, SeedOptions, SimOptions, Simulator};
use vsm_testenv::vcsim::source;

/// Every object of the kinds seeding writes, by kind/namespace/name, with its resourceVersion.
async fn snapshot(w: &World) -> BTreeMap<String, String> {
    let c = w.client();
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, objs: Vec<(Option<String>, String, Option<String>)>| {
        for (ns, name, rv) in objs {
            out.insert(format!("{kind}/{}/{name}", ns.unwrap_or_default()), rv.unwrap_or_default());
        }
    };
    let lp = ListParams::default();
    fn meta<K: ResourceExt>(v: Vec<K>) -> Vec<(Option<String>, String, Option<String>)> {
        v.into_iter().map(|o| (o.namespace(), o.name_any(), o.resource_version())).collect()
    }
    for (kind, ar) in [
        ("infra", o::infrastructure()),
        ("co", o::cluster_operator()),
        ("cv", o::cluster_version()),
        ("machine", o::machine()),
        ("machineset", o::machine_set()),
        ("cpms", o::cpms()),
    ] {
        add(kind, meta(Api::<DynamicObject>::all_with(c.clone(), &ar).list(&lp).await.unwrap().items));
    }
    add("node", meta(Api::<Node>::all(c.clone()).list(&lp).await.unwrap().items));
    add("pod", meta(Api::<Pod>::all(c.clone()).list(&lp).await.unwrap().items));
    add("deploy", meta(Api::<Deployment>::all(c.clone()).list(&lp).await.unwrap().items));
    add("ds", meta(Api::<DaemonSet>::all(c.clone()).list(&lp).await.unwrap().items));
    add("secret", meta(Api::<Secret>::namespaced(c.clone(), o::CREDS_NS).list(&lp).await.unwrap().items));
    add("cm", meta(Api::<ConfigMap>::namespaced(c.clone(), o::CLOUD_CONFIG_NS).list(&lp).await.unwrap().items));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_makes_a_consistent_cluster_and_a_second_seed_changes_nothing() {
    let env = vsm_testenv::TestEnv::start_default().await.unwrap();
    let t = Instant::now();
    let cluster = vsm_testenv::sim::seed(&env, &SeedOptions::default()).await.unwrap();
    println!("TIMING seed workers=3: {:?}", t.elapsed());
    let w = World { env, cluster, sim: None, pool: vsm_vsphere::SessionPool::new(Default::default()) };
    let c = w.client();
    let (src, id) = (w.env.source(), w.cluster.infra_id.clone());

    // Infrastructure: the source vCenter, its failure domain, the infraID.
    let infra = o::infra_api(&c).get(o::INFRA_NAME).await.unwrap().data;
    let vs = &infra["spec"]["platformSpec"]["vsphere"];
    assert_eq!(infra["spec"]["platformSpec"]["type"], "VSphere");
    assert_eq!(vs["vcenters"][0]["server"], src.host());
    assert_eq!(vs["vcenters"][0]["port"], src.port());
    assert_eq!(vs["vcenters"][0]["datacenters"][0], source::DATACENTER);
    let fd = &vs["failureDomains"][0];
    assert_eq!(fd["name"], "source-fd");
    assert_eq!(fd["server"], src.host());
    assert_eq!(fd["topology"]["folder"], format!("/src-dc/vm/{id}"));
    assert_eq!(fd["topology"]["template"], w.cluster.source.template);
    assert_eq!(fd["topology"]["computeCluster"], source::CLUSTER_PATH);
    assert_eq!(infra["status"]["infrastructureName"], id);
    assert_eq!(infra["status"]["platformStatus"]["type"], "VSphere");

    // Credentials and cloud config name the same vCenter.
    let secret = Api::<Secret>::namespaced(c.clone(), o::CREDS_NS).get(o::CREDS_NAME).await.unwrap();
    let data = secret.data.unwrap();
    assert_eq!(String::from_utf8_lossy(&data[&format!("{}.username", src.host())].0), src.username);
    assert_eq!(String::from_utf8_lossy(&data[&format!("{}.password", src.host())].0), src.password);
    let cm = Api::<ConfigMap>::namespaced(c.clone(), o::CLOUD_CONFIG_NS).get(o::CLOUD_CONFIG_NAME).await.unwrap();
    let text = &cm.data.unwrap()[o::CLOUD_CONFIG_KEY];
    assert!(text.contains("\n# Topology labels"), "comments for a line-preserving editor:\n{text}");
    assert!(text.contains("\nlabels:\n  zone: openshift-zone\n"), "{text}");
    let parsed = cloud_config::parse(text).unwrap();
    assert_eq!(parsed.vcenters.len(), 1);
    assert_eq!(parsed.vcenter(&src.host()).unwrap().datacenters, [source::DATACENTER]);

    // ClusterVersion, ClusterOperators.
    let cv = Api::<DynamicObject>::all_with(c.clone(), &o::cluster_version()).get("version").await.unwrap();
    assert_eq!(o::condition_status(cv.data.pointer("/status/conditions"), "Available"), Some("True"));
    for name in CLUSTER_OPERATORS {
        let co = w.operator(name).await;
        assert_eq!(health(&co), ("True".into(), "False".into()), "{name}");
        assert_eq!(co.data["status"]["versions"][0]["version"], "4.18.12", "{name}");
    }

    // Machines, Nodes and VMs agree.
    let machines = w.machines().await;
    let masters: Vec<_> = (0..3).map(|i| format!("{id}-master-{i}")).collect();
    assert_eq!(w.cluster.masters, masters);
    assert_eq!(w.cluster.workers.len(), 3);
    assert_eq!(w.cluster.worker_machinesets, [format!("{id}-worker-0")]);
    assert_eq!(
        names(&machines),
        w.cluster.machines().into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    );
    let vms: BTreeMap<String, String> = w
        .vcenter(true)
        .await
        .list_vms(&w.cluster.source.folder)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.uuid))
        .collect();
    assert_eq!(vms.keys().cloned().collect::<Vec<_>>(), names(&machines), "a VM per Machine");
    for m in &machines {
        let name = m.name_any();
        assert_eq!(phase(m), "Running", "{name}");
        assert!(m.finalizers().contains(&o::MACHINE_FINALIZER.to_string()), "{name}");
        let provider_id = format!("vsphere://{}", vms[&name]);
        assert_eq!(str_at(&m.data, "/spec/providerID"), Some(provider_id.as_str()), "{name}");
        assert_eq!(str_at(&m.data, "/status/nodeRef/name"), Some(name.as_str()));
        let ps = &m.data["spec"]["providerSpec"]["value"];
        assert_eq!(ps["workspace"]["server"], src.host());
        assert_eq!(ps["workspace"]["folder"], w.cluster.source.folder);
        assert_eq!(ps["template"], w.cluster.source.template);
        assert_eq!(ps["credentialsSecret"]["name"], "vsphere-cloud-credentials");
        let node = w.node(&name).await.unwrap_or_else(|| panic!("node {name}"));
        assert!(node_ready(&node), "{name}");
        assert_eq!(node.spec.unwrap().provider_id.as_deref(), Some(provider_id.as_str()));
        let role = m.labels()[o::LABEL_ROLE].clone();
        assert!(node.metadata.labels.unwrap().contains_key(&format!("node-role.kubernetes.io/{role}")));
    }
    let ms = o::machine_sets_api(&c).get(&w.cluster.worker_machinesets[0]).await.unwrap();
    assert_eq!(ms.data["spec"]["replicas"], 3);
    assert_eq!(ms.data["status"]["readyReplicas"], 3);
    let device = &ms.data["spec"]["template"]["spec"]["providerSpec"]["value"]["network"]["devices"][0];
    assert_eq!(device["networkName"], source::NETWORK);
    assert!(
        device["nameservers"].is_array() && device["addressesFromPools"].is_array(),
        "static-IP settings: {device}"
    );
    for worker in &w.cluster.workers {
        let m = w.machine(worker).await.unwrap();
        assert_eq!(m.owner_references()[0].name, w.cluster.worker_machinesets[0]);
    }

    // Templates in both vCenters.
    assert!(w.vcenter(true).await.vm(&w.cluster.source.template).await.unwrap().template);
    assert!(w.vcenter(false).await.vm(&w.cluster.target.template).await.unwrap().template);
    assert_eq!(w.cluster.target.template, "/dst-dc/vm/rhcos-template");

    // The control-plane machine set.
    let cpms = o::cpms_api(&c).get(o::CPMS_NAME).await.unwrap();
    assert_eq!(cpms.data["spec"]["state"], "Active");
    assert_eq!(cpms.data["spec"]["replicas"], 3);
    let t = &cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"];
    assert_eq!(t["failureDomains"]["platform"], "VSphere");
    assert_eq!(t["failureDomains"]["vsphere"][0]["name"], "source-fd");
    assert_eq!(cpms.data["status"]["readyReplicas"], 3);

    // The vSphere consumer pods and the CVO, Running and Ready.
    for (ns, labels, count) in [
        (o::CCM_NS, "k8s-app=vsphere-cloud-controller-manager", 2),
        (o::MACHINE_API_NS, "api=clusterapi", 1),
        (o::CSI_NS, "app=vmware-vsphere-csi-driver-controller", 2),
        (o::CSI_NS, "app=vmware-vsphere-csi-driver-node", 6),
        (o::CSI_NS, "name=vmware-vsphere-csi-driver-operator", 1),
        (o::CVO_NS, "k8s-app=cluster-version-operator", 1),
    ] {
        let pods = w.pods(ns, labels).await;
        assert_eq!(pods.len(), count, "{labels}");
        assert!(pods.iter().all(pod_ready), "{labels}");
    }
    let cvo = Api::<Deployment>::namespaced(c.clone(), o::CVO_NS).get(o::CVO_NAME).await.unwrap();
    assert_eq!(cvo.spec.unwrap().replicas, Some(1));
    assert_eq!(cvo.status.unwrap().ready_replicas, Some(1));

    // A second seed writes nothing, in the API server or in vSphere.
    let before = snapshot(&w).await;
    let t = Instant::now();
    let again = vsm_testenv::sim::seed(&w.env, &SeedOptions::default()).await.unwrap();
    println!("TIMING re-seed workers=3: {:?}", t.elapsed());
    assert_eq!(snapshot(&w).await, before);
    assert_eq!(again.machines(), w.cluster.machines());
    let vms_again: Vec<String> = w.vm_names(true, &w.cluster.source.folder).await;
    assert_eq!(vms_again, vms.keys().cloned().collect::<Vec<_>>());

    // The seeded cluster is what the simulated controllers want: they change nothing.
    let mut w = w;
    w.sim = Some(Simulator::start(&w.env, SimOptions::instant()));
    w.eventually("every controller ran", || async {
        let s = w.sim().stats();
        if s.reconciles >= 4 { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = w.sim().stats();
    assert_eq!(
        (s.machines_created, s.pods_created, s.pods_deleted, s.operator_transitions),
        (0, 0, 0, 0),
        "{s:?} {:?}",
        w.sim().errors()
    );
    let after = snapshot(&w).await;
    let changed: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
    assert!(changed.is_empty() && after.len() == before.len(), "rewritten by the simulator at rest: {changed:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_install_with_ini_config_several_machinesets_and_an_infra_set() {
    let opts = SeedOptions {
        legacy_no_failure_domains: true,
        cloud_config: CloudConfigFormat::Ini,
        workers: 5,
        worker_machinesets: 2,
        infra_machines: Some(2),
        static_ip_workers: false,
        infra_id: "legacy-4k9zt".into(),
        ..Default::default()
    };
    let w = World::start(opts, Some(SimOptions::instant())).await;
    let c = w.client();
    let id = &w.cluster.infra_id;

    let infra = o::infra_api(&c).get(o::INFRA_NAME).await.unwrap().data;
    assert!(infra["spec"]["platformSpec"]["vsphere"].get("failureDomains").is_none());
    assert_eq!(infra["spec"]["platformSpec"]["vsphere"]["vcenters"][0]["server"], w.env.source().host());
    assert!(w.cluster.source_failure_domain.is_none());
    let cpms = o::cpms_api(&c).get(o::CPMS_NAME).await.unwrap();
    assert!(cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"].get("failureDomains").is_none());

    let cm = Api::<ConfigMap>::namespaced(c.clone(), o::CLOUD_CONFIG_NS).get(o::CLOUD_CONFIG_NAME).await.unwrap();
    let text = cm.data.unwrap()[o::CLOUD_CONFIG_KEY].clone();
    assert!(text.contains(&format!("[VirtualCenter \"{}\"]", w.env.source().host())), "{text}");
    assert!(text.contains("[Workspace]") && text.contains("; One section per vCenter."), "{text}");
    let parsed = cloud_config::parse(&text).unwrap();
    assert_eq!(parsed.workspace_server.as_deref(), Some(w.env.source().host().as_str()));

    assert_eq!(w.cluster.worker_machinesets, [format!("{id}-worker-0"), format!("{id}-worker-1")]);
    let per_set = |set: &str| {
        let set = set.to_string();
        w.cluster.workers.iter().filter(move |m| m.starts_with(&format!("{set}-"))).count()
    };
    assert_eq!((per_set(&w.cluster.worker_machinesets[0]), per_set(&w.cluster.worker_machinesets[1])), (3, 2));
    assert_eq!(w.cluster.infra_machineset.as_deref(), Some(format!("{id}-infra-0").as_str()));
    assert_eq!(w.cluster.infra_machines.len(), 2);
    for m in &w.cluster.infra_machines {
        let machine = w.machine(m).await.unwrap();
        assert_eq!(machine.labels()[o::LABEL_ROLE], "infra");
        let node = w.node(m).await.unwrap();
        assert!(node.labels().contains_key("node-role.kubernetes.io/infra"), "{:?}", node.labels());
    }
    assert_eq!(w.pods(o::CSI_NS, "app=vmware-vsphere-csi-driver-node").await.len(), 3 + 5 + 2);

    // At rest under the simulator too: machine-config sees one vCenter, the cloud config
    // (INI) names it, so every ruled operator stays healthy.
    w.eventually("controllers ran", || async {
        let s = w.sim().stats();
        if s.reconciles >= 4 { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in vsm_testenv::sim::operators::RULED {
        assert_eq!(health(&w.operator(name).await), ("True".into(), "False".into()), "{name}");
    }
    let s = w.sim().stats();
    assert_eq!((s.machines_created, s.operator_transitions), (0, 0), "{s:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_a_hundred_workers() {
    let env = vsm_testenv::TestEnv::start_default().await.unwrap();
    let opts = SeedOptions { workers: 100, worker_machinesets: 2, ..Default::default() };
    let t = Instant::now();
    let cluster = vsm_testenv::sim::seed(&env, &opts).await.unwrap();
    println!("TIMING seed workers=100: {:?}", t.elapsed());
    let w = World { env, cluster, sim: None, pool: vsm_vsphere::SessionPool::new(Default::default()) };
    assert_eq!(w.cluster.workers.len(), 100);
    assert_eq!(w.cluster.nodes.len(), 103);
    let nodes = Api::<Node>::all(w.client()).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(nodes.len(), 103);
    assert!(nodes.iter().all(node_ready));
    assert_eq!(w.vm_names(true, &w.cluster.source.folder).await.len(), 103);
    let csi = w.pods(o::CSI_NS, "app=vmware-vsphere-csi-driver-node").await;
    assert_eq!(csi.len(), 103);
    assert!(csi.iter().all(pod_ready));
    let t = Instant::now();
    vsm_testenv::sim::seed(&w.env, &opts).await.unwrap();
    println!("TIMING re-seed workers=100: {:?}", t.elapsed());
    assert_eq!(w.machines().await.len(), 103);
    w.stop().await;
}
