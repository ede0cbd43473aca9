//! DeleteCPMS: delete the ControlPlaneMachineSet `openshift-machine-api/cluster` so the
//! control plane does not roll while the infrastructure changes, then wait until the
//! control-plane machine set operator has regenerated it (it always does so as
//! `Inactive`, which never touches machines). If no CPMS reappears within
//! [`REGENERATE_GRACE_MS`], the phase carries on without one (the issue allows "absent").
//!
//! The original's uid and state are recorded before the delete, so a crash anywhere is
//! resumed correctly and the regenerated object is told apart from the original. A CPMS
//! that is already Inactive is left alone. Rollback puts the original back (spec, labels,
//! annotations and its Active state) from the host's journalled before-image, over the
//! regenerated one if there is one (Inactive → Active is allowed; replicas and selector
//! are the same).

use serde::{Deserialize, Serialize};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{CPMS, MACHINE_API_NAMESPACE};
use vsm_sdk::{KubeError, Preconditions};

/// Phase-scope state key of the [`Original`] record.
pub const ORIGINAL_KEY: &str = "original";
/// How long to wait for the regenerated CPMS before carrying on without one.
pub const REGENERATE_GRACE_MS: u64 = 2 * 60 * 1000;
const POLL_MS: u64 = 2_000;

pub struct DeleteCpms;

impl Phase for DeleteCpms {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "DeleteCPMS",
            env!("CARGO_PKG_VERSION"),
            "Delete the ControlPlaneMachineSet so the control plane does not roll during the change, and wait for the regenerated Inactive one",
        )
        .kube("machine.openshift.io", "controlplanemachinesets", &["get", "delete"], Some(MACHINE_API_NAMESPACE))
        .with_rollback()
        .deadline_minutes(15)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        let restored = cx.backup().restore_all()?;
        if restored == 0 {
            return Ok(done("nothing to undo: this phase did not delete the ControlPlaneMachineSet"));
        }
        let cpms = read(cx)?;
        let state = cpms.as_ref().map(state_of).unwrap_or("absent");
        Ok(done(format!("restored the original {} (state {state})", name())))
    }
}

/// The CPMS as it was when this phase first saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Original {
    pub uid: String,
    pub state: String,
    /// When the delete was accepted (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<u64>,
}

fn name() -> String {
    format!("ControlPlaneMachineSet {MACHINE_API_NAMESPACE}/{CPMS}")
}

/// `spec.state` (the CRD defaults it to Inactive).
pub fn state_of(cpms: &Object) -> &str {
    cpms.str_at("/spec/state").unwrap_or("Inactive")
}

fn read(cx: &Cx) -> Result<Option<Object>, PhaseError> {
    cx.kube().get(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS)
}

fn load(cx: &Cx) -> Result<Option<Original>, PhaseError> {
    cx.state().get_json(ORIGINAL_KEY)
}

fn delete(cx: &Cx, uid: &str) -> Result<(), PhaseError> {
    let pre = Preconditions { uid: Some(uid.to_string()), resource_version: None };
    match cx.kube().delete(&types::CONTROL_PLANE_MACHINE_SET, Some(MACHINE_API_NAMESPACE), CPMS, Some(&pre)) {
        Ok(_) => Ok(()),
        // Replaced since we looked: the next call sees the new one.
        Err(PhaseError::Kube { error: KubeError::Conflict(_), .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn waiting(since_ms: Option<u64>, cx: &Cx) -> Outcome {
    let waited = since_ms.map(|t| cx.now_ms().saturating_sub(t)).unwrap_or(0);
    wait(
        POLL_MS,
        percent(waited as usize, REGENERATE_GRACE_MS as usize).clamp(10, 90),
        format!(
            "deleted the {}; waiting for the control-plane machine set operator to regenerate it as Inactive",
            name()
        ),
    )
}

fn execute(cx: &Cx) -> Step {
    let live = read(cx)?;
    let record = load(cx)?;
    match (live, record) {
        (None, None) => {
            Ok(done(format!("no {} exists: the control plane is not managed by one, nothing to delete", name())))
        }
        (Some(cpms), None) => {
            let original =
                Original { uid: cpms.uid().to_string(), state: state_of(&cpms).to_string(), deleted_at_ms: None };
            cx.state().put(ORIGINAL_KEY, &original)?;
            if original.state != "Active" {
                return Ok(done(format!(
                    "the {} is {}: it does not roll machines, so it is left as it is",
                    name(),
                    original.state
                )));
            }
            delete_and_wait(cx, original)
        }
        (Some(cpms), Some(original)) if cpms.uid() == original.uid => {
            if original.state != "Active" {
                return Ok(done(format!(
                    "the {} is {}: it does not roll machines, so it is left as it is",
                    name(),
                    original.state
                )));
            }
            if cpms.is_deleting() {
                return Ok(wait(POLL_MS, 10, format!("the {} is being deleted (finalizers pending)", name())));
            }
            delete_and_wait(cx, original)
        }
        (Some(cpms), Some(original)) => match state_of(&cpms) {
            "Active" => Err(PhaseError::invalid(format!(
                "a new Active {} (uid {}) replaced the one this migration deleted (uid {}): something re-created it Active, \
                 and it would roll the control plane while the infrastructure changes; make it Inactive or delete it, then retry",
                name(),
                cpms.uid(),
                original.uid
            ))),
            state => Ok(done(format!(
                "deleted the original {} ({}); the operator regenerated it {state} (uid {}), so the control plane will not roll while the infrastructure changes",
                name(),
                original.state,
                cpms.uid()
            ))),
        },
        (None, Some(mut original)) => {
            if original.state != "Active" {
                return Ok(done(format!("the {} is gone and was not Active; nothing to do", name())));
            }
            let deleted_at = match original.deleted_at_ms {
                Some(t) => t,
                None => {
                    let now = cx.now_ms();
                    original.deleted_at_ms = Some(now);
                    cx.state().put(ORIGINAL_KEY, &original)?;
                    now
                }
            };
            if cx.now_ms().saturating_sub(deleted_at) >= REGENERATE_GRACE_MS {
                cx.warn(format!(
                    "no {} was regenerated within {} s; carrying on without one",
                    name(),
                    REGENERATE_GRACE_MS / 1000
                ));
                return Ok(done(format!(
                    "deleted the {}; none was regenerated within {} s (is the control-plane machine set operator running?), so the control plane has no machine set and will not roll",
                    name(),
                    REGENERATE_GRACE_MS / 1000
                )));
            }
            Ok(waiting(Some(deleted_at), cx))
        }
    }
}

fn delete_and_wait(cx: &Cx, mut original: Original) -> Step {
    delete(cx, &original.uid)?;
    if cx.dry_run() {
        return Ok(done(format!(
            "would delete the Active {} (uid {}) and wait for the operator to regenerate it Inactive",
            name(),
            original.uid
        )));
    }
    cx.log().event(
        EventType::Normal,
        "CPMSDeleted",
        &format!("deleted the Active {} so the control plane does not roll", name()),
    );
    if original.deleted_at_ms.is_none() {
        original.deleted_at_ms = Some(cx.now_ms());
        cx.state().put(ORIGINAL_KEY, &original)?;
    }
    Ok(waiting(original.deleted_at_ms, cx))
}

export_phase!(DeleteCpms);

#[cfg(test)]
mod tests;
