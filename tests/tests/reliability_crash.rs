//! Crash anywhere: the operator (the release binary, a separate process) is killed with
//! SIGKILL at points of a full migration chosen by a seeded generator and restarted each
//! time. Every migration must end Completed with the same final state, nothing created
//! twice, every backup accounted for, the take-overs in the phase history, no secret leaked.
//!
//! `VSM_RELIABILITY_SEED` replays a run; `VSM_CRASH_LANES` (default 2) migrations run side
//! by side, each with `VSM_CRASH_KILLS` (default 16) kills.

mod reliability_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use vsm_api::{Direction, PHASES, PhaseResult, VSphereMigration};

use reliability_support::checks;
use reliability_support::rng::{self, Rng};
use reliability_support::{Lab, LabOptions, OperatorOptions, phase, report};

const MIGRATION: &str = "crash";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Where one kill landed, read from the status after the process was dead.
#[derive(Debug, Clone)]
struct Kill {
    aimed_at: &'static str,
    delay_ms: u64,
    /// The run in progress when the process died (None: between runs).
    landed: Option<String>,
    /// Calls of that run so far.
    attempt: u32,
    /// The instance that had called it (None: not called yet).
    instance: Option<String>,
    /// The process's uptime when killed.
    uptime_ms: u128,
}

struct LaneResult {
    kills: Vec<Kill>,
    final_state: BTreeMap<String, serde_json::Value>,
    resumed: BTreeMap<String, u32>,
    backups: usize,
    wall: Duration,
    scan: checks::Scan,
}

/// Kill delays: half of them very short (to land inside the phase just started, often in
/// the middle of its first call), the others anywhere in the next 1.5 s.
fn delay(rng: &mut Rng) -> u64 {
    if rng.range(0, 2) == 0 { rng.range(0, 60) } else { rng.range(0, 1500) }
}

