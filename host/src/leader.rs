//! Leader election on a `coordination.k8s.io/v1` Lease, with fencing.
//!
//! The decision what to do with a Lease is a pure function ([`decide`]); the loop around it
//! does the I/O. A leader counts itself leader only until `renew deadline` after the start
//! of its last successful renewal — shorter than the lease duration — so it stops writing
//! before anyone else may take over ([`LeaderHandle::is_leader`]), and the status writes
//! carry a resourceVersion precondition so a write started by a deposed leader fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Timing of the election (Kubernetes' usual 15 s / 10 s / 2 s by default).
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The parts of a Lease the decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Option<Duration>,
    pub transitions: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it and let it expire (or released it): take it over.
    TakeOver { transitions: i32 },
    /// Someone else holds a valid lease: check again later.
    Wait,
}

/// What to do with the Lease as observed at `now`.
pub fn decide(observed: Option<&Observed>, identity: &str, now: Timestamp, default_duration: Duration) -> LeaseAction {
    let Some(lease) = observed else { return LeaseAction::Create };
    match lease.holder.as_deref() {
        Some(holder) if holder == identity => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver { transitions: lease.transitions + 1 },
        Some(_) => {
            let duration = lease.duration.unwrap_or(default_duration);
            let expired = match lease.renewed {
                None => true,
                Some(renewed) => renewed
                    .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default())
                    .map(|until| until < now)
                    .unwrap_or(true),
            };
            if expired { LeaseAction::TakeOver { transitions: lease.transitions + 1 } } else { LeaseAction::Wait }
        }
    }
}

/// Shared view of leadership for the rest of the operator.
#[derive(Clone)]
pub struct LeaderHandle {
    valid_until: Arc<std::sync::Mutex<Option<Instant>>>,
    changes: watch::Receiver<bool>,
    always: bool,
    /// Keeps the channel open for an always-leader handle: a closed channel would make
    /// every `changed()` return at once and turn waiting into spinning.
    _keep: Option<Arc<watch::Sender<bool>>>,
}

impl LeaderHandle {
    /// A handle that is always leader (leader election disabled).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        LeaderHandle {
            valid_until: Arc::new(std::sync::Mutex::new(None)),
            changes: rx,
            always: true,
            _keep: Some(Arc::new(tx)),
        }
    }

    /// Whether this process may write now. False from the moment its last renewal is
    /// older than the renew deadline, even if no one has taken over yet.
    pub fn is_leader(&self) -> bool {
        self.always || self.valid_until.lock().expect("leader lock").is_some_and(|until| Instant::now() < until)
    }

    /// Resolves when leadership changes (for starting and stopping the controller).
    pub async fn changed(&mut self) -> bool {
        if self.changes.changed().await.is_err() {
            return false;
        }
        *self.changes.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }
}

