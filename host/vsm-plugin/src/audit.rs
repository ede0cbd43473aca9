//! The operator's services with every call a phase makes recorded, for the capability audit
//! of `vsm-plugin test` (what it called, and whether a re-run created anything).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;
use vsm_host::runtime::bindings::*;
use vsm_host::runtime::{CallScope, Direction, KubeOp, PhaseServices, ResolvedType, VsphereOp, VsphereReply};
use vsm_host::services::ClusterServices;

/// One import call, as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub direction: String,
    /// `kube`, `vsphere`, `state`, `backup` or `event`.
    pub system: String,
    /// The RBAC verb (kube), the operation (vsphere), or get/set/delete/snapshot/restore.
    pub verb: String,
    /// `group/resource` (core group as `core`), a vCenter, or a state key.
    pub what: String,
    pub namespace: Option<String>,
    pub mutation: bool,
    /// A vSphere ensure that created something (a re-run must not).
    pub created: bool,
    pub error: Option<String>,
}

/// The calls recorded so far (shared by every call's services).
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, call: Call) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }
}

/// [`ClusterServices`] that record each call in a [`CallLog`].
pub struct Audited {
    pub inner: Arc<ClusterServices>,
    pub log: CallLog,
}

fn key(w: Scope, k: &str) -> String {
    match w {
        Scope::Phase => format!("phase:{k}"),
        Scope::Migration => format!("migration:{k}"),
    }
}

fn direction(scope: &CallScope) -> String {
    match scope.direction {
        Direction::Execute => "execute".into(),
        Direction::Rollback => "rollback".into(),
    }
}

fn vsphere_name(op: &VsphereOp) -> &'static str {
    match op {
        VsphereOp::About => "about",
        VsphereOp::FindObject { .. } => "find-object",
        VsphereOp::ListVms { .. } => "list-vms",
        VsphereOp::CreateFolder { .. } => "create-folder",
        VsphereOp::DeleteFolder { .. } => "delete-folder",
        VsphereOp::EnsureCategory { .. } => "ensure-category",
        VsphereOp::EnsureTag { .. } => "ensure-tag",
        VsphereOp::DeleteTag { .. } => "delete-tag",
        VsphereOp::DeleteCategory { .. } => "delete-category",
        VsphereOp::AttachTag { .. } => "attach-tag",
        VsphereOp::DetachTag { .. } => "detach-tag",
        VsphereOp::ListAttachedTags { .. } => "list-attached-tags",
    }
}

impl Audited {
    fn record(&self, scope: &CallScope, system: &str, verb: &str, what: String, namespace: Option<String>) -> Call {
        Call {
            direction: direction(scope),
            system: system.into(),
            verb: verb.into(),
            what,
            namespace,
            mutation: false,
            created: false,
            error: None,
        }
    }
}

#[async_trait]
impl PhaseServices for Audited {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        self.inner.resolve(ty).await
    }

    async fn kube(&self, s: &CallScope, ty: &ResolvedType, op: KubeOp) -> Result<String, KubeError> {
        let group = if ty.group.is_empty() { "core" } else { ty.group.as_str() };
        let mut call = self.record(
            s,
            "kube",
            op.verbs()[0],
            format!("{group}/{}", ty.resource),
            op.namespace().map(str::to_string),
        );
        call.mutation = op.is_mutation();
        let result = self.inner.kube(s, ty, op).await;
        call.error = result.as_ref().err().map(|e| format!("{e:?}"));
        self.log.push(call);
        result
    }

    async fn vsphere(&self, s: &CallScope, server: &str, op: VsphereOp) -> Result<VsphereReply, VsphereError> {
        let mut call = self.record(s, "vsphere", vsphere_name(&op), server.to_string(), None);
        call.mutation = op.is_mutation();
        let result = self.inner.vsphere(s, server, op).await;
        call.created = matches!(&result, Ok(VsphereReply::Ensured(e)) if e.created);
        call.error = result.as_ref().err().map(|e| format!("{e:?}"));
        self.log.push(call);
        result
    }

    async fn state_get(&self, s: &CallScope, w: Scope, k: &str) -> Option<String> {
        self.log.push(self.record(s, "state", "get", key(w, k), None));
        self.inner.state_get(s, w, k).await
    }

    async fn state_set(&self, s: &CallScope, w: Scope, k: &str, v: &str) -> Result<(), StateError> {
        let mut call = self.record(s, "state", "set", key(w, k), None);
        let result = self.inner.state_set(s, w, k, v).await;
        call.error = result.as_ref().err().map(|e| format!("{e:?}"));
        self.log.push(call);
        result
    }

    async fn state_delete(&self, s: &CallScope, w: Scope, k: &str) -> Result<(), StateError> {
        let mut call = self.record(s, "state", "delete", key(w, k), None);
        let result = self.inner.state_delete(s, w, k).await;
        call.error = result.as_ref().err().map(|e| format!("{e:?}"));
        self.log.push(call);
        result
    }

    async fn backup_snapshot(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        let group = if ty.group.is_empty() { "core" } else { ty.group.as_str() };
        let mut call =
            self.record(s, "backup", "snapshot", format!("{group}/{} {name}", ty.resource), ns.map(Into::into));
        let result = self.inner.backup_snapshot(s, ty, ns, name).await;
        call.error = result.as_ref().err().map(|e| format!("{e:?}"));
        self.log.push(call);
        result
    }

    async fn backup_restore_journal(&self, s: &CallScope) -> Vec<RestoreReport> {
        let reports = self.inner.backup_restore_journal(s).await;
        let mut call = self.record(s, "backup", "restore-journal", format!("{} entries", reports.len()), None);
        call.mutation = !reports.is_empty();
        let failed: Vec<String> =
            reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.subject))).collect();
        call.error = (!failed.is_empty()).then(|| failed.join("; "));
        self.log.push(call);
        reports
    }

    fn log(&self, s: &CallScope, l: Level, m: &str, f: &[(String, String)]) {
        self.inner.log(s, l, m, f)
    }

    async fn event(&self, s: &CallScope, t: EventType, r: &str, m: &str) {
        self.log.push(self.record(s, "event", r, m.to_string(), None));
        self.inner.event(s, t, r, m).await
    }

    fn progress(&self, s: &CallScope, p: u8, m: &str) {
        self.inner.progress(s, p, m)
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
}
