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
                    wire.auth.mark_rejected();
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::time::Duration;

    use reqwest::Method;

    use super::*;
    use crate::endpoint::tls::TlsPolicy;
    use crate::endpoint::{Address, Endpoint};
    use crate::session::config::ClientOptions;

    /// Hands out `"s1"`, `"s2"`, ... (quoted, like a SOAP cookie), or rejects the
    /// credentials when told to.
    #[derive(Default)]
    struct Fake {
        logins: AtomicU32,
        reject: AtomicBool,
        logouts: Mutex<Vec<String>>,
    }

    impl Protocol for Fake {
        const NAME: &'static str = "FAKE";

        async fn login(&self, wire: &Wire, _creds: &Credentials) -> Result<String, VsphereError> {
            let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
            // Long enough for concurrent callers to pile up behind the login lock.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.reject.load(Ordering::SeqCst) {
                return Err(wire.auth_failed(false));
            }
            Ok(format!("\"s{n}\""))
        }

        async fn logout(&self, _wire: &Wire, id: &str) {
            self.logouts.lock().unwrap().push(id.to_string());
        }

        fn logout_request(&self, wire: &Wire, id: &str) -> reqwest::RequestBuilder {
            wire.endpoint
                .request(Method::DELETE, wire.endpoint.rest("session"), Duration::from_secs(1))
                .header("id", id)
        }
    }

    fn wire() -> Wire {
        let insecure = TlsPolicy { insecure: true, ..Default::default() };
        let endpoint = Endpoint::new(Address::parse("vc.test").unwrap(), &insecure, Duration::from_secs(1)).unwrap();
        Wire::new(endpoint, ClientOptions::default(), Arc::default(), Credentials::new("u", "pw"))
    }

    /// A call that only the session `good` may make.
    async fn only_with(id: Option<String>, good: &str) -> Result<String, VsphereError> {
        match id {
            Some(id) if id == good => Ok(id),
            _ => Err(VsphereError::NotAuthenticated { server: "vc.test:443".into() }),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_relogin() {
        let wire = wire();
        let slot = SessionSlot::new(Fake::default(), &wire);
        slot.login(&wire).await.unwrap();
        assert_eq!(slot.id().as_deref(), Some("\"s1\""));
        // The server forgot s1: every caller fails once, one of them logs in again.
        let call = || slot.with_session(&wire, |id| only_with(id, "\"s2\""));
        let (a, b, c) = tokio::join!(call(), call(), call());
        for r in [a, b, c] {
            assert_eq!(r.unwrap(), "\"s2\"");
        }
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2);
        assert_eq!(wire.counters.relogins.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_call_logs_in_again_at_most_once() {
        let wire = wire();
        let slot = SessionSlot::new(Fake::default(), &wire);
        slot.login(&wire).await.unwrap();
        let err = slot.with_session(&wire, |id| only_with(id, "never")).await.unwrap_err();
        assert!(matches!(err, VsphereError::NotAuthenticated { .. }), "{err:?}");
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2);
        // Other failures never lead to a login.
        let err = slot.with_session(&wire, |_| async { Err::<(), _>(VsphereError::not_found("/x")) }).await;
        assert!(matches!(err, Err(VsphereError::NotFound { .. })));
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rejected_credentials_are_not_sent_again() {
        let wire = wire();
        let slot = SessionSlot::new(Fake::default(), &wire);
        slot.login(&wire).await.unwrap();
        slot.protocol().reject.store(true, Ordering::SeqCst);
        let err = slot.with_session(&wire, |id| only_with(id, "\"s2\"")).await.unwrap_err();
        assert!(matches!(err, VsphereError::AuthFailed { cached: false, .. }), "{err:?}");
        for _ in 0..3 {
            let err = slot.with_session(&wire, |id| only_with(id, "\"s3\"")).await.unwrap_err();
            assert!(matches!(err, VsphereError::AuthFailed { cached: true, .. }), "{err:?}");
        }
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2, "the rejected login was the last one");
        assert_eq!(wire.counters.logins_suppressed.load(Ordering::SeqCst), 3);
        // Not even once the server would take them again: new credentials get a new client
        // from the pool.
        slot.protocol().reject.store(false, Ordering::SeqCst);
        let err = slot.with_session(&wire, |id| only_with(id, "\"s3\"")).await.unwrap_err();
        assert!(matches!(err, VsphereError::AuthFailed { cached: true, .. }), "{err:?}");
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn keep_alive_logs_in_only_when_the_probe_says_so() {
        let wire = wire();
        let slot = SessionSlot::new(Fake::default(), &wire);
        slot.login(&wire).await.unwrap();
        slot.keep_alive(&wire, |id| async move { Ok(id.is_some()) }).await.unwrap();
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 1);
        slot.keep_alive(&wire, |_| async { Ok(false) }).await.unwrap();
        assert_eq!(slot.id().as_deref(), Some("\"s2\""));
        let err = slot.keep_alive(&wire, |_| async { Err(VsphereError::not_found("x")) }).await;
        assert!(err.is_err());
        assert_eq!(slot.protocol().logins.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn ids_are_redacted_and_forgotten_at_logout() {
        let wire = wire();
        let slot = SessionSlot::new(Fake::default(), &wire);
        assert_eq!(wire.secrets(), vec!["pw".to_string()]);
        slot.login(&wire).await.unwrap();
        assert_eq!(wire.secrets(), vec!["pw".to_string(), "s1".into(), "\"s1\"".into()]);
        let logout = slot.logout(&wire);
        assert_eq!(slot.id(), None, "forgotten before the logout runs");
        logout.await;
        assert_eq!(*slot.protocol().logouts.lock().unwrap(), vec!["\"s1\"".to_string()]);
        slot.logout(&wire).await;
        assert_eq!(slot.protocol().logouts.lock().unwrap().len(), 1, "nothing left to log out");
        assert!(slot.detached_logout(&wire).is_none());
        slot.login(&wire).await.unwrap();
        assert!(slot.detached_logout(&wire).is_some());
        assert_eq!(slot.id(), None);
    }
}
