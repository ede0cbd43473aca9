//! `kubectl vsm plan` and `kubectl vsm history`.

use std::io::Write;

use vsm_api::{Direction, Mode, PHASES, PhaseResult, Stage, VSphereMigration};

use crate::render::{Cell, Color, Style, duration, table, truncate};
use crate::{Output, Result, encode};

/// The colour of a diff line by its first character (`+` added, `-` removed, `~` changed).
fn diff_color(line: &str) -> Option<Color> {
    match line.chars().next() {
        Some('+') => Some(Color::Green),
        Some('-') => Some(Color::Red),
        Some('~') => Some(Color::Yellow),
        _ => None,
    }
}

/// status.plan as a diff: per phase, each intended change and its field-level details.
pub fn plan(m: &VSphereMigration, output: Output, style: Style, out: &mut dyn Write) -> Result<()> {
    let status = m.status.clone().unwrap_or_default();
    if output != Output::Table {
        return encode(out, output, &status.plan);
    }
    if m.spec.mode != Mode::Plan && status.plan.is_empty() {
        writeln!(out, "no plan: spec.mode is Apply (a migration created with mode: Plan records one)")?;
        return Ok(());
    }
    let planned: Vec<&str> = status
        .history
        .iter()
        .filter(|h| h.direction == Direction::Execute && h.result == PhaseResult::Planned)
        .map(|h| h.phase.as_str())
        .collect();
    let mut changes = 0;
    for phase in PHASES {
        let entry = status.plan.iter().find(|p| p.phase == phase);
        match entry {
            Some(p) => {
                writeln!(out, "{}", style.paint(Color::Bold, &format!("{phase}:")))?;
                for c in &p.changes {
                    changes += 1;
                    writeln!(out, "  {} {} {}", style.paint(Color::Cyan, &c.action), c.system, c.target)?;
                    for d in &c.details {
                        let line = format!("      {d}");
                        match diff_color(d) {
                            Some(color) => writeln!(out, "{}", style.paint(color, &line))?,
                            None => writeln!(out, "{line}")?,
                        }
                    }
                }
                for w in &p.waits {
                    writeln!(out, "  {} {w}", style.paint(Color::Dim, "would wait:"))?;
                }
            }
            None if planned.contains(&phase) => writeln!(
                out,
                "{} {}",
                style.paint(Color::Bold, &format!("{phase}:")),
                style.paint(Color::Dim, "no changes")
            )?,
            None => {}
        }
    }
    let result = status.phase.as_ref().map_or("-", Stage::as_str);
    writeln!(out, "\n{changes} change(s) in {} phase(s) planned; plan {}", status.plan.len(), result)?;
    Ok(())
}

/// Every phase run and rollback step, then approvals and the rollback.
pub fn history(m: &VSphereMigration, output: Output, style: Style, out: &mut dyn Write) -> Result<()> {
    let status = m.status.clone().unwrap_or_default();
    if output != Output::Table {
        return encode(
            out,
            output,
            &serde_json::json!({"history": status.history, "approvals": status.approvals, "rollback": status.rollback}),
        );
    }
    if status.history.is_empty() {
        writeln!(out, "no phase has finished yet")?;
    } else {
        let rows: Vec<Vec<Cell>> = status
            .history
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let color = match h.result {
                    PhaseResult::Failed => Color::Red,
                    _ => Color::Green,
                };
                let plugin = h.plugin.as_ref().map(|p| format!("{}@{}", p.component, p.version)).unwrap_or_default();
                vec![
                    Cell::new((i + 1).to_string()),
                    Cell::new(h.phase.clone()),
                    Cell::new(h.direction.label()),
                    Cell::colored(format!("{:?}", h.result), color),
                    Cell::new(h.started_at.to_string()),
                    Cell::new(duration(h.finished_at.seconds_since(h.started_at))),
                    Cell::new(h.attempts.to_string()),
                    Cell::new(plugin),
                    Cell::new(truncate(&h.message, 80)),
                ]
            })
            .collect();
        table(
            out,
            style,
            &["#", "PHASE", "DIRECTION", "RESULT", "STARTED", "TIME", "CALLS", "PLUGIN", "MESSAGE"],
            &rows,
        )?;
    }
    if !status.approvals.is_empty() {
        writeln!(out)?;
        let rows: Vec<Vec<Cell>> = status
            .approvals
            .iter()
            .map(|a| vec![Cell::new(a.phase.clone()), Cell::new(a.by.clone()), Cell::new(a.approved_at.to_string())])
            .collect();
        table(out, style, &["APPROVED", "BY", "AT"], &rows)?;
    }
    if let Some(r) = &status.rollback {
        writeln!(out)?;
        writeln!(out, "{} started {} ({})", style.paint(Color::Bold, "Rollback:"), r.started_at, r.reason)?;
        if !r.remaining.is_empty() {
            writeln!(out, "  still to undo: {}", r.remaining.join(", "))?;
        }
        for f in &r.failures {
            writeln!(out, "  {} {f}", style.paint(Color::Red, "failed:"))?;
        }
    }
    Ok(())
}
