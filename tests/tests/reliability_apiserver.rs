//! The API server goes away mid-migration, as it does during a control-plane rollout:
//! kube-apiserver is restarted (once stopped with SIGTERM while RestartPods waits on pods,
//! once killed with SIGKILL while RecreateCPMS watches the rolled-out control plane through
//! its stability window). The operator process (the release binary) is not restarted: it
//! reconnects and completes the migration, with nothing done twice and the backups intact.
//!
//! The SIGKILL is not sent while machines are being created: the real machine-api's vSphere
//! actuator, killed off the API server between cloning a VM and recording the clone task
//! on the Machine, leaves that Machine Provisioning for good ("machine object missing
//! expected provider task ID"), which no operator can ride out (docs/RELIABILITY.md).

mod reliability_support;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;
use vsm_api::PHASES;

use reliability_support::{Lab, LabOptions, OperatorOptions, checks, phase, report};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_api_server_restarts_and_completes() -> Result<()> {
    let mut lab = Lab::start(LabOptions::new("apiserver-restart")).await?;
    let op = lab.operator(OperatorOptions::new("solo")).await?;
    // A stability window long enough to be caught in.
    lab.create("restarts", lab.spec(json!({"health": {"stabilityWindow": "30s"}}))?).await?;
    let mut downtime = Vec::new();
    // RestartPods: the operator waits on pods; RecreateCPMS: the control plane has rolled
    // and the phase watches it stay healthy.
    for (at, kill, waiting) in [("RestartPods", false, ""), ("RecreateCPMS", true, "watching it stay healthy")] {
        lab.until("restarts", &format!("{at} running"), |m| {
            m.status
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .is_some_and(|c| c.name == at && c.attempt >= 1 && c.message.contains(waiting))
        })
        .await?;
        let before = lab.get("restarts").await?.status.unwrap_or_default();
        let t0 = Instant::now();
        lab.env.restart_apiserver(kill).await?;
        let down = t0.elapsed();
        // The operator writes again: a new call recorded after the restart.
        let t1 = Instant::now();
        let moved = lab
            .until("restarts", "progress after the restart", |m| {
                let s = m.status.clone().unwrap_or_default();
                s.history.len() > before.history.len()
                    || s.current.as_ref().map(|c| (c.name.clone(), c.attempt))
                        != before.current.as_ref().map(|c| (c.name.clone(), c.attempt))
            })
            .await?;
        let resumed = t1.elapsed();
        report(
            &lab.dir,
            format!(
                "kube-apiserver {} during {at}: back after {:.1}s; the operator made progress {:.1}s later (now {} attempt {})",
                if kill { "killed (SIGKILL) and restarted" } else { "stopped (SIGTERM) and restarted" },
                down.as_secs_f64(),
                resumed.as_secs_f64(),
                moved.status.as_ref().and_then(|s| s.current.as_ref()).map(|c| c.name.clone()).unwrap_or_default(),
                moved.status.as_ref().and_then(|s| s.current.as_ref()).map(|c| c.attempt).unwrap_or_default()
            ),
        );
        downtime.push(down);
    }
    let m = lab.finished("restarts").await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let status = m.status.clone().unwrap_or_default();
    let order: Vec<&str> = status.history.iter().map(|h| h.phase.as_str()).collect();
    ensure!(order == PHASES.to_vec(), "every phase once, in order: {order:?}");
    ensure!(op.running() && op.healthy().await, "the same operator process carried on");
    let restarts = op.log_text().lines().filter(|l| l.contains("vsm-operator started")).count();
    ensure!(restarts == 1, "the operator process was never restarted (started {restarts} times)");
    checks::no_duplicates(&lab, 1).await?;
    let backups = checks::backups_consistent(&lab, "restarts").await?;
    let wall = status
        .started_at
        .zip(status.finished_at)
        .map(|(a, b)| reliability_support::seconds_between(a, b))
        .unwrap_or(f64::NAN);
    let errors =
        op.log_text().lines().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).count();
    report(
        &lab.dir,
        format!(
            "Completed in {wall:.0}s with 2 API server restarts; {backups} backups consistent; {errors} warnings/errors logged while the API server was away"
        ),
    );
    drop(op);
    let scan = checks::no_secrets_leaked(&lab, &["restarts"]).await?;
    report(&lab.dir, format!("secret scan: {} sources, {} bytes: none found", scan.sources, scan.bytes));
    let _ = Duration::ZERO;
    lab.stop().await;
    Ok(())
}
