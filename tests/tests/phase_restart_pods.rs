//! RestartPods against the real API server with the simulator playing the Deployment and
//! DaemonSet controllers, the kubelet and the trusted CA injection: every pod of the five
//! vSphere groups is replaced exactly once (the simulator counts the pods it creates), the
//! phase waits until each group is Ready again and names the group that is not, a re-run
//! and a crash anywhere never delete a replacement, plan mode deletes nothing, a group that
//! does not exist is reported instead of waited for. Before any of that: without
//! UpdateConfig's work the phase refuses; after it, no pod goes before the injected trust
//! bundles hold the target CAs UpdateConfig recorded (the wait itself is unit-tested; the
//! e2e test with a private-CA target shows the real machine controller restarted with them).

mod part2_support;
mod phase_support;

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator};

use part2_support::*;
use phase_support::*;

const GROUPS: [(&str, &str); 5] = [
    ("openshift-cloud-controller-manager", "k8s-app=vsphere-cloud-controller-manager"),
    ("openshift-machine-api", "api=clusterapi"),
    ("openshift-cluster-csi-drivers", "app=vmware-vsphere-csi-driver-controller"),
    ("openshift-cluster-csi-drivers", "app=vmware-vsphere-csi-driver-node"),
    ("openshift-cluster-csi-drivers", "name=vmware-vsphere-csi-driver-operator"),
];

/// uids of the pods of every group, and how many there are per group.
async fn snapshot(c: &PhaseEnv) -> Result<(BTreeSet<String>, Vec<usize>)> {
    let mut uids = BTreeSet::new();
    let mut counts = Vec::new();
    for (ns, sel) in GROUPS {
        let pods = c.pods(ns, sel).await?;
        counts.push(pods.len());
        uids.extend(pods.iter().filter_map(|p| p.uid()));
    }
    Ok((uids, counts))
}

/// Every group has `counts` pods, all Running and Ready, none of them in `old`.
async fn all_replaced(c: &PhaseEnv, old: &BTreeSet<String>, counts: &[usize]) -> Result<(), String> {
    for ((ns, sel), want) in GROUPS.iter().zip(counts) {
        let pods = c.pods(ns, sel).await.map_err(|e| e.to_string())?;
        if pods.len() != *want {
            return Err(format!("{sel}: {} pods, want {want}", pods.len()));
        }
        if let Some(p) = pods.iter().find(|p| p.uid().is_some_and(|u| old.contains(&u))) {
            return Err(format!("{sel}: {} was not restarted", p.name_any()));
        }
        if let Some(p) = pods.iter().find(|p| !pod_ready(p)) {
            return Err(format!("{sel}: {} is not Ready", p.name_any()));
        }
    }
    Ok(())
}

async fn forget(c: &PhaseEnv) -> Result<()> {
    c.forget_state(Some("RestartPods"), "plan").await?;
    c.forget_state(Some("RestartPods"), "deleted").await
}

async fn settled(c: &PhaseEnv) -> Result<(BTreeSet<String>, Vec<usize>)> {
    eventually("every group settled and Ready", || async {
        let (uids, counts) = snapshot(c).await.map_err(|e| e.to_string())?;
        all_replaced(c, &BTreeSet::new(), &counts).await?;
        Ok((uids, counts))
    })
    .await
}

