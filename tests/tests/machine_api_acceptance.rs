//! What the real machine-api refuses reaches the migration's message, and a password
//! rotation does not stop it: CreateWorkers with a target failure domain whose template is
//! not in the target vCenter fails with the vSphere actuator's own error; a MachineSet the
//! phase writes that the real validating webhook refuses fails the phase with the webhook's
//! message; the target vCenter's password rotated in the middle of a migration (after
//! UpdateSecrets ran once, every vCenter session ended) reaches the actuator through
//! UpdateSecrets and the cloud credential operator's copy, and machines are created with it;
//! the actuator tags the machines it creates in the target with the cluster's tag, which
//! CreateTags makes there. Each test has its own environment: each changes the cluster for
//! good.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::harness::{Harness, NAMESPACE, Run, TARGET_CREDS, target_spec};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator};
use vsm_testenv::{TestEnv, TestEnvOptions};

/// What CreateWorkers needs before it can create machines in the target.
const BEFORE_WORKERS: &[&str] = &["update-secrets", "create-folder", "update-infrastructure", "update-config"];

async fn cluster() -> Result<(TestEnv, SeededCluster, SimHandle)> {
    let env = TestEnv::start(TestEnvOptions { machine_api: true, ..Default::default() }).await?;
    let seeded = vsm_testenv::sim::seed(&env, &SeedOptions::default()).await?;
    let sim = Simulator::start(&env, SimOptions::instant());
    Ok((env, seeded, sim))
}

async fn run_phases(h: &Harness, components: &[&str]) -> Result<()> {
    for name in components {
        let run = h.run(&h.phase(name).await?, Direction::Execute).await?;
        ensure!(run.done(), "{name}: {:?}", run.outcome);
    }
    Ok(())
}

