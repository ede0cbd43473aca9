//! A zonal cluster keeps its shape through a migration: three source failure domains (one
//! compute cluster each, a worker set per domain, an infra set with a taint) onto three
//! target failure domains of the target vCenter, with the operator, the shipped phase
//! components, the real machine-api and the cluster simulator. At the end, per target
//! domain: the replacement MachineSets with their source's labels, taints and replicas,
//! their Machines' VMs in that domain's compute cluster, Nodes with its zone label; the
//! control plane one master per domain and the CPMS listing the three. In a fresh
//! cluster, plan mode lists every set it will create and scale; then a run rolled back
//! after ScaleOldMachines leaves the cluster as it was.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::{PHASES, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::Operator;
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, shipped_operator, target_spec, until_migration};
use vsm_testenv::sim::nodes::LABEL_TOPOLOGY_ZONE;
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{FailureDomain, SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator, ZonalSeed, seed};
use vsm_testenv::vcsim::GuestVm;
use vsm_testenv::{TestEnv, TestEnvOptions, VcsimOptions};

struct Zonal {
    env: TestEnv,
    seeded: SeededCluster,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
}

impl Zonal {
    async fn start() -> Result<Zonal> {
        let env = TestEnv::start(TestEnvOptions {
            source: VcsimOptions::zonal_source(3),
            target: VcsimOptions::zonal_target(3),
            machine_api: true,
            ..Default::default()
        })
        .await?;
        let opts = SeedOptions {
            zonal: Some(ZonalSeed::full()),
            workers: 3,
            infra_machines: Some(1),
            static_ip_workers: false,
            ..Default::default()
        };
        let seeded = seed(&env, &opts).await?;
        ensure_secrets(&env, &env.client()).await?;
        let sim = Simulator::start(&env, SimOptions::instant());
        let operator = shipped_operator(&env, "e2e-zonal").await?;
        Ok(Zonal { env, seeded, sim: Some(sim), operator: Some(operator) })
    }

    async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
    }

    /// Source domain i goes to target domain i; the control plane over all three targets.
    fn spec(&self) -> Result<Value> {
        let mut v = serde_json::to_value(target_spec(&self.env))?;
        let targets = &self.seeded.target_failure_domains;
        ensure!(targets.len() == 3 && self.seeded.failure_domains.len() == 3, "three domains on each side");
        v["failureDomains"] = Value::Array(targets.iter().map(spec_domain).collect());
        let map: Vec<Value> = self
            .seeded
            .failure_domains
            .iter()
            .zip(targets)
            .map(|(s, t)| json!({"source": s.name, "target": t.name}))
            .collect();
        v["machineSetConfig"] = json!({"failureDomainMap": map});
        v["controlPlaneMachineSetConfig"] =
            json!({"failureDomains": targets.iter().map(|t| &t.name).collect::<Vec<_>>()});
        v["health"] = json!({"stabilityWindow": "2s"});
        Ok(v)
    }

    fn migrations(&self) -> Api<VSphereMigration> {
        Api::namespaced(self.env.client(), NAMESPACE)
    }

    async fn create(&self, name: &str, spec: Value) -> Result<()> {
        let spec = serde_json::from_value(spec)?;
        self.migrations()
            .create(&PostParams::default(), &VSphereMigration::new(name, VSphereMigrationSpec { spec }))
            .await?;
        Ok(())
    }

    async fn until(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&VSphereMigration) -> bool,
    ) -> Result<VSphereMigration> {
        // Only a guard against hanging: the real machine-api's retries can take minutes.
        until_migration(&self.migrations(), name, what, Duration::from_secs(1800), pred).await
    }
}

/// A seeded failure domain as `spec.failureDomains` names it.
fn spec_domain(fd: &FailureDomain) -> Value {
    let mut topology = json!({
        "datacenter": fd.datacenter, "computeCluster": fd.compute_cluster, "datastore": fd.datastore,
        "networks": fd.networks, "template": fd.template,
    });
    if !fd.resource_pool.is_empty() {
        topology["resourcePool"] = json!(fd.resource_pool);
    }
    json!({"name": fd.name, "region": fd.region, "zone": fd.zone, "server": fd.server, "topology": topology})
}

fn phase(m: &VSphereMigration) -> String {
    m.status.as_ref().and_then(|s| s.phase.as_ref()).map(Stage::to_string).unwrap_or_default()
}

