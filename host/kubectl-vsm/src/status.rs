//! `kubectl vsm status`: the 16 phases with their state, progress and last message; what the
//! migration waits for and why; its conditions.

use std::io::Write;

use vsm_api::{
    Delay, Direction, MigrationState, MigrationStatus, PHASES, PhaseRecord, PhaseResult, Stage, Time, VSphereMigration,
};

use crate::render::{Cell, Color, Style, duration, relative, table, truncate};
use crate::{Output, Result, encode};

/// One line of the phase table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseRow {
    pub phase: String,
    pub state: String,
    pub color: Option<Color>,
    pub attempts: Option<u32>,
    pub seconds: Option<i64>,
    pub message: String,
}

fn last_record<'a>(status: &'a MigrationStatus, phase: &str) -> Option<&'a PhaseRecord> {
    status.history.iter().rev().find(|h| h.phase == phase)
}

fn awaiting_approval(status: &MigrationStatus) -> bool {
    status.condition("AwaitingApproval").is_some_and(|c| c.status == "True")
}

/// The state of every phase, in migration order.
pub fn phase_rows(status: &MigrationStatus, now: Time) -> Vec<PhaseRow> {
    PHASES
        .iter()
        .map(|&phase| {
            let row = |state: &str, color: Option<Color>| PhaseRow {
                phase: phase.to_string(),
                state: state.to_string(),
                color,
                attempts: None,
                seconds: None,
                message: String::new(),
            };
            if let Some(cur) = status.current.as_ref().filter(|c| c.name == phase) {
                let verb = if cur.direction == Direction::Execute { "running" } else { "undoing" };
                return PhaseRow {
                    state: format!("{verb} {}%", cur.progress),
                    attempts: Some(cur.attempt),
                    seconds: Some(now.seconds_since(cur.started_at)),
                    message: cur.message.clone(),
                    ..row("", Some(Color::Yellow))
                };
            }
            if awaiting_approval(status) && status.phase.as_ref().and_then(Stage::phase) == Some(phase) {
                return row("awaiting approval", Some(Color::Cyan));
            }
            let to_undo = status.rollback.as_ref().is_some_and(|r| r.remaining.iter().any(|p| p == phase));
            match last_record(status, phase) {
                Some(rec) => {
                    let (state, color) = match (rec.direction, rec.result) {
                        (_, PhaseResult::Succeeded) if to_undo => ("to undo", Color::Yellow),
                        (Direction::Execute, PhaseResult::Succeeded) => ("done", Color::Green),
                        (Direction::Execute, PhaseResult::Planned) => ("planned", Color::Green),
                        (Direction::Execute, PhaseResult::Failed) => ("failed", Color::Red),
                        (Direction::Rollback, PhaseResult::Succeeded) => ("undone", Color::Green),
                        (Direction::Rollback, _) => ("undo failed", Color::Red),
                    };
                    PhaseRow {
                        attempts: Some(rec.attempts),
                        seconds: Some(rec.finished_at.seconds_since(rec.started_at)),
                        message: rec.message.clone(),
                        ..row(state, Some(color))
                    }
                }
                None => row("pending", Some(Color::Dim)),
            }
        })
        .collect()
}

