//! A zonal cluster keeps its shape through a migration, with the operator, the shipped phase
//! components, the real machine-api and the cluster simulator, in three environments:
//! three source failure domains onto three target domains of one target vCenter; onto two
//! target vCenters (the control plane spread over both); and from two source vCenters onto
//! one target. Each source domain maps to one target domain. At the end, per target domain:
//! the replacement MachineSets with their source's labels, taints and replicas, their
//! Machines' VMs in that domain's vCenter and compute cluster, Nodes with its zone label;
//! the control plane one master per domain and the CPMS listing the three; the autoscaler
//! on the replacement of its set and the health check not left paused. A run rolled back
//! after ScaleOldMachines leaves the cluster as it was (every set, every machine back in
//! its source vCenter). In the first environment, plan mode lists every set it will create
//! and scale; in the other two, after the rollback, a new migration completes in the same
//! cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::{PHASES, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::Operator;
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, shipped_operator, until_migration, zonal_spec_in_order};
use vsm_testenv::sim::nodes::LABEL_TOPOLOGY_ZONE;
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{FailureDomain, SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator, ZonalSeed, seed};
use vsm_testenv::vcsim::GuestVm;
use vsm_testenv::{TestEnv, TestEnvOptions, VcsimOptions};

/// Which vCenters hold the cluster's three failure domains and the three targets.
#[derive(Clone, Copy)]
enum Shape {
    /// Three compute clusters in the source vCenter, three in the target.
    OneToOne,
    /// Three in the source; two in the target and one in a second target vCenter.
    OntoTwoTargets,
    /// Two in the source and one in a second source vCenter; three in the target.
    FromTwoSources,
}

impl Shape {
    fn options(self) -> TestEnvOptions {
        let (source, extra_sources, target, extra_targets) = match self {
            Shape::OneToOne => (VcsimOptions::zonal_source(3), vec![], VcsimOptions::zonal_target(3), vec![]),
            Shape::OntoTwoTargets => (
                VcsimOptions::zonal_source(3),
                vec![],
                VcsimOptions::zonal_target(2),
                vec![VcsimOptions::extra_target(2, 1)],
            ),
            Shape::FromTwoSources => (
                VcsimOptions::zonal_source(2),
                vec![VcsimOptions::extra_source(2, 1)],
                VcsimOptions::zonal_target(3),
                vec![],
            ),
        };
        TestEnvOptions { source, extra_sources, target, extra_targets, machine_api: true, ..Default::default() }
    }
}

struct Zonal {
    env: TestEnv,
    seeded: SeededCluster,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
}

