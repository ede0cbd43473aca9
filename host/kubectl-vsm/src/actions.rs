//! The commands that change a migration: approve, pause, resume, rollback. Each is a merge
//! patch of the spec with field manager `kubectl-vsm` and the resourceVersion it read (a
//! concurrent edit makes it read again, never overwrite), refused with an explanation when
//! it would do nothing useful.

use std::io::Write;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use vsm_api::{ApprovalMode, Direction, MigrationState, PHASES, PhaseResult, Stage, VSphereMigration};

use crate::{Error, FIELD_MANAGER, Result};

const ATTEMPTS: usize = 5;

fn name_of(m: &VSphereMigration) -> String {
    format!("{}/{}", m.metadata.namespace.clone().unwrap_or_default(), m.metadata.name.clone().unwrap_or_default())
}

fn finished(m: &VSphereMigration) -> Option<Stage> {
    let s = m.status.as_ref()?;
    s.finished_at.as_ref()?;
    s.phase.clone()
}

/// Patch the spec with what `edit` returns for the migration as last read (None: nothing
/// to do); on a conflict, read again and ask again.
async fn patch_spec<F>(api: &Api<VSphereMigration>, mut m: VSphereMigration, mut edit: F) -> Result<VSphereMigration>
where
    F: FnMut(&VSphereMigration) -> Result<Option<Value>>,
{
    let name = m.metadata.name.clone().unwrap_or_default();
    for _ in 0..ATTEMPTS {
        let Some(spec) = edit(&m)? else { return Ok(m) };
        let body = json!({"metadata": {"resourceVersion": m.metadata.resource_version}, "spec": spec});
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.patch(&name, &pp, &Patch::Merge(&body)).await {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(s)) if s.code == 409 => m = api.get(&name).await?,
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
                return Err(Error::Refused(format!("the API server refused the change: {}", s.message)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Failed(format!("{name} kept changing under us; nothing was changed, try again")))
}

/// The canonical phase name for `input` (case-insensitive).
pub fn phase_name(input: &str) -> Result<&'static str> {
    PHASES
        .iter()
        .copied()
        .find(|p| p.eq_ignore_ascii_case(input))
        .ok_or_else(|| Error::Refused(format!("{input} is not a phase; phases: {}", PHASES.join(", "))))
}

pub async fn approve(
    api: &Api<VSphereMigration>,
    m: VSphereMigration,
    phase: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let name = name_of(&m);
    if m.spec.approval_mode != ApprovalMode::Manual {
        return Err(Error::Refused(format!(
            "{name} runs every phase without approval (spec.approvalMode is Automatic): nothing to approve"
        )));
    }
    if let Some(result) = finished(&m) {
        return Err(Error::Refused(format!("{name} has ended ({result}): nothing to approve")));
    }
    let phase = match phase {
        Some(p) => phase_name(p)?,
        None => {
            let status = m.status.clone().unwrap_or_default();
            let waiting = status.condition("AwaitingApproval").is_some_and(|c| c.status == "True");
            match status.phase.as_ref().and_then(Stage::phase).filter(|_| waiting) {
                Some(p) => phase_name(p)?,
                None => {
                    return Err(Error::Refused(format!(
                        "no phase of {name} waits for approval now (phase {}); name one to approve it ahead",
                        status.phase.as_ref().map_or("-", Stage::as_str)
                    )));
                }
            }
        }
    };
    let mut already = false;
    patch_spec(api, m, |m| {
        if m.spec.approvals.iter().any(|a| a == phase) {
            already = true;
            return Ok(None);
        }
        let mut approvals = m.spec.approvals.clone();
        approvals.push(phase.to_string());
        Ok(Some(json!({ "approvals": approvals })))
    })
    .await?;
    if already {
        writeln!(out, "{phase} was already approved for {name}")?;
    } else {
        writeln!(out, "approved {phase} for {name} (recorded as approved by {FIELD_MANAGER})")?;
    }
    Ok(())
}

/// Set spec.state to `to`, with what to say and when to refuse.
async fn set_state(
    api: &Api<VSphereMigration>,
    m: VSphereMigration,
    to: MigrationState,
    check: impl Fn(&VSphereMigration) -> Result<()>,
) -> Result<bool> {
    let mut changed = false;
    patch_spec(api, m, |m| {
        check(m)?;
        if m.spec.state == to {
            return Ok(None);
        }
        changed = true;
        Ok(Some(json!({ "state": to })))
    })
    .await?;
    Ok(changed)
}

pub async fn pause(api: &Api<VSphereMigration>, m: VSphereMigration, out: &mut dyn Write) -> Result<()> {
    let name = name_of(&m);
    let changed = set_state(api, m, MigrationState::Paused, |m| {
        if let Some(result) = finished(m) {
            return Err(Error::Refused(format!("{} has ended ({result}): nothing to pause", name_of(m))));
        }
        if m.spec.state == MigrationState::Rollback {
            return Err(Error::Refused(format!("{} is rolling back, which cannot be paused", name_of(m))));
        }
        Ok(())
    })
    .await?;
    if changed {
        writeln!(out, "pausing {name}: no phase is called until it is resumed (kubectl vsm resume)")?;
    } else {
        writeln!(out, "{name} is already paused")?;
    }
    Ok(())
}

pub async fn resume(api: &Api<VSphereMigration>, m: VSphereMigration, out: &mut dyn Write) -> Result<()> {
    let name = name_of(&m);
    let was = m.spec.state;
    let changed = set_state(api, m, MigrationState::Running, |m| {
        if let Some(result) = finished(m) {
            return Err(Error::Refused(format!("{} has ended ({result}): nothing to resume", name_of(m))));
        }
        if m.spec.state == MigrationState::Rollback {
            return Err(Error::Refused(format!("{} is rolling back; a rollback cannot be cancelled", name_of(m))));
        }
        Ok(())
    })
    .await?;
    match (changed, was) {
        (false, _) => writeln!(out, "{name} is already running")?,
        (true, MigrationState::Pending) => writeln!(out, "started {name}")?,
        (true, _) => writeln!(out, "resumed {name}")?,
    }
    Ok(())
}

pub async fn rollback(api: &Api<VSphereMigration>, m: VSphereMigration, out: &mut dyn Write) -> Result<()> {
    let name = name_of(&m);
    let status = m.status.clone().unwrap_or_default();
    let changed = set_state(api, m, MigrationState::Rollback, |m| {
        if m.spec.state == MigrationState::Rollback {
            return Ok(());
        }
        let status = m.status.clone().unwrap_or_default();
        match status.condition("RollbackAvailable") {
            Some(c) if c.status == "True" => Ok(()),
            Some(c) => {
                let when = status.phase.as_ref().map_or("not started", Stage::as_str);
                Err(Error::Refused(format!("{} cannot be rolled back ({when}): {}", name_of(m), c.message)))
            }
            None => Err(Error::Refused(format!("{} has not started: there is nothing to roll back", name_of(m)))),
        }
    })
    .await?;
    if !changed {
        let phase = status.phase.as_ref().map_or("-", Stage::as_str);
        writeln!(out, "{name}: a rollback was requested already ({phase})")?;
        return Ok(());
    }
    let mut done: Vec<&str> = Vec::new();
    for h in status.history.iter().rev() {
        if h.direction == Direction::Execute && h.result == PhaseResult::Succeeded && !done.contains(&h.phase.as_str())
        {
            done.push(&h.phase);
        }
    }
    if let Some(cur) = status.current.as_ref().filter(|c| c.direction == Direction::Execute && c.attempt > 0) {
        done.insert(0, &cur.name);
    }
    writeln!(
        out,
        "rolling back {name}: undoing {} in this order (phases without a rollback are skipped); kubectl vsm status follows it",
        if done.is_empty() { "nothing".to_string() } else { done.join(", ") }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_matched_without_case_and_unknown_ones_listed() {
        assert_eq!(phase_name("createworkers").unwrap(), "CreateWorkers");
        assert_eq!(phase_name("DisableCVO").unwrap(), "DisableCVO");
        let err = phase_name("Reboot").unwrap_err().to_string();
        assert!(err.contains("Reboot is not a phase") && err.contains("Preflight"), "{err}");
    }
}