/// Why the migration is not moving right now, one sentence each (empty while it runs).
pub fn waiting_reasons(m: &VSphereMigration, now: Time) -> Vec<String> {
    let status = m.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    if status.started_at.is_none() && m.spec.state == MigrationState::Pending {
        out.push("not started: spec.state is Pending (kubectl vsm resume starts it)".to_string());
    }
    if let Some(at) = status.paused_at {
        out.push(format!("paused since {at} ({}): kubectl vsm resume", relative(at, now)));
    } else if m.spec.state == MigrationState::Paused && status.finished_at.is_none() {
        out.push("pausing: the phase running now finishes its call first".to_string());
    }
    if let Some(c) = status.condition("AwaitingApproval").filter(|c| c.status == "True") {
        out.push(c.message.clone());
    }
    if let Some(cur) = &status.current
        && let (Some(delay), Some(at)) = (cur.delay, cur.next_call_at)
    {
        out.push(match delay {
            Delay::Wait => {
                format!("phase {} waits until {at} ({}) or a watch event: {}", cur.name, relative(at, now), cur.message)
            }
            Delay::Backoff => format!(
                "phase {} failed {} time(s) in a row; retrying at {at} ({}): {}",
                cur.name,
                cur.failures,
                relative(at, now),
                cur.message
            ),
        });
    }
    if let Some(c) = status.condition("Degraded").filter(|c| c.status == "True") {
        out.push(format!("degraded ({}): {}", c.reason, c.message));
    }
    if let Some(r) = &status.rollback
        && status.finished_at.is_none()
    {
        out.push(format!(
            "rolling back ({}); still to undo: {}",
            r.reason,
            if r.remaining.is_empty() { "nothing".into() } else { r.remaining.join(", ") }
        ));
    }
    out
}

