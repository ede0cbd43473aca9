//! CreateWorkers against the real API server and vCenters, with the real machine-api (its
//! MachineSet controller, vSphere actuator, nodelink and webhooks; the simulator plays the
//! kubelets and the IP address provider): every source MachineSet (both worker sets and
//! the infra set) gets a replacement placed in the target failure domain, at its size,
//! with its labels and node roles kept and the target network's IP pool and nameservers
//! (spec.staticIPs) in place of the source's; the phase waits until their machines are
//! Running with Ready nodes (VMs cloned in the target vCenter); idempotent; crash anywhere converges; rollback removes the sets, their machines and
//! VMs and leaves everything else; plan mode creates nothing; a target missing from the
//! Infrastructure and a failure domain name unusable in a MachineSet name are refused
//! with clear messages.

mod part2_support;
mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use kube::ResourceExt;
use serde_json::{Value, json};
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::harness::{TARGET_FD, TARGET_IP_POOL, TARGET_NAMESERVERS, TARGET_TEMPLATE};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};
use vsm_testenv::vcsim::target;

use part2_support::*;
use phase_support::*;

async fn set_contents(c: &PhaseEnv) -> Result<BTreeMap<String, Value>> {
    Ok(machine_sets(c).await?.iter().map(|s| (s.name_any(), content(s))).collect())
}

/// Each new set exists with its machines, all Running with Ready nodes, all in the
/// target vCenter, each with a VM in the target folder.
async fn replacements_ready(c: &PhaseEnv, sets: &[(String, usize)]) -> Result<()> {
    let all = machines(c).await?;
    let nodes = nodes(c).await?;
    let vms = vm_names(c, false, &c.cluster.target.folder).await?;
    for (name, want) in sets {
        let mine = of_set(&all, name);
        ensure!(mine.len() == *want, "{} machines of {name}, not {want}", mine.len());
        for m in &mine {
            ensure!(
                machine_ready(m, &nodes),
                "{} is not Running with a Ready node: {:?}",
                m.name_any(),
                m.data["status"]
            );
            ensure!(machine_server(m) == c.env.target().host(), "{} runs in {}", m.name_any(), machine_server(m));
            ensure!(vms.contains(&m.name_any()), "no VM for {} in the target folder: {vms:?}", m.name_any());
        }
    }
    Ok(())
}

