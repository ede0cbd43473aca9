//! TLS policies against a vcsim serving a certificate from a test CA.

mod vsphere_support;

use vsm_testenv::TestCa;
use vsm_vsphere::{SessionPool, TlsPolicy, VsphereError, fetch_thumbprint};

use vsphere_support::{fast_options, start};

#[tokio::test]
async fn ca_and_pin_policies() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let server = sim.vc.server();

    // The thumbprint helper reads what the server presents.
    assert_eq!(fetch_thumbprint(&server).await?, sim.vc.thumbprint_sha256);

    // Right CA: works, and is not reported as insecure.
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    assert!(!c.about().await?.instance_uuid.is_empty());
    assert!(pool.insecure_servers().is_empty());
    pool.shutdown().await;

    // Wrong CA: refused, naming the presented certificate; nothing was sent, so no login.
    let attempts = sim.vc.stats().await?.login_attempts;
    let other = TestCa::new("some-other-ca")?;
    let wrong_ca = TlsPolicy { ca_bundle_pem: Some(other.cert_pem.clone()), ..Default::default() };
    let pool = SessionPool::new(fast_options());
    match pool.client(&sim.spec_at(&server, wrong_ca)).await {
        Err(VsphereError::Tls { thumbprint_sha256, reason, .. }) => {
            assert_eq!(thumbprint_sha256.as_deref(), Some(sim.vc.thumbprint_sha256.as_str()), "{reason}");
        }
        other => panic!("wrong CA must be refused: {other:?}"),
    }
    // The error text carries it too, for a status condition.
    let e = pool
        .client(&sim.spec_at(&server, TlsPolicy { ca_bundle_pem: Some(other.cert_pem.clone()), ..Default::default() }))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&sim.vc.thumbprint_sha256), "{e}");
    assert!(!e.is_transient(), "a certificate problem is not retried");
    assert_eq!(sim.vc.stats().await?.login_attempts, attempts);
    assert_eq!(pool.stats().open_sessions, 0);

    // No CA bundle and the system roots do not know the test CA: refused as well.
    let none = SessionPool::new(fast_options());
    assert!(matches!(none.client(&sim.spec_at(&server, TlsPolicy::default())).await, Err(VsphereError::Tls { .. })));

    // Correct pin (in lower case, to show the format is normalised): works without the CA.
    let pin = TlsPolicy { thumbprint_sha256: Some(sim.vc.thumbprint_sha256.to_lowercase()), ..Default::default() };
    let pool = SessionPool::new(fast_options());
    pool.client(&sim.spec_at(&server, pin)).await?;
    assert!(pool.insecure_servers().is_empty());
    pool.shutdown().await;

    // Wrong pin: refused even though the CA would vouch for the server.
    let wrong_pin = TlsPolicy {
        ca_bundle_pem: sim.vc.ca_pem.clone(),
        thumbprint_sha256: Some(other_thumbprint(&sim.vc.thumbprint_sha256)),
        insecure: false,
    };
    let pool = SessionPool::new(fast_options());
    match pool.client(&sim.spec_at(&server, wrong_pin)).await {
        Err(VsphereError::Tls { thumbprint_sha256, .. }) => {
            assert_eq!(thumbprint_sha256.as_deref(), Some(sim.vc.thumbprint_sha256.as_str()));
        }
        other => panic!("wrong pin must be refused: {other:?}"),
    }

    // A malformed pin is a configuration error, not a TLS failure.
    let bad_pin = TlsPolicy { thumbprint_sha256: Some("AB:CD".into()), ..Default::default() };
    assert!(matches!(pool.client(&sim.spec_at(&server, bad_pin)).await, Err(VsphereError::Invalid { .. })));

    // Insecure: works, and is reported.
    let pool = SessionPool::new(fast_options());
    pool.client(&sim.spec_at(&server, TlsPolicy { insecure: true, ..Default::default() })).await?;
    assert_eq!(pool.insecure_servers(), vec![server.clone()]);
    pool.shutdown().await;

    assert!(sim.vc.stats().await?.sessions.is_empty(), "every session was logged out");
    Ok(())
}

/// A valid-looking SHA-256 thumbprint that differs from `t`.
fn other_thumbprint(t: &str) -> String {
    let first = if t.starts_with("00") { "11" } else { "00" };
    format!("{first}{}", &t[2..])
}