pub fn show(m: &VSphereMigration, output: Output, style: Style, out: &mut dyn Write) -> Result<()> {
    if output != Output::Table {
        let mut m = m.clone();
        m.metadata.managed_fields = None;
        return encode(out, output, &m);
    }
    let now = Time::now();
    let status = m.status.clone().unwrap_or_default();
    let name =
        format!("{}/{}", m.metadata.namespace.clone().unwrap_or_default(), m.metadata.name.clone().unwrap_or_default());
    let phase_color = match &status.phase {
        Some(stage) if stage.ended_cleanly() => Color::Green,
        Some(Stage::Failed | Stage::RollbackFailed) => Color::Red,
        _ => Color::Yellow,
    };
    let phase = status.phase.as_ref().map_or("-", Stage::as_str);
    writeln!(out, "{} {}", style.paint(Color::Bold, "Migration:"), name)?;
    writeln!(
        out,
        "{} {}   state {:?}, mode {:?}, approval {:?}",
        style.paint(Color::Bold, "Phase:    "),
        style.paint(phase_color, phase),
        m.spec.state,
        m.spec.mode,
        m.spec.approval_mode
    )?;
    writeln!(
        out,
        "{} {}",
        style.paint(Color::Bold, "Progress: "),
        status.progress.clone().unwrap_or_else(|| "-".into())
    )?;
    if let Some(started) = status.started_at {
        let ended = match status.finished_at {
            Some(f) => format!(", finished {f} after {}", duration(f.seconds_since(started))),
            None => String::new(),
        };
        writeln!(out, "{} {started} ({}){ended}", style.paint(Color::Bold, "Started:  "), relative(started, now))?;
    }
    let sources: Vec<String> = status.sources.iter().map(|s| format!("{}:{}", s.server, s.port)).collect();
    let targets: Vec<&str> = m.spec.target_servers();
    writeln!(
        out,
        "{} {} -> {}",
        style.paint(Color::Bold, "vCenters: "),
        if sources.is_empty() { "(not recorded yet)".to_string() } else { sources.join(", ") },
        targets.join(", ")
    )?;
    writeln!(out)?;

    let rows: Vec<Vec<Cell>> = phase_rows(&status, now)
        .into_iter()
        .map(|r| {
            vec![
                Cell::new(r.phase),
                Cell { text: r.state, color: r.color },
                Cell::new(r.attempts.map(|a| a.to_string()).unwrap_or_default()),
                Cell::new(r.seconds.map(duration).unwrap_or_default()),
                Cell::new(truncate(&r.message, 90)),
            ]
        })
        .collect();
    table(out, style, &["PHASE", "STATE", "CALLS", "TIME", "MESSAGE"], &rows)?;

    let waiting = waiting_reasons(m, now);
    if !waiting.is_empty() {
        writeln!(out)?;
        for w in waiting {
            writeln!(out, "{} {w}", style.paint(Color::Yellow, "Waiting:"))?;
        }
    }
    if !status.conditions.is_empty() {
        writeln!(out)?;
        let rows: Vec<Vec<Cell>> = status
            .conditions
            .iter()
            .map(|c| {
                let bad = (c.type_ == "Degraded" || c.type_ == "InsecureTLS") == (c.status == "True");
                let color = if c.status == "Unknown" {
                    Color::Dim
                } else if bad {
                    Color::Red
                } else {
                    Color::Green
                };
                let color = if c.type_ == "AwaitingApproval" || c.type_ == "Progressing" { Color::Cyan } else { color };
                vec![
                    Cell::new(c.type_.clone()),
                    Cell::colored(c.status.clone(), color),
                    Cell::new(c.reason.clone()),
                    Cell::new(relative(c.last_transition_time, now)),
                    Cell::new(truncate(&c.message, 90)),
                ]
            })
            .collect();
        table(out, style, &["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsm_api::{Condition, CurrentPhase, RollbackStatus};

    fn record(phase: &str, direction: Direction, result: PhaseResult) -> PhaseRecord {
        serde_json::from_value(serde_json::json!({
            "phase": phase, "direction": direction, "result": result, "startedAt": "2025-01-01T00:00:00Z",
            "finishedAt": "2025-01-01T00:00:07Z", "attempts": 2, "message": format!("{phase} message")
        }))
        .unwrap()
    }

    fn current(phase: &str, direction: Direction) -> CurrentPhase {
        serde_json::from_value(serde_json::json!({
            "name": phase, "direction": direction, "startedAt": "2025-01-01T00:00:00Z", "attempt": 3,
            "progress": 40, "message": "waiting for machines", "progressChangedAt": "2025-01-01T00:00:00Z",
            "delay": "Wait", "nextCallAt": "2025-01-01T00:01:10Z"
        }))
        .unwrap()
    }

    fn states(status: &MigrationStatus) -> Vec<(String, String)> {
        let now: Time = "2025-01-01T00:01:00Z".parse().unwrap();
        phase_rows(status, now).into_iter().map(|r| (r.phase, r.state)).filter(|(_, s)| s != "pending").collect()
    }

    #[test]
    fn phases_show_done_running_waiting_and_undone() {
        let mut s = MigrationStatus {
            history: vec![
                record("Preflight", Direction::Execute, PhaseResult::Succeeded),
                record("Backup", Direction::Execute, PhaseResult::Succeeded),
            ],
            current: Some(current("DisableCVO", Direction::Execute)),
            ..Default::default()
        };
        assert_eq!(
            states(&s),
            vec![
                ("Preflight".into(), "done".into()),
                ("Backup".into(), "done".into()),
                ("DisableCVO".into(), "running 40%".into())
            ]
        );
        let now: Time = "2025-01-01T00:01:00Z".parse().unwrap();
        let running = &phase_rows(&s, now)[2];
        assert_eq!((running.attempts, running.seconds), (Some(3), Some(60)));

        // Rolling back: Backup undone, Preflight still to undo, DisableCVO being undone.
        s.history.push(record("Backup", Direction::Rollback, PhaseResult::Succeeded));
        s.current = Some(current("DisableCVO", Direction::Rollback));
        s.rollback = Some(RollbackStatus { remaining: vec!["Preflight".into()], ..Default::default() });
        assert_eq!(
            states(&s),
            vec![
                ("Preflight".into(), "to undo".into()),
                ("Backup".into(), "undone".into()),
                ("DisableCVO".into(), "undoing 40%".into())
            ]
        );
    }

    #[test]
    fn the_phase_awaiting_approval_is_marked_and_explained() {
        let s = MigrationStatus {
            phase: Some("Backup".into()),
            history: vec![record("Preflight", Direction::Execute, PhaseResult::Succeeded)],
            conditions: vec![Condition {
                type_: "AwaitingApproval".into(),
                status: "True".into(),
                reason: "ApprovalRequired".into(),
                message: "phase Backup waits for approval".into(),
                last_transition_time: "2025-01-01T00:00:00Z".parse().unwrap(),
                observed_generation: None,
            }],
            ..Default::default()
        };
        assert_eq!(states(&s)[1], ("Backup".into(), "awaiting approval".into()));
    }
}
