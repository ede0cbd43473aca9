//! End-to-end migrations with the operator, the shipped phase components, the real
//! machine-api and the cluster simulator on the real environment: the final state field by field; a rollback started
//! at each of the 16 phases returning every touched object to its before-state; pause and
//! resume; plan mode changing nothing; a cluster on the TechPreviewNoUpgrade feature set,
//! with its Infrastructure CRD, migrating to the end; a target vCenter with a private CA,
//! reached by the real actuator through the cluster's own trust path.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::{PHASES, Stage, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::Operator;
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, shipped_operator, target_spec, until_migration};
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator, seed};
use vsm_testenv::vcsim::VcsimOptions;
use vsm_testenv::{OpenShiftCrds, TestEnv, TestEnvOptions};
use vsm_vsphere::{ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy};

struct Cluster {
    env: TestEnv,
    seeded: SeededCluster,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
}

impl Cluster {
    async fn start(workers: u32) -> Result<Cluster> {
        let env = TestEnvOptions { machine_api: true, ..Default::default() };
        Cluster::start_with(env, SeedOptions { workers, ..Default::default() }).await
    }

    async fn start_with(env: TestEnvOptions, opts: SeedOptions) -> Result<Cluster> {
        let env = TestEnv::start(env).await?;
        let seeded = seed(&env, &opts).await?;
        ensure_secrets(&env, &env.client()).await?;
        let sim = Simulator::start(&env, SimOptions::instant());
        let operator = shipped_operator(&env, "e2e").await?;
        Ok(Cluster { env, seeded, sim: Some(sim), operator: Some(operator) })
    }

    async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
    }

    fn migrations(&self) -> Api<VSphereMigration> {
        Api::namespaced(self.env.client(), NAMESPACE)
    }

    async fn create(&self, name: &str, extra: Value) -> Result<()> {
        let mut v = serde_json::to_value(target_spec(&self.env))?;
        v["health"] = json!({"stabilityWindow": "2s"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let spec = serde_json::from_value(v)?;
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
        until_migration(&self.migrations(), name, what, Duration::from_secs(1200), pred).await
    }

    async fn set_state(&self, name: &str, state: &str) -> Result<()> {
        self.migrations()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"state": state}})))
            .await?;
        Ok(())
    }
}

fn phase(m: &VSphereMigration) -> String {
    m.status.as_ref().and_then(|s| s.phase.as_ref()).map(Stage::to_string).unwrap_or_default()
}

/// The cluster as the migration sees it, reduced to what must come back after a rollback.
async fn snapshot(c: &Cluster) -> Result<BTreeMap<String, Value>> {
    let env = &c.env;
    let mut s = BTreeMap::new();
    let infra =
        env.dynamic("config.openshift.io", "v1", "Infrastructure", "infrastructures", None).get("cluster").await?;
    s.insert("infrastructure.spec".into(), infra.data["spec"].clone());
    let cm: ConfigMap = Api::namespaced(env.client(), "openshift-config").get("cloud-provider-config").await?;
    s.insert("cloud-provider-config".into(), json!(cm.data));
    let creds: Secret = Api::namespaced(env.client(), "kube-system").get("vsphere-creds").await?;
    s.insert("vsphere-creds".into(), serde_json::to_value(&creds.data)?);
    // The cluster's trust: the Proxy's trusted CA ConfigMap and what it holds.
    let proxy = env.dynamic("config.openshift.io", "v1", "Proxy", "proxies", None).get("cluster").await?;
    s.insert("proxy.spec".into(), proxy.data["spec"].clone());
    let user: Option<ConfigMap> = Api::namespaced(env.client(), "openshift-config").get_opt("user-ca-bundle").await?;
    s.insert("user-ca-bundle".into(), json!(user.map(|cm| cm.data)));
    let cpms = env
        .dynamic(
            "machine.openshift.io",
            "v1",
            "ControlPlaneMachineSet",
            "controlplanemachinesets",
            Some("openshift-machine-api"),
        )
        .get("cluster")
        .await?;
    let mut cpms_spec = cpms.data["spec"].clone();
    cpms_spec.as_object_mut().map(|o| o.remove("replicas"));
    s.insert("cpms.spec".into(), cpms_spec);
    let sets = env
        .dynamic("machine.openshift.io", "v1beta1", "MachineSet", "machinesets", Some("openshift-machine-api"))
        .list(&Default::default())
        .await?;
    let sets: BTreeMap<String, Value> = sets
        .items
        .iter()
        .map(|m| {
            (
                m.metadata.name.clone().unwrap(),
                json!({"replicas": m.data["spec"]["replicas"], "template": m.data["spec"]["template"]["spec"]}),
            )
        })
        .collect();
    s.insert("machinesets".into(), json!(sets));
    // Machines: how many of each role run on which vCenter (names change when machines
    // are replaced and replaced back).
    let machines = env
        .dynamic("machine.openshift.io", "v1beta1", "Machine", "machines", Some("openshift-machine-api"))
        .list(&Default::default())
        .await?;
    let mut placement: BTreeMap<String, u32> = BTreeMap::new();
    for m in &machines.items {
        let role = m
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("machine.openshift.io/cluster-api-machine-role").cloned())
            .unwrap_or_default();
        let server =
            m.data["spec"]["providerSpec"]["value"]["workspace"]["server"].as_str().unwrap_or_default().to_string();
        let phase = m.data["status"]["phase"].as_str().unwrap_or_default().to_string();
        *placement.entry(format!("{role} on {server} {phase}")).or_default() += 1;
    }
    s.insert("machines".into(), json!(placement));
    let cvo: Deployment =
        Api::namespaced(env.client(), "openshift-cluster-version").get("cluster-version-operator").await?;
    s.insert("cvo.replicas".into(), json!(cvo.spec.and_then(|sp| sp.replicas)));
    Ok(s)
}

