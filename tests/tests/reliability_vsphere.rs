//! vSphere faults against the operator process (the release binary):
//!
//! - a fault-injecting proxy between the operator and each vCenter (bound on the vCenter's
//!   own address, so certificates and credential keys still match; `spec.vcenters[].port`
//!   points at it): latency, seeded random connection resets, resets of the next
//!   connections and of every open one, a refusing period. The vSphere phases complete,
//!   the retries are in the log, and the operator's sessions stay bounded;
//! - a vCenter that stops answering (black hole): the phase ends in a clear failure once
//!   its deadline has passed;
//! - the target password rotated mid-migration (Secret and vCenter, live sessions ended):
//!   picked up without a restart;
//! - wrong target credentials: exactly one login attempt, a condition saying so, no retry
//!   storm.
//!
//! The phases after CreateFolder are served by a no-op test component in the proxy tests:
//! UpdateInfrastructure would write the proxy's port (above 32767) into the Infrastructure,
//! which its CRD refuses, and the simulated cloud provider checks ports against the real
//! vCenters.

mod reliability_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use vsm_api::PHASES;
use vsm_testenv::fault_proxy::{FaultProxy, Faults, Mode};

use reliability_support::{Lab, LabOptions, OperatorOptions, OperatorProc, checks, condition, phase, report};

/// The phases that talk to vCenters early in a migration; later ones are a no-op here.
const REAL: [&str; 6] = ["Preflight", "Backup", "DisableCVO", "UpdateSecrets", "CreateTags", "CreateFolder"];

struct Proxied {
    source: FaultProxy,
    target: FaultProxy,
}

async fn proxies(lab: &Lab) -> Result<Proxied> {
    let (src, dst) = (lab.env.source(), lab.env.target());
    Ok(Proxied {
        source: FaultProxy::start_on(src.host().parse()?, &src.server()).await?,
        target: FaultProxy::start_on(dst.host().parse()?, &dst.server()).await?,
    })
}

/// A spec reaching both vCenters through the proxies, with the late phases a no-op.
fn proxied_spec(lab: &Lab, p: &Proxied, extra: Value) -> Result<vsm_api::MigrationSpec> {
    let (src, dst) = (lab.env.source(), lab.env.target());
    let mut plugins = serde_json::Map::new();
    for phase in PHASES.iter().filter(|p| !REAL.contains(p)) {
        plugins.insert(phase.to_string(), json!({"component": "exerciser"}));
    }
    let mut v = json!({
        "vcenters": [
            {"server": src.host(), "port": p.source.port(), "caSecret": {"name": vsm_testenv::harness::VCENTER_CA}},
            {"server": dst.host(), "port": p.target.port(), "caSecret": {"name": vsm_testenv::harness::VCENTER_CA}}
        ],
        "plugins": plugins,
    });
    for (k, val) in extra.as_object().context("object")? {
        v[k] = val.clone();
    }
    lab.spec(v)
}

fn count(op: &OperatorProc, needle: &str) -> usize {
    op.log_text().lines().filter(|l| l.contains(needle)).count()
}