impl Zonal {
    async fn start(shape: Shape) -> Result<Zonal> {
        let env = TestEnv::start(shape.options()).await?;
        let opts = SeedOptions {
            zonal: Some(ZonalSeed::full()),
            workers: 3,
            infra_machines: Some(1),
            static_ip_workers: false,
            ..Default::default()
        };
        let seeded = seed(&env, &opts).await?;
        ensure!(
            seeded.failure_domains.len() == 3 && seeded.target_failure_domains.len() == 3,
            "three domains on each side: {:?} -> {:?}",
            seeded.failure_domains,
            seeded.target_failure_domains
        );
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

    /// Source domain i -> target domain i.
    fn domains(&self) -> BTreeMap<String, String> {
        let targets = &self.seeded.target_failure_domains;
        self.seeded.failure_domains.iter().zip(targets).map(|(s, t)| (s.name.clone(), t.name.clone())).collect()
    }

    /// [`Zonal::domains`]; the control plane over the three target domains.
    fn spec(&self) -> Result<Value> {
        let mut v = serde_json::to_value(zonal_spec_in_order(&self.env, &self.seeded))?;
        v["health"] = json!({"stabilityWindow": "2s"});
        Ok(v)
    }

    /// What a source set's replacement is called: the source domain in its name becomes the
    /// target's, or the target's is appended.
    fn replacement(&self, set: &str) -> String {
        let source_domain = &self.seeded.machineset_domains[set];
        let target = &self.domains()[source_domain];
        match set.strip_suffix(&format!("-{source_domain}")) {
            Some(stem) => format!("{stem}-{target}"),
            None => format!("{set}-{target}"),
        }
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

    /// A migration from start to Completed, through every phase.
    async fn complete(&self, name: &str) -> Result<()> {
        self.create(name, self.spec()?).await?;
        let m = self.until(name, "Completed", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
        ensure!(phase(&m) == "Completed", "{:#?}", m.status);
        let history: Vec<String> = m.status.as_ref().unwrap().history.iter().map(|h| h.phase.clone()).collect();
        ensure!(history == PHASES.to_vec(), "{history:?}");
        Ok(())
    }

    /// A migration rolled back after ScaleOldMachines: every set as it was, every machine
    /// back in a source domain (a set's in its set's), the masters one per domain.
    async fn roll_back_from_the_middle(&self, name: &str) -> Result<()> {
        let before = sets(&self.env).await?;
        let mut spec = self.spec()?;
        spec["approvalMode"] = json!("Manual");
        spec["approvals"] = json!(PHASES[..PHASES.iter().position(|p| *p == "ScaleOldMachines").unwrap() + 1]);
        self.create(name, spec).await?;
        self.until(name, "ScaleOldMachines done", |m| {
            m.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.phase == "ScaleOldMachines"))
        })
        .await?;
        self.migrations()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"state": "Rollback"}})))
            .await?;
        let m = self.until(name, "RolledBack", |m| phase(m) == "RolledBack" || phase(m) == "RollbackFailed").await?;
        ensure!(phase(&m) == "RolledBack", "{:#?}", m.status);
        ensure!(sets(&self.env).await? == before, "MachineSets after the rollback");
        // Every machine in a source domain (a set's in its set's), the masters one per domain.
        let vms = all_vms(&self.env).await?;
        let mut masters_per_domain: BTreeMap<String, usize> = BTreeMap::new();
        for m in o::machines_api(&self.env.client()).list(&Default::default()).await?.items {
            let name = m.name_any();
            let (host, vm) = vms.get(&name).with_context(|| format!("no VM for {name}"))?;
            let fd = domain_of(&self.seeded.failure_domains, host, vm)
                .with_context(|| format!("{name} runs in no source domain after the rollback: {host} {vm:?}"))?;
            if let Some(set) = m.labels().get(o::LABEL_MACHINESET) {
                let want = self.seeded.machineset_domains.get(set).with_context(|| format!("{name}: set {set}"))?;
                ensure!(want == &fd.name, "{name} of {set} runs in {}, not {want}", fd.name);
            }
            if m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master") {
                *masters_per_domain.entry(fd.name.clone()).or_default() += 1;
            }
        }
        let want: BTreeMap<String, usize> = self.seeded.failure_domains.iter().map(|fd| (fd.name.clone(), 1)).collect();
        ensure!(masters_per_domain == want, "one master per source domain after the rollback: {masters_per_domain:?}");
        Ok(())
    }

    /// The cluster after a completed migration, field by field (`before`: the sets as seeded).
    async fn check_shape(&self, before: &BTreeMap<String, Value>) -> Result<()> {
        let client = self.env.client();
        // Per source set, its replacement in the mapped target domain: same role labels,
        // node labels, taints and replicas, in that domain's vCenter and compute cluster;
        // the source at zero.
        let after = sets(&self.env).await?;
        let domains = self.domains();
        for (name, was) in before {
            let target =
                self.seeded.failure_domain(&domains[&self.seeded.machineset_domains[name]]).context("target")?;
            let new_name = self.replacement(name);
            let now =
                after.get(&new_name).with_context(|| format!("no replacement {new_name} of {name}: {after:#?}"))?;
            for k in ["replicas", "labels", "nodeLabels", "taints"] {
                ensure!(now[k] == was[k], "{new_name}.{k}: {} (source {name}: {})", now[k], was[k]);
            }
            ensure!(now["server"] == target.server.as_str(), "{new_name} on {}, not {}", now["server"], target.server);
            let pool = now["pool"].as_str().unwrap_or_default();
            ensure!(
                pool.starts_with(&format!("{}/", target.compute_cluster)),
                "{new_name} in pool {pool}, not {target:?}"
            );
            ensure!(after[name]["replicas"] == 0, "the source {name} is at zero: {}", after[name]);
        }
        let infra_set = self.seeded.infra_machineset.clone().context("an infra set")?;
        ensure!(
            before[&infra_set]["taints"].as_array().is_some_and(|t| !t.is_empty()),
            "the seed tainted the infra set"
        );

        // Every machine runs in a target domain's vCenter and compute cluster, with a Node
        // labelled with its zone; the masters one per domain.
        let vms = all_vms(&self.env).await?;
        let machines = o::machines_api(&client).list(&Default::default()).await?.items;
        let nodes: Api<Node> = Api::all(client.clone());
        let mut masters_per_domain: BTreeMap<String, usize> = BTreeMap::new();
        ensure!(machines.len() == 3 + 3 + 1, "3 masters, 3 workers, 1 infra: {}", machines.len());
        for m in &machines {
            let name = m.name_any();
            let (host, vm) = vms.get(&name).with_context(|| format!("no VM for {name}"))?;
            let fd = domain_of(&self.seeded.target_failure_domains, host, vm)
                .with_context(|| format!("{name}'s VM is in no target domain: {host} {vm:?}"))?;
            let node = nodes.get(&name).await?;
            ensure!(node.labels().get(LABEL_TOPOLOGY_ZONE) == Some(&fd.zone), "{name}: {:?}", node.labels());
            if m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master") {
                *masters_per_domain.entry(fd.name.clone()).or_default() += 1;
            }
        }
        let want: BTreeMap<String, usize> =
            self.seeded.target_failure_domains.iter().map(|fd| (fd.name.clone(), 1)).collect();
        ensure!(masters_per_domain == want, "one master per target domain: {masters_per_domain:?}");
        let cpms = o::cpms_api(&client).get(o::CPMS_NAME).await?;
        let listed: Vec<&str> =
            cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"]
                .as_array()
                .context("CPMS failure domains")?
                .iter()
                .filter_map(|d| d["name"].as_str())
                .collect();
        let target_names: Vec<&str> = self.seeded.target_failure_domains.iter().map(|f| f.name.as_str()).collect();
        ensure!(listed == target_names, "{listed:?}");
        let sources: Vec<String> = self.env.sources().iter().map(|v| v.host()).collect();
        ensure!(vms.values().all(|(host, _)| !sources.contains(host)), "no VM left in a source vCenter");

        // The autoscaler scales the replacement of its set, min and max as they were; the
        // health check is not left paused.
        let scaler = self.seeded.machine_autoscaler.clone().context("a MachineAutoscaler")?;
        let autoscalers: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &o::machine_autoscaler());
        let a = autoscalers.get(&scaler).await?;
        let replacement = self.replacement(&self.seeded.worker_machinesets[0]);
        ensure!(a.data["spec"]["scaleTargetRef"]["name"] == replacement.as_str(), "{}", a.data["spec"]);
        ensure!(a.data["spec"]["minReplicas"] == 1 && a.data["spec"]["maxReplicas"] == 3, "{}", a.data["spec"]);
        let mhc_name = self.seeded.machine_health_check.clone().context("a MachineHealthCheck")?;
        let mhcs: Api<DynamicObject> = Api::namespaced_with(client, o::MACHINE_API_NS, &o::machine_health_check());
        let mhc = mhcs.get(&mhc_name).await?;
        ensure!(!mhc.annotations().contains_key("cluster.x-k8s.io/paused"), "{:?}", mhc.annotations());
        Ok(())
    }
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

