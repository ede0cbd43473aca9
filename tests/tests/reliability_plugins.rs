//! Hostile plugins in real migrations: one operator process (the release binary) runs a
//! migration per misbehaviour, with the shipped phases and CreateTags served by a hostile
//! test component that spins for ever, hoards memory, traps, panics, reads a Secret it was
//! never granted, or returns a 16 MiB message. Each migration fails, rolls back, and says
//! why; the operator stays healthy throughout and then runs a clean migration to the end.

mod reliability_support;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use vsm_api::{Direction, PhaseResult};

use reliability_support::{Lab, LabOptions, OperatorOptions, checks, condition, phase, report};

/// (component, what the failure message must say)
const HOSTILE: [(&str, &[&str]); 6] = [
    ("hostile-loop", &["hostile-loop", "CPU budget"]),
    ("hostile-alloc", &["hostile-alloc", "memory"]),
    ("hostile-trap", &["hostile-trap", "crashed", "unreachable"]),
    ("hostile-panic", &["hostile-panic", "panicked on purpose"]),
    ("hostile-forbidden", &["may not get core/secrets in namespace kube-system"]),
    ("hostile-oversized", &["hostile-oversized", "bytes; the limit is"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_their_migration_with_the_cause_named_and_the_operator_carries_on() -> Result<()> {
    let mut limits = BTreeMap::new();
    // A spinning plugin is stopped after a second of guest CPU.
    limits.insert("hostile-loop".to_string(), json!({"limits": {"cpuBudgetMs": 1000}}));
    let lab = Lab::start(LabOptions {
        test_components: HOSTILE.iter().map(|(c, _)| c.to_string()).collect(),
        plugin_limits: limits,
        ..LabOptions::new("hostile-plugins")
    })
    .await?;
    let op = lab.operator(OperatorOptions::new("solo")).await?;
    let mut names = Vec::new();
    for (component, expected) in HOSTILE {
        let name = component.to_string();
        names.push(name.clone());
        let spec = lab.spec(json!({"plugins": {"CreateTags": {"component": component}}}))?;
        lab.create(&name, spec).await?;
        let m = lab.finished(&name).await.with_context(|| component.to_string())?;
        let status = m.status.clone().unwrap_or_default();
        let failed = status
            .history
            .iter()
            .find(|h| h.direction == Direction::Execute && h.result == PhaseResult::Failed)
            .with_context(|| format!("{component}: no failed phase in {:#?}", status.history))?;
        ensure!(failed.phase == "CreateTags", "{component}: {failed:?}");
        for needle in expected {
            ensure!(
                failed.message.contains(needle),
                "{component}: the failure names the cause ({needle}): {}",
                failed.message
            );
        }
        ensure!(phase(&m) == "RolledBack", "{component}: rolled back: {} {:#?}", phase(&m), status.rollback);
        let undone: Vec<&str> =
            status.history.iter().filter(|h| h.direction == Direction::Rollback).map(|h| h.phase.as_str()).collect();
        let (_, reason, message) = condition(&m, "Ready");
        report(
            &lab.dir,
            format!(
                "{component}: {} after {} call(s) — {}; rolled back {undone:?}; Ready={reason}: {}",
                failed.phase,
                failed.attempts,
                truncate(&failed.message, 160),
                truncate(&message, 120)
            ),
        );
        ensure!(op.running() && op.healthy().await, "{component}: the operator is healthy");
        checks::backups_consistent(&lab, &name).await?;
    }
    // The same process, after all that, runs a clean migration to the end.
    lab.create("clean", lab.spec(json!({}))?).await?;
    let m = lab.finished("clean").await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    ensure!(op.running() && op.healthy().await);
    let starts = op.log_text().lines().filter(|l| l.contains("vsm-operator started")).count();
    ensure!(starts == 1, "one process throughout");
    checks::no_duplicates(&lab, 1).await?;
    report(&lab.dir, format!("then a clean migration: Completed by the same process (pid {})", op.pid));
    drop(op);
    names.push("clean".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let scan = checks::no_secrets_leaked(&lab, &names).await?;
    report(&lab.dir, format!("secret scan: {} sources, {} bytes: none found", scan.sources, scan.bytes));
    lab.stop().await;
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}
