//! Leader failover with two operator processes (the release binary, `--leader-elect`):
//! the leader is killed mid-phase, later the next leader is frozen (SIGSTOP) in the middle
//! of a phase call; each time the other replica takes over and the migration completes. The
//! frozen one, resumed (SIGCONT) after it was deposed, must not write anything: the API
//! server's audit log shows every write of each replica (each has its own client
//! certificate), and none of the frozen one's succeeds after it was resumed.
//!
//! The takeover times are measured and reported, not asserted: the design guarantees a
//! takeover once the lease has expired, and a takeover is asserted to happen.

mod reliability_support;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use vsm_testenv::harness::NAMESPACE;

use reliability_support::operator::LEASE_NAME;
use reliability_support::{Lab, LabOptions, OperatorOptions, OperatorProc, checks, phase, report};

const LEASE: Duration = Duration::from_secs(6);
const RENEW: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);

fn replica(name: &str) -> OperatorOptions {
    OperatorOptions::new(name).leader(LEASE, RENEW, RETRY)
}

async fn holder(lab: &Lab) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(lab.env.client(), NAMESPACE);
    leases.get_opt(LEASE_NAME).await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

/// Wait until the lease is held by `who` (any holder when None); returns the holder and
/// how long it took.
async fn wait_holder(lab: &Lab, who: Option<&str>) -> Result<(String, Duration)> {
    let start = Instant::now();
    while start.elapsed() < reliability_support::LIMIT {
        if let Some(h) = holder(lab).await
            && who.is_none_or(|w| w == h)
        {
            return Ok((h, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the lease never went to {who:?} (holder {:?})", holder(lab).await)
}

/// One write in the audit log.
#[derive(Debug)]
struct Write {
    user: String,
    verb: String,
    uri: String,
    code: i64,
    received: jiff::Timestamp,
}

fn audit(lab: &Lab) -> Result<Vec<Write>> {
    let path = lab.env.audit_log_path().context("the environment has an audit log")?;
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["stage"] != "ResponseComplete" {
            continue;
        }
        out.push(Write {
            user: v["user"]["username"].as_str().unwrap_or_default().to_string(),
            verb: v["verb"].as_str().unwrap_or_default().to_string(),
            uri: v["requestURI"].as_str().unwrap_or_default().to_string(),
            code: v["responseStatus"]["code"].as_i64().unwrap_or_default(),
            received: v["requestReceivedTimestamp"].as_str().unwrap_or_default().parse().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::try_from(SystemTime::now()).expect("now")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_frozen_leader_is_replaced_and_a_deposed_one_never_writes() -> Result<()> {
    let lab = Lab::start(LabOptions {
        audit: true,
        test_components: vec!["exerciser-fence".into()],
        ..LabOptions::new("failover")
    })
    .await?;
    let namespaces: Api<Namespace> = Api::all(lab.env.client());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "exerciser"}}))?)
        .await?;
    let mut procs: Vec<OperatorProc> = Vec::new();
    procs.push(lab.operator(replica("replica-a")).await?);
    procs.push(lab.operator(replica("replica-b")).await?);
    let (first, _) = wait_holder(&lab, None).await?;
    report(&lab.dir, format!("first leader: {first}"));

    // The last phase is served by a component whose one call writes, stays busy for two
    // seconds and writes again: the window to freeze a leader in.
    let spec = lab.spec(json!({"plugins": {"Verify": {"component": "exerciser-fence"}}}))?;
    lab.create("ha", spec).await?;

    // 1. kill -9 the leader while CreateWorkers runs (machines being created and waited for).
    lab.until("ha", "CreateWorkers running", |m| {
        m.status.as_ref().and_then(|s| s.current.as_ref()).is_some_and(|c| c.name == "CreateWorkers" && c.attempt >= 1)
    })
    .await?;
    let idx = procs.iter().position(|p| p.identity == first).context("the leader is ours")?;
    let mut leader = procs.remove(idx);
    let killed_at = Instant::now();
    leader.kill();
    let survivor = procs[0].identity.clone();
    let (_, took) = wait_holder(&lab, Some(&survivor)).await?;
    let before = lab.get("ha").await?.status.unwrap_or_default();
    let progress = |m: &vsm_api::VSphereMigration| {
        let s = m.status.clone().unwrap_or_default();
        s.history.len() > before.history.len()
            || s.current.as_ref().map(|c| c.attempt) != before.current.as_ref().map(|c| c.attempt)
    };
    lab.until("ha", "progress under the new leader", progress).await?;
    let resumed_after = killed_at.elapsed();
    report(
        &lab.dir,
        format!(
            "kill -9 of {first} during CreateWorkers: {survivor} held the lease after {:.2}s and moved the migration on after {:.2}s (lease {}s, renew deadline {}s, retry {}s)",
            took.as_secs_f64(),
            resumed_after.as_secs_f64(),
            LEASE.as_secs(),
            RENEW.as_secs(),
            RETRY.as_secs()
        ),
    );
    // A replacement replica joins as follower.
    procs.push(lab.operator(replica("replica-c")).await?);

    // 2. Freeze the leader in the middle of the Verify call (after its first write).
    let leader_name = holder(&lab).await.context("a leader")?;
    let fence: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(lab.env.client(), "exerciser");
    let start = Instant::now();
    while fence.get_opt("fence-before").await?.is_none() {
        ensure!(start.elapsed() < reliability_support::LIMIT, "Verify never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idx = procs.iter().position(|p| p.identity == leader_name).context("the leader is ours")?;
    let frozen = procs.remove(idx);
    frozen.freeze();
    let frozen_at = Instant::now();
    let follower = procs[0].identity.clone();
    let (_, took) = wait_holder(&lab, Some(&follower)).await?;
    report(
        &lab.dir,
        format!(
            "SIGSTOP of {leader_name} mid-call in Verify: {follower} held the lease after {:.2}s",
            took.as_secs_f64()
        ),
    );
    // Resume the deposed replica while its call is still open, once the new leader works.
    lab.until("ha", "Verify taken over", |m| {
        m.status.as_ref().is_some_and(|s| s.finished_at.is_some() || s.current.as_ref().is_some_and(|c| c.resumed >= 1))
    })
    .await?;
    let thawed_at = now();
    frozen.thaw();
    report(
        &lab.dir,
        format!("{leader_name} resumed (SIGCONT) {:.2}s after the freeze", frozen_at.elapsed().as_secs_f64()),
    );

    let m = lab.finished("ha").await?;
    ensure!(phase(&m) == "Completed", "{:#?}", m.status);
    // Give the thawed replica time to do whatever it would do.
    tokio::time::sleep(Duration::from_secs(6)).await;
    ensure!(frozen.running(), "the thawed replica is still running");
    ensure!(frozen.healthy().await, "the thawed replica is healthy");
    let leading = frozen.metric("vsm_leader").await?;
    ensure!(leading == Some(0.0), "the thawed replica knows it does not lead: vsm_leader {leading:?}");
    ensure!(holder(&lab).await.as_deref() == Some(follower.as_str()), "the lease stayed with {follower}");

    let writes = audit(&lab)?;
    let user = &frozen.user;
    let after: Vec<&Write> = writes.iter().filter(|w| &w.user == user && w.received >= thawed_at).collect();
    let succeeded: Vec<&&Write> = after.iter().filter(|w| w.code < 400).collect();
    report(
        &lab.dir,
        format!(
            "audit: {} writes by {user} in all, {} attempted after SIGCONT, {} of them succeeded",
            writes.iter().filter(|w| &w.user == user).count(),
            after.len(),
            succeeded.len()
        ),
    );
    for w in &after {
        report(&lab.dir, format!("  after SIGCONT: {} {} -> {}", w.verb, w.uri, w.code));
    }
    ensure!(succeeded.is_empty(), "the deposed replica wrote after it was resumed: {succeeded:#?}");
    let status = m.status.clone().unwrap_or_default();
    let resumed: Vec<(String, u32)> =
        status.history.iter().filter(|h| h.resumed > 0).map(|h| (h.phase.clone(), h.resumed)).collect();
    report(&lab.dir, format!("phase history take-overs: {resumed:?}"));
    ensure!(resumed.iter().any(|(p, _)| p == "Verify"), "Verify's record shows the take-over: {resumed:?}");

    checks::no_duplicates(&lab, 1).await?;
    checks::backups_consistent(&lab, "ha").await?;
    drop(frozen);
    for mut p in procs {
        p.stop();
    }
    let scan = checks::no_secrets_leaked(&lab, &["ha"]).await?;
    report(
        &lab.dir,
        format!("secret scan: {} sources, {} bytes, {} secrets: none found", scan.sources, scan.bytes, scan.secrets),
    );
    lab.stop().await;
    Ok(())
}
