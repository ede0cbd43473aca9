//! The pool: one shared client per (server, user, credentials), logged in on first use, so
//! a session is handed only to callers holding the credentials it was opened with;
//! credentials the server rejected are refused without contacting it; a login with new
//! credentials retires the sessions of the old ones; the insecure servers it talked to;
//! shutdown of every client; the counters' snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::client::Client;
use super::config::{ClientOptions, ServerSpec};
use super::stats::{Counters, PoolStats};
use crate::endpoint::Address;
use crate::error::VsphereError;

/// What the pool knows about one (server, user, credentials).
#[derive(Default)]
struct Entry {
    client: Option<Arc<Client>>,
    /// The server rejected these credentials: they are not sent again.
    rejected: bool,
}

/// Whose session: `host:port`, the username, and a digest of the credentials (the pool keeps
/// no password).
#[derive(Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    server: String,
    username: String,
    digest: [u8; 32],
}

impl EntryKey {
    /// Another credential of the same account on the same server.
    fn same_account(&self, other: &EntryKey) -> bool {
        self.server == other.server && self.username == other.username && self.digest != other.digest
    }
}

struct PoolInner {
    opts: ClientOptions,
    counters: Arc<Counters>,
    entries: Mutex<HashMap<EntryKey, Arc<tokio::sync::Mutex<Entry>>>>,
    insecure: Mutex<BTreeSet<String>>,
}

/// One shared, logged-in session per (server, username, credentials). Cheap to clone.
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

    /// The session for `spec`, logging in on first use. A session is shared only by callers
    /// presenting the credentials it was opened with: other credentials, right or wrong, log
    /// in themselves. Credentials the server rejected fail at once, without contacting it.
    pub async fn client(&self, spec: &ServerSpec) -> Result<Arc<Client>, VsphereError> {
        let address = Address::parse(&spec.server)?;
        let key = EntryKey {
            server: address.authority(),
            username: spec.credentials.username.clone(),
            digest: spec.credentials.digest(),
        };
        let slot = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.entry(key.clone()).or_default().clone()
        };
        // One login at a time per key: concurrent callers wait and share it.
        let mut entry = slot.lock().await;
        let rejected =
            |cached| VsphereError::AuthFailed { server: key.server.clone(), username: key.username.clone(), cached };

        if let Some(c) = entry.client.take() {
            if *c.tls_policy() == spec.tls && !c.is_closed() && !c.credentials_rejected() {
                entry.client = Some(c.clone());
                return Ok(c);
            }
            // The trust settings changed, the client was shut down, or its re-login was
            // refused (the password changed on the server): start afresh, or not at all.
            entry.rejected |= c.credentials_rejected();
            c.shutdown().await;
        }
        if entry.rejected {
            self.inner.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
            return Err(rejected(true));
        }
        match Client::connect(address, spec, self.inner.opts.clone(), self.inner.counters.clone()).await {
            Ok(c) => {
                if spec.tls.is_insecure() {
                    self.inner.insecure.lock().unwrap_or_else(|e| e.into_inner()).insert(key.server.clone());
                }
                entry.client = Some(c.clone());
                drop(entry);
                self.retire_other_credentials(&key).await;
                Ok(c)
            }
            Err(e @ VsphereError::AuthFailed { .. }) => {
                entry.rejected = true;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// `key`'s credentials were just accepted, and an account has one password: sessions
    /// opened with its other credentials are stale (logged out and forgotten, so an outdated
    /// password never gets a live session), and credentials rejected before may be tried
    /// once more later.
    async fn retire_other_credentials(&self, key: &EntryKey) {
        let stale: Vec<_> = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<EntryKey> = entries.keys().filter(|k| k.same_account(key)).cloned().collect();
            keys.iter().filter_map(|k| entries.remove(k)).collect()
        };
        for slot in stale {
            if let Some(c) = slot.lock().await.client.take() {
                c.shutdown().await;
            }
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
