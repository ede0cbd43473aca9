//! All 16 phase components in order through the harness on a seeded cluster with the real
//! machine-api and the simulator (CVO at 2 replicas, two worker MachineSets and an infra set, static-IP
//! workers), then the final state field by field: the Infrastructure lists exactly the
//! target vCenter and failure domain and is otherwise unchanged; the cloud config is the
//! seeded text with the source's entry replaced by the target's; vsphere-creds holds
//! exactly the target's credentials; every Machine, Node and VM is in the target and
//! Ready, nothing is left in the source; the CPMS is Active there; the CVO is back at 2;
//! every ClusterOperator is healthy. Then every phase is rolled back, last first, and the
//! cluster is back where it started.

mod part2_support;
mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use vsm_testenv::harness::{TARGET_FD, TARGET_TEMPLATE};
use vsm_testenv::sim::cloud_config::parse;
use vsm_testenv::sim::objects::{self as o, CVO_NAME, CVO_NS};
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};
use vsm_testenv::vcsim::target;

use part2_support::*;
use phase_support::*;

async fn cvo_ready(c: &PhaseEnv, n: i32) -> Result<(), String> {
    let d = c.deployment(CVO_NS, CVO_NAME).await.map_err(|e| e.to_string())?;
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if want == n && ready == n { Ok(()) } else { Err(format!("{want} wanted, {ready} ready")) }
}

fn decode(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> String {
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).to_string()).unwrap_or_default()
}