async fn lane(index: usize, seed: u64, kills: usize) -> Result<LaneResult> {
    let mut rng = Rng::new(seed);
    let name = format!("crash-{index}");
    let lab = Lab::start(LabOptions { workers: 2, ..LabOptions::new(&name) }).await?;
    let identity = format!("crash-{index}");
    let mut op = lab.operator(OperatorOptions::new(&identity)).await?;
    let started = Instant::now();
    lab.create(MIGRATION, lab.spec(json!({}))?).await?;

    // Every phase is aimed at once; more kills go to phases picked at random.
    let mut aims: Vec<&'static str> = PHASES.to_vec();
    while aims.len() < kills {
        aims.push(PHASES[rng.range(0, PHASES.len() as u64) as usize]);
    }
    let order = |p: &str| PHASES.iter().position(|x| *x == p).unwrap_or(usize::MAX);
    aims.sort_by_key(|p| order(p));

    let api = lab.migrations();
    let mut changes = watcher(api, watcher::Config::default().fields(&format!("metadata.name={MIGRATION}")))
        .applied_objects()
        .boxed();
    let reached = |m: &VSphereMigration, aim: &str| {
        let s = m.status.clone().unwrap_or_default();
        s.finished_at.is_some()
            || s.current.as_ref().is_some_and(|c| order(&c.name) >= order(aim))
            || s.history.iter().any(|h| order(&h.phase) >= order(aim))
    };
    let mut done = Vec::new();
    for aim in aims {
        // Wait until the aimed phase runs (or has passed: then the kill lands later).
        let finished = loop {
            let m = tokio::time::timeout(reliability_support::LIMIT, changes.next())
                .await
                .context("no change of the migration for too long")?
                .context("watch ended")??;
            if reached(&m, aim) {
                break m.status.as_ref().is_some_and(|s| s.finished_at.is_some());
            }
        };
        if finished {
            break;
        }
        let d = delay(&mut rng);
        tokio::time::sleep(Duration::from_millis(d)).await;
        let uptime_ms = op.started.elapsed().as_millis();
        op.kill();
        // A request the dead process had sent may still be applied: let it land.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let m = lab.get(MIGRATION).await?;
        let cur = m.status.as_ref().and_then(|s| s.current.clone());
        done.push(Kill {
            aimed_at: aim,
            delay_ms: d,
            landed: cur.as_ref().map(|c| c.name.clone()),
            attempt: cur.as_ref().map(|c| c.attempt).unwrap_or_default(),
            instance: cur.as_ref().and_then(|c| c.instance.clone()),
            uptime_ms,
        });
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        op = lab.operator(OperatorOptions::new(&identity)).await?;
    }
    drop(changes);

    let m = lab.finished(MIGRATION).await?;
    let wall = started.elapsed();
    let status = m.status.clone().unwrap_or_default();
    ensure!(phase(&m) == "Completed", "lane {index}: the migration ended {}: {:#?}", phase(&m), status);
    let executed: Vec<&str> = status.history.iter().map(|h| h.phase.as_str()).collect();
    ensure!(executed == PHASES.to_vec(), "lane {index}: every phase recorded exactly once, in order: {executed:?}");
    ensure!(
        status.history.iter().all(|h| h.direction == Direction::Execute && h.result == PhaseResult::Succeeded),
        "lane {index}: {:#?}",
        status.history
    );

    // The history shows every take-over: each instance seen calling a run that a kill
    // interrupted was followed by another one.
    let resumed: BTreeMap<String, u32> = status.history.iter().map(|h| (h.phase.clone(), h.resumed)).collect();
    let mut interrupted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for k in &done {
        if let (Some(p), Some(i)) = (&k.landed, &k.instance) {
            interrupted.entry(p.clone()).or_default().insert(i.clone());
        }
    }
    for (p, instances) in &interrupted {
        let r = resumed.get(p).copied().unwrap_or_default();
        ensure!(
            r as usize >= instances.len(),
            "lane {index}: {p} was interrupted in the hands of {} instance(s) but its record says resumed {r}",
            instances.len()
        );
    }
    ensure!(op.healthy().await, "lane {index}: the last operator process is healthy");

    checks::no_duplicates(&lab, 2).await.with_context(|| format!("lane {index}"))?;
    let backups = checks::backups_consistent(&lab, MIGRATION).await.with_context(|| format!("lane {index}"))?;
    let final_state = checks::final_state(&lab, MIGRATION).await?;
    op.stop();
    let scan = checks::no_secrets_leaked(&lab, &[MIGRATION]).await.with_context(|| format!("lane {index}"))?;
    for k in &done {
        report(
            &lab.dir,
            format!(
                "kill aimed at {:<20} after {:>4} ms (process up {:>5} ms): landed in {} (attempt {}, {})",
                k.aimed_at,
                k.delay_ms,
                k.uptime_ms,
                k.landed.clone().unwrap_or_else(|| "no run".into()),
                k.attempt,
                if k.instance.is_some() { "called" } else { "not called yet" }
            ),
        );
    }
    lab.stop().await;
    Ok(LaneResult { kills: done, final_state, resumed, backups, wall, scan })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_anywhere_the_operator_always_completes_the_migration_with_one_final_state() -> Result<()> {
    let seed = rng::seed();
    let lanes = env_usize("VSM_CRASH_LANES", 2).max(1);
    let kills = env_usize("VSM_CRASH_KILLS", 16).max(PHASES.len());
    let dir = reliability_support::out_dir("crash")?;
    report(&dir, format!("seed {seed} (replay: VSM_RELIABILITY_SEED={seed}); {lanes} migrations, {kills} kills each"));
    let runs = futures::future::join_all((0..lanes).map(|i| lane(i, seed.wrapping_add(i as u64), kills))).await;
    let mut results = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        results.push(r.with_context(|| format!("lane {i} (seed {seed})"))?);
    }

    let total: usize = results.iter().map(|r| r.kills.len()).sum();
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for k in results.iter().flat_map(|r| &r.kills) {
        *landed.entry(k.landed.clone().unwrap_or_else(|| "(between runs)".into())).or_default() += 1;
    }
    let mid_call = results.iter().flat_map(|r| &r.kills).filter(|k| k.instance.is_some()).count();
    report(&dir, format!("{total} kills in total; {mid_call} interrupted a run that had been called"));
    report(&dir, format!("where they landed: {landed:?}"));
    for (i, r) in results.iter().enumerate() {
        let resumed: u32 = r.resumed.values().sum();
        report(
            &dir,
            format!(
                "lane {i}: Completed in {:.1}s with {} kills, {resumed} take-overs in the history, {} backups consistent; scanned {} sources ({} bytes) for {} secrets incl. {} session ids",
                r.wall.as_secs_f64(),
                r.kills.len(),
                r.backups,
                r.scan.sources,
                r.scan.bytes,
                r.scan.secrets,
                r.scan.session_ids
            ),
        );
    }
    ensure!(total >= 30 || lanes * kills < 30, "at least 30 kill points (got {total})");
    let first = &results[0].final_state;
    for (i, r) in results.iter().enumerate().skip(1) {
        for (k, v) in first {
            ensure!(
                r.final_state.get(k) == Some(v),
                "lane {i} ended differently at {k}: {:?} vs {v}",
                r.final_state.get(k)
            );
        }
    }
    report(&dir, format!("final state (same in every lane): {}", serde_json::to_string(first)?));
    Ok(())
}
