//! Zonal clusters and environments of more than two vCenters, against the real environment
//! and the real machine-api:
//! - a zonal seed (three failure domains, one compute cluster each) puts every MachineSet,
//!   Machine, VM and Node in its failure domain, with the tags, labels, taint, autoscaler,
//!   health check and CPMS a zonal installation has; the real vSphere actuator accepts every
//!   seeded Machine; a second seed writes nothing; a machine made later in a target failure
//!   domain gets a Node labelled with that domain's zone;
//! - failure domains spanning two source vCenters (one with a CA of its own, three vCenters
//!   in all, each reachable with verified TLS and its own credentials only), with the legacy
//!   INI cloud config.

mod sim_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_testenv::machine_api::Component;
use vsm_testenv::sim::nodes::{LABEL_TOPOLOGY_REGION, LABEL_TOPOLOGY_ZONE};
use vsm_testenv::sim::objects::{self as o, str_at};
use vsm_testenv::sim::provider::inject_failure_domain;
use vsm_testenv::sim::{
    self, CloudConfigFormat, FailureDomain, SeedOptions, SeededCluster, SimOptions, Simulator, ZonalSeed,
};
use vsm_testenv::vcsim::GuestVm;
use vsm_testenv::{TestEnv, TestEnvOptions, VCenterRole, Vcsim, VcsimOptions};
use vsm_vsphere::{Client, ClientOptions, Credentials, ObjectKind, ServerSpec, SessionPool, TlsPolicy};