/// The one of `domains` whose vCenter (`host`) and compute cluster hold `vm`.
fn domain_of<'a>(domains: &'a [FailureDomain], host: &str, vm: &GuestVm) -> Option<&'a FailureDomain> {
    domains.iter().find(|fd| fd.server == host && vm.compute_cluster.as_deref() == Some(fd.compute_cluster.as_str()))
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
    let c = Zonal::start(Shape::OneToOne).await?;
    let before = sets(&c.env).await?;
    c.complete("zonal").await?;
    c.check_shape(&before).await?;
    c.stop().await;

    // In a fresh cluster: plan mode lists every set it will create and scale, and changes
    // nothing; then a run rolled back from the middle.
    let c = Zonal::start(Shape::OneToOne).await?;
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
        let new_name = c.replacement(name);
        let created = changes.iter().any(|ch| ch.starts_with("CreateWorkers create") && ch.contains(&new_name));
        let scaled = changes.iter().any(|ch| ch.starts_with("ScaleOldMachines patch") && ch.contains(name.as_str()));
        ensure!(created && scaled, "{name} → {new_name} not planned:\n{}", changes.join("\n"));
    }
    ensure!(sets(&c.env).await? == before, "plan mode changed MachineSets");
    c.roll_back_from_the_middle("zonal-back").await?;
    c.stop().await;
    Ok(())
}

/// Rolled back from the middle, then a new migration to the end in the same cluster.
async fn back_then_through(shape: Shape) -> Result<()> {
    let c = Zonal::start(shape).await?;
    let before = sets(&c.env).await?;
    c.roll_back_from_the_middle("back").await?;
    c.complete("through").await?;
    c.check_shape(&before).await?;
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zonal_cluster_moves_onto_two_target_vcenters_with_the_control_plane_over_both() -> Result<()> {
    back_then_through(Shape::OntoTwoTargets).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_two_source_vcenters_moves_onto_one_target() -> Result<()> {
    back_then_through(Shape::FromTwoSources).await
}
