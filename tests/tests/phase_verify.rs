//! Verify against the real API server and vCenters, after the real earlier phases (the
//! CVO ran 2 replicas, so "restore 1" would be wrong): before Cleanup it waits and names
//! the source still configured (the Go controller failed on its first look); a Node that
//! no target machine owns is waited for; once everything is on the target it scales the
//! CVO back to the remembered 2 and waits until it is Ready; idempotent; crash anywhere
//! converges; the rollback scales it down again exactly; plan mode changes nothing; a CVO
//! at zero with no remembered count is refused.

mod part2_support;
mod phase_support;

use anyhow::{Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vsm_host::backends::state::full_key;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::{Outcome, Scope};
use vsm_testenv::sim::objects::{CVO_NAME, CVO_NS};
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};

use part2_support::*;
use phase_support::*;

fn cvo_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The CVO wants `n` replicas and has `n` ready.
async fn cvo_ready(c: &PhaseEnv, n: i32) -> Result<(), String> {
    let d = c.deployment(CVO_NS, CVO_NAME).await.map_err(|e| e.to_string())?;
    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if cvo_replicas(&d) == n && ready == n {
        Ok(())
    } else {
        Err(format!("{} wanted, {ready} ready", cvo_replicas(&d)))
    }
}

fn wait_text(o: &Outcome) -> Result<&str> {
    match o {
        Outcome::Wait(w) => Ok(&w.message),
        other => bail!("expected a wait, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_waits_for_the_end_state_then_restores_the_remembered_cvo_replicas() -> Result<()> {
    let c = start_seeded_real("phase-verify", "verify", &SeedOptions::default()).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let cvo: Api<Deployment> = Api::namespaced(c.client(), CVO_NS);
    cvo.patch(CVO_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
    eventually("CVO at 2", || cvo_ready(&c, 2)).await?;

    run_phases(&c, &["disable-cvo"]).await?;
    run_phases(&c, BEFORE_WORKERS).await?;
    run_phases(&c, &["delete-cpms", "create-workers", "recreate-cpms", "scale-old-machines"]).await?;

    // Before Cleanup: not a failure, a wait that names what is left of the source.
    let first = one_call(&c, Direction::Execute).await?;
    let msg = wait_text(&first)?;
    ensure!(msg.starts_with("verifying the migration ("), "{msg}");
    ensure!(msg.contains(&format!("the Infrastructure still lists source vCenter {src}")), "{msg}");
    ensure!(cvo_replicas(&c.deployment(CVO_NS, CVO_NAME).await?) == 0, "the CVO stays down while verifying");

    run_phases(&c, &["cleanup"]).await?;

    // A Node no target machine owns is a leftover: waited for. A Node of another platform
    // (a mixed cluster's bare-metal host) is in no vCenter: not the migration's to wait for.
    let nodes_api: Api<Node> = Api::all(c.client());
    let stray: Node = serde_json::from_value(json!({"metadata": {"name": "stray-node"}}))?;
    let metal: Node = serde_json::from_value(json!({"metadata": {"name": "metal-node"},
        "spec": {"providerID": "baremetalhost:///openshift-machine-api/host-0/0b0c"}}))?;
    for node in [&stray, &metal] {
        nodes_api.create(&PostParams::default(), node).await?;
    }
    let msg = one_call(&c, Direction::Execute).await?;
    let msg = wait_text(&msg)?;
    ensure!(msg.contains("node(s) without a machine in a target vCenter: stray-node"), "{msg:?}");
    ensure!(!msg.contains("metal-node"), "{msg:?}");
    for node in ["stray-node", "metal-node"] {
        nodes_api.delete(node, &DeleteParams::default()).await?;
    }

    // Success: the remembered 2, Ready; every machine replaced one for one.
    let n = c.cluster.masters.len() + c.cluster.workers.len();
    let before = content(&c.deployment(CVO_NS, CVO_NAME).await?);
    let run = c.execute_done().await?;
    cvo_ready(&c, 2).await.map_err(anyhow::Error::msg)?;
    ensure!(
        run.message()
            .starts_with(&format!("migration verified: {n} machines and {n} nodes in {dst}, no trace of {src} left")),
        "{}",
        run.message()
    );
    ensure!(
        run.message().ends_with("the cluster-version operator (Deployment openshift-cluster-version/cluster-version-operator) is back at 2 replica(s) and Ready"),
        "{}",
        run.message()
    );
    let after = c.deployment(CVO_NS, CVO_NAME).await?;

    // Idempotent.
    c.execute_done().await?;
    ensure!(rv(&c.deployment(CVO_NS, CVO_NAME).await?) == rv(&after));

    // Rollback: the CVO is scaled down again, exactly as before Verify.
    c.rollback_done().await?;
    same_content("CVO after rollback", &before, &content(&c.deployment(CVO_NS, CVO_NAME).await?))?;

    // A crash at any import, then a re-run, converges.
    let cr = &c;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move { cr.rollback_done().await.map(|_| ()) },
            move |n| async move {
                cvo_ready(cr, 2).await.map_err(|e| anyhow::anyhow!("crash at {n}: {e}"))?;
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 10, "{points} crash points");
    c.rollback_done().await?;

    // Plan mode: says what it would do, the CVO stays down. (A plan sees only facts
    // recorded in plan mode: in a planned migration DisableCVO's plan run records the count.)
    let planned = full_key("", Scope::Migration, "cvo-replicas", true);
    c.h.backends(false).state.put(&planned, Some("2")).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(
        plan.message()
            == "would scale the cluster-version operator (Deployment openshift-cluster-version/cluster-version-operator) back to 2 replica(s)",
        "{}",
        plan.message()
    );
    ensure!(cvo_replicas(&c.deployment(CVO_NS, CVO_NAME).await?) == 0);

    // Bad input: the CVO at zero and no remembered count.
    let remembered = c.shared_state("cvo-replicas").await?;
    ensure!(remembered.as_deref() == Some("2"), "{remembered:?}");
    c.forget_state(None, "cvo-replicas").await?;
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        "the cluster-version operator (Deployment openshift-cluster-version/cluster-version-operator) is at 0 replicas and DisableCVO recorded no original count (migration state cvo-replicas): scale it back by hand"
    )?);
    ensure!(cvo_replicas(&c.deployment(CVO_NS, CVO_NAME).await?) == 0);

    sim.stop().await;
    Ok(())
}
