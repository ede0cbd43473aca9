//! Shared setup of the vSphere client tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use vsm_testenv::TestCa;
use vsm_testenv::vcsim::{Vcsim, VcsimOptions};
use vsm_vsphere::{ClientOptions, Credentials, RetryPolicy, ServerSpec, TlsPolicy};

/// Short timeouts and quick retries so failure paths finish fast (nothing asserts on time).
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        operation_timeout: Duration::from_secs(120),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        keepalive_interval: Duration::from_secs(600),
        retry: RetryPolicy {
            max_attempts: 6,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
            max_total_delay: Duration::from_secs(10),
            jitter: true,
        },
        task_poll_max: Duration::from_millis(200),
    }
}

pub struct Sim {
    pub ca: Arc<TestCa>,
    pub vc: Vcsim,
}

/// A vcsim with a certificate from a fresh test CA. `source` has VMs; `target` has none.
pub async fn start(source: bool) -> anyhow::Result<Sim> {
    let ca = Arc::new(TestCa::new("vsphere-client-test-ca")?);
    let base = if source { VcsimOptions::source() } else { VcsimOptions::target() };
    let vc = Vcsim::start(VcsimOptions { ca: Some(ca.clone()), ..base }).await?;
    Ok(Sim { ca, vc })
}

impl Sim {
    pub fn tls(&self) -> TlsPolicy {
        TlsPolicy { ca_bundle_pem: self.vc.ca_pem.clone(), ..Default::default() }
    }

    pub fn spec(&self) -> ServerSpec {
        self.spec_at(&self.vc.server(), self.tls())
    }

    pub fn spec_at(&self, server: &str, tls: TlsPolicy) -> ServerSpec {
        ServerSpec {
            server: server.to_string(),
            credentials: Credentials::new(self.vc.username.clone(), self.vc.password.clone()),
            tls,
        }
    }
}
