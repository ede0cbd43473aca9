//! Counting: the counters a pool shares with its clients (the open-session gauge,
//! logins, re-logins, retries, round trips per call) and their public snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters shared by a pool and its clients.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub open_sessions: AtomicI64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub logins_suppressed: AtomicU64,
    pub relogins: AtomicU64,
    pub logouts: AtomicU64,
    pub retries: AtomicU64,
    pub soap_round_trips: AtomicU64,
    pub rest_round_trips: AtomicU64,
    per_call: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// Count one round trip of `key` (`soap:CreateFolder`, `rest:GET tagging/tag`).
    pub fn call(&self, key: &str) {
        *self.per_call.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default() += 1;
    }

    pub fn snapshot(&self) -> PoolStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            open_sessions: self.open_sessions.load(Ordering::Relaxed),
            logins: l(&self.logins),
            login_failures: l(&self.login_failures),
            logins_suppressed: l(&self.logins_suppressed),
            relogins: l(&self.relogins),
            logouts: l(&self.logouts),
            retries: l(&self.retries),
            soap_round_trips: l(&self.soap_round_trips),
            rest_round_trips: l(&self.rest_round_trips),
            per_call: self.per_call.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Sessions (SOAP + REST pair) currently logged in and held.
    pub open_sessions: i64,
    /// Successful SOAP logins (first logins and re-logins).
    pub logins: u64,
    /// Logins the server rejected.
    pub login_failures: u64,
    /// Logins not attempted because the same credentials were already rejected.
    pub logins_suppressed: u64,
    /// Re-logins after an expired or killed session.
    pub relogins: u64,
    pub logouts: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    pub soap_round_trips: u64,
    pub rest_round_trips: u64,
    /// Round trips per SOAP method (`soap:CreateFolder`) and REST call (`rest:GET tagging/category`).
    pub per_call: BTreeMap<String, u64>,
}