fn observed(lease: &Lease) -> Observed {
    let spec = lease.spec.clone().unwrap_or_default();
    Observed {
        holder: spec.holder_identity,
        renewed: spec.renew_time.map(|t| t.0),
        duration: spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(0) as u64)),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// Runs the election until `stop` is set; then releases the lease if held.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    valid_until: Arc<std::sync::Mutex<Option<Instant>>>,
    tx: watch::Sender<bool>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaderConfig) -> (Elector, LeaderHandle) {
        let (tx, rx) = watch::channel(false);
        let valid_until = Arc::new(std::sync::Mutex::new(None));
        let handle = LeaderHandle { valid_until: valid_until.clone(), changes: rx, always: false, _keep: None };
        (Elector { api: Api::namespaced(client, &config.namespace), config, valid_until, tx }, handle)
    }

    fn lease_spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: look at the Lease and act. Returns whether we hold it now.
    async fn round(&self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let action = decide(
            current.as_ref().map(observed).as_ref(),
            &self.config.identity,
            Timestamp::now(),
            self.config.lease_duration,
        );
        let written = match (action, current) {
            (LeaseAction::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.config.name.clone()), ..Default::default() },
                    spec: Some(self.lease_spec(0, None)),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| true)
            }
            (LeaseAction::Renew, Some(mut lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                lease.spec = Some(self.lease_spec(spec.lease_transitions.unwrap_or(0), spec.acquire_time));
                self.api.replace(&self.config.name, &PostParams::default(), &lease).await.map(|_| true)
            }
            (LeaseAction::TakeOver { transitions }, Some(mut lease)) => {
                lease.spec = Some(self.lease_spec(transitions, None));
                self.api.replace(&self.config.name, &PostParams::default(), &lease).await.map(|_| true)
            }
            _ => Ok(false),
        };
        match written {
            Ok(true) => {
                // Fencing: valid from when this round started, for the renew deadline only.
                *self.valid_until.lock().expect("leader lock") = Some(started + self.config.renew_deadline);
                Ok(true)
            }
            Ok(false) => Ok(false),
            // Lost a race (409): someone else wrote first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Run until `stop`; on stop, release a held lease so a successor takes over at once.
    pub async fn run(self, stop: Arc<AtomicBool>) {
        let mut leading = false;
        while !stop.load(Ordering::SeqCst) {
            let holds = match self.round().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    false
                }
            };
            let valid = self.valid_until.lock().expect("leader lock").is_some_and(|u| Instant::now() < u);
            let now_leading = holds || (leading && valid);
            if now_leading != leading {
                tracing::info!(identity = %self.config.identity, leading = now_leading, "leadership changed");
                leading = now_leading;
                let _ = self.tx.send(leading);
            }
            if !now_leading {
                *self.valid_until.lock().expect("leader lock") = None;
            }
            let pause = if leading {
                self.config.retry_period.min(self.config.renew_deadline / 3)
            } else {
                self.config.retry_period
            };
            tokio::time::sleep(pause).await;
        }
        if leading {
            self.release().await;
        }
    }

    /// Give the lease up (graceful shutdown).
    async fn release(&self) {
        *self.valid_until.lock().expect("leader lock") = None;
        let _ = self.tx.send(false);
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() == Some(&self.config.identity) {
                spec.holder_identity = None;
                spec.renew_time = None;
                lease.spec = Some(spec);
                match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
                    Ok(_) => tracing::info!(identity = %self.config.identity, "lease released"),
                    Err(e) => tracing::warn!(error = %e, "could not release the lease"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: i64) -> Observed {
        Observed {
            holder: holder.map(Into::into),
            renewed: Some(t(renewed)),
            duration: Some(Duration::from_secs(15)),
            transitions: 3,
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "me", t(0), d), LeaseAction::Create);
        assert_eq!(
            decide(Some(&lease(Some("me"), -100)), "me", t(0), d),
            LeaseAction::Renew,
            "our own lease is renewed even if late"
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), -10)), "me", t(0), d),
            LeaseAction::Wait,
            "a valid lease is respected"
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), -16)), "me", t(0), d),
            LeaseAction::TakeOver { transitions: 4 },
            "an expired lease is taken over"
        );
        assert_eq!(
            decide(Some(&lease(None, 0)), "me", t(0), d),
            LeaseAction::TakeOver { transitions: 4 },
            "a released lease is taken at once"
        );
        let no_time = Observed { renewed: None, ..lease(Some("other"), 0) };
        assert_eq!(decide(Some(&no_time), "me", t(0), d), LeaseAction::TakeOver { transitions: 4 });
    }

    #[test]
    fn an_always_handle_is_leader_and_a_fresh_one_is_not() {
        assert!(LeaderHandle::always().is_leader());
        let (_tx, rx) = watch::channel(false);
        let h = LeaderHandle {
            valid_until: Arc::new(std::sync::Mutex::new(Some(Instant::now() - Duration::from_secs(1)))),
            changes: rx,
            always: false,
            _keep: None,
        };
        assert!(!h.is_leader(), "a lapsed renewal is not leadership");
    }
}
