//! What the runtime needs from the rest of the operator to serve a phase's imports.
//!
//! The runtime owns sandboxing and capability checks; everything that touches the world is
//! behind [`PhaseServices`], implemented by the controller for real migrations and by test
//! doubles in unit tests and benchmarks.

use async_trait::async_trait;
use serde::Serialize;

use super::bindings::{
    AboutInfo, BackupError, CategorySpec, Ensured, EventType, KubeError, Level, ObjectKind, ObjectRef, ObjectType,
    PatchType, Preconditions, RestoreReport, Scope, SnapshotInfo, StateError, TagInfo, VmInfo, VsphereCapability,
    VsphereError,
};

/// Who is calling: the plugin, the phase and the migration. Passed to every service call.
#[derive(Debug, Clone, Serialize)]
pub struct CallScope {
    /// Component name (file stem in the plugin directory).
    pub plugin: String,
    /// Phase name from describe().
    pub phase: String,
    pub migration_name: String,
    pub migration_namespace: String,
    pub migration_uid: String,
    /// Plan mode: record mutations, do not apply them.
    pub dry_run: bool,
    /// Execute or rollback.
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Execute,
    Rollback,
}

/// A resolved Kubernetes type: what RBAC-style grants are written against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedType {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name.
    pub resource: String,
    pub namespaced: bool,
}

/// One Kubernetes call a phase made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum KubeOp {
    Get { namespace: Option<String>, name: String },
    List { namespace: Option<String>, label_selector: Option<String> },
    Create { namespace: Option<String>, object: String },
    Apply { namespace: Option<String>, name: String, object: String, force: bool },
    Patch { namespace: Option<String>, name: String, patch_type: PatchType, patch: String },
    Replace { namespace: Option<String>, name: String, object: String },
    Delete { namespace: Option<String>, name: String, preconditions: Option<Preconditions> },
}

impl KubeOp {
    /// The RBAC verbs the call needs.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self {
            KubeOp::Get { .. } => &["get"],
            KubeOp::List { .. } => &["list"],
            KubeOp::Create { .. } => &["create"],
            KubeOp::Apply { .. } => &["patch"],
            KubeOp::Patch { .. } => &["patch"],
            KubeOp::Replace { .. } => &["update"],
            KubeOp::Delete { .. } => &["delete"],
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            KubeOp::Get { namespace, .. }
            | KubeOp::List { namespace, .. }
            | KubeOp::Create { namespace, .. }
            | KubeOp::Apply { namespace, .. }
            | KubeOp::Patch { namespace, .. }
            | KubeOp::Replace { namespace, .. }
            | KubeOp::Delete { namespace, .. } => namespace.as_deref(),
        }
    }

    pub fn is_mutation(&self) -> bool {
        !matches!(self, KubeOp::Get { .. } | KubeOp::List { .. })
    }

    /// Size of the payload the guest sent.
    pub fn payload_len(&self) -> usize {
        match self {
            KubeOp::Create { object, .. } | KubeOp::Apply { object, .. } | KubeOp::Replace { object, .. } => {
                object.len()
            }
            KubeOp::Patch { patch, .. } => patch.len(),
            _ => 0,
        }
    }
}

/// One vSphere call a phase made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum VsphereOp {
    About,
    FindObject { kind: ObjectKind, path: String },
    ListVms { folder: String },
    CreateFolder { path: String },
    DeleteFolder { path: String },
    EnsureCategory { spec: CategorySpec },
    EnsureTag { category_id: String, name: String, description: String },
    DeleteTag { tag_id: String },
    DeleteCategory { category_id: String },
    AttachTag { tag_id: String, target: ObjectRef },
    DetachTag { tag_id: String, target: ObjectRef },
    ListAttachedTags { target: ObjectRef },
}