/// What the MachineSets look like: name -> (replicas, labels of the machine template,
/// node labels, taints, server, compute cluster of the resource pool).
async fn sets(env: &TestEnv) -> Result<BTreeMap<String, Value>> {
    let list = o::machine_sets_api(&env.client()).list(&Default::default()).await?;
    Ok(list
        .items
        .iter()
        .map(|s| {
            let t = &s.data["spec"]["template"];
            let ws = &t["spec"]["providerSpec"]["value"]["workspace"];
            let mut labels = t["metadata"]["labels"].clone();
            if let Some(l) = labels.as_object_mut() {
                l.remove(o::LABEL_MACHINESET);
            }
            (
                s.name_any(),
                json!({"replicas": s.data["spec"]["replicas"], "labels": labels,
                       "nodeLabels": t["spec"]["metadata"]["labels"], "taints": t["spec"]["taints"],
                       "server": ws["server"], "pool": ws["resourcePool"]}),
            )
        })
        .collect())
}

async fn all_vms(env: &TestEnv) -> Result<BTreeMap<String, (String, GuestVm)>> {
    let mut all = BTreeMap::new();
    for (_, vc) in env.vcenters() {
        all.extend(vc.guest_vms().await?.into_iter().map(|vm| (vm.name.clone(), (vc.host(), vm))));
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zonal_cluster_keeps_its_shape_on_the_target_and_a_rollback_brings_it_back() -> Result<()> {
    let c = Zonal::start().await?;
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let before = sets(&c.env).await?;
    let domains: BTreeMap<String, String> = c
        .seeded
        .failure_domains
        .iter()
        .zip(&c.seeded.target_failure_domains)
        .map(|(s, t)| (s.name.clone(), t.name.clone()))
        .collect();

    // The migration, to the end.
    c.create("zonal", c.spec()?).await?;
    let m = c.until("zonal", "Completed", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let history: Vec<String> = m.status.as_ref().unwrap().history.iter().map(|h| h.phase.clone()).collect();
    ensure!(history == PHASES.to_vec(), "{history:?}");

    // Per source set, its replacement in the mapped target domain: same role labels, node
    // labels, taints and replicas; the source at zero.
    let after = sets(&c.env).await?;
    for (name, was) in &before {
        let source_domain = &c.seeded.machineset_domains[name];
        let target = c.seeded.failure_domain(&domains[source_domain]).context("target domain")?;
        let new_name = format!("{}-{}", name, target.name);
        let new_name = match name.strip_suffix(&format!("-{source_domain}")) {
            Some(stem) => format!("{stem}-{}", target.name),
            None => new_name,
        };
        let now = after.get(&new_name).with_context(|| format!("no replacement {new_name} of {name}: {after:#?}"))?;
        for k in ["replicas", "labels", "nodeLabels", "taints"] {
            ensure!(now[k] == was[k], "{new_name}.{k}: {} (source {name}: {})", now[k], was[k]);
        }
        ensure!(now["server"] == dst.as_str(), "{new_name} on {}", now["server"]);
        let pool = now["pool"].as_str().unwrap_or_default();
        ensure!(pool.starts_with(&format!("{}/", target.compute_cluster)), "{new_name} in pool {pool}, not {target:?}");
        ensure!(after[name]["replicas"] == 0, "the source {name} is at zero: {}", after[name]);
    }
    let infra_set = c.seeded.infra_machineset.clone().context("an infra set")?;
    ensure!(before[&infra_set]["taints"].as_array().is_some_and(|t| !t.is_empty()), "the seed tainted the infra set");

    // Every machine runs in a target domain's compute cluster, with a Node labelled with
    // its zone; the masters one per domain.
    let vms = all_vms(&c.env).await?;
    let machines = o::machines_api(&c.env.client()).list(&Default::default()).await?.items;
    let nodes: Api<Node> = Api::all(c.env.client());
    let mut masters_per_domain: BTreeMap<String, usize> = BTreeMap::new();
    ensure!(machines.len() == 3 + 3 + 1, "3 masters, 3 workers, 1 infra: {}", machines.len());
    for m in &machines {
        let name = m.name_any();
        let (host, vm) = vms.get(&name).with_context(|| format!("no VM for {name}"))?;
        ensure!(host == &dst, "{name} runs in {host}");
        let fd = c
            .seeded
            .target_failure_domains
            .iter()
            .find(|fd| vm.compute_cluster.as_deref() == Some(fd.compute_cluster.as_str()))
            .with_context(|| format!("{name}'s VM is in no target domain's cluster: {vm:?}"))?;
        let node = nodes.get(&name).await?;
        ensure!(node.labels().get(LABEL_TOPOLOGY_ZONE) == Some(&fd.zone), "{name}: {:?}", node.labels());
        if m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master") {
            *masters_per_domain.entry(fd.name.clone()).or_default() += 1;
        }
    }
    let want: BTreeMap<String, usize> = c.seeded.target_failure_domains.iter().map(|fd| (fd.name.clone(), 1)).collect();
    ensure!(masters_per_domain == want, "one master per target domain: {masters_per_domain:?}");
    let cpms = o::cpms_api(&c.env.client()).get(o::CPMS_NAME).await?;
    let listed: Vec<&str> =
        cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"]
            .as_array()
            .context("CPMS failure domains")?
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
    let target_names: Vec<&str> = c.seeded.target_failure_domains.iter().map(|f| f.name.as_str()).collect();
    ensure!(listed == target_names, "{listed:?}");
    ensure!(vms.values().all(|(host, _)| host != &src), "no VM left in the source");

    // The autoscaler scales the replacement of its set, min and max as they were; the
    // health check is not left paused.
    let scaler = c.seeded.machine_autoscaler.clone().context("a MachineAutoscaler")?;
    let autoscalers: Api<DynamicObject> =
        Api::namespaced_with(c.env.client(), o::MACHINE_API_NS, &o::machine_autoscaler());
    let a = autoscalers.get(&scaler).await?;
    let was = &c.seeded.worker_machinesets[0];
    let replacement = format!("{was}-{}", domains[&c.seeded.machineset_domains[was]]);
    ensure!(a.data["spec"]["scaleTargetRef"]["name"] == replacement.as_str(), "{}", a.data["spec"]);
    ensure!(a.data["spec"]["minReplicas"] == 1 && a.data["spec"]["maxReplicas"] == 3, "{}", a.data["spec"]);
    let mhc_name = c.seeded.machine_health_check.clone().context("a MachineHealthCheck")?;
    let mhcs: Api<DynamicObject> = Api::namespaced_with(c.env.client(), o::MACHINE_API_NS, &o::machine_health_check());
    let mhc = mhcs.get(&mhc_name).await?;
    ensure!(!mhc.annotations().contains_key("cluster.x-k8s.io/paused"), "{:?}", mhc.annotations());

    c.stop().await;

    // In a fresh cluster: plan mode lists every set it will create and scale, and changes nothing.
    let c = Zonal::start().await?;
    let before = sets(&c.env).await?;
    let mut spec = c.spec()?;
    spec["mode"] = json!("Plan");
    c.create("zonal-plan", spec).await?;
    let m = c.until("zonal-plan", "Planned", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    ensure!(phase(&m) == "Planned", "{:#?}", m.status);
    let changes: Vec<String> = m
        .status
        .unwrap()
        .plan
        .iter()
        .flat_map(|p| p.changes.iter().map(move |c| format!("{} {} {}", p.phase, c.action, c.target)))
        .collect();
    for name in before.keys() {
        let source_domain = &c.seeded.machineset_domains[name];
        let stem = name.strip_suffix(&format!("-{source_domain}")).unwrap_or(name);
        let new_name = format!("{stem}-{}", domains[source_domain]);
        let created = changes.iter().any(|ch| ch.starts_with("CreateWorkers create") && ch.contains(&new_name));
        let scaled = changes.iter().any(|ch| ch.starts_with("ScaleOldMachines patch") && ch.contains(name.as_str()));
        ensure!(created && scaled, "{name} → {new_name} not planned:\n{}", changes.join("\n"));
    }
    ensure!(sets(&c.env).await? == before, "plan mode changed MachineSets");

    // Rolled back after ScaleOldMachines: every set as it was, machines back in the source.
    let mut spec = c.spec()?;
    spec["approvalMode"] = json!("Manual");
    spec["approvals"] = json!(PHASES[..PHASES.iter().position(|p| *p == "ScaleOldMachines").unwrap() + 1]);
    c.create("zonal-back", spec).await?;
    c.until("zonal-back", "ScaleOldMachines done", |m| {
        m.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.phase == "ScaleOldMachines"))
    })
    .await?;
    c.migrations()
        .patch("zonal-back", &PatchParams::default(), &Patch::Merge(json!({"spec": {"state": "Rollback"}})))
        .await?;
    let m = c.until("zonal-back", "RolledBack", |m| phase(m) == "RolledBack" || phase(m) == "RollbackFailed").await?;
    ensure!(phase(&m) == "RolledBack", "{:#?}", m.status);
    ensure!(sets(&c.env).await? == before, "MachineSets after the rollback");
    let vms = all_vms(&c.env).await?;
    let machines = o::machines_api(&c.env.client()).list(&Default::default()).await?.items;
    for m in &machines {
        let (host, _) = vms.get(&m.name_any()).with_context(|| format!("no VM for {}", m.name_any()))?;
        ensure!(host == &src, "{} runs in {host} after the rollback", m.name_any());
    }
    c.stop().await;
    Ok(())
}
