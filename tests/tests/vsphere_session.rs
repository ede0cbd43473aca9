//! Session behaviour against vcsim: no lock-out on a wrong password, a session shared only
//! by callers with its credentials, re-login after the server killed the session,
//! keep-alive, logout. Redacted traces: `vsphere_trace.rs`.

mod vsphere_support;

use std::sync::Arc;
use std::time::Duration;

use vsm_vsphere::{ClientOptions, Credentials, ObjectKind, SessionPool, VsphereError};

use vsphere_support::{fast_options, start};

#[tokio::test]
async fn wrong_password_is_tried_once_until_it_changes() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let mut spec = sim.spec();
    spec.credentials.password = "not-the-password".into();

    match pool.client(&spec).await {
        Err(VsphereError::AuthFailed { cached: false, username, .. }) => assert_eq!(username, sim.vc.username),
        other => panic!("{other:?}"),
    }
    for _ in 0..5 {
        match pool.client(&spec).await {
            Err(VsphereError::AuthFailed { cached: true, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let st = sim.vc.stats().await?;
    assert_eq!(st.login_attempts, 1, "the rejected password reached the server once");
    assert_eq!(st.login_failures, 1);
    assert_eq!(pool.stats().login_failures, 1);
    assert_eq!(pool.stats().logins_suppressed, 5);
    assert_eq!(pool.stats().open_sessions, 0);

    // The account's password is rotated; the operator gets the new one.
    sim.vc.set_credentials(&sim.vc.username, "rotated-Secret-3!").await?;
    spec.credentials.password = "rotated-Secret-3!".into();
    let c = pool.client(&spec).await?;
    c.find(ObjectKind::Datacenter, "/dst-dc").await?;
    assert_eq!(pool.stats().open_sessions, 1);
    assert_eq!(sim.vc.stats().await?.sessions.len(), 1);
    // The same client is shared afterwards.
    assert!(Arc::ptr_eq(&c, &pool.client(&spec).await?));

    pool.shutdown().await;
    assert_eq!(pool.stats().open_sessions, 0);
    assert!(sim.vc.stats().await?.sessions.is_empty(), "logged out on shutdown");
    Ok(())
}

#[tokio::test]
async fn rotated_password_after_session_loss_is_not_retried() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let spec = sim.spec();
    let c = pool.client(&spec).await?;

    // The password changes on the server and the session dies: the re-login fails once,
    // then the client stops sending those credentials.
    sim.vc.set_credentials(&sim.vc.username, "rotated-elsewhere").await?;
    sim.vc.terminate_sessions().await?;
    let before = sim.vc.stats().await?.login_attempts;
    let err = c.create_folder("/dst-dc/vm/after-rotation").await.unwrap_err();
    assert!(matches!(err, VsphereError::AuthFailed { cached: false, .. }), "{err:?}");
    for _ in 0..3 {
        let err = c.create_folder("/dst-dc/vm/after-rotation").await.unwrap_err();
        assert!(matches!(err, VsphereError::AuthFailed { cached: true, .. }), "{err:?}");
    }
    assert!(matches!(pool.client(&spec).await, Err(VsphereError::AuthFailed { cached: true, .. })));
    assert_eq!(sim.vc.stats().await?.login_attempts - before, 1);

    // New credentials get a session of their own; the refused one is gone for good.
    let mut spec = spec;
    spec.credentials = Credentials::new(sim.vc.username.clone(), "rotated-elsewhere");
    let c2 = pool.client(&spec).await?;
    assert!(!Arc::ptr_eq(&c, &c2), "a session is never handed to other credentials");
    let (f, created) = c2.create_folder("/dst-dc/vm/after-rotation").await?;
    assert!(created, "{f:?}");
    assert!(c.create_folder("/dst-dc/vm/after-rotation").await.is_err(), "the old password's client is shut down");
    pool.shutdown().await;
    assert!(sim.vc.stats().await?.sessions.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_never_gets_the_live_session_nor_replaces_the_right_one() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let good = sim.spec();
    let c = pool.client(&good).await?;

    // A second caller, same server and user, wrong password: the server refuses it; it is
    // not handed the session the right password opened.
    let mut bad = good.clone();
    bad.credentials.password = "not-the-password".into();
    match pool.client(&bad).await {
        Err(VsphereError::AuthFailed { cached: false, .. }) => {}
        other => panic!("the wrong password got {other:?}"),
    }
    // The right password is still the session's: when the server kills it, the re-login
    // uses the right one, and its callers keep sharing it.
    sim.vc.terminate_sessions().await?;
    c.find(ObjectKind::Datacenter, "/dst-dc").await?;
    assert!(Arc::ptr_eq(&c, &pool.client(&good).await?));
    assert_eq!(sim.vc.stats().await?.login_failures, 1, "only the wrong password was refused");
    assert!(pool.stats().relogins >= 1, "{:?}", pool.stats());
    assert!(matches!(pool.client(&bad).await, Err(VsphereError::AuthFailed { cached: true, .. })));
    assert_eq!(pool.stats().open_sessions, 1);
    pool.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn killed_session_is_replaced_transparently() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let first = sim.vc.stats().await?.sessions;
    assert_eq!(first.len(), 1);

    assert_eq!(sim.vc.terminate_sessions().await?, 1);
    assert!(sim.vc.stats().await?.sessions.is_empty());

    // CreateFolder needs a session: NotAuthenticated, one re-login, success.
    let (_, created) = c.create_folder("/dst-dc/vm/relogin").await?;
    assert!(created);
    let now = sim.vc.stats().await?.sessions;
    assert_eq!(now.len(), 1);
    assert_ne!(now, first);
    assert_eq!(pool.stats().relogins, 1);
    assert_eq!(pool.stats().open_sessions, 1);

    pool.shutdown().await;
    assert!(sim.vc.stats().await?.sessions.is_empty());
    assert_eq!(pool.stats().open_sessions, 0);
    Ok(())
}

#[tokio::test]
async fn keepalive_notices_a_dead_session() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let opts = ClientOptions { keepalive_interval: Duration::from_millis(100), ..fast_options() };
    let pool = SessionPool::new(opts);
    let _c = pool.client(&sim.spec()).await?;
    sim.vc.terminate_sessions().await?;
    // No call is made: the keep-alive alone must bring a session back.
    let mut back = false;
    for _ in 0..300 {
        if sim.vc.stats().await?.sessions.len() == 1 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "keep-alive did not log in again");
    assert!(pool.stats().relogins >= 1);
    pool.shutdown().await;
    assert!(sim.vc.stats().await?.sessions.is_empty());
    Ok(())
}

#[tokio::test]
async fn dropped_pool_logs_out_in_background() -> anyhow::Result<()> {
    let sim = start(false).await?;
    {
        let pool = SessionPool::new(fast_options());
        pool.client(&sim.spec()).await?;
        assert_eq!(sim.vc.stats().await?.sessions.len(), 1);
    }
    let mut gone = false;
    for _ in 0..200 {
        if sim.vc.stats().await?.sessions.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a dropped pool must not leave its session behind");
    Ok(())
}