/// Logins the operator made per vCenter (`host:port` as it connects), from its log.
fn logins(op: &OperatorProc) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in op.log_text().lines().filter(|l| l.contains("vCenter session established")) {
        let server = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| {
                v.pointer("/span/server")
                    .or_else(|| v.pointer("/spans/0/server"))
                    .or_else(|| v.get("server"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "?".into());
        *out.entry(server).or_default() += 1;
    }
    out
}

fn current_is(m: &vsm_api::VSphereMigration, phase: &str) -> bool {
    m.status.as_ref().and_then(|s| s.current.as_ref()).is_some_and(|c| c.name == phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_vcenter_faults_are_retried_to_success_with_sessions_bounded() -> Result<()> {
    let lab =
        Lab::start(LabOptions { test_components: vec!["exerciser".into()], ..LabOptions::new("vsphere-transient") })
            .await?;
    let p = proxies(&lab).await?;
    let seed = reliability_support::rng::seed();
    report(&lab.dir, format!("seed {seed} (replay: VSM_RELIABILITY_SEED={seed})"));
    // Throughout: latency on every chunk and seeded random resets.
    let noisy =
        |s: u64| Faults { latency: Duration::from_millis(20), reset_probability: 0.03, seed: s, ..Default::default() };
    p.source.set_faults(noisy(seed));
    p.target.set_faults(noisy(seed ^ 0x5eed));
    let op = lab.operator(OperatorOptions::new("solo")).await?;
    let target_before = lab.env.target().stats().await?;
    lab.create("faults", proxied_spec(&lab, &p, json!({}))?).await?;

    // CreateTags: the next connections are reset at once, then every open one.
    lab.until("faults", "CreateTags", |m| current_is(m, "CreateTags")).await?;
    p.target.reset_next_connections(4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.target.reset_active();
    // CreateFolder: the target refuses connections for two seconds.
    lab.until("faults", "CreateFolder", |m| {
        current_is(m, "CreateFolder") || m.status.as_ref().is_some_and(|s| s.history.len() > 5)
    })
    .await?;
    p.target.set_mode(Mode::Refuse);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.target.set_faults(noisy(seed ^ 0xf01d));

    let m = lab.finished("faults").await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let status = m.status.clone().unwrap_or_default();
    let retries = count(&op, "retrying SOAP call") + count(&op, "retrying REST call");
    let phase_retries: u32 =
        status.history.iter().filter(|h| REAL.contains(&h.phase.as_str())).map(|h| h.attempts.saturating_sub(1)).sum();
    let (ps, pt) = (p.source.stats(), p.target.stats());
    let sessions = op.metric("vsm_vcenter_sessions").await?.unwrap_or(-1.0);
    let logins = logins(&op);
    let target_after = lab.env.target().stats().await?;
    report(
        &lab.dir,
        format!(
            "Completed; injected resets: source {}, target {} (connections {} / {}); client retries in the log: {retries}; extra phase calls: {phase_retries}",
            ps.resets_injected, pt.resets_injected, ps.connections_accepted, pt.connections_accepted
        ),
    );
    report(
        &lab.dir,
        format!(
            "sessions: operator gauge {sessions}, logins by the operator {logins:?}, target vCenter logins during the run {} (failures {}), live target sessions {}",
            target_after.login_attempts - target_before.login_attempts,
            target_after.login_failures - target_before.login_failures,
            target_after.sessions.len()
        ),
    );
    ensure!(ps.resets_injected + pt.resets_injected > 0, "faults were injected");
    ensure!(retries + phase_retries as usize > 0, "the faults were met and retried");
    ensure!((0.0..=2.0).contains(&sessions), "at most one session per vCenter: gauge {sessions}");
    // Resets do not end sessions: at most a login and one re-login per vCenter.
    ensure!(logins.values().all(|n| *n <= 2), "no session leak or login storm: {logins:?}");
    ensure!(target_after.login_failures == target_before.login_failures, "no failed login");
    ensure!(target_after.sessions.len() <= 4, "live target sessions bounded: {}", target_after.sessions.len());
    ensure!(op.healthy().await);
    drop(op);
    let scan = checks::no_secrets_leaked(&lab, &["faults"]).await?;
    report(
        &lab.dir,
        format!(
            "secret scan: {} sources, {} bytes, {} session ids: none found",
            scan.sources, scan.bytes, scan.session_ids
        ),
    );
    lab.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcenter_that_stops_answering_ends_in_a_clear_failure_after_the_phase_deadline() -> Result<()> {
    let lab =
        Lab::start(LabOptions { test_components: vec!["exerciser".into()], ..LabOptions::new("vsphere-dead") }).await?;
    let p = proxies(&lab).await?;
    let op = lab
        .operator(OperatorOptions { vsphere_timeout: Some(Duration::from_secs(3)), ..OperatorOptions::new("solo") })
        .await?;
    let spec = proxied_spec(&lab, &p, json!({"phaseDeadlines": {"CreateTags": "20s"}, "rollbackOnFailure": false}))?;
    lab.create("dead", spec).await?;
    lab.until("dead", "UpdateSecrets", |m| current_is(m, "UpdateSecrets") || current_is(m, "CreateTags")).await?;
    p.target.set_mode(Mode::BlackHole);
    p.target.reset_active();
    let t0 = Instant::now();
    let m = lab.finished("dead").await?;
    let took = t0.elapsed();
    ensure!(phase(&m) == "Failed", "{:#?}", m.status);
    let status = m.status.clone().unwrap_or_default();
    let failed = status.history.last().context("a record")?;
    ensure!(failed.phase == "CreateTags", "CreateTags failed: {failed:?}");
    let (_, reason, message) = condition(&m, "Ready");
    let target = lab.env.target().host();
    report(
        &lab.dir,
        format!(
            "target black-holed: CreateTags failed after {:.0}s of the run ({} calls), {:.0}s after the fault; Ready={reason}: {message}",
            reliability_support::seconds_between(failed.started_at, failed.finished_at),
            failed.attempts,
            took.as_secs_f64()
        ),
    );
    ensure!(
        reliability_support::seconds_between(failed.started_at, failed.finished_at) >= 20.0,
        "not given up before the 20s deadline: {failed:?}"
    );
    ensure!(
        message.contains("CreateTags") && message.contains(&target),
        "the failure names the phase and the vCenter: {message}"
    );
    ensure!(
        message.to_lowercase().contains("deadline")
            || message.to_lowercase().contains("timed out")
            || message.contains("timeout"),
        "the failure says it timed out: {message}"
    );
    let pt = p.target.stats();
    report(
        &lab.dir,
        format!(
            "connections black-holed: {} (the client gave up on each and did not pile up: {} open now)",
            pt.black_holed, pt.connections_active
        ),
    );
    ensure!(op.healthy().await, "the operator stays healthy");
    drop(op);
    checks::no_secrets_leaked(&lab, &["dead"]).await?;
    lab.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_mid_migration_is_picked_up_without_a_restart() -> Result<()> {
    let lab = Lab::start(LabOptions::new("vsphere-rotation")).await?;
    let op = lab.operator(OperatorOptions::new("solo")).await?;
    // Preflight logs in to the target; the migration then stops for approval before
    // UpdateSecrets copies the credentials into the cluster. Rotate there (so the copy is of
    // the new password, not a race with it), end every live session so the next call must
    // log in again, and let it go on.
    let spec = json!({"approvalMode": "Manual", "approvals": ["Preflight", "Backup", "DisableCVO"]});
    lab.create("rotate", lab.spec(spec)?).await?;
    lab.until("rotate", "awaiting approval of UpdateSecrets", |m| phase(m) == "UpdateSecrets").await?;
    let new_password = "dst-Rotated-3?";
    lab.rotate_target_password(new_password).await?;
    let ended = lab.env.target().terminate_sessions().await?;
    let before = lab.env.target().stats().await?;
    lab.patch_spec("rotate", json!({"approvals": PHASES})).await?;
    let m = lab.finished("rotate").await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    let after = lab.env.target().stats().await?;
    let relogins = count(&op, "logging in again");
    report(
        &lab.dir,
        format!(
            "target password rotated before UpdateSecrets ({ended} live sessions ended): Completed; {relogins} re-logins by the operator, target logins since {} (failed {}), operator process {} never restarted",
            after.login_attempts - before.login_attempts,
            after.login_failures - before.login_failures,
            op.pid
        ),
    );
    ensure!(after.login_failures == before.login_failures, "no login with the old password after the rotation");
    ensure!(op.running() && count(&op, "vsm-operator started") == 1, "the same process carried on");
    ensure!(count(&op, "rejected the credentials") == 0, "the new password was never refused");
    checks::no_duplicates(&lab, 1).await?;
    drop(op);
    let scan = checks::no_secrets_leaked(&lab, &["rotate"]).await?;
    report(
        &lab.dir,
        format!(
            "secret scan: {} secrets incl. the new password and {} session ids: none found",
            scan.secrets, scan.session_ids
        ),
    );
    lab.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_target_credentials_mean_one_login_attempt_a_clear_condition_and_no_retry_storm() -> Result<()> {
    let lab = Lab::start(LabOptions::new("vsphere-wrong-credentials")).await?;
    // The Secret says one thing, the vCenter accepts another.
    let dst = lab.env.target();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(lab.env.client(), vsm_testenv::harness::NAMESPACE);
    let wrong = "not-the-Password-9";
    lab.add_secret(wrong);
    secrets
        .patch(
            vsm_testenv::harness::TARGET_CREDS,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {format!("{}.password", dst.host()): wrong}})),
        )
        .await?;
    let before = dst.stats().await?;
    let op = lab.operator(OperatorOptions::new("solo")).await?;
    lab.create("wrong", lab.spec(json!({"rollbackOnFailure": false}))?).await?;
    let m = lab.finished("wrong").await?;
    // Whatever the operator does next, it must not try again with the same credentials.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = dst.stats().await?;
    let attempts = after.login_attempts - before.login_attempts;
    let (_, reason, message) = condition(&m, "Ready");
    report(
        &lab.dir,
        format!(
            "wrong target password: {} ({reason}): {message}; login attempts on the target: {attempts} (failures {})",
            phase(&m),
            after.login_failures - before.login_failures
        ),
    );
    ensure!(phase(&m) == "Failed", "{:#?}", m.status);
    ensure!(attempts == 1, "exactly one login attempt with wrong credentials, got {attempts}");
    ensure!(
        message.contains(&dst.host()) && (message.contains("username and password") || message.contains("credentials")),
        "the condition names the vCenter and the credentials: {message}"
    );
    ensure!(op.healthy().await);
    drop(op);
    checks::no_secrets_leaked(&lab, &["wrong"]).await?;
    lab.stop().await;
    Ok(())
}
