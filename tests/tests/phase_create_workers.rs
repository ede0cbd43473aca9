//! CreateWorkers against the real API server and vCenters, with the real machine-api (its
//! MachineSet controller, vSphere actuator, nodelink and webhooks; the simulator plays the
//! kubelets and the IP address provider): the new MachineSet is modelled on a real worker set (not the infra set
//! that sorts first, and the one with the static-IP device settings, which are kept),
//! placed in the target failure domain; the phase waits until its machines are Running
//! with Ready nodes (VMs cloned in the target vCenter); idempotent; crash anywhere
//! converges; rollback removes the set, its machines and VMs and leaves everything else;
//! plan mode creates nothing; a target missing from the Infrastructure and a failure
//! domain name unusable in a MachineSet name are refused with clear messages.

mod part2_support;
mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use kube::ResourceExt;
use serde_json::{Value, json};
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::harness::{TARGET_FD, TARGET_TEMPLATE};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};
use vsm_testenv::vcsim::target;

use part2_support::*;
use phase_support::*;

async fn set_contents(c: &PhaseEnv) -> Result<BTreeMap<String, Value>> {
    Ok(machine_sets(c).await?.iter().map(|s| (s.name_any(), content(s))).collect())
}

/// The new set exists with `want` machines, all Running with Ready nodes, all in the
/// target vCenter, each with a VM in the target folder.
async fn workers_ready(c: &PhaseEnv, name: &str, want: usize) -> Result<()> {
    let all = machines(c).await?;
    let nodes = nodes(c).await?;
    let mine = of_set(&all, name);
    ensure!(mine.len() == want, "{} machines of {name}", mine.len());
    for m in &mine {
        ensure!(machine_ready(m, &nodes), "{} is not Running with a Ready node: {:?}", m.name_any(), m.data["status"]);
        ensure!(machine_server(m) == c.env.target().host(), "{} runs in {}", m.name_any(), machine_server(m));
    }
    let vms = vm_names(c, false, &c.cluster.target.folder).await?;
    for m in &mine {
        ensure!(vms.contains(&m.name_any()), "no VM for {} in the target folder: {vms:?}", m.name_any());
    }
    Ok(())
}

