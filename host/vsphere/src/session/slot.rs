//! One logged-in session of one protocol, generic over the protocol: the session id, the
//! single-flight re-login when the server says the session is gone (at most once per
//! call, never after the credentials were rejected), the keep-alive probe and logout.
//! What differs between SOAP and REST — the login and logout requests — is the
//! [`Protocol`] trait.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::config::Credentials;
use super::wire::{IdCell, Wire};
use crate::error::VsphereError;

/// How one protocol logs in and out.
pub(crate) trait Protocol: Send + Sync {
    /// `SOAP` or `REST`, for traces.
    const NAME: &'static str;

    /// Log in with `creds` and return the new session id. Counts logins and failures;
    /// credentials the server refused are [`VsphereError::AuthFailed`].
    fn login(&self, wire: &Wire, creds: &Credentials) -> impl Future<Output = Result<String, VsphereError>> + Send;

    /// Log the session `id` out, traced; a failure is logged, not returned.
    fn logout(&self, wire: &Wire, id: &str) -> impl Future<Output = ()> + Send;

    /// The logout of `id` as a bare request, for a client dropped without shutdown: it
    /// is sent in the background, untraced and unretried.
    fn logout_request(&self, wire: &Wire, id: &str) -> reqwest::RequestBuilder;
}

/// A session of protocol `P`: its id (None before login and after logout) and a
/// generation that changes with every re-login.
pub(crate) struct SessionSlot<P> {
    protocol: P,
    id: IdCell,
    generation: AtomicU64,
}

impl<P: Protocol> SessionSlot<P> {
    /// An empty slot whose id `wire` redacts from its traces.
    pub fn new(protocol: P, wire: &Wire) -> Self {
        let id: IdCell = Arc::new(RwLock::new(None));
        wire.watch_session_id(id.clone());
        SessionSlot { protocol, id, generation: AtomicU64::new(0) }
    }

    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    pub fn id(&self) -> Option<String> {
        self.id.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_id(&self, id: Option<String>) -> Option<String> {
        std::mem::replace(&mut *self.id.write().unwrap_or_else(|e| e.into_inner()), id)
    }

    /// The first login, with the wire's current credentials.
    pub async fn login(&self, wire: &Wire) -> Result<(), VsphereError> {
        let id = self.protocol.login(wire, &wire.auth.credentials()).await?;
        self.set_id(Some(id));
        Ok(())
    }

    /// Run `call` with the current session id. If the server answers that the session
    /// is gone, log in again (once) and run it again.
    pub async fn with_session<T, F, Fut>(&self, wire: &Wire, mut call: F) -> Result<T, VsphereError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, VsphereError>>,
    {
        let mut relogged = false;
        loop {
            let seen = self.generation.load(Ordering::SeqCst);
            match call(self.id()).await {
                Err(VsphereError::NotAuthenticated { .. }) if !relogged => {
                    relogged = true;
                    self.relogin(wire, seen).await?;
                }
                r => return r,
            }
        }
    }

    /// Keep-alive: `probe` says whether the session with this id is still alive; if it
    /// is not, log in again.
    pub async fn keep_alive<F, Fut>(&self, wire: &Wire, probe: F) -> Result<(), VsphereError>
    where
        F: FnOnce(Option<String>) -> Fut,
        Fut: Future<Output = Result<bool, VsphereError>>,
    {
        let seen = self.generation.load(Ordering::SeqCst);
        if probe(self.id()).await? {
            return Ok(());
        }
        self.relogin(wire, seen).await
    }

    /// Replace an expired session. `seen` is the generation the caller used: if another
    /// task replaced the session meanwhile, nothing is done. One login per client runs
    /// at a time; rejected credentials are not sent (again).
    async fn relogin(&self, wire: &Wire, seen: u64) -> Result<(), VsphereError> {
        let _guard = wire.auth.single_flight().await;
        if self.generation.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        wire.check_usable()?;
        let creds = wire.auth.credentials();
        tracing::info!(server = %wire.server(), "{} session expired; logging in again", P::NAME);
        match self.protocol.login(wire, &creds).await {
            Ok(id) => {
                self.set_id(Some(id));
                self.generation.fetch_add(1, Ordering::SeqCst);
                wire.counters.relogins.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if matches!(e, VsphereError::AuthFailed { .. }) {
                    wire.auth.mark_rejected(&creds);
                }
                Err(e)
            }
        }
    }

    /// Forget the session at once and log it out when the returned future runs.
    pub fn logout<'a>(&'a self, wire: &'a Wire) -> impl Future<Output = ()> + Send + 'a {
        let id = self.set_id(None);
        async move {
            if let Some(id) = id {
                self.protocol.logout(wire, &id).await;
            }
        }
    }

    /// Forget the session and return its logout as a bare request (see
    /// [`Protocol::logout_request`]); None when there is no session.
    pub fn detached_logout(&self, wire: &Wire) -> Option<reqwest::RequestBuilder> {
        self.set_id(None).map(|id| self.protocol.logout_request(wire, &id))
    }
}