#[tokio::test]
async fn all_sixteen_phases_move_the_cluster_and_all_rollbacks_bring_it_back() -> Result<()> {
    let seed = SeedOptions { workers: 3, worker_machinesets: 2, infra_machines: Some(1), ..Default::default() };
    let c = start_seeded_real("phases-e2e", "verify", &seed).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let id = c.cluster.infra_id.clone();
    let cvo: Api<Deployment> = Api::namespaced(c.client(), CVO_NS);
    cvo.patch(CVO_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
    eventually("CVO at 2", || cvo_ready(&c, 2)).await?;
    operators_healthy(&c, &[]).await?;

    let infra_before = c.infrastructure().await?;
    let yaml_before = cloud_config_text(&c).await?;
    let creds_before = content(&c.secret(o::CREDS_NS, o::CREDS_NAME).await?.context("creds")?);
    let cpms_before = content(&c.cpms().await?.context("cpms")?);
    let sets_before: BTreeMap<String, Value> =
        machine_sets(&c).await?.iter().map(|s| (s.name_any(), content(s))).collect();
    let machines_before: Vec<String> = machines(&c).await?.iter().map(|m| m.name_any()).collect();

    // The migration.
    run_phases(&c, &ORDER).await?;

    // Infrastructure: exactly the target, everything else as it was.
    let infra = c.infrastructure().await?;
    let vs = &infra.data["spec"]["platformSpec"]["vsphere"];
    ensure!(
        vs["vcenters"] == json!([{"server": dst, "port": c.env.target().port(), "datacenters": [target::DATACENTER]}]),
        "{}",
        vs["vcenters"]
    );
    ensure!(
        vs["failureDomains"]
            == json!([{"name": TARGET_FD, "region": "dst-region", "zone": "dst-zone-a", "server": dst,
                       "topology": {"datacenter": target::DATACENTER, "computeCluster": target::CLUSTER_PATH,
                                    "datastore": target::DATASTORE_PATH, "networks": [target::NETWORK],
                                    "resourcePool": target::RESOURCE_POOL_PATH, "folder": c.cluster.target.folder,
                                    "template": TARGET_TEMPLATE}}]),
        "{}",
        vs["failureDomains"]
    );
    let mut expected = infra_before.data["spec"].clone();
    expected["platformSpec"]["vsphere"]["vcenters"] = vs["vcenters"].clone();
    expected["platformSpec"]["vsphere"]["failureDomains"] = vs["failureDomains"].clone();
    ensure!(infra.data["spec"] == expected, "Infrastructure spec: {}", infra.data["spec"]);
    ensure!(infra.data["status"]["infrastructureName"] == id.as_str());

    // Cloud config: the source's entry replaced by the target's, nothing else changed.
    let text = cloud_config_text(&c).await?;
    let start = yaml_before.find(&format!("\n  {src}:\n")).context("source entry")? + 1;
    let end = yaml_before.find("# Topology labels").context("labels comment")?;
    let entry = format!(
        "  {dst}:\n    server: {dst}\n    port: {}\n    insecureFlag: false\n    datacenters:\n    - dst-dc\n    caFile: /etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem\n",
        c.env.target().port()
    );
    ensure!(text == format!("{}{entry}{}", &yaml_before[..start], &yaml_before[end..]), "cloud config:\n{text}");
    let parsed = parse(&text)?;
    ensure!(parsed.vcenters.len() == 1 && parsed.vcenter(&dst).is_some_and(|v| v.datacenters == ["dst-dc"]));

    // Credentials: exactly the target's.
    let creds = c.secret(o::CREDS_NS, o::CREDS_NAME).await?.context("creds")?;
    let keys: Vec<String> = creds.data.as_ref().map(|d| d.keys().cloned().collect()).unwrap_or_default();
    ensure!(keys == [format!("{dst}.password"), format!("{dst}.username")], "{keys:?}");
    ensure!(decode(&creds, &format!("{dst}.username")) == c.env.target().username);
    ensure!(decode(&creds, &format!("{dst}.password")) == c.env.target().password);

    // Machines, Nodes and VMs: all in the target and Ready; none of the originals left.
    let (all, nodes) = (machines(&c).await?, nodes(&c).await?);
    ensure!(all.len() == 5, "3 masters and 2 workers: {:?}", all.iter().map(|m| m.name_any()).collect::<Vec<_>>());
    ensure!(all.iter().filter(|m| is_master(m)).count() == 3);
    for m in &all {
        ensure!(machine_server(m) == dst, "{} runs in {}", m.name_any(), machine_server(m));
        ensure!(machine_ready(m, &nodes), "{} not ready", m.name_any());
        ensure!(!machines_before.contains(&m.name_any()), "{} survived the migration", m.name_any());
    }
    let mut node_names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    let mut machine_names: Vec<String> = all.iter().map(|m| m.name_any()).collect();
    node_names.sort();
    machine_names.sort();
    ensure!(node_names == machine_names, "nodes {node_names:?} vs machines {machine_names:?}");
    ensure!(vm_names(&c, false, &c.cluster.target.folder).await? == machine_names, "target VMs");
    ensure!(vm_names(&c, true, &c.cluster.source.folder).await?.is_empty(), "source VMs left");
    for (name, before) in &sets_before {
        let s = machine_set(&c, name).await?.context("old set kept")?;
        ensure!(replicas(&s) == 0, "old set {name} at {}", replicas(&s));
        // Every source set (the infra set too) has its replacement at its former size.
        let new_set = machine_set(&c, &format!("{name}-{TARGET_FD}")).await?.context("replacement")?;
        ensure!(
            Some(replicas(&new_set)) == o::i64_at(before, "/spec/replicas") && set_server(&new_set) == dst,
            "{name}"
        );
    }
    let cpms = c.cpms().await?.context("cpms")?;
    ensure!(o::str_at(&cpms.data, "/spec/state") == Some("Active"));
    let t = "/spec/template/machines_v1beta1_machine_openshift_io";
    ensure!(cpms.data.pointer(&format!("{t}/failureDomains/vsphere")) == Some(&json!([{"name": TARGET_FD}])));
    ensure!(o::str_at(&cpms.data, &format!("{t}/spec/providerSpec/value/workspace/server")) == Some(dst.as_str()));

    // The CVO is back at its 2 replicas; the cluster is healthy on one vCenter.
    cvo_ready(&c, 2).await.map_err(anyhow::Error::msg)?;
    operators_healthy(&c, &[]).await?;

    // Every phase rolled back, last first: the cluster is back where it started.
    roll_back(&c, &ORDER).await?;
    same_content("Infrastructure after the rollbacks", &content(&infra_before), &content(&c.infrastructure().await?))?;
    ensure!(cloud_config_text(&c).await? == yaml_before, "cloud config after the rollbacks");
    same_content(
        "vsphere-creds after the rollbacks",
        &creds_before,
        &content(&c.secret(o::CREDS_NS, o::CREDS_NAME).await?.unwrap()),
    )?;
    same_content("CPMS after the rollbacks", &cpms_before, &content(&c.cpms().await?.unwrap()))?;
    for name in sets_before.keys() {
        ensure!(machine_set(&c, &format!("{name}-{TARGET_FD}")).await?.is_none(), "replacement of {name} removed");
    }
    for (name, before) in &sets_before {
        same_content(&format!("MachineSet {name}"), before, &content(&machine_set(&c, name).await?.unwrap()))?;
    }
    let placed = placement(&c).await?;
    ensure!(placed.keys().collect::<Vec<_>>() == [&src], "machines by vCenter: {placed:?}");
    ensure!(placed[&src].len() == machines_before.len() && placed[&src].iter().all(|(_, ready)| *ready), "{placed:?}");
    ensure!(vm_names(&c, false, &c.cluster.target.folder).await?.is_empty(), "target VMs left");
    eventually("CVO back at 2", || cvo_ready(&c, 2)).await?;
    operators_healthy(&c, &[]).await?;

    sim.stop().await;
    Ok(())
}