#[tokio::test]
async fn create_workers_models_a_real_worker_set_and_waits_for_machines_and_nodes() -> Result<()> {
    let seed = SeedOptions { workers: 3, worker_machinesets: 2, infra_machines: Some(1), ..Default::default() };
    let mut c = start_seeded_real("phase-create-workers", "create-workers", &seed).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let id = c.cluster.infra_id.clone();
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let name = format!("{id}-worker-{TARGET_FD}");

    // Bad input: the Infrastructure does not know the target vCenter yet.
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        &format!(
            "vCenter {dst} is not in the Infrastructure yet (it lists {src}): UpdateInfrastructure must run before CreateWorkers"
        )
    )?);
    ensure!(machine_set(&c, &name).await?.is_none());

    run_phases(&c, BEFORE_WORKERS).await?;
    let before = set_contents(&c).await?;
    let template = c.cluster.worker_machinesets[0].clone();
    ensure!(c.cluster.infra_machineset.as_deref().is_some_and(|i| i < template.as_str()), "the infra set sorts first");

    // Success. With the simulator (the kubelets) stopped first, no machine gets a Node:
    // the phase really waits for machines.
    sim.stop().await;
    let first = one_call(&c, Direction::Execute).await?;
    ensure!(
        message(&first).starts_with(&format!(
            "created MachineSet {name} from {template} (2 worker(s) in failure domain {TARGET_FD}, vCenter {dst})"
        )),
        "{first:?}"
    );
    let second = one_call(&c, Direction::Execute).await?;
    ensure!(
        matches!(second, Outcome::Wait(_)) && message(&second).starts_with("waiting for new workers: 0/2 ready; "),
        "{second:?}"
    );
    let sim = Simulator::start(c.env, SimOptions::instant());
    let run = c.execute_done().await?;
    workers_ready(&c, &name, 2).await?;
    ensure!(
        run.message().starts_with(&format!("MachineSet {name}: 2/2 workers Running with Ready nodes in vCenter {dst}")),
        "{}",
        run.message()
    );

    let set = machine_set(&c, &name).await?.unwrap();
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
    ensure!(
        dev["gateway"] == "192.168.10.1" && dev["nameservers"] == json!(["192.168.10.53", "192.168.10.54"]),
        "static IP settings kept: {dev}"
    );
    ensure!(dev["addressesFromPools"][0]["name"] == format!("{id}-worker-pool"), "{dev}");
    let tps = before[&template]["spec"]["template"]["spec"]["providerSpec"]["value"].clone();
    for k in ["numCPUs", "memoryMiB", "diskGiB", "credentialsSecret", "userDataSecret"] {
        ensure!(ps[k] == tps[k], "{k} kept from {template}");
    }
    ensure!(set.labels().get(o::LABEL_CLUSTER) == Some(&id));
    ensure!(set.data["spec"]["selector"]["matchLabels"] == json!({o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: name}));
    let tl = &set.data["spec"]["template"]["metadata"]["labels"];
    ensure!(tl[o::LABEL_ROLE] == "worker" && tl[o::LABEL_MACHINESET] == name.as_str(), "{tl}");
    ensure!(set.data["spec"]["template"]["spec"]["metadata"].get("labels").is_none(), "no infra node role copied");
    for (n, before_set) in &before {
        let now = machine_set(&c, n).await?.map(|s| content(&s)).unwrap_or_default();
        same_content(&format!("MachineSet {n}"), before_set, &now)?;
    }

    // Idempotent.
    let rv_before = rv(&set);
    let again = c.execute_done().await?;
    ensure!(again.calls == 1 && again.message() == run.message(), "{again:?}");
    ensure!(rv(&machine_set(&c, &name).await?.unwrap()) == rv_before);

    // Rollback: the set, its machines and VMs go; everything else as it was.
    let made: Vec<String> = of_set(&machines(&c).await?, &name).iter().map(|m| m.name_any()).collect();
    let back = c.rollback_done().await?;
    ensure!(back.message() == format!("MachineSet {name} and its machines are gone"), "{}", back.message());
    ensure!(machine_set(&c, &name).await?.is_none());
    ensure!(of_set(&machines(&c).await?, &name).is_empty());
    let vms = vm_names(&c, false, &c.cluster.target.folder).await?;
    ensure!(made.iter().all(|m| !vms.contains(m)), "VMs left: {vms:?}");
    ensure!(set_contents(&c).await? == before, "MachineSets after rollback");

    // A crash at any import, then a re-run, converges; a rollback after it cleans up.
    let (cr, nr) = (&c, &name);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move { cr.rollback_done().await.map(|_| ()) },
            move |n| async move { workers_ready(cr, nr, 2).await.map_err(|e| e.context(format!("crash at {n}"))) },
        )
        .await?;
    ensure!(points >= 5, "{points} crash points");
    c.rollback_done().await?;
    ensure!(set_contents(&c).await? == before);

    // Plan mode: the create is validated and recorded, nothing is made.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(
        plan.outputs.plan.iter().any(|p| p.action == "create" && p.target.contains("MachineSet")),
        "{:?}",
        plan.outputs.plan
    );
    ensure!(machine_set(&c, &name).await?.is_none());

    // Bad input: a failure domain name that cannot be part of a MachineSet name.
    let spec = &mut c.h.migration.spec.spec;
    spec.failure_domains[0].name = "Target_FD".into();
    spec.machine_set_config.failure_domain = "Target_FD".into();
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        &format!(
            "the new MachineSet would be named \"{id}-worker-Target_FD\", which is not a valid Kubernetes name (lowercase letters, digits, '-' and '.'): rename failure domain \"Target_FD\""
        )
    )?);
    ensure!(set_contents(&c).await? == before);

    sim.stop().await;
    Ok(())
}
