//! `backup`: snapshots need `get` on the object they copy; restoring the journal needs
//! nothing more than the phase already had (it undoes only what the phase did).

use wasmtime::Result as WasmResult;

use super::HostState;
use crate::runtime::backend::{Import, ImportResult};
use crate::runtime::bindings::vsm::phase::backup;
use crate::runtime::bindings::{BackupError, ObjectType, RestoreReport, SnapshotInfo};

impl backup::Host for HostState {
    async fn snapshot(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
    ) -> WasmResult<Result<SnapshotInfo, BackupError>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(Err(BackupError::Forbidden(e))),
        };
        let resolved = match env.backends.kube.resolve(&ty).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(BackupError::NotFound(format!("{} {}: {e:?}", ty.api_version, ty.kind)))),
        };
        if !env.caps.allows_kube(&resolved.group, &resolved.resource, "get", namespace.as_deref()) {
            let what = format!("back up {} {}", resolved.resource, name);
            return Ok(Err(BackupError::Forbidden(self.deny(&env, what))));
        }
        let import = Import::Snapshot { ty: &resolved, namespace: namespace.as_deref(), name: &name };
        env.before(&import).await;
        let result = env.backends.backup.snapshot(&env.scope, &resolved, namespace.as_deref(), &name).await;
        env.after(&import, &result, false);
        Ok(result)
    }

    async fn restore_journal(&mut self) -> WasmResult<Vec<RestoreReport>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(vec![RestoreReport { subject: "journal".into(), error: Some(e) }]),
        };
        let import = Import::RestoreJournal;
        env.before(&import).await;
        let reports = env.backends.backup.restore_journal(&env.scope).await;
        if let Some(o) = &env.backends.observer {
            let failed: Vec<String> =
                reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.subject))).collect();
            let error = (!failed.is_empty()).then(|| failed.join("; "));
            o.after(&env.scope, &import, &ImportResult { error, created: false, items: reports.len() });
        }
        Ok(reports)
    }
}
