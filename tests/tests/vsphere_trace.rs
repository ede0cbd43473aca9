//! Traces of vCenter traffic never show a password or a session id (SOAP and REST, a
//! re-login, a failed login).
//!
//! Alone in its test binary: the capture is a thread-local tracing subscriber, and tests
//! running beside it on other threads raced it for the callsites' interest cache (a
//! callsite first hit on another thread could be cached as uninteresting, and the capture
//! missed the traffic: "no SOAP traffic traced", seen once in CI).

mod vsphere_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use vsm_vsphere::{ObjectKind, SessionPool};

use vsphere_support::{fast_options, start};

/// A `MakeWriter` that appends everything to one buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn traces_never_show_password_or_session_ids() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    // Thread-local default on a current-thread runtime: every task of this test logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let (soap_cookie, rest_id) = c.session_ids_for_tests();
    let soap_key = sim.vc.stats().await?.sessions[0].clone();
    c.find(ObjectKind::ComputeCluster, "/dst-dc/host/dst-cluster").await?;
    c.create_folder("/dst-dc/vm/traced").await?;
    c.ensure_category(&vsm_vsphere::CategorySpec {
        name: "traced".into(),
        description: String::new(),
        cardinality: vsm_vsphere::Cardinality::Multiple,
        associable_types: vec![],
    })
    .await?;
    // A re-login puts a fresh password and session on the wire.
    sim.vc.terminate_sessions().await?;
    c.create_folder("/dst-dc/vm/traced2").await?;
    let (soap_cookie2, _) = c.session_ids_for_tests();
    // And a failing login, with another password.
    let mut bad = sim.spec();
    bad.credentials.password = "Wr0ng-Passw0rd".into();
    let other = SessionPool::new(fast_options());
    assert!(other.client(&bad).await.is_err());
    pool.shutdown().await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone())?;
    // The capture really holds the traffic, so the checks below are meaningful.
    assert!(log.contains("RetrievePropertiesEx"), "no SOAP traffic traced");
    assert!(log.contains("<password><redacted></password>"), "login body not traced");
    assert!(log.contains("vsphere.rest"), "no REST span");
    assert!(log.contains("tagging/category"), "no REST path");
    for secret in [
        sim.vc.password.clone(),
        "Wr0ng-Passw0rd".to_string(),
        soap_key,
        soap_cookie.unwrap().trim_matches('"').to_string(),
        soap_cookie2.unwrap().trim_matches('"').to_string(),
        rest_id.unwrap(),
    ] {
        assert!(!secret.is_empty());
        assert!(!log.contains(&secret), "secret {secret:?} leaked into the trace");
    }
    Ok(())
}
