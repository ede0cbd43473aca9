//! Writing a migration's status and finalizer: server-side apply of the whole status,
//! retried until it sticks, guarded by the resourceVersion last seen (so a write from a
//! deposed leader fails) and by the leader check before every attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::{FIELD_MANAGER, FINALIZER, MigrationStatus, VSphereMigration};
use crate::leader::LeaderHandle;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("not the leader any more: status not written")]
    NotLeader,
    #[error("the status of {name} changed since it was read: not written, reconciling again")]
    Stale { name: String },
    #[error("writing the status of {name} failed after {attempts} attempts: {source}")]
    Failed { name: String, attempts: u32, source: kube::Error },
}

const ATTEMPTS: u32 = 8;

/// The resourceVersion each migration had after this instance last wrote it.
///
/// The watch cache can lag behind our own writes: a requeue that fires before the watch
/// event of our last status write hands the reconcile the object from before it, and a
/// phase would be called a second time for a step it already took. A reconcile whose
/// object is not the one we last wrote reads it afresh first.
#[derive(Debug, Default)]
pub struct LastWrites(Mutex<HashMap<String, String>>);

impl LastWrites {
    pub fn record(&self, m: &VSphereMigration) {
        if let (Some(uid), Some(rv)) = (&m.metadata.uid, &m.metadata.resource_version) {
            self.0.lock().expect("last writes lock").insert(uid.clone(), rv.clone());
        }
    }

    /// Whether `m` may be older than our last write (it is another version than the one
    /// we wrote; a newer one costs only a needless read).
    pub fn may_be_behind(&self, m: &VSphereMigration) -> bool {
        let Some(uid) = &m.metadata.uid else { return false };
        self.0
            .lock()
            .expect("last writes lock")
            .get(uid)
            .is_some_and(|rv| m.metadata.resource_version.as_ref() != Some(rv))
    }

    pub fn forget(&self, m: &VSphereMigration) {
        if let Some(uid) = &m.metadata.uid {
            self.0.lock().expect("last writes lock").remove(uid);
        }
    }
}

/// Apply `status` to the migration; on success `m` carries the new resourceVersion, which
/// `writes` remembers.
pub async fn write_status(
    api: &Api<VSphereMigration>,
    m: &mut VSphereMigration,
    status: &MigrationStatus,
    leader: &LeaderHandle,
    writes: &LastWrites,
) -> Result<(), WriteError> {
    let name = m.metadata.name.clone().unwrap_or_default();
    let mut delay = Duration::from_millis(100);
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        if !leader.is_leader() {
            return Err(WriteError::NotLeader);
        }
        let body = json!({
            "apiVersion": "migration.openshift.io/v1alpha1",
            "kind": "VSphereMigration",
            "metadata": {"name": name, "resourceVersion": m.metadata.resource_version},
            "status": status,
        });
        match api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await {
            Ok(updated) => {
                m.metadata.resource_version = updated.metadata.resource_version;
                m.status = Some(status.clone());
                writes.record(m);
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // The object changed since we read it. A spec or metadata edit leaves the
                // status we started from in place: take the new resourceVersion and write
                // again. A changed status means ours was computed from an older one (a
                // cache behind our own last write, a write whose answer was lost): writing
                // it would undo what happened since, so the reconcile starts over.
                if let Ok(fresh) = api.get(&name).await {
                    if fresh.status != m.status {
                        return Err(WriteError::Stale { name });
                    }
                    // Carry the new spec and metadata: the caller sees the change (a
                    // new generation) and decides again before calling another phase.
                    *m = fresh;
                }
                last = Some(kube::Error::Api(s));
            }
            Err(e) => {
                tracing::warn!(migration = %name, attempt, error = %e, "status write failed; retrying");
                last = Some(e);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Err(WriteError::Failed { name, attempts: ATTEMPTS, source: last.expect("at least one attempt") })
}

/// Add or remove our finalizer (merge patch with a resourceVersion precondition).
pub async fn set_finalizer(
    api: &Api<VSphereMigration>,
    m: &VSphereMigration,
    present: bool,
) -> Result<VSphereMigration, kube::Error> {
    let mut finalizers: Vec<String> =
        m.metadata.finalizers.clone().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": m.metadata.resource_version}});
    api.patch(m.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VSphereMigrationSpec;

    fn migration(uid: &str, rv: &str) -> VSphereMigration {
        let mut m = VSphereMigration::new("m", VSphereMigrationSpec { spec: crate::lifecycle::tests::spec(json!({})) });
        m.metadata.uid = Some(uid.into());
        m.metadata.resource_version = Some(rv.into());
        m
    }

    #[test]
    fn only_a_version_other_than_our_last_write_is_read_afresh() {
        let writes = LastWrites::default();
        // Nothing written yet by this instance: the cache is trusted.
        assert!(!writes.may_be_behind(&migration("a", "5")));
        writes.record(&migration("a", "7"));
        assert!(!writes.may_be_behind(&migration("a", "7")), "the version we wrote");
        assert!(writes.may_be_behind(&migration("a", "5")), "older than our write (a lagging cache)");
        assert!(writes.may_be_behind(&migration("a", "9")), "another version: read, to be sure");
        assert!(!writes.may_be_behind(&migration("b", "1")), "another migration");
        writes.forget(&migration("a", "7"));
        assert!(!writes.may_be_behind(&migration("a", "5")), "forgotten once deleted");
    }
}