fn failure(run: &Run) -> Result<(&str, bool)> {
    match &run.outcome {
        Outcome::Failed(f) => Ok((&f.message, f.retryable)),
        other => anyhow::bail!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_target_template_missing_in_the_vcenter_fails_create_workers_with_the_actuators_error() -> Result<()> {
    let (env, seeded, sim) = cluster().await?;
    let mut spec = target_spec(&env);
    spec.failure_domains[0].topology.template = Some("/dst-dc/vm/no-such-template".into());
    let h = Harness::new(&env, "mapi-no-template", spec).await?;
    run_phases(&h, BEFORE_WORKERS).await?;

    let run = h.run(&h.phase("create-workers").await?, Direction::Execute).await?;
    let (message, retryable) = failure(&run)?;
    let set = format!("{}-target-fd", seeded.worker_machinesets[0]);
    ensure!(message.starts_with(&format!("new machine(s) of MachineSet {set} failed: {set}-")), "{message}");
    ensure!(message.contains("template not found, specify valid value"), "the actuator's words: {message}");
    ensure!(!retryable, "{message}");

    // The rollback removes the set and its failed machines (no VM was ever made).
    let back = h.run(&h.phase("create-workers").await?, Direction::Rollback).await?;
    ensure!(back.done(), "{:?}", back.outcome);
    let left: Vec<String> = o::machines_api(&env.client())
        .list(&ListParams::default().labels(&format!("{}={set}", o::LABEL_MACHINESET)))
        .await?
        .items
        .iter()
        .map(|m| m.name_any())
        .collect();
    ensure!(left.is_empty(), "{left:?}");
    sim.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_machineset_the_webhook_refuses_fails_create_workers_with_the_webhooks_message() -> Result<()> {
    let (env, _seeded, sim) = cluster().await?;
    // A folder in another datacenter than the failure domain's: the spec's pattern
    // (`^/.*?/vm/.*?`, the Infrastructure's) allows it, the MachineSet webhook does not.
    let mut spec = target_spec(&env);
    spec.failure_domains[0].topology.folder = Some("/other-dc/vm/machines".into());
    let h = Harness::new(&env, "mapi-webhook", spec).await?;
    // Not CreateFolder: it would fail first, on the datacenter that does not exist.
    run_phases(&h, &["update-secrets", "update-infrastructure", "update-config"]).await?;

    let run = h.run(&h.phase("create-workers").await?, Direction::Execute).await?;
    let (message, _) = failure(&run)?;
    ensure!(
        message.contains(r#"admission webhook "validation.machineset.machine.openshift.io" denied the request"#),
        "{message}"
    );
    ensure!(
        message.contains(r#"folder must be absolute path: expected prefix "/dst-dc/vm/""#),
        "the webhook's words: {message}"
    );
    sim.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_password_rotated_mid_migration_reaches_the_actuator_after_update_secrets() -> Result<()> {
    let (env, seeded, sim) = cluster().await?;
    let h = Harness::new(&env, "mapi-rotation", target_spec(&env)).await?;
    run_phases(&h, BEFORE_WORKERS).await?;
    let dst = env.target();
    let key = format!("{}.password", dst.host());

    // The target's password changes: in vCenter, in the migration's Secret; every session
    // ends, so nobody keeps working on a login made with the old one.
    let rotated = "dst-Rotated-3!";
    dst.set_credentials(&dst.username, rotated).await?;
    sim.set_vcenter_password(&dst.host(), rotated);
    let secrets: Api<Secret> = Api::namespaced(env.client(), NAMESPACE);
    let patch = json!({"stringData": {key.clone(): rotated}});
    secrets.patch(TARGET_CREDS, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    dst.terminate_sessions().await?;

    // UpdateSecrets again (the migration resumes there), then CreateWorkers.
    run_phases(&h, &["update-secrets"]).await?;
    let creds: Api<Secret> = Api::namespaced(env.client(), o::CREDS_NS);
    let value = |s: &Secret| s.data.as_ref().and_then(|d| d.get(&key)).map(|v| v.0.clone());
    ensure!(value(&creds.get(o::CREDS_NAME).await?) == Some(rotated.as_bytes().to_vec()), "vsphere-creds");
    let failures_before = dst.stats().await?.login_failures;
    run_phases(&h, &["create-workers"]).await?;

    // The new workers run in the target, and the copy the actuator reads holds the new one.
    let copies: Api<Secret> = Api::namespaced(env.client(), o::MACHINE_API_NS);
    let copy = copies.get(vsm_testenv::sim::credentials::MACHINE_API_CREDS_NAME).await?;
    ensure!(value(&copy) == Some(rotated.as_bytes().to_vec()), "the cloud credential operator's copy");
    let set = format!("{}-target-fd", seeded.worker_machinesets[0]);
    let machines = o::machines_api(&env.client())
        .list(&ListParams::default().labels(&format!("{}={set}", o::LABEL_MACHINESET)))
        .await?
        .items;
    ensure!(machines.len() == 2, "{}", machines.len());
    let vms = dst.guest_vms().await?;
    for m in &machines {
        ensure!(o::str_at(&m.data, "/status/phase") == Some("Running"), "{}: {}", m.name_any(), m.data["status"]);
        ensure!(vms.iter().any(|v| v.name == m.name_any()), "no VM {} in the target", m.name_any());
    }
    // The actuator logged in with the rotated password: no login was refused meanwhile.
    let failures = dst.stats().await?.login_failures;
    ensure!(failures == failures_before, "logins refused after the rotation: {failures_before} -> {failures}");
    let log = std::fs::read_to_string(
        env.machine_api().context("machine-api")?.log_path(vsm_testenv::machine_api::Component::MachineController),
    )?;
    ensure!(log.contains(&format!("{set}-")), "the actuator made them");
    sim.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_machines_create_workers_makes_carry_the_clusters_tag_create_tags_made() -> Result<()> {
    let (env, seeded, sim) = cluster().await?;
    let h = Harness::new(&env, "mapi-cluster-tag", target_spec(&env)).await?;
    run_phases(&h, &["create-tags"]).await?;
    run_phases(&h, BEFORE_WORKERS).await?;
    run_phases(&h, &["create-workers"]).await?;

    let set = format!("{}-target-fd", seeded.worker_machinesets[0]);
    let vc = h.vsphere(&env.target().host()).await?;
    let machines = o::machines_api(&env.client())
        .list(&ListParams::default().labels(&format!("{}={set}", o::LABEL_MACHINESET)))
        .await?
        .items;
    ensure!(machines.len() == 2, "{}", machines.len());
    for m in &machines {
        let vm = vc
            .find(vsm_vsphere::ObjectKind::VirtualMachine, &format!("{}/{}", seeded.target.folder, m.name_any()))
            .await?;
        let tags: Vec<String> =
            vc.list_attached_tags(&vm).await?.into_iter().map(|t| format!("{}={}", t.category_name, t.name)).collect();
        let want = format!("openshift-{0}={0}", seeded.infra_id);
        ensure!(tags.contains(&want), "VM {} carries {tags:?}, not {want}", m.name_any());
    }
    sim.stop().await;
    Ok(())
}