/// Only a guard against hanging.
const LIMIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns Ok, failing after [`LIMIT`] with its last word.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Result<Result<T, String>>) -> Result<T> {
    let start = Instant::now();
    loop {
        match check().await? {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() > LIMIT => anyhow::bail!("{what}: not after {LIMIT:?}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A session on `vc` trusting only `ca_pem`, with `user`/`password`.
async fn login(pool: &SessionPool, vc: &Vcsim, ca_pem: &str, user: &str, password: &str) -> Result<Arc<Client>> {
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(user.to_string(), password.to_string()),
        tls: TlsPolicy { ca_bundle_pem: Some(ca_pem.to_string()), ..Default::default() },
    };
    Ok(pool.client(&spec).await?)
}

async fn admin(pool: &SessionPool, vc: &Vcsim) -> Result<Arc<Client>> {
    login(pool, vc, vc.ca_pem.as_deref().context("a CA-signed vCenter")?, &vc.username, &vc.password).await
}

fn labels_of(obj: &impl ResourceExt) -> BTreeMap<String, String> {
    obj.labels().clone().into_iter().collect()
}

/// Every seeded Machine is where its failure domain says, in vSphere (compute cluster and
/// datastore of its VM) and in Kubernetes (provider spec, machine labels, a Ready Node with
/// the domain's topology labels).
async fn check_placement(env: &TestEnv, cluster: &SeededCluster) -> Result<()> {
    let client = env.client();
    let mut vms: BTreeMap<String, (String, GuestVm)> = BTreeMap::new();
    for (_, vc) in env.vcenters() {
        vms.extend(vc.guest_vms().await?.into_iter().map(|vm| (vm.name.clone(), (vc.host(), vm))));
    }
    let machines = o::machines_api(&client);
    let nodes: Api<Node> = Api::all(client.clone());
    ensure!(cluster.machine_domains.len() == cluster.machines().len(), "{:?}", cluster.machine_domains);
    for (name, fd_name) in &cluster.machine_domains {
        let fd = cluster.failure_domain(fd_name).context("a seeded domain")?;
        let (host, vm) = vms.get(name).with_context(|| format!("no VM {name}"))?;
        ensure!(host == &fd.server, "{name} runs in vCenter {host}, not {}", fd.server);
        ensure!(vm.compute_cluster.as_deref() == Some(fd.compute_cluster.as_str()), "{name}: {vm:?} not in {fd:?}");
        let ds = fd.datastore.rsplit('/').next().unwrap_or_default();
        ensure!(vm.datastores.iter().any(|d| d == ds), "{name} is on {:?}, not {ds}", vm.datastores);
        let m = machines.get(name).await?;
        let ws = &m.data["spec"]["providerSpec"]["value"]["workspace"];
        ensure!(fd.contains(&m.data["spec"]["providerSpec"]["value"]), "{name}: workspace {ws} not in {fd_name}");
        ensure!(m.data["spec"]["providerSpec"]["value"]["template"] == fd.template.as_str(), "{name}: template");
        let l = labels_of(&m);
        ensure!(l.get(sim::LABEL_MACHINE_ZONE) == Some(&fd.zone), "{name}: machine labels {l:?}");
        ensure!(l.get(sim::LABEL_MACHINE_REGION) == Some(&fd.region), "{name}: machine labels {l:?}");
        let node = nodes.get(name).await?;
        ensure!(sim_support::node_ready(&node), "{name}: Node not Ready");
        let nl = labels_of(&node);
        ensure!(nl.get(LABEL_TOPOLOGY_ZONE) == Some(&fd.zone), "{name}: Node labels {nl:?}");
        ensure!(nl.get(LABEL_TOPOLOGY_REGION) == Some(&fd.region), "{name}: Node labels {nl:?}");
    }
    Ok(())
}

/// The real vSphere actuator has reconciled every seeded Machine (it annotates its power
/// state) without cloning it again and without an error about it, and left the region and
/// zone labels as seeded: it sets them from the vCenter's tags, to "" when it finds none.
async fn check_actuator_accepted(env: &TestEnv, cluster: &SeededCluster) -> Result<()> {
    let machines = o::machines_api(&env.client());
    for name in cluster.machines() {
        let m = until(&format!("the actuator reconciles {name}"), async || {
            let m = machines.get(&name).await?;
            let annotated = m.annotations().contains_key("machine.openshift.io/instance-state");
            Ok(if annotated { Ok(m) } else { Err(format!("annotations {:?}", m.annotations())) })
        })
        .await?;
        let fd = cluster.failure_domain(&cluster.machine_domains[&name]).context("domain")?;
        let l = labels_of(&m);
        ensure!(l.get(sim::LABEL_MACHINE_ZONE) == Some(&fd.zone), "{name}: the actuator's labels {l:?}");
        ensure!(l.get(sim::LABEL_MACHINE_REGION) == Some(&fd.region), "{name}: the actuator's labels {l:?}");
    }
    let mapi = env.machine_api().context("machine-api")?;
    let log = std::fs::read_to_string(mapi.log_path(Component::MachineController))?;
    for name in cluster.machines() {
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&name))
            .filter(|l| l.starts_with('E') || l.contains(&format!("{name}: cloning")) || l.contains("creating machine"))
            .collect();
        ensure!(bad.is_empty(), "the machine controller on seeded {name}:\n{}", bad.join("\n"));
    }
    // It read the labels from the tags (it logs what it finds), not just left the seed's.
    ensure!(!log.contains("Failed to reconcile region and zone labels"), "the actuator's tag lookup failed");
    for fd in &cluster.failure_domains {
        let found = format!("has zone tag ({}) with value {}", sim::ZONE_CATEGORY, fd.zone);
        ensure!(log.contains(&found), "the actuator never found the zone tag of {}", fd.name);
    }
    Ok(())
}

/// The last lines of the machine controller's log about `focus`.
fn machine_controller_log(env: &TestEnv, focus: &str) -> String {
    let Some(mapi) = env.machine_api() else { return String::new() };
    let log = std::fs::read_to_string(mapi.log_path(Component::MachineController)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(focus)).collect();
    let all: Vec<&str> = log.lines().collect();
    format!(
        "{}\n... the last lines:\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n"),
        all[all.len().saturating_sub(15)..].join("\n")
    )
}

/// Writes the API server carried out for the admin user (the seed's identity; dry runs and
/// refused creates of what exists left out) in the audit log after its first `skip` lines.
fn admin_writes(env: &TestEnv, skip: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(env.audit_log_path().context("an audit log")?)?;
    Ok(text
        .lines()
        .skip(skip)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["stage"] == "ResponseComplete" && v["user"]["username"] == vsm_testenv::apiserver::ADMIN_USER)
        .filter(|v| v["responseStatus"]["code"].as_i64().is_some_and(|c| (200..300).contains(&c)))
        .map(|v| format!("{} {}", v["verb"].as_str().unwrap_or_default(), v["requestURI"].as_str().unwrap_or_default()))
        .filter(|w| !w.contains("dryRun"))
        .collect())
}