async fn vm_count(c: &Cluster, source: bool) -> Result<usize> {
    let (vc, dc) = if source { (c.env.source(), "src-dc") } else { (c.env.target(), "dst-dc") };
    let pool = SessionPool::new(ClientOptions::default());
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
        tls: TlsPolicy { ca_bundle_pem: Some(c.env.vcenter_ca_bundle_pem()), ..Default::default() },
    };
    let client = pool.client(&spec).await?;
    let n = match client.list_vms(&format!("/{dc}/vm/{}", c.seeded.infra_id)).await {
        Ok(vms) => vms.into_iter().filter(|v| !v.template).count(),
        Err(vsm_vsphere::VsphereError::NotFound { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    pool.shutdown().await;
    Ok(n)
}

#[tokio::test]
async fn a_full_migration_ends_with_everything_on_the_target_checked_field_by_field() -> Result<()> {
    let c = Cluster::start(3).await?;
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    c.create("full", json!({})).await?;
    let m = c
        .until("full", "Completed", |m| {
            phase(m) == "Completed" || m.status.as_ref().is_some_and(|s| s.finished_at.is_some())
        })
        .await?;
    assert_eq!(phase(&m), "Completed", "{:#?}", m.status);
    let history: Vec<String> = m.status.as_ref().unwrap().history.iter().map(|h| h.phase.clone()).collect();
    assert_eq!(history, PHASES.to_vec());

    let s = snapshot(&c).await?;
    let infra = &s["infrastructure.spec"]["platformSpec"]["vsphere"];
    let servers: Vec<&str> =
        infra["vcenters"].as_array().unwrap().iter().map(|v| v["server"].as_str().unwrap()).collect();
    assert_eq!(servers, [dst.as_str()], "only the target vCenter is left in the Infrastructure");
    let fds: Vec<&str> =
        infra["failureDomains"].as_array().unwrap().iter().map(|f| f["server"].as_str().unwrap()).collect();
    assert!(!fds.is_empty() && fds.iter().all(|s| *s == dst), "every failure domain is on the target: {fds:?}");
    let config = s["cloud-provider-config"]["config"].as_str().unwrap();
    assert!(
        config.contains(&dst) && !config.contains(&format!("{src}:")) && !config.contains(&format!("\"{src}\"")),
        "cloud config names only the target:\n{config}"
    );
    let creds = s["vsphere-creds"].as_object().unwrap();
    assert!(creds.contains_key(&format!("{dst}.username")) && creds.contains_key(&format!("{dst}.password")));
    assert!(!creds.keys().any(|k| k.starts_with(&format!("{src}."))), "source credentials removed: {:?}", creds.keys());
    let placement = s["machines"].as_object().unwrap();
    assert_eq!(placement.get(&format!("master on {dst} Running")), Some(&json!(3)), "{placement:?}");
    assert_eq!(
        placement.get(&format!("worker on {dst} Running")),
        Some(&json!(3)),
        "as many new workers as the source set had: {placement:?}"
    );
    assert!(
        !placement.keys().any(|k| k.contains(&format!("on {src} "))),
        "no machine left on the source: {placement:?}"
    );
    assert_eq!(s["cvo.replicas"], json!(1), "the CVO is back at its original replicas");
    assert_eq!(vm_count(&c, true).await?, 0, "the source VMs are gone");
    assert_eq!(vm_count(&c, false).await?, 6);
    let nodes: Api<Node> = Api::all(c.env.client());
    let nodes = nodes.list(&Default::default()).await?;
    assert_eq!(nodes.items.len(), 6, "one Ready node per machine");
    assert!(
        nodes.items.iter().all(|n| n
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .is_some_and(|p| p.starts_with("vsphere://")))
    );
    c.stop().await;
    Ok(())
}

/// A target vCenter whose certificate comes from a private CA (not one the cluster's images
/// trust): the real machine-api actuator cannot reach it until the migration puts that CA
/// where OpenShift reads it (the Proxy's trusted CA ConfigMap, injected into the
/// machine-api's trust store) and RestartPods restarts the controllers; then it clones the
/// new machines there with certificate verification on.
#[tokio::test]
async fn a_target_vcenter_with_a_private_ca_is_reached_through_the_clusters_own_trust() -> Result<()> {
    let env = TestEnvOptions { machine_api: true, target: VcsimOptions::target().with_own_ca()?, ..Default::default() };
    let c = Cluster::start_with(env, SeedOptions { workers: 1, ..Default::default() }).await?;
    let dst = c.env.target().host();
    let target_ca = c.env.target().ca_pem.clone().context("the target has its own CA")?;
    let mapi = c.env.machine_api().context("machine-api")?;
    let trust_before = std::fs::read_to_string(mapi.trust_file())?;
    ensure!(!trust_before.contains(target_ca.trim()), "the cluster does not trust the target before the migration");
    let proxy_before = snapshot(&c).await?["proxy.spec"].clone();
    ensure!(proxy_before["trustedCA"]["name"] == "", "{proxy_before}");

    c.create("private-ca", json!({})).await?;
    let m = c.until("private-ca", "finished", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let s = snapshot(&c).await?;
    ensure!(s["proxy.spec"]["trustedCA"]["name"] == "user-ca-bundle", "{}", s["proxy.spec"]);
    let bundle = s["user-ca-bundle"]["ca-bundle.crt"].as_str().context("user-ca-bundle")?;
    ensure!(bundle.contains(target_ca.trim()), "the target's CA is in the cluster's trusted CA bundle");
    let trust = std::fs::read_to_string(mapi.trust_file())?;
    ensure!(trust.contains(target_ca.trim()), "the machine controller trusts the target's CA now");
    let log = std::fs::read_to_string(mapi.log_path(vsm_testenv::machine_api::Component::MachineController))?;
    ensure!(log.contains("--- vsm-testenv: restarted"), "the machine controller was restarted with its pod");
    let placement = s["machines"].as_object().context("machines")?;
    ensure!(placement.get(&format!("master on {dst} Running")) == Some(&json!(3)), "{placement:?}");
    ensure!(placement.get(&format!("worker on {dst} Running")) == Some(&json!(1)), "{placement:?}");
    ensure!(vm_count(&c, false).await? == 4, "the actuator cloned every machine in the target");
    c.stop().await;
    Ok(())
}

/// On the TechPreviewNoUpgrade feature set (`VSphereMultiVCenterDay2` on), the
/// Infrastructure CRD lets vCenters be added or removed but not both in one update, and
/// wants every failure domain's vCenter listed: the migration adds, then removes, and
/// completes. Preflight's dry run reports the feature set.
#[tokio::test]
async fn a_tech_preview_cluster_migrates_under_its_infrastructure_rules() -> Result<()> {
    let env = TestEnvOptions {
        machine_api: true,
        openshift_crds: OpenShiftCrds::Variant("techpreview".into()),
        ..Default::default()
    };
    let opts = SeedOptions { workers: 2, feature_set: "TechPreviewNoUpgrade".into(), ..Default::default() };
    let c = Cluster::start_with(env, opts).await?;
    let crd: Api<CustomResourceDefinition> = Api::all(c.env.client());
    let crd = serde_json::to_string(&crd.get("infrastructures.config.openshift.io").await?)?;
    ensure!(
        crd.contains("Cannot add and remove vCenters at the same time"),
        "the TechPreviewNoUpgrade CRD is installed"
    );
    let dst = c.env.target().host();
    c.create("techpreview", json!({})).await?;
    let m = c.until("techpreview", "finished", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let preflight = &m.status.as_ref().unwrap().history[0];
    ensure!(
        preflight.message.contains("(a dry run; feature set TechPreviewNoUpgrade, VSphereMultiVCenterDay2 on)"),
        "{}",
        preflight.message
    );
    let s = snapshot(&c).await?;
    let servers: Vec<&str> = s["infrastructure.spec"]["platformSpec"]["vsphere"]["vcenters"]
        .as_array()
        .context("vcenters")?
        .iter()
        .filter_map(|v| v["server"].as_str())
        .collect();
    ensure!(servers == [dst.as_str()], "only the target is left: {servers:?}");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn plan_mode_changes_nothing_and_lists_the_intended_changes() -> Result<()> {
    let c = Cluster::start(1).await?;
    let before = snapshot(&c).await?;
    let vms = vm_count(&c, true).await?;
    c.create("plan", json!({"mode": "Plan"})).await?;
    let m = c.until("plan", "Planned", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    assert_eq!(phase(&m), "Planned", "{:#?}", m.status);
    assert_eq!(snapshot(&c).await?, before, "plan mode changed the cluster");
    assert_eq!(vm_count(&c, true).await?, vms);
    assert_eq!(vm_count(&c, false).await?, 0);
    let plan = m.status.unwrap().plan;
    let changes: Vec<String> = plan
        .iter()
        .flat_map(|p| p.changes.iter().map(move |c| format!("{}: {} {} {}", p.phase, c.system, c.action, c.target)))
        .collect();
    for expected in
        ["UpdateInfrastructure: kube", "UpdateSecrets: kube", "CreateTags: vsphere", "CreateFolder: vsphere"]
    {
        assert!(
            changes.iter().any(|c| c.starts_with(expected)),
            "{expected} missing from the plan:\n{}",
            changes.join("\n")
        );
    }
    let text = serde_json::to_string(&plan)?;
    assert!(!text.contains(&c.env.target().password), "no secret in the plan");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn pause_stops_the_migration_at_any_point_and_resume_finishes_it() -> Result<()> {
    let c = Cluster::start(1).await?;
    c.create("paused", json!({})).await?;
    let index = |p: &str| PHASES.iter().position(|x| *x == p);
    for at in ["UpdateConfig", "CreateWorkers"] {
        // At `at` or past it: a phase that finishes between two polls is not waited for.
        let m = c
            .until("paused", at, |m| {
                index(&phase(m)) >= index(at) || m.status.as_ref().is_some_and(|s| s.finished_at.is_some())
            })
            .await?;
        ensure!(
            m.status.as_ref().is_some_and(|s| s.finished_at.is_none()),
            "finished before it could be paused at {at}"
        );
        c.set_state("paused", "Paused").await?;
        let m = c.until("paused", "paused", |m| m.status.as_ref().is_some_and(|s| s.paused_at.is_some())).await?;
        let calls = |m: &VSphereMigration| {
            let s = m.status.clone().unwrap();
            (s.history.len(), s.current.map(|c| c.attempt))
        };
        let frozen = calls(&m);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(calls(&c.migrations().get("paused").await?), frozen, "no phase is called while paused");
        c.set_state("paused", "Running").await?;
    }
    let m = c.until("paused", "finished", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    assert_eq!(phase(&m), "Completed", "{:#?}", m.status);
    c.stop().await;
    Ok(())
}

/// Run a migration up to `at` (Manual mode with every earlier phase approved: it stops
/// while `at` awaits approval), then ask for a rollback and check the cluster is back.
/// For `Preflight` nothing ran yet; for `Verify` fifteen phases are undone.
async fn rollback_at(at: &str) -> Result<()> {
    let c = Cluster::start(1).await?;
    let before = snapshot(&c).await?;
    let vms = vm_count(&c, true).await?;
    let approved: Vec<&str> = PHASES.iter().take_while(|p| **p != at).copied().collect();
    c.create("undo", json!({"approvalMode": "Manual", "approvals": approved})).await?;
    c.until("undo", &format!("{at} awaiting approval"), |m| {
        phase(m) == at
            && m.status.as_ref().and_then(|s| s.condition("AwaitingApproval")).is_some_and(|c| c.status == "True")
    })
    .await?;
    c.set_state("undo", "Rollback").await?;
    let m = c.until("undo", "rolled back", |m| m.status.as_ref().is_some_and(|s| s.finished_at.is_some())).await?;
    assert_eq!(phase(&m), "RolledBack", "rollback at {at}: {:#?}", m.status);
    // The simulated controllers settle (machines replaced back, operators recover).
    let mut after = snapshot(&c).await?;
    for _ in 0..600 {
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = snapshot(&c).await?;
    }
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "rollback at {at}: {k} differs");
    }
    assert_eq!(vm_count(&c, true).await?, vms, "rollback at {at}: the source VMs are intact");
    assert_eq!(vm_count(&c, false).await?, 0, "rollback at {at}: nothing left on the target");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_rollback_at_each_phase_returns_every_touched_object_to_its_before_state() -> Result<()> {
    // Two lanes, each with its own environments, to use both cores.
    let lane = |phases: Vec<&'static str>| async move {
        for p in phases {
            rollback_at(p).await.with_context(|| format!("rollback at {p}"))?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let even: Vec<&'static str> = PHASES.iter().step_by(2).copied().collect();
    let odd: Vec<&'static str> = PHASES.iter().skip(1).step_by(2).copied().collect();
    let (a, b) = tokio::join!(lane(even), lane(odd));
    a.and(b)
}
