//! DeleteCPMS against the real environment, with the simulator playing the control-plane
//! machine set operator (it regenerates a deleted CPMS as Inactive after a delay): the
//! phase waits for the regenerated one (the Go controller completed at once); a re-run
//! changes nothing; the rollback puts the original spec and Active state back; a CPMS
//! re-activated behind the migration's back is a clear failure; a crash anywhere
//! converges; plan mode deletes nothing.

mod phase_support;

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vsm_host::runtime::Direction;
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SimOptions, Simulator};

use phase_support::*;

fn state(cpms: &kube::api::DynamicObject) -> String {
    o::str_at(&cpms.data, "/spec/state").unwrap_or("Inactive").to_string()
}

async fn regenerated_inactive(c: &PhaseEnv, not_uid: &str) -> Result<()> {
    let cpms = c.cpms().await?.expect("a CPMS after the phase");
    ensure!(state(&cpms) == "Inactive", "state {}", state(&cpms));
    ensure!(cpms.uid().as_deref() != Some(not_uid), "still the original");
    ensure!(cpms.metadata.deletion_timestamp.is_none());
    Ok(())
}

#[tokio::test]
async fn delete_cpms_waits_for_the_regenerated_inactive_cpms_and_rollback_restores_the_original() -> Result<()> {
    let c = start("phase-delete-cpms", "delete-cpms").await?;
    let sim =
        Simulator::start(c.env, SimOptions { cpms_regenerate: Duration::from_millis(1500), ..SimOptions::instant() });
    let original = c.cpms().await?.expect("the seeded CPMS");
    ensure!(state(&original) == "Active");
    let original_uid = original.uid().unwrap_or_default();

    // Success: deleted, then waited for the regenerated Inactive CPMS.
    let run = c.execute_done().await?;
    ensure!(waits(&run) >= 1, "did not wait for the regeneration: {:?}", run.outcome);
    ensure!(
        run.message().starts_with("deleted the original ControlPlaneMachineSet openshift-machine-api/cluster (Active); the operator regenerated it Inactive"),
        "{}",
        run.message()
    );
    regenerated_inactive(&c, &original_uid).await?;

    // Idempotent.
    let regenerated = c.cpms().await?.expect("regenerated");
    let run = c.execute_done().await?;
    ensure!(run.calls == 1, "{run:?}");
    ensure!(rv(&c.cpms().await?.expect("regenerated")) == rv(&regenerated), "a re-run touched the CPMS");

    // Rollback: the original spec and state, labels and annotations.
    let run = c.rollback_done().await?;
    ensure!(
        run.message() == "restored the original ControlPlaneMachineSet openshift-machine-api/cluster (state Active)",
        "{}",
        run.message()
    );
    let restored = c.cpms().await?.expect("restored");
    same_content("CPMS after rollback", &content(&original), &content(&restored))?;

    // A crash at any import converges (each time from the original, Active).
    let cr = &c;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                cr.forget_state(Some("DeleteCPMS"), "original").await?;
                let now = cr.cpms().await?.expect("restored");
                ensure!(state(&now) == "Active" && now.metadata.deletion_timestamp.is_none());
                Ok(())
            },
            move |n| async move {
                let now = cr.cpms().await?.expect("a CPMS");
                ensure!(state(&now) == "Inactive" && now.metadata.deletion_timestamp.is_none(), "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 3, "{points} crash points");
    c.rollback_done().await?;
    c.forget_state(Some("DeleteCPMS"), "original").await?;
    same_content("CPMS after the crash tests", &content(&original), &content(&c.cpms().await?.expect("restored")))?;

    // Plan mode: the delete is validated, not done.
    let before = c.cpms().await?.expect("CPMS");
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(
        plan.message().starts_with("would delete the Active ControlPlaneMachineSet openshift-machine-api/cluster"),
        "{}",
        plan.message()
    );
    ensure!(rv(&c.cpms().await?.expect("CPMS")) == rv(&before), "plan mode changed the CPMS");

    // Someone re-activates the regenerated CPMS: a clear failure, not a silent success.
    c.execute_done().await?;
    let regenerated = c.cpms().await?.expect("regenerated");
    o::cpms_api(&c.client())
        .patch(o::CPMS_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": {"state": "Active"}})))
        .await?;
    let run = c.execute().await?;
    let expected = format!(
        "a new Active ControlPlaneMachineSet openshift-machine-api/cluster (uid {}) replaced the one this migration deleted (uid {}): \
         something re-created it Active, and it would roll the control plane while the infrastructure changes; make it Inactive or delete it, then retry",
        regenerated.uid().unwrap_or_default(),
        c.state()
            .await?
            .get("p.DeleteCPMS.original")
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|v| v["uid"].as_str().map(String::from))
            .unwrap_or_default()
    );
    ensure!(!failed_with(&run, &expected)?);
    c.rollback_done().await?;
    same_content("CPMS at the end", &content(&original), &content(&c.cpms().await?.expect("restored")))?;

    sim.stop().await;
    Ok(())
}
