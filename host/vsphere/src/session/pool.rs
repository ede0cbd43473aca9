//! The pool: one shared client per (server, user), logged in on first use; credentials
//! the server rejected are refused without contacting it until they change; the
//! insecure servers it talked to; shutdown of every client; the counters' snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::client::Client;
use super::config::{ClientOptions, ServerSpec};
use super::stats::{Counters, PoolStats};
use crate::endpoint::Address;
use crate::error::VsphereError;

/// What the pool knows about one (server, user).
#[derive(Default)]
struct Entry {
    client: Option<Arc<Client>>,
    /// Digest of credentials the server rejected; they are not sent again.
    rejected: Option<[u8; 32]>,
}

/// `(host:port, username)`.
type EntryKey = (String, String);

struct PoolInner {
    opts: ClientOptions,
    counters: Arc<Counters>,
    entries: Mutex<HashMap<EntryKey, Arc<tokio::sync::Mutex<Entry>>>>,
    insecure: Mutex<BTreeSet<String>>,
}

/// One shared, logged-in session per (server, username). Cheap to clone.
#[derive(Clone)]
pub struct SessionPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool").field("stats", &self.stats()).finish()
    }
}

impl SessionPool {
    pub fn new(opts: ClientOptions) -> Self {
        SessionPool {
            inner: Arc::new(PoolInner {
                opts,
                counters: Arc::default(),
                entries: Mutex::default(),
                insecure: Mutex::default(),
            }),
        }
    }

    /// The session for `spec`, logging in on first use. Credentials the server already
    /// rejected fail at once, without contacting it, until they change.
    pub async fn client(&self, spec: &ServerSpec) -> Result<Arc<Client>, VsphereError> {
        let address = Address::parse(&spec.server)?;
        let key = (address.authority(), spec.credentials.username.clone());
        let entry = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.entry(key.clone()).or_default().clone()
        };
        // One login at a time per (server, user): concurrent callers wait and share it.
        let mut entry = entry.lock().await;
        let digest = spec.credentials.digest();
        let rejected = |cached| VsphereError::AuthFailed { server: key.0.clone(), username: key.1.clone(), cached };

        if let Some(c) = entry.client.clone() {
            if *c.tls_policy() == spec.tls && !c.is_closed() {
                c.update_credentials(&spec.credentials);
                if c.credentials_rejected() {
                    self.inner.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
                    return Err(rejected(true));
                }
                return Ok(c);
            }
            // The trust settings changed (or the client was shut down): start afresh.
            entry.client = None;
            c.shutdown().await;
        }
        if entry.rejected == Some(digest) {
            self.inner.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
            return Err(rejected(true));
        }
        match Client::connect(address, spec, self.inner.opts.clone(), self.inner.counters.clone()).await {
            Ok(c) => {
                entry.rejected = None;
                if spec.tls.is_insecure() {
                    self.inner.insecure.lock().unwrap_or_else(|e| e.into_inner()).insert(key.0.clone());
                }
                entry.client = Some(c.clone());
                Ok(c)
            }
            Err(e @ VsphereError::AuthFailed { .. }) => {
                entry.rejected = Some(digest);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Log out every session (SOAP and REST) and forget them.
    pub async fn shutdown(&self) {
        let entries: Vec<_> = {
            let mut map = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, s)| s).collect()
        };
        for e in entries {
            let mut e = e.lock().await;
            if let Some(c) = e.client.take() {
                c.shutdown().await;
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.inner.counters.snapshot()
    }

    /// Servers (`host:port`) this pool talked to without verifying certificates, so the
    /// operator can raise a warning condition.
    pub fn insecure_servers(&self) -> Vec<String> {
        self.inner.insecure.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}
