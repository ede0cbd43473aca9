//! ScaleOldMachines against the real API server and vCenters, with the real machine-api
//! (the simulator plays the kubelets): after the real earlier phases (new workers in the target), every MachineSet
//! in the source goes to zero with its original count remembered first; the phase waits
//! until the machines, their nodes and VMs are gone; idempotent; crash anywhere
//! converges without ever remembering a zero; the rollback restores the remembered counts
//! (2, 1 and 1 here, not a fixed 3) and waits for the machines to be Ready; plan mode
//! changes nothing; without a Ready worker in the target it refuses to start.

mod part2_support;
mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use kube::ResourceExt;
use serde_json::Value;
use vsm_host::backends::state::full_key;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Scope;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};

use part2_support::*;
use phase_support::*;

/// The source's MachineSets and their replicas.
async fn source_sets(c: &PhaseEnv) -> Result<BTreeMap<String, i64>> {
    let src = c.env.source().host();
    Ok(machine_sets(c).await?.iter().filter(|s| set_server(s) == src).map(|s| (s.name_any(), replicas(s))).collect())
}

async fn contents(c: &PhaseEnv) -> Result<BTreeMap<String, Value>> {
    Ok(machine_sets(c).await?.iter().map(|s| (s.name_any(), content(s))).collect())
}

async fn remembered(c: &PhaseEnv) -> Result<Option<BTreeMap<String, i64>>> {
    let key = full_key("ScaleOldMachines", Scope::Phase, "original", false);
    Ok(c.state().await?.get(&key).map(|v| serde_json::from_str(v)).transpose()?)
}

/// The old sets are at zero, none of their machines, nodes or VMs is left.
async fn scaled_down(c: &PhaseEnv, sets: &BTreeMap<String, i64>, old_nodes: &[String]) -> Result<()> {
    let now = source_sets(c).await?;
    ensure!(now.values().all(|r| *r == 0), "{now:?}");
    let all = machines(c).await?;
    for s in sets.keys() {
        let left: Vec<String> = of_set(&all, s).iter().map(|m| m.name_any()).collect();
        ensure!(left.is_empty(), "machines of {s} left: {left:?}");
    }
    let nodes: Vec<String> = nodes(c).await?.iter().map(|n| n.name_any()).collect();
    ensure!(old_nodes.iter().all(|n| !nodes.contains(n)), "old nodes left: {nodes:?}");
    let vms = vm_names(c, true, &c.cluster.source.folder).await?;
    ensure!(old_nodes.iter().all(|n| !vms.contains(n)), "old VMs left: {vms:?}");
    ensure!(remembered(c).await?.as_ref() == Some(sets), "remembered {:?}", remembered(c).await?);
    Ok(())
}

/// Nodes of the old sets' machines.
async fn old_set_nodes(c: &PhaseEnv, sets: &BTreeMap<String, i64>) -> Result<Vec<String>> {
    let all = machines(c).await?;
    Ok(sets
        .keys()
        .flat_map(|s| of_set(&all, s))
        .filter_map(|m| vsm_testenv::sim::objects::nonempty_at(&m.data, "/status/nodeRef/name").map(String::from))
        .collect())
}

/// Each old set has its count again, every machine Running with a Ready node.
async fn restored(c: &PhaseEnv, sets: &BTreeMap<String, i64>) -> Result<()> {
    ensure!(&source_sets(c).await? == sets);
    let (all, nodes) = (machines(c).await?, nodes(c).await?);
    for (s, want) in sets {
        let mine = of_set(&all, s);
        ensure!(mine.len() == *want as usize, "{s}: {} machines, want {want}", mine.len());
        ensure!(mine.iter().all(|m| machine_ready(m, &nodes)), "{s}: not all ready");
    }
    Ok(())
}

#[tokio::test]
async fn scale_old_machines_remembers_each_count_and_waits_for_machines_and_nodes_to_go() -> Result<()> {
    let seed = SeedOptions { workers: 3, worker_machinesets: 2, infra_machines: Some(1), ..Default::default() };
    let c = start_seeded_real("phase-scale-old-machines", "scale-old-machines", &seed).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    run_phases(&c, BEFORE_WORKERS).await?;
    let sets = source_sets(&c).await?;
    let id = &c.cluster.infra_id;
    ensure!(
        sets == BTreeMap::from([
            (format!("{id}-infra-0"), 1),
            (format!("{id}-worker-0"), 2),
            (format!("{id}-worker-1"), 1)
        ]),
        "{sets:?}"
    );

    // Bad input: no replacements planned, so nothing may go.
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        "CreateWorkers recorded no replacement plan: it must complete before ScaleOldMachines"
    )?);
    ensure!(source_sets(&c).await? == sets, "nothing scaled");

    run_phases(&c, &["create-workers"]).await?;
    let before = contents(&c).await?;
    let old_nodes = old_set_nodes(&c, &sets).await?;
    ensure!(old_nodes.len() == 4, "{old_nodes:?}");

    // Success.
    let run = c.execute_done().await?;
    scaled_down(&c, &sets, &old_nodes).await?;
    let waited = wait_messages(&run);
    ensure!(waited.iter().any(|w| w.contains("old machine(s) still there")), "{waited:?}");
    ensure!(
        run.message()
            == format!(
                "scaled 3 MachineSet(s) in the source vCenter(s) to zero ({id}-infra-0 1→0, {id}-worker-0 2→0, {id}-worker-1 1→0); their machines and 4 node(s) are gone"
            ),
        "{}",
        run.message()
    );
    let masters: Vec<_> = machines(&c).await?.into_iter().filter(is_master).collect();
    ensure!(masters.len() == 3, "the control plane is not this phase's business");

    // Idempotent.
    let rvs: Vec<String> = machine_sets(&c).await?.iter().map(rv).collect();
    c.execute_done().await?;
    ensure!(machine_sets(&c).await?.iter().map(rv).collect::<Vec<_>>() == rvs, "a re-run wrote a MachineSet");

    // Rollback: the remembered counts, Ready again, every set as it was.
    let back = c.rollback_done().await?;
    restored(&c, &sets).await?;
    ensure!(contents(&c).await? == before, "MachineSets after rollback");
    ensure!(back.message().starts_with("restored the remembered replica counts ("), "{}", back.message());
    ensure!(remembered(&c).await?.is_none(), "the rollback forgets the counts");

    // A crash at any import, then a re-run: scaled down, the counts never lost.
    let gone = std::sync::Mutex::new(Vec::new());
    let (cr, sr, gr) = (&c, &sets, &gone);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                restored(cr, sr).await?;
                *gr.lock().unwrap() = old_set_nodes(cr, sr).await?;
                Ok(())
            },
            move |n| async move {
                let old = gr.lock().unwrap().clone();
                scaled_down(cr, sr, &old).await.map_err(|e| e.context(format!("crash at {n}")))
            },
        )
        .await?;
    ensure!(points >= 5, "{points} crash points");
    c.rollback_done().await?;
    restored(&c, &sets).await?;
    ensure!(contents(&c).await? == before);

    // Plan mode (after CreateWorkers' plan, which records the replacements in the plan's
    // own state): recorded, nothing scaled.
    c.h.plan(&c.h.phase("create-workers").await?).await?;
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.outputs.plan.iter().filter(|p| p.action == "patch").count() == 3, "{:?}", plan.outputs.plan);
    restored(&c, &sets).await?;

    sim.stop().await;
    Ok(())
}