fn audit_lines(env: &TestEnv) -> Result<usize> {
    Ok(std::fs::read_to_string(env.audit_log_path().context("an audit log")?)?.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zonal_seed_puts_every_machine_in_its_failure_domain_and_a_second_seed_writes_nothing() -> Result<()> {
    let t = Instant::now();
    let env = TestEnv::start(TestEnvOptions {
        source: VcsimOptions::zonal_source(3),
        target: VcsimOptions::zonal_target(2),
        machine_api: true,
        audit_log: true,
        ..Default::default()
    })
    .await?;
    println!("TIMING zonal environment with the machine-api: {:?}", t.elapsed());
    let opts = SeedOptions {
        zonal: Some(ZonalSeed::full()),
        workers: 4,
        infra_machines: Some(1),
        // Their IP address claims need the simulator's IPAM provider, not running yet.
        static_ip_workers: false,
        ..Default::default()
    };
    let t = Instant::now();
    let cluster = sim::seed(&env, &opts).await?;
    println!("TIMING zonal seed: {:?}", t.elapsed());
    let client = env.client();
    let id = cluster.infra_id.clone();

    // Three failure domains, one per compute cluster of the source, in the Infrastructure.
    let fds: Vec<&str> = cluster.failure_domains.iter().map(|f| f.name.as_str()).collect();
    ensure!(fds == ["src-fd-a", "src-fd-b", "src-fd-c"], "{fds:?}");
    let infra = o::infra_api(&client).get(o::INFRA_NAME).await?.data;
    let vs = &infra["spec"]["platformSpec"]["vsphere"];
    let listed: Vec<FailureDomain> =
        vs["failureDomains"].as_array().context("failureDomains")?.iter().map(FailureDomain::from_json).collect();
    ensure!(listed == cluster.failure_domains, "{listed:?}");
    ensure!(vs["vcenters"].as_array().map(Vec::len) == Some(1), "{}", vs["vcenters"]);
    ensure!(listed[1].compute_cluster == "/src-dc/host/src-cluster-b" && listed[1].zone == "src-zone-b");
    ensure!(listed[2].datastore == "/src-dc/datastore/src-ds-c", "{:?}", listed[2]);

    // Worker MachineSets one per domain (4 workers: 2, 1, 1), the infra set tainted.
    let sets: Vec<String> = (0..3).map(|i| format!("{id}-worker-{i}")).collect();
    ensure!(cluster.worker_machinesets == sets, "{:?}", cluster.worker_machinesets);
    let ms_api = o::machine_sets_api(&client);
    for (i, (set, want)) in sets.iter().zip([2, 1, 1]).enumerate() {
        let ms = ms_api.get(set).await?;
        ensure!(ms.data["spec"]["replicas"] == want, "{set}: {}", ms.data["spec"]["replicas"]);
        ensure!(cluster.machineset_domains[set] == fds[i], "{set} in {}", cluster.machineset_domains[set]);
        let spec = &ms.data["spec"]["template"]["spec"]["providerSpec"]["value"];
        ensure!(cluster.failure_domains[i].contains(spec), "{set}: {}", spec["workspace"]);
    }
    let infra_set = cluster.infra_machineset.clone().context("infra set")?;
    let ms = ms_api.get(&infra_set).await?;
    let template = &ms.data["spec"]["template"]["spec"];
    ensure!(template["taints"] == json!([{"key": sim::INFRA_TAINT_KEY, "effect": "NoSchedule"}]), "{template}");
    ensure!(template["metadata"]["labels"]["node-role.kubernetes.io/infra"] == "", "{template}");
    // The real nodelink puts the Machine's taint on its Node.
    let infra_node = cluster.infra_machines.first().context("infra machine")?.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    until("the infra Node tainted", async || {
        let n = nodes.get(&infra_node).await?;
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        Ok(if taints.iter().any(|t| t.key == sim::INFRA_TAINT_KEY && t.effect == "NoSchedule") {
            Ok(())
        } else {
            Err(format!("{taints:?}"))
        })
    })
    .await?;

    // Masters one per domain; every Machine, VM and Node in its domain.
    let master_fds: BTreeSet<&str> = cluster.masters.iter().map(|m| cluster.machine_domains[m].as_str()).collect();
    ensure!(master_fds.len() == 3, "masters in {master_fds:?}");
    check_placement(&env, &cluster).await?;

    // The autoscaler, its target's annotations, the health check and the CPMS.
    let ma_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &o::machine_autoscaler());
    let ma = ma_api.get(cluster.machine_autoscaler.as_deref().context("autoscaler")?).await?;
    ensure!(ma.data["spec"]["scaleTargetRef"]["name"] == sets[0].as_str(), "{}", ma.data["spec"]);
    ensure!((ma.data["spec"]["minReplicas"].clone(), ma.data["spec"]["maxReplicas"].clone()) == (json!(1), json!(3)));
    let target = ms_api.get(&sets[0]).await?;
    ensure!(target.annotations().get(sim::ANNOTATION_AUTOSCALER_MAX).map(String::as_str) == Some("3"));
    ensure!(target.annotations().get(sim::ANNOTATION_AUTOSCALER_MIN).map(String::as_str) == Some("1"));
    let mhc_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &o::machine_health_check());
    let mhc_name = cluster.machine_health_check.clone().context("health check")?;
    let selector = mhc_api.get(&mhc_name).await?.data["spec"]["selector"]["matchLabels"].clone();
    let selector: Vec<String> = selector
        .as_object()
        .context("matchLabels")?
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let selected = o::machines_api(&client).list(&ListParams::default().labels(&selector.join(","))).await?.items;
    ensure!(
        sim_support::names(&selected) == cluster.workers,
        "the health check selects {:?}",
        sim_support::names(&selected)
    );
    // The real health check controller counts them healthy.
    until("the health check sees the workers healthy", async || {
        let s = mhc_api.get(&mhc_name).await?.data["status"].clone();
        Ok(if s["expectedMachines"] == 4 && s["currentHealthy"] == 4 { Ok(()) } else { Err(s.to_string()) })
    })
    .await?;
    let cpms = o::cpms_api(&client).get(o::CPMS_NAME).await?;
    let names = &cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"];
    ensure!(*names == json!([{"name": "src-fd-a"}, {"name": "src-fd-b"}, {"name": "src-fd-c"}]), "{names}");

    // vSphere: a template per domain (source and target), the region and zone tags.
    let pool = SessionPool::new(ClientOptions::default());
    let src = admin(&pool, env.source()).await?;
    let dst = admin(&pool, env.target()).await?;
    for fd in &cluster.failure_domains {
        ensure!(src.vm(&fd.template).await?.template, "{} template", fd.name);
        let cluster_obj = src.find(ObjectKind::ComputeCluster, &fd.compute_cluster).await?;
        let tags = src.list_attached_tags(&cluster_obj).await?;
        ensure!(tags.iter().any(|t| t.category_name == sim::ZONE_CATEGORY && t.name == fd.zone), "{tags:?}");
    }
    let dc = src.find(ObjectKind::Datacenter, "/src-dc").await?;
    let tags = src.list_attached_tags(&dc).await?;
    ensure!(tags.iter().any(|t| t.category_name == sim::REGION_CATEGORY && t.name == "src-region"), "{tags:?}");
    let target_fds: Vec<&str> = cluster.target_failure_domains.iter().map(|f| f.name.as_str()).collect();
    ensure!(target_fds == ["dst-fd-a", "dst-fd-b"], "{target_fds:?}");
    for fd in &cluster.target_failure_domains {
        ensure!(dst.vm(&fd.template).await?.template, "{} template", fd.name);
    }
    check_actuator_accepted(&env, &cluster).await?;

    // A second seed writes nothing, in the API server or in vSphere.
    let before = audit_lines(&env)?;
    let vms_before: Vec<String> = src.list_vms(&cluster.source.folder).await?.into_iter().map(|v| v.name).collect();
    let t = Instant::now();
    let again = sim::seed(&env, &opts).await?;
    println!("TIMING zonal re-seed: {:?}", t.elapsed());
    let writes = admin_writes(&env, before)?;
    ensure!(writes.is_empty(), "the second seed wrote:\n{}", writes.join("\n"));
    ensure!(again.machine_domains == cluster.machine_domains);
    let vms_after: Vec<String> = src.list_vms(&cluster.source.folder).await?.into_iter().map(|v| v.name).collect();
    ensure!(vms_after == vms_before, "{vms_before:?} -> {vms_after:?}");

    // A machine in a target domain the Infrastructure lists gets that domain's zone.
    let sim = Simulator::start(&env, SimOptions::instant());
    let fd = cluster.target_failure_domains[1].clone();
    let infra = o::infra_api(&client).get(o::INFRA_NAME).await?;
    let mut vsphere = infra.data["spec"]["platformSpec"]["vsphere"].clone();
    vsphere["vcenters"].as_array_mut().context("vcenters")?.push(cluster.target_vcenter_json());
    vsphere["failureDomains"].as_array_mut().context("failureDomains")?.push(fd.to_json());
    let patch = json!({"spec": {"platformSpec": {"vsphere": vsphere}}});
    o::infra_api(&client).patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(patch)).await?;
    let t = env.target();
    let creds = json!({"stringData": {format!("{}.username", t.host()): t.username, format!("{}.password", t.host()): t.password}});
    let secrets: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    secrets.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(creds)).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), o::CLOUD_CONFIG_NS);
    let text = cms.get(o::CLOUD_CONFIG_NAME).await?.data.context("data")?[o::CLOUD_CONFIG_KEY].clone();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
    doc["vcenter"][t.host().as_str()] = serde_yaml::from_str(&format!(
        "{{server: '{}', port: {}, datacenters: [{}]}}",
        t.host(),
        t.port(),
        fd.datacenter
    ))?;
    let patch = json!({"data": {o::CLOUD_CONFIG_KEY: serde_yaml::to_string(&doc)?}});
    cms.patch(o::CLOUD_CONFIG_NAME, &PatchParams::default(), &Patch::Merge(patch)).await?;
    // As a migration's CreateFolder would.
    dst.create_folder(&fd.folder).await?;
    let set = format!("{id}-worker-{}", fd.name);
    let mut ms = ms_api.get(&sets[1]).await?.data;
    let spec = &mut ms["spec"]["template"]["spec"]["providerSpec"]["value"];
    *spec = inject_failure_domain(spec, &fd, &id);
    let labels =
        json!({o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: set, o::LABEL_ROLE: "worker", o::LABEL_TYPE: "worker"});
    let new_set: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
        "metadata": {"name": set, "namespace": o::MACHINE_API_NS, "labels": {o::LABEL_CLUSTER: id}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: set}},
                 "template": {"metadata": {"labels": labels}, "spec": ms["spec"]["template"]["spec"]}},
    }))?;
    ms_api.create(&PostParams::default(), &new_set).await?;
    let t = Instant::now();
    let node = until("a Ready Node for the target domain's machine", async || {
        let ms = o::machines_api(&client)
            .list(&ListParams::default().labels(&format!("{}={set}", o::LABEL_MACHINESET)))
            .await?;
        let Some(m) = ms.items.first() else { return Ok(Err("no Machine yet".into())) };
        let Some(node) = str_at(&m.data, "/status/nodeRef/name") else {
            let log = machine_controller_log(&env, &m.name_any());
            return Ok(Err(format!(
                "{}: {}; simulator errors {:?}; log:\n{log}",
                m.name_any(),
                m.data["status"],
                sim.errors()
            )));
        };
        let node = nodes.get(node).await?;
        Ok(if sim_support::node_ready(&node) { Ok(node) } else { Err("Node not Ready".into()) })
    })
    .await?;
    println!("TIMING a target-domain machine Running with its Node: {:?}", t.elapsed());
    let nl = labels_of(&node);
    ensure!(nl.get(LABEL_TOPOLOGY_ZONE) == Some(&"dst-zone-b".to_string()), "{nl:?}");
    ensure!(nl.get(LABEL_TOPOLOGY_REGION) == Some(&"dst-region".to_string()), "{nl:?}");
    let vm = env.target().guest_vms().await?.into_iter().find(|v| v.hostname.as_deref() == Some(&node.name_any()));
    let vm = vm.context("the new machine's VM in the target")?;
    ensure!(vm.compute_cluster.as_deref() == Some("/dst-dc/host/dst-cluster-b"), "{vm:?}");
    ensure!(vm.datastores == ["dst-ds-b"], "{vm:?}");
    // The simulated control-plane machine set operator found the seeded masters as it wants them.
    ensure!(sim.stats().machines_created == 0, "{:?}", sim.stats());
    sim.stop().await;
    pool.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_domains_across_two_source_vcenters_each_with_its_own_ca_and_credentials() -> Result<()> {
    let t = Instant::now();
    let env = TestEnv::start(TestEnvOptions {
        source: VcsimOptions::zonal_source(2),
        extra_sources: vec![VcsimOptions::extra_source(2, 1).with_own_ca()?],
        machine_api: true,
        ..Default::default()
    })
    .await?;
    println!("TIMING environment with 3 vCenters and the machine-api: {:?}", t.elapsed());

    // Three vCenters with their roles, each reachable with verified TLS and its own login.
    let roles: Vec<(VCenterRole, String)> = env.vcenters().iter().map(|(r, v)| (*r, v.name.clone())).collect();
    ensure!(
        roles
            == [
                (VCenterRole::Source, "source".to_string()),
                (VCenterRole::Source, "source-2".into()),
                (VCenterRole::Target, "target".into())
            ],
        "{roles:?}"
    );
    let pool = SessionPool::new(ClientOptions::default());
    let second = env.vcenter("127.0.0.12").context("source-2 by its address")?;
    ensure!(second.ca_pem.as_deref() != Some(env.ca_pem()), "source-2 has a CA of its own");
    for (_, vc) in env.vcenters() {
        let c = admin(&pool, vc).await.with_context(|| format!("{} with its CA and credentials", vc.name))?;
        ensure!(
            c.find(ObjectKind::Datacenter, &format!("/{}", vc.inventory.as_ref().unwrap().datacenter)).await.is_ok()
        );
        let other = if vc.name == "target" { env.source() } else { env.target() };
        let refused = login(&pool, vc, vc.ca_pem.as_deref().unwrap(), &other.username, &other.password).await;
        ensure!(refused.is_err(), "{} accepted {}'s credentials", vc.name, other.name);
    }
    let untrusted = login(&pool, second, env.ca_pem(), &second.username, &second.password).await;
    ensure!(untrusted.is_err(), "source-2 verified with the environment's CA");
    let bundle = env.vcenter_ca_bundle_pem();
    ensure!(bundle.matches("BEGIN CERTIFICATE").count() == 2, "{bundle}");
    login(&pool, second, &bundle, &second.username, &second.password).await.context("source-2 with the bundle")?;

    // The seed: domains a and b in the source, the third in source-2, INI cloud config.
    let opts = SeedOptions {
        zonal: Some(ZonalSeed::default()),
        workers: 3,
        static_ip_workers: false,
        cloud_config: CloudConfigFormat::Ini,
        ..Default::default()
    };
    let t = Instant::now();
    let cluster = sim::seed(&env, &opts).await?;
    println!("TIMING zonal seed over two vCenters: {:?}", t.elapsed());
    let servers: Vec<(&str, &str)> =
        cluster.failure_domains.iter().map(|f| (f.name.as_str(), f.server.as_str())).collect();
    ensure!(
        servers == [("src-fd-a", "127.0.0.1"), ("src-fd-b", "127.0.0.1"), ("src2-fd-a", "127.0.0.12")],
        "{servers:?}"
    );
    ensure!(cluster.machine_autoscaler.is_none() && cluster.machine_health_check.is_none());
    let client = env.client();
    let infra = o::infra_api(&client).get(o::INFRA_NAME).await?.data;
    let vcenters: Vec<(String, u16)> = infra["spec"]["platformSpec"]["vsphere"]["vcenters"]
        .as_array()
        .context("vcenters")?
        .iter()
        .map(|v| (v["server"].as_str().unwrap_or_default().to_string(), v["port"].as_u64().unwrap_or(0) as u16))
        .collect();
    ensure!(vcenters == [(env.source().host(), env.source().port()), (second.host(), second.port())], "{vcenters:?}");
    let creds =
        Api::<Secret>::namespaced(client.clone(), o::CREDS_NS).get(o::CREDS_NAME).await?.data.unwrap_or_default();
    for vc in [env.source(), second] {
        let user = creds.get(&format!("{}.username", vc.host())).map(|b| String::from_utf8_lossy(&b.0).into_owned());
        ensure!(user.as_deref() == Some(vc.username.as_str()), "vsphere-creds for {}: {user:?}", vc.name);
    }
    let cm = Api::<ConfigMap>::namespaced(client.clone(), o::CLOUD_CONFIG_NS).get(o::CLOUD_CONFIG_NAME).await?;
    let text = cm.data.context("data")?[o::CLOUD_CONFIG_KEY].clone();
    ensure!(text.starts_with("# vSphere cloud provider configuration (legacy INI format)"), "{text}");
    let parsed = sim::cloud_config::parse(&text)?;
    ensure!(
        parsed.vcenter(&second.host()).map(|v| (v.port, v.datacenters.clone()))
            == Some((second.port(), vec!["src2-dc".into()])),
        "{text}"
    );
    ensure!(
        cluster.source_vcenters.len() == 2
            && cluster.source_vcenters[1].folder == format!("/src2-dc/vm/{}", cluster.infra_id)
    );

    // Masters and workers one per domain, across both vCenters; the actuator (trusting the
    // bundle, reading both ports from the INI config) accepts them all.
    let master_fds: BTreeSet<&str> = cluster.masters.iter().map(|m| cluster.machine_domains[m].as_str()).collect();
    ensure!(master_fds.len() == 3, "{master_fds:?}");
    check_placement(&env, &cluster).await?;
    check_actuator_accepted(&env, &cluster).await?;
    pool.shutdown().await;
    Ok(())
}