#[tokio::test]
async fn restart_pods_replaces_each_pod_once_and_waits_for_every_group() -> Result<()> {
    let c = start_seeded("phase-restart-pods", "restart-pods", &SeedOptions::default()).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let (old, counts) = settled(&c).await?;

    // Before UpdateConfig: refused, nothing deleted.
    let refused = c.execute().await?;
    let dst = c.env.target().host();
    let why = format!(
        "ConfigMap openshift-config/cloud-provider-config does not list target vCenter(s) {dst}: restarting would not make anything read them (UpdateConfig must have run)"
    );
    ensure!(!failed_with(&refused, &why)?, "not retryable");
    ensure!(snapshot(&c).await?.0 == old, "pods deleted by a refused run");
    run_phases(&c, &["update-config"]).await?;
    let recorded = c.shared_state("target-ca-fingerprints").await?.context("UpdateConfig records the target CAs")?;
    let total: usize = counts.iter().sum();
    ensure!(counts.iter().all(|n| *n > 0), "{counts:?}");

    // Success: every pod replaced once, each group Ready again.
    let created = sim.stats().pods_created;
    let run = c.execute_done().await?;
    ensure!(all_replaced(&c, &old, &counts).await.is_ok(), "{:?}", all_replaced(&c, &old, &counts).await);
    ensure!(sim.stats().pods_created - created == total as u64, "one replacement per pod: {:?}", sim.stats());
    ensure!(
        run.message()
            == format!(
                "restarted and Ready again: vSphere cloud controller manager ({}), machine-api controllers ({}), vSphere CSI driver controller ({}), vSphere CSI driver node ({}), vSphere CSI driver operator ({})",
                counts[0], counts[1], counts[2], counts[3], counts[4]
            ),
        "{}",
        run.message()
    );
    // It waited for the trusted CA injection: the machine-api's trust store holds the CAs.
    let injected = c.config_map("openshift-machine-api", "mao-trusted-ca").await?.context("mao-trusted-ca")?;
    let bundle = injected.data.as_ref().and_then(|d| d.get("ca-bundle.crt")).cloned().unwrap_or_default();
    ensure!(bundle.contains(c.env.vcenter_ca_bundle_pem().trim()), "{recorded}");

    // Done once: a re-run deletes nothing.
    let (now, _) = snapshot(&c).await?;
    let created = sim.stats().pods_created;
    c.execute_done().await?;
    ensure!(snapshot(&c).await?.0 == now, "a re-run restarted pods");
    ensure!(sim.stats().pods_created == created);

    // No rollback: nothing to undo.
    let back = c.rollback_done().await?;
    ensure!(back.message() == "nothing to undo", "{}", back.message());

    // The wait names the group that is not ready: without a kubelet the old pods stay.
    sim.stop().await;
    forget(&c).await?;
    let (old, counts) = snapshot(&c).await?;
    let first = one_call(&c, Direction::Execute).await?;
    let Outcome::Wait(w) = &first else { anyhow::bail!("expected a wait, got {first:?}") };
    ensure!(
        w.message
            == format!(
                "waiting for the vSphere cloud controller manager pods (openshift-cloud-controller-manager, k8s-app=vsphere-cloud-controller-manager): 0/{} ready; {} old pod(s) still terminating",
                counts[0], counts[0]
            ),
        "{}",
        w.message
    );
    let sim = Simulator::start(c.env, SimOptions::instant());
    c.execute_done().await?;
    eventually("replaced", || all_replaced(&c, &old, &counts)).await?;

    // A crash at any import, then a re-run: every old pod replaced exactly once.
    let before = Mutex::new((BTreeSet::new(), 0u64));
    let (cr, sr, br, counts) = (&c, &sim, &before, &counts);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                forget(cr).await?;
                let (uids, _) = settled(cr).await?;
                *br.lock().unwrap() = (uids, sr.stats().pods_created);
                Ok(())
            },
            move |n| async move {
                let (old, created) = br.lock().unwrap().clone();
                eventually(&format!("crash at {n}: replaced"), || all_replaced(cr, &old, counts)).await?;
                let made = sr.stats().pods_created - created;
                ensure!(made == total as u64, "crash at {n}: {made} pods created for {total} restarted");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 8, "{points} crash points");

    // Plan mode: the deletes are recorded, no pod goes.
    forget(&c).await?;
    let (uids, _) = settled(&c).await?;
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.outputs.plan.iter().filter(|p| p.action == "delete").count() == total, "{:?}", plan.outputs.plan);
    ensure!(snapshot(&c).await?.0 == uids, "plan mode deleted pods");

    // A group that does not exist on the cluster is reported, not waited for.
    let ds: Api<DaemonSet> = Api::namespaced(c.client(), "openshift-cluster-csi-drivers");
    ds.delete("vmware-vsphere-csi-driver-node", &DeleteParams::default()).await?;
    eventually("CSI node pods gone", || async {
        let n = c.pods(GROUPS[3].0, GROUPS[3].1).await.map_err(|e| e.to_string())?.len();
        if n == 0 { Ok(()) } else { Err(format!("{n} left")) }
    })
    .await?;
    forget(&c).await?;
    let run = c.execute_done().await?;
    ensure!(run.message().ends_with("; not present on this cluster: vSphere CSI driver node"), "{}", run.message());
    roll_back(&c, &["update-config"]).await?;

    sim.stop().await;
    Ok(())
}