impl VsphereOp {
    /// The capability class the call needs.
    pub fn capability(&self) -> VsphereCapability {
        match self {
            VsphereOp::About
            | VsphereOp::FindObject { .. }
            | VsphereOp::ListVms { .. }
            | VsphereOp::ListAttachedTags { .. } => VsphereCapability::ReadInventory,
            VsphereOp::CreateFolder { .. } | VsphereOp::DeleteFolder { .. } => VsphereCapability::ManageFolders,
            VsphereOp::EnsureCategory { .. }
            | VsphereOp::EnsureTag { .. }
            | VsphereOp::DeleteTag { .. }
            | VsphereOp::DeleteCategory { .. }
            | VsphereOp::AttachTag { .. }
            | VsphereOp::DetachTag { .. } => VsphereCapability::ManageTags,
        }
    }

    pub fn is_mutation(&self) -> bool {
        self.capability() != VsphereCapability::ReadInventory
    }
}

/// What a vSphere call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VsphereReply {
    About(AboutInfo),
    Object(ObjectRef),
    Vms(Vec<VmInfo>),
    Ensured(Ensured),
    Flag(bool),
    Unit,
    Tags(Vec<TagInfo>),
}

/// The operator side of every import. Capability checks have already passed when these
/// are called.
#[async_trait]
pub trait PhaseServices: Send + Sync {
    /// Map apiVersion + kind to group/resource/scope (discovery, cached).
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError>;
    /// Perform a Kubernetes call; returns the object (or a JSON array for list) as JSON.
    async fn kube(&self, scope: &CallScope, ty: &ResolvedType, op: KubeOp) -> Result<String, KubeError>;
    /// Perform a vSphere call on the host-owned session for `server`.
    async fn vsphere(&self, scope: &CallScope, server: &str, op: VsphereOp) -> Result<VsphereReply, VsphereError>;

    async fn state_get(&self, scope: &CallScope, which: Scope, key: &str) -> Option<String>;
    async fn state_set(&self, scope: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError>;
    async fn state_delete(&self, scope: &CallScope, which: Scope, key: &str) -> Result<(), StateError>;

    async fn backup_snapshot(
        &self,
        scope: &CallScope,
        ty: &ResolvedType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError>;
    async fn backup_restore_journal(&self, scope: &CallScope) -> Vec<RestoreReport>;

    fn log(&self, scope: &CallScope, level: Level, message: &str, fields: &[(String, String)]);
    async fn event(&self, scope: &CallScope, ty: EventType, reason: &str, message: &str);
    fn progress(&self, scope: &CallScope, percent: u8, message: &str);

    fn now_ms(&self) -> u64;
}

/// Services for a phase that needs none: every call fails, the clock works. Used to run
/// describe() and for the no-op benchmarks.
pub struct NoServices;

#[async_trait]
impl PhaseServices for NoServices {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        Err(KubeError::NotFound(format!("{} {}: no cluster", ty.api_version, ty.kind)))
    }
    async fn kube(&self, _: &CallScope, _: &ResolvedType, _: KubeOp) -> Result<String, KubeError> {
        Err(KubeError::Transient("no cluster".into()))
    }
    async fn vsphere(&self, _: &CallScope, server: &str, _: VsphereOp) -> Result<VsphereReply, VsphereError> {
        Err(VsphereError::NotFound(format!("no vCenter {server}")))
    }
    async fn state_get(&self, _: &CallScope, _: Scope, _: &str) -> Option<String> {
        None
    }
    async fn state_set(&self, _: &CallScope, _: Scope, _: &str, _: &str) -> Result<(), StateError> {
        Err(StateError::Unavailable("no state store".into()))
    }
    async fn state_delete(&self, _: &CallScope, _: Scope, _: &str) -> Result<(), StateError> {
        Err(StateError::Unavailable("no state store".into()))
    }
    async fn backup_snapshot(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        Err(BackupError::Failed("no backup store".into()))
    }
    async fn backup_restore_journal(&self, _: &CallScope) -> Vec<RestoreReport> {
        Vec::new()
    }
    fn log(&self, _: &CallScope, _: Level, _: &str, _: &[(String, String)]) {}
    async fn event(&self, _: &CallScope, _: EventType, _: &str, _: &str) {}
    fn progress(&self, _: &CallScope, _: u8, _: &str) {}
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default()
    }
}
