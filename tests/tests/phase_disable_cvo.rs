//! DisableCVO against the real environment, with the simulator playing the Deployment
//! controller and kubelet: scaled to 0 and waited for, the original count (2 here)
//! remembered in migration scope, restored by the rollback (not 1), a crash anywhere
//! converges, plan mode changes nothing, a missing CVO is a clear failure.

mod phase_support;

use anyhow::{Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vsm_host::runtime::Direction;
use vsm_testenv::sim::objects::{CVO_NAME, CVO_NS};
use vsm_testenv::sim::{SimOptions, Simulator};

use phase_support::*;

const PODS: &str = "k8s-app=cluster-version-operator";

async fn scale(c: &PhaseEnv, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(c.client(), CVO_NS);
    api.patch(CVO_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas}}))).await?;
    Ok(())
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The CVO at `n` replicas with `n` running pods (the simulator makes them).
async fn cvo_at(c: &PhaseEnv, n: i32) -> Result<()> {
    scale(c, n).await?;
    eventually(&format!("{n} ready CVO pods"), || async {
        let d = c.deployment(CVO_NS, CVO_NAME).await.map_err(|e| e.to_string())?;
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let pods = c.pods(CVO_NS, PODS).await.map_err(|e| e.to_string())?.len();
        if ready == n && pods == n as usize { Ok(()) } else { Err(format!("{ready} ready, {pods} pods")) }
    })
    .await
}

#[tokio::test]
async fn disable_cvo_scales_to_zero_remembers_the_count_and_rollback_restores_it() -> Result<()> {
    let c = start("phase-disable-cvo", "disable-cvo").await?;
    let sim = Simulator::start(c.env, SimOptions::instant());

    // Success, with a non-default count: the Go controller restored 1 whatever it was.
    cvo_at(&c, 2).await?;
    let before = content(&c.deployment(CVO_NS, CVO_NAME).await?);
    let run = c.execute_done().await?;
    ensure!(waits(&run) >= 1 || c.pods(CVO_NS, PODS).await?.is_empty(), "{run:?}");
    let after = c.deployment(CVO_NS, CVO_NAME).await?;
    ensure!(replicas(&after) == 0, "scaled to 0: {:?}", after.spec);
    ensure!(c.pods(CVO_NS, PODS).await?.is_empty(), "its pods are gone when the phase is done");
    ensure!(c.shared_state("cvo-replicas").await?.as_deref() == Some("2"), "{:?}", c.state().await?);

    // Idempotent: a second run changes nothing.
    c.execute_done().await?;
    let again = c.deployment(CVO_NS, CVO_NAME).await?;
    ensure!(rv(&again) == rv(&after), "a second execute wrote the Deployment");
    ensure!(c.shared_state("cvo-replicas").await?.as_deref() == Some("2"));

    // Rollback: the remembered 2, and the Deployment as it was.
    let run = c.rollback_done().await?;
    ensure!(run.message() == "the cluster-version operator is back at its original 2 replica(s)", "{}", run.message());
    same_content("CVO Deployment after rollback", &before, &content(&c.deployment(CVO_NS, CVO_NAME).await?))?;
    ensure!(c.pods(CVO_NS, PODS).await?.len() == 2);

    // A crash at any import, then a re-run, converges; the count is never lost.
    let cr = &c;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                cvo_at(cr, 2).await?;
                cr.forget_state(None, "cvo-replicas").await
            },
            move |n| async move {
                let c = cr;
                let d = c.deployment(CVO_NS, CVO_NAME).await?;
                ensure!(replicas(&d) == 0, "crash at {n}: replicas {}", replicas(&d));
                ensure!(c.pods(CVO_NS, PODS).await?.is_empty(), "crash at {n}: pods left");
                ensure!(c.shared_state("cvo-replicas").await?.as_deref() == Some("2"), "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 3, "{points} crash points");
    c.rollback_done().await?;
    cvo_at(&c, 2).await?;

    // Plan mode: recorded, not applied.
    c.forget_state(None, "cvo-replicas").await?;
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(
        plan.message()
            .starts_with("would scale Deployment openshift-cluster-version/cluster-version-operator from 2 to 0"),
        "{}",
        plan.message()
    );
    ensure!(plan.outputs.plan.iter().any(|p| p.target.contains("cluster-version-operator")), "{:?}", plan.outputs.plan);
    ensure!(replicas(&c.deployment(CVO_NS, CVO_NAME).await?) == 2);
    ensure!(c.shared_state("cvo-replicas").await?.is_none(), "plan mode leaves no facts");

    // Bad input: no CVO at all.
    let api: Api<Deployment> = Api::namespaced(c.client(), CVO_NS);
    let mut saved = c.deployment(CVO_NS, CVO_NAME).await?;
    api.delete(CVO_NAME, &DeleteParams::default()).await?;
    let run = c.execute().await?;
    let retryable = failed_with(
        &run,
        "the cluster-version operator (Deployment openshift-cluster-version/cluster-version-operator) does not exist: is this an OpenShift cluster?",
    )?;
    ensure!(!retryable);
    saved.metadata.resource_version = None;
    saved.metadata.uid = None;
    saved.status = None;
    api.create(&PostParams::default(), &saved).await?;
    cvo_at(&c, 2).await?;

    sim.stop().await;
    Ok(())
}
