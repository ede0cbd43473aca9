//! What every request of one client goes through, whatever the protocol: the endpoint,
//! the options, the pool's counters and the credentials; the closed flag and the rule
//! that rejected credentials are not used; the retry loop (transient failures only);
//! and the secrets that are redacted from every traced body.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::auth::Auth;
use super::config::{ClientOptions, Credentials};
use super::stats::Counters;
use crate::endpoint::Endpoint;
use crate::error::VsphereError;
use crate::retry;

/// Where a session slot keeps its session id; the wire reads it for redaction.
pub(crate) type IdCell = Arc<RwLock<Option<String>>>;

/// The per-client context of every request.
pub(crate) struct Wire {
    pub endpoint: Endpoint,
    pub opts: ClientOptions,
    pub counters: Arc<Counters>,
    pub auth: Auth,
    closed: AtomicBool,
    /// The session ids of this client's slots.
    session_ids: Mutex<Vec<IdCell>>,
}

impl Wire {
    pub fn new(endpoint: Endpoint, opts: ClientOptions, counters: Arc<Counters>, creds: Credentials) -> Wire {
        Wire {
            endpoint,
            opts,
            counters,
            auth: Auth::new(creds),
            closed: AtomicBool::new(false),
            session_ids: Mutex::default(),
        }
    }

    /// `host:port` of the vCenter.
    pub fn server(&self) -> &str {
        self.endpoint.authority()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuse every further call. True if the wire was closed already.
    pub fn close(&self) -> bool {
        self.closed.swap(true, Ordering::SeqCst)
    }

    /// Redact the session id kept in `cell` from now on.
    pub fn watch_session_id(&self, cell: IdCell) {
        self.session_ids.lock().unwrap_or_else(|e| e.into_inner()).push(cell);
    }

    /// Everything that must not reach a trace: the password and the live session ids
    /// (a SOAP cookie also without its quotes).
    pub fn secrets(&self) -> Vec<String> {
        let mut v = vec![self.auth.password()];
        for cell in self.session_ids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(id) = cell.read().unwrap_or_else(|e| e.into_inner()).clone() {
                let bare = id.trim_matches('"');
                if bare != id {
                    v.push(bare.to_string());
                }
                v.push(id);
            }
        }
        v
    }

    pub fn auth_failed(&self, cached: bool) -> VsphereError {
        VsphereError::AuthFailed { server: self.server().to_string(), username: self.auth.username(), cached }
    }

    pub fn not_authenticated(&self) -> VsphereError {
        VsphereError::NotAuthenticated { server: self.server().to_string() }
    }

    /// Fails when the client was shut down, or when the server rejected its credentials
    /// (counted as a suppressed login: the server is not contacted).
    pub fn check_usable(&self) -> Result<(), VsphereError> {
        if self.is_closed() {
            return Err(VsphereError::invalid(format!("session to {} was shut down", self.server())));
        }
        if self.auth.rejected() {
            self.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
            return Err(self.auth_failed(true));
        }
        Ok(())
    }

    /// Run `attempt` until it succeeds, fails for good, or the retry policy (or a
    /// shutdown) ends the retries. Only transient failures are retried. `protocol`
    /// (`SOAP`, `REST`) and `call` name the request in the trace.
    pub async fn with_retries<T, F, Fut>(&self, protocol: &str, call: &str, mut attempt: F) -> Result<T, VsphereError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, VsphereError>>,
    {
        let mut delays = self.opts.retry.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Err(e) if e.is_transient() => match delays.next() {
                    Some(d) if !self.is_closed() => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(call, attempt = attempts, delay_ms = d.as_millis() as u64, error = %e, "retrying {protocol} call");
                        tokio::time::sleep(d).await;
                    }
                    _ => return Err(retry::with_attempts(e, attempts)),
                },
                r => return r,
            }
        }
    }
}