#[tokio::test]
async fn create_workers_replaces_every_source_set_and_waits_for_machines_and_nodes() -> Result<()> {
    let seed = SeedOptions { workers: 3, worker_machinesets: 2, infra_machines: Some(1), ..Default::default() };
    let mut c = start_seeded_real("phase-create-workers", "create-workers", &seed).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let id = c.cluster.infra_id.clone();
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let infra = c.cluster.infra_machineset.clone().expect("an infra set");
    let (w0, w1) = (c.cluster.worker_machinesets[0].clone(), c.cluster.worker_machinesets[1].clone());
    let new = |source: &str| format!("{source}-{TARGET_FD}");
    // Sorted by source name, as the phase reports them; 3 workers round-robin over 2 sets.
    let want: Vec<(String, usize)> = vec![(new(&infra), 1), (new(&w0), 2), (new(&w1), 1)];

    // Bad input: the Infrastructure does not know the target vCenter yet.
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        &format!(
            "vCenter {dst} is not in the Infrastructure yet (it lists {src}): UpdateInfrastructure must run before CreateWorkers"
        )
    )?);
    for (name, _) in &want {
        ensure!(machine_set(&c, name).await?.is_none());
    }

    run_phases(&c, BEFORE_WORKERS).await?;
    let before = set_contents(&c).await?;

    // Success. With the simulator (the kubelets) stopped first, no machine gets a Node:
    // the phase really waits for machines.
    sim.stop().await;
    let first = one_call(&c, Direction::Execute).await?;
    let created = format!(
        "created MachineSet(s) {} from {infra} (1 machine(s) in failure domain {TARGET_FD}, vCenter {dst}); \
         {} from {w0} (2 machine(s) in failure domain {TARGET_FD}, vCenter {dst}); \
         {} from {w1} (1 machine(s) in failure domain {TARGET_FD}, vCenter {dst})",
        new(&infra),
        new(&w0),
        new(&w1)
    );
    ensure!(message(&first).starts_with(&created), "{first:?}");
    let second = one_call(&c, Direction::Execute).await?;
    ensure!(
        matches!(second, Outcome::Wait(_)) && message(&second).starts_with("waiting for new machines: 0/4 ready; "),
        "{second:?}"
    );
    let sim = Simulator::start(c.env, SimOptions::instant());
    let run = c.execute_done().await?;
    replacements_ready(&c, &want).await?;
    ensure!(
        run.message()
            == format!(
                "3 replacement MachineSet(s), 4 machine(s) Running with Ready nodes: {} 1 in {TARGET_FD}, {} 2 in {TARGET_FD}, {} 1 in {TARGET_FD}",
                new(&infra),
                new(&w0),
                new(&w1)
            ),
        "{}",
        run.message()
    );

    let set = machine_set(&c, &new(&w0)).await?.unwrap();
    let ps = &set.data["spec"]["template"]["spec"]["providerSpec"]["value"];
    ensure!(
        ps["workspace"]
            == json!({"server": dst, "datacenter": target::DATACENTER, "datastore": target::DATASTORE_PATH,
                      "folder": c.cluster.target.folder, "resourcePool": target::RESOURCE_POOL_PATH}),
        "{}",
        ps["workspace"]
    );
    ensure!(ps["template"] == TARGET_TEMPLATE);
    let dev = &ps["network"]["devices"][0];
    ensure!(dev["networkName"] == target::NETWORK, "{dev}");
    // The source network's pool, gateway and nameservers are not copied: the target's are.
    ensure!(
        dev.get("gateway").is_none() && dev["nameservers"] == json!(TARGET_NAMESERVERS),
        "static IP settings of the target network: {dev}"
    );
    ensure!(dev["addressesFromPools"][0]["name"] == TARGET_IP_POOL, "{dev}");
    let tps = before[&w0]["spec"]["template"]["spec"]["providerSpec"]["value"].clone();
    for k in ["numCPUs", "memoryMiB", "diskGiB", "credentialsSecret", "userDataSecret"] {
        ensure!(ps[k] == tps[k], "{k} kept from {w0}");
    }
    ensure!(set.labels().get(o::LABEL_CLUSTER) == Some(&id));
    ensure!(set.annotations().get("migration.openshift.io/replaces") == Some(&w0));
    ensure!(
        set.data["spec"]["selector"]["matchLabels"] == json!({o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: new(&w0)})
    );
    let tl = &set.data["spec"]["template"]["metadata"]["labels"];
    ensure!(tl[o::LABEL_ROLE] == "worker" && tl[o::LABEL_MACHINESET] == new(&w0).as_str(), "{tl}");
    // The infra set's replacement keeps its role and node labels.
    let infra_set = machine_set(&c, &new(&infra)).await?.unwrap();
    let before_infra = &before[&infra]["spec"]["template"];
    ensure!(
        infra_set.data["spec"]["template"]["spec"]["metadata"] == before_infra["spec"]["metadata"],
        "infra node labels kept: {}",
        infra_set.data["spec"]["template"]["spec"]["metadata"]
    );
    ensure!(infra_set.data["spec"]["template"]["metadata"]["labels"][o::LABEL_ROLE] == "infra");
    for (n, before_set) in &before {
        let now = machine_set(&c, n).await?.map(|s| content(&s)).unwrap_or_default();
        same_content(&format!("MachineSet {n}"), before_set, &now)?;
    }

    // Idempotent.
    let rv_before = rv(&set);
    let again = c.execute_done().await?;
    ensure!(again.calls == 1 && again.message() == run.message(), "{again:?}");
    ensure!(rv(&machine_set(&c, &new(&w0)).await?.unwrap()) == rv_before);

    // Rollback: the sets, their machines and VMs go; everything else as it was.
    let all = machines(&c).await?;
    let made: Vec<String> = want.iter().flat_map(|(n, _)| of_set(&all, n)).map(|m| m.name_any()).collect();
    let back = c.rollback_done().await?;
    ensure!(
        back.message()
            == format!("MachineSet(s) {}, {}, {} and their machines are gone", new(&infra), new(&w0), new(&w1)),
        "{}",
        back.message()
    );
    for (name, _) in &want {
        ensure!(machine_set(&c, name).await?.is_none());
        ensure!(of_set(&machines(&c).await?, name).is_empty());
    }
    let vms = vm_names(&c, false, &c.cluster.target.folder).await?;
    ensure!(made.iter().all(|m| !vms.contains(m)), "VMs left: {vms:?}");
    ensure!(set_contents(&c).await? == before, "MachineSets after rollback");

    // A crash at any import, then a re-run, converges; a rollback after it cleans up. (Two
    // of the replacements get no machines here, through overrides: every crash point makes
    // and removes the machines again, and the real actuator takes its time.)
    let overrides = json!([{"machineSet": infra, "replicas": 0}, {"machineSet": w1, "replicas": 0}]);
    c.h.migration.spec.spec.machine_set_config.overrides = serde_json::from_value(overrides)?;
    let small: Vec<(String, usize)> = vec![(new(&infra), 0), (new(&w0), 2), (new(&w1), 0)];
    let (cr, wr) = (&c, &small);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move { cr.rollback_done().await.map(|_| ()) },
            move |n| async move { replacements_ready(cr, wr).await.map_err(|e| e.context(format!("crash at {n}"))) },
        )
        .await?;
    ensure!(points >= 5, "{points} crash points");
    c.rollback_done().await?;
    ensure!(set_contents(&c).await? == before);
    c.h.migration.spec.spec.machine_set_config.overrides.clear();

    // Plan mode: the creates are validated and recorded, nothing is made.
    let plan = c.h.plan(&c.plugin).await?;
    let creates = plan.outputs.plan.iter().filter(|p| p.action == "create" && p.target.contains("MachineSet")).count();
    ensure!(creates == 3, "{:?}", plan.outputs.plan);
    for (name, _) in &want {
        ensure!(machine_set(&c, name).await?.is_none());
    }

    // Bad input: a failure domain name that cannot be part of a MachineSet name.
    let spec = &mut c.h.migration.spec.spec;
    spec.failure_domains[0].name = "Target_FD".into();
    spec.machine_set_config.failure_domain = Some("Target_FD".into());
    spec.control_plane_machine_set_config.failure_domain = Some("Target_FD".into());
    let run = c.execute().await?;
    let refused = run.message().to_string();
    ensure!(
        refused.contains(&format!(
            "MachineSet {w0} (spec.machineSetConfig.failureDomain): the new MachineSet would be named \"{w0}-Target_FD\", which is not a valid Kubernetes name"
        )) && refused.contains("name it in spec.machineSetConfig.overrides"),
        "{refused}"
    );
    ensure!(set_contents(&c).await? == before);

    sim.stop().await;
    Ok(())
}
