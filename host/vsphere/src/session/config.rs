//! What a session is configured with: which vCenter, as whom (the password is never
//! printed), trusting what, and the timeouts, keep-alive and retry settings.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::endpoint::tls::TlsPolicy;
use crate::redact;
use crate::retry::RetryPolicy;

/// A password. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(redact::REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(redact::REDACTED)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    /// A digest of these exact credentials, so the pool can remember rejected ones
    /// without keeping the password.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.username.as_bytes());
        h.update([0]);
        h.update(self.password.expose().as_bytes());
        h.finalize().into()
    }
}

/// Which vCenter, as whom, trusting what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `host`, `host:port`, or an `https://` URL (its path is ignored).
    pub server: String,
    pub credentials: Credentials,
    pub tls: TlsPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Deadline of one client operation, retries, re-login and task waits included.
    pub operation_timeout: Duration,
    /// TCP + TLS connection setup.
    pub connect_timeout: Duration,
    /// One HTTP round trip; a black-holed request fails after this and may be retried.
    pub request_timeout: Duration,
    /// How often an idle session is touched so vCenter does not expire it.
    pub keepalive_interval: Duration,
    pub retry: RetryPolicy,
    /// Longest pause between two polls of a running task.
    pub task_poll_max: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            operation_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            task_poll_max: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_printed() {
        let c = Credentials::new("admin", "hunter22");
        let dbg = format!("{c:?} {}", c.password);
        assert!(!dbg.contains("hunter22"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        let spec = ServerSpec { server: "vc".into(), credentials: c, tls: TlsPolicy::default() };
        assert!(!format!("{spec:?}").contains("hunter22"));
    }

    #[test]
    fn credentials_digest_depends_on_both_parts() {
        let a = Credentials::new("u", "p1").digest();
        assert_eq!(a, Credentials::new("u", "p1").digest());
        assert_ne!(a, Credentials::new("u", "p2").digest());
        assert_ne!(Credentials::new("ab", "c").digest(), Credentials::new("a", "bc").digest());
    }
}
