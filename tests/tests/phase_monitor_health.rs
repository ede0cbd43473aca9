//! MonitorHealth against the real API server with the simulator's ClusterOperator rules:
//! a healthy cluster passes; a Degraded operator and a NotReady node are waited for and
//! named (the Go controller never looked at nodes); with two vCenters configured (the
//! real UpdateSecrets, UpdateInfrastructure and UpdateConfig components) machine-config
//! goes Degraded and is tolerated by default, and the tolerated set is the spec's; an
//! operator that reports no conditions yet is not healthy; read-only, so a crash anywhere
//! and a re-run change nothing, and there is nothing to roll back.

mod part2_support;
mod phase_support;

use anyhow::{Result, bail, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};

use part2_support::*;
use phase_support::*;

fn wait_message(o: &Outcome) -> Result<&str> {
    match o {
        Outcome::Wait(w) => Ok(&w.message),
        other => bail!("expected a wait, got {other:?}"),
    }
}

async fn set_node_ready(c: &PhaseEnv, name: &str, ready: bool) -> Result<()> {
    let api: Api<Node> = Api::all(c.client());
    let node = api.get(name).await?;
    let mut conds = serde_json::to_value(node.status.and_then(|s| s.conditions).unwrap_or_default())?;
    for cond in conds.as_array_mut().unwrap() {
        if cond["type"] == "Ready" {
            cond["status"] = json!(if ready { "True" } else { "False" });
            cond["reason"] = json!(if ready { "KubeletReady" } else { "KubeletNotReady" });
        }
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": conds}}))).await?;
    Ok(())
}

#[tokio::test]
async fn monitor_health_checks_operators_and_nodes_with_a_configurable_tolerated_set() -> Result<()> {
    let mut c = start_seeded("phase-monitor-health", "monitor-health", &SeedOptions::default()).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    operators_healthy(&c, &[]).await?;
    let nodes_total = nodes(&c).await?.len();
    let ops_total = operators(&c).await?.len();

    // Healthy: done on the first call.
    let run = c.execute_done().await?;
    ensure!(run.calls == 1, "{run:?}");
    ensure!(
        run.message()
            == format!(
                "cluster healthy: {ops_total}/{ops_total} ClusterOperators available and not degraded, {nodes_total} Nodes Ready"
            ),
        "{}",
        run.message()
    );

    // A Degraded operator and a NotReady node: waited for and named, then healthy again.
    set_operator(&c, "authentication", "True", "True", "OAuth server is down").await?;
    let worker = c.cluster.workers[0].clone();
    set_node_ready(&c, &worker, false).await?;
    let first = one_call(&c, Direction::Execute).await?;
    let msg = wait_message(&first)?;
    ensure!(msg.starts_with("waiting for the cluster to be healthy: "), "{msg}");
    ensure!(msg.contains("operator authentication (available=True, degraded=True): OAuth server is down"), "{msg}");
    ensure!(msg.contains(&format!("node {worker} not Ready (False)")), "nodes are checked: {msg}");
    set_operator(&c, "authentication", "True", "False", "").await?;
    set_node_ready(&c, &worker, true).await?;
    c.execute_done().await?;

    // An operator that has not reported yet is not healthy.
    set_operator(&c, "insights", "Unknown", "Unknown", "").await?;
    let msg = one_call(&c, Direction::Execute).await?;
    ensure!(wait_message(&msg)?.contains("operator insights (available=Unknown, degraded=Unknown)"), "{msg:?}");
    set_operator(&c, "insights", "True", "False", "").await?;

    // Two vCenters configured (by the real earlier phases): machine-config goes Degraded.
    run_phases(&c, &["update-secrets", "update-infrastructure", "update-config"]).await?;
    eventually("machine-config Degraded with two vCenters", || async {
        let co = o::operators_api(&c.client()).get("machine-config").await.map_err(|e| e.to_string())?;
        match o::condition_status(co.data.pointer("/status/conditions"), "Degraded") {
            Some("True") => Ok(()),
            other => Err(format!("Degraded={other:?}")),
        }
    })
    .await?;
    operators_healthy(&c, &["machine-config"]).await?;
    let run = c.execute_done().await?;
    ensure!(
        run.message().ends_with("; tolerated while 2 vCenters are configured: machine-config"),
        "{}",
        run.message()
    );

    // The tolerated set is the spec's: without machine-config in it, the phase waits.
    c.h.migration.spec.spec.health.tolerated_operators = vec!["insights".into()];
    let msg = one_call(&c, Direction::Execute).await?;
    ensure!(wait_message(&msg)?.contains("operator machine-config (available=True, degraded=True)"), "{msg:?}");
    c.h.migration.spec.spec.health.tolerated_operators = vec!["machine-config".into()];

    // Read-only: a crash anywhere and a re-run, done; nothing to roll back.
    let cr = &c;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            |_| async { Ok(()) },
            move |n| async move {
                ensure!(cr.execute_done().await?.done(), "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points == 3, "reads the Infrastructure, operators and nodes: {points}");
    ensure!(c.rollback_done().await?.message() == "nothing to undo");
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.done() && plan.outputs.plan.is_empty(), "{plan:?}");

    sim.stop().await;
    Ok(())
}
