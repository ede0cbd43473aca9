//! The client through the fault-injecting proxy: transient faults are retried through,
//! permanent ones end in a clear error, and no session leaks either way.

mod vsphere_support;

use std::time::Duration;

use vsm_testenv::fault_proxy::{FaultProxy, Faults, Mode};
use vsm_vsphere::{ClientOptions, ObjectKind, RetryPolicy, SessionPool, VsphereError};

use vsphere_support::{fast_options, start};

const CLUSTER: &str = "/dst-dc/host/dst-cluster";

#[tokio::test]
async fn transient_faults_are_retried_through() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let proxy = FaultProxy::start(&sim.vc.server()).await?;
    let opts = ClientOptions { retry: RetryPolicy { max_attempts: 10, ..fast_options().retry }, ..fast_options() };
    let pool = SessionPool::new(opts);
    let baseline = pool.stats().open_sessions;
    let spec = sim.spec_at(&proxy.addr(), sim.tls());

    // Resets while logging in.
    proxy.reset_next_connections(2);
    let c = pool.client(&spec).await?;
    assert_eq!(proxy.stats().resets_injected, 2);
    assert!(pool.stats().retries >= 2, "{:?}", pool.stats());

    // Kill the pooled connection and the next two new ones.
    proxy.reset_active();
    proxy.reset_next_connections(2);
    c.find(ObjectKind::ComputeCluster, CLUSTER).await?;
    let (_, created) = c.create_folder("/dst-dc/vm/through-faults").await?;
    assert!(created);

    // Latency on every chunk.
    proxy.set_faults(Faults { latency: Duration::from_millis(30), ..Default::default() });
    c.find(ObjectKind::Datastore, "/dst-dc/datastore/dst-ds").await?;

    // Seeded random resets mid-stream, on SOAP and REST alike.
    proxy.set_faults(Faults { reset_probability: 0.05, seed: 42, ..Default::default() });
    for i in 0..5 {
        c.find(ObjectKind::Folder, "/dst-dc/vm/through-faults").await?;
        c.ensure_tag(&c.ensure_category(&category("faults")).await?.0, &format!("t{i}"), "").await?;
    }
    let injected = proxy.stats().resets_injected;
    assert!(injected > 4, "the random faults fired ({injected})");

    proxy.heal();
    c.list_vms("/dst-dc/vm/through-faults").await?;

    // Clean shutdown through the healed proxy: back to the baseline, nothing left on the server.
    pool.shutdown().await;
    assert_eq!(pool.stats().open_sessions, baseline);
    assert!(sim.vc.stats().await?.sessions.is_empty(), "session leaked on the server");
    Ok(())
}

fn category(name: &str) -> vsm_vsphere::CategorySpec {
    vsm_vsphere::CategorySpec {
        name: name.into(),
        description: String::new(),
        cardinality: vsm_vsphere::Cardinality::Multiple,
        associable_types: vec![],
    }
}

#[tokio::test]
async fn stalled_response_times_out_and_is_retried() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let proxy = FaultProxy::start(&sim.vc.server()).await?;
    let opts = ClientOptions { request_timeout: Duration::from_secs(1), ..fast_options() };
    let pool = SessionPool::new(opts);
    let c = pool.client(&sim.spec_at(&proxy.addr(), sim.tls())).await?;

    // Every connection goes silent after a few bytes: the request times out, and so do
    // the retries; the error says so and is classed as transient.
    proxy.set_faults(Faults { stall_after_bytes: Some(10), ..Default::default() });
    proxy.reset_active();
    let err = c.find(ObjectKind::ComputeCluster, CLUSTER).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(proxy.stats().stalled >= 1);
    match &err {
        VsphereError::Transient { attempts, reason, .. } => {
            assert_eq!(*attempts, fast_options().retry.max_attempts, "{reason}");
        }
        VsphereError::Timeout { .. } => {}
        other => panic!("{other:?}"),
    }

    // Healed: the same client works again.
    proxy.heal();
    proxy.reset_active();
    c.find(ObjectKind::ComputeCluster, CLUSTER).await?;
    pool.shutdown().await;
    assert_eq!(pool.stats().open_sessions, 0);
    assert!(sim.vc.stats().await?.sessions.is_empty());
    Ok(())
}

#[tokio::test]
async fn permanent_faults_end_in_clear_errors() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let proxy = FaultProxy::start(&sim.vc.server()).await?;
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(1),
        retry: RetryPolicy { max_attempts: 3, ..fast_options().retry },
        ..fast_options()
    };
    let pool = SessionPool::new(opts.clone());
    let spec = sim.spec_at(&proxy.addr(), sim.tls());
    let c = pool.client(&spec).await?;
    assert_eq!(pool.stats().open_sessions, 1);

    // A black hole: every attempt times out, then the error names the operation.
    proxy.set_mode(Mode::BlackHole);
    let err = c.find(ObjectKind::ComputeCluster, CLUSTER).await.unwrap_err();
    match &err {
        VsphereError::Transient { operation, attempts, reason } => {
            assert_eq!(operation, "RetrievePropertiesEx");
            assert_eq!(*attempts, 3);
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(proxy.stats().black_holed >= 1);

    // Refused connections: a different, equally clear error.
    proxy.set_mode(Mode::Refuse);
    let err = c.create_folder("/dst-dc/vm/never").await.unwrap_err();
    match &err {
        VsphereError::Transient { attempts, reason, .. } => {
            assert_eq!(*attempts, 3);
            assert!(reason.contains("connect"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // A fresh login against a dead server fails without inventing a session.
    let other = SessionPool::new(opts);
    assert!(other.client(&spec).await.unwrap_err().is_transient());
    assert_eq!(other.stats().open_sessions, 0);
    assert_eq!(other.stats().login_failures, 0, "a dead server is not a wrong password");

    // Once healed, the session still works and shuts down cleanly.
    proxy.heal();
    let mut ok = false;
    for _ in 0..50 {
        if c.find(ObjectKind::ComputeCluster, CLUSTER).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "client did not recover after the proxy healed");
    pool.shutdown().await;
    other.shutdown().await;
    assert_eq!(pool.stats().open_sessions, 0);
    assert!(sim.vc.stats().await?.sessions.is_empty(), "session leaked on the server");
    Ok(())
}

#[tokio::test]
async fn shutdown_against_a_dead_server_still_releases_the_gauge() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let proxy = FaultProxy::start(&sim.vc.server()).await?;
    let opts = ClientOptions { request_timeout: Duration::from_secs(1), ..fast_options() };
    let pool = SessionPool::new(opts);
    pool.client(&sim.spec_at(&proxy.addr(), sim.tls())).await?;
    assert_eq!(pool.stats().open_sessions, 1);
    proxy.set_mode(Mode::BlackHole);
    proxy.reset_active();
    pool.shutdown().await;
    assert_eq!(pool.stats().open_sessions, 0);
    Ok(())
}
