//! Writing a migration's status and finalizer: server-side apply of the whole status,
//! retried until it sticks, guarded by the resourceVersion last seen (so a write from a
//! deposed leader fails) and by the leader check before every attempt.

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

/// Apply `status` to the migration; on success `m` carries the new resourceVersion.
pub async fn write_status(
    api: &Api<VSphereMigration>,
    m: &mut VSphereMigration,
    status: &MigrationStatus,
    leader: &LeaderHandle,
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
                    m.metadata.resource_version = fresh.metadata.resource_version;
                    m.metadata.generation = fresh.metadata.generation;
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
