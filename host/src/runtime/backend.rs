//! What the runtime needs from the rest of the operator to serve a phase's imports: one
//! trait per WIT interface, one method per WIT function, each returning that function's
//! own type. The runtime owns sandboxing and capability checks (`imports`); everything
//! that touches the world is behind these traits, implemented by the operator's layered
//! backends (`crate::backends`) and by test doubles.
//!
//! Adding a vSphere operation: a function in `wit/phase.wit`, a method on
//! [`VsphereBackend`] (and its [`VsphereOp`] descriptor), its implementation in
//! `crate::backends`, the SDK wrapper and the SDK's FakeHost. Nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::bindings::{
    AboutInfo, BackupError, CategoryInfo, CategorySpec, Ensured, EventType, KubeError, Level, ObjectKind, ObjectRef,
    ObjectType, PatchType, Preconditions, PrivilegeReport, RestoreReport, Scope, SnapshotInfo, StateError, TagInfo,
    VmInfo, VsphereCapability, VsphereError,
};

/// Who is calling: the plugin, the phase and the migration. Passed to every backend call.
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

/// Execute or rollback: the API's own type.
pub use crate::api::Direction;

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

/// Which `kube` function a phase called: the descriptor capability checks, the audit and
/// the metrics see (the arguments go to [`KubeBackend`] as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KubeOp {
    Get,
    List,
    Create,
    Apply,
    Patch,
    Replace,
    Delete,
    /// `validate-replace`: a replace sent with dryRun=All.
    Validate,
}

impl KubeOp {
    /// The RBAC verb the call needs.
    pub fn verb(self) -> &'static str {
        match self {
            KubeOp::Get => "get",
            KubeOp::List => "list",
            KubeOp::Create => "create",
            KubeOp::Apply | KubeOp::Patch => "patch",
            KubeOp::Replace => "update",
            KubeOp::Delete => "delete",
            // Not an RBAC verb: the grant of a dry-run update, which changes nothing (the
            // operator's own ServiceAccount needs `update` for it).
            KubeOp::Validate => "validate",
        }
    }

    pub fn is_mutation(self) -> bool {
        !matches!(self, KubeOp::Get | KubeOp::List | KubeOp::Validate)
    }
}

/// Which `vsphere` function a phase called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VsphereOp {
    About,
    FindObject,
    ListVms,
    CreateFolder,
    DeleteFolder,
    EnsureCategory,
    EnsureTag,
    DeleteTag,
    DeleteCategory,
    AttachTag,
    DetachTag,
    ListAttachedTags,
    UserPrivileges,
    FindCategory,
    ListTags,
}

impl VsphereOp {
    /// The WIT function's name.
    pub fn name(self) -> &'static str {
        match self {
            VsphereOp::About => "about",
            VsphereOp::FindObject => "find-object",
            VsphereOp::ListVms => "list-vms",
            VsphereOp::CreateFolder => "create-folder",
            VsphereOp::DeleteFolder => "delete-folder",
            VsphereOp::EnsureCategory => "ensure-category",
            VsphereOp::EnsureTag => "ensure-tag",
            VsphereOp::DeleteTag => "delete-tag",
            VsphereOp::DeleteCategory => "delete-category",
            VsphereOp::AttachTag => "attach-tag",
            VsphereOp::DetachTag => "detach-tag",
            VsphereOp::ListAttachedTags => "list-attached-tags",
            VsphereOp::UserPrivileges => "user-privileges",
            VsphereOp::FindCategory => "find-category",
            VsphereOp::ListTags => "list-tags",
        }
    }

    /// The capability class the call needs.
    pub fn capability(self) -> VsphereCapability {
        match self {
            VsphereOp::About
            | VsphereOp::FindObject
            | VsphereOp::ListVms
            | VsphereOp::ListAttachedTags
            | VsphereOp::UserPrivileges
            | VsphereOp::FindCategory
            | VsphereOp::ListTags => VsphereCapability::ReadInventory,
            VsphereOp::CreateFolder | VsphereOp::DeleteFolder => VsphereCapability::ManageFolders,
            VsphereOp::EnsureCategory
            | VsphereOp::EnsureTag
            | VsphereOp::DeleteTag
            | VsphereOp::DeleteCategory
            | VsphereOp::AttachTag
            | VsphereOp::DetachTag => VsphereCapability::ManageTags,
        }
    }

    pub fn is_mutation(self) -> bool {
        self.capability() != VsphereCapability::ReadInventory
    }
}

/// The `kube` interface.
#[async_trait]
pub trait KubeBackend: Send + Sync {
    /// Map apiVersion + kind to group/resource/scope (discovery, cached).
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError>;
    async fn get(&self, s: &CallScope, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Result<String, KubeError>;
    /// A JSON array of the objects.
    async fn list(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<String, KubeError>;
    async fn create(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        object: &str,
    ) -> Result<String, KubeError>;
    async fn apply(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        force: bool,
    ) -> Result<String, KubeError>;
    async fn patch(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &str,
    ) -> Result<String, KubeError>;
    async fn replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError>;
    async fn delete(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        preconditions: Option<Preconditions>,
    ) -> Result<(), KubeError>;
    /// A replace the API server checks and does not store (dryRun=All).
    async fn validate_replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError>;
}

/// The `vsphere` interface, on the host-owned session for `server`.
///
/// Layers implement only the operations they change and [`VsphereBackend::route`] for the
/// rest: every method's default body hands the call to the backend `route` names (the
/// layer below), or fails with its error (fencing refusing a change, plan mode refusing a
/// change it cannot record). So a new operation needs a default body here and an
/// implementation in the live backend, and every layer treats it by its class.
#[async_trait]
pub trait VsphereBackend: Send + Sync {
    /// Where an operation this backend does not implement itself goes.
    fn route(&self, op: VsphereOp) -> Result<&dyn VsphereBackend, VsphereError> {
        Err(VsphereError::Invalid(format!("{} is not served here", op.name())))
    }
    async fn about(&self, s: &CallScope, server: &str) -> Result<AboutInfo, VsphereError> {
        self.route(VsphereOp::About)?.about(s, server).await
    }
    async fn find_object(
        &self,
        s: &CallScope,
        server: &str,
        kind: ObjectKind,
        path: &str,
    ) -> Result<ObjectRef, VsphereError> {
        self.route(VsphereOp::FindObject)?.find_object(s, server, kind, path).await
    }
    async fn list_vms(&self, s: &CallScope, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.route(VsphereOp::ListVms)?.list_vms(s, server, folder).await
    }
    async fn create_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        self.route(VsphereOp::CreateFolder)?.create_folder(s, server, path).await
    }
    async fn delete_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<bool, VsphereError> {
        self.route(VsphereOp::DeleteFolder)?.delete_folder(s, server, path).await
    }
    async fn ensure_category(&self, s: &CallScope, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        self.route(VsphereOp::EnsureCategory)?.ensure_category(s, server, spec).await
    }
    async fn ensure_tag(
        &self,
        s: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        self.route(VsphereOp::EnsureTag)?.ensure_tag(s, server, category_id, name, description).await
    }
    async fn delete_tag(&self, s: &CallScope, server: &str, tag_id: &str) -> Result<bool, VsphereError> {
        self.route(VsphereOp::DeleteTag)?.delete_tag(s, server, tag_id).await
    }
    async fn delete_category(&self, s: &CallScope, server: &str, category_id: &str) -> Result<bool, VsphereError> {
        self.route(VsphereOp::DeleteCategory)?.delete_category(s, server, category_id).await
    }
    async fn attach_tag(
        &self,
        s: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.route(VsphereOp::AttachTag)?.attach_tag(s, server, tag_id, target).await
    }
    async fn detach_tag(
        &self,
        s: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.route(VsphereOp::DetachTag)?.detach_tag(s, server, tag_id, target).await
    }
    async fn list_attached_tags(
        &self,
        s: &CallScope,
        server: &str,
        target: &ObjectRef,
    ) -> Result<Vec<TagInfo>, VsphereError> {
        self.route(VsphereOp::ListAttachedTags)?.list_attached_tags(s, server, target).await
    }
    async fn user_privileges(
        &self,
        s: &CallScope,
        server: &str,
        targets: &[ObjectRef],
    ) -> Result<PrivilegeReport, VsphereError> {
        self.route(VsphereOp::UserPrivileges)?.user_privileges(s, server, targets).await
    }
    async fn find_category(
        &self,
        s: &CallScope,
        server: &str,
        name: &str,
    ) -> Result<Option<CategoryInfo>, VsphereError> {
        self.route(VsphereOp::FindCategory)?.find_category(s, server, name).await
    }
    async fn list_tags(&self, s: &CallScope, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        self.route(VsphereOp::ListTags)?.list_tags(s, server, category_id).await
    }
}

/// The `state` interface.
#[async_trait]
pub trait StateBackend: Send + Sync {
    async fn get(&self, s: &CallScope, which: Scope, key: &str) -> Option<String>;
    async fn set(&self, s: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError>;
    async fn delete(&self, s: &CallScope, which: Scope, key: &str) -> Result<(), StateError>;
}

/// The `backup` interface.
#[async_trait]
pub trait BackupBackend: Send + Sync {
    async fn snapshot(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError>;
    async fn restore_journal(&self, s: &CallScope) -> Vec<RestoreReport>;
}

/// The `log` interface.
#[async_trait]
pub trait LogBackend: Send + Sync {
    fn write(&self, s: &CallScope, level: Level, message: &str, fields: &[(String, String)]);
    async fn event(&self, s: &CallScope, ty: EventType, reason: &str, message: &str);
    fn progress(&self, s: &CallScope, percent: u8, message: &str);
}

/// The `clock` interface.
pub trait ClockBackend: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
pub struct SystemClock;

impl ClockBackend for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default()
    }
}

/// One import a phase made, as observers see it (after its capability check passed).
#[derive(Debug, Clone, Copy)]
pub enum Import<'a> {
    Kube { op: KubeOp, ty: &'a ResolvedType, namespace: Option<&'a str>, name: Option<&'a str> },
    Vsphere { op: VsphereOp, server: &'a str },
    State { verb: &'static str, scope: Scope, key: &'a str },
    Snapshot { ty: &'a ResolvedType, namespace: Option<&'a str>, name: &'a str },
    RestoreJournal,
    Event { reason: &'a str, message: &'a str },
}

/// How an import ended, for observers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportResult {
    pub error: Option<String>,
    /// A vSphere ensure that created its object.
    pub created: bool,
    /// Items a restore handled.
    pub items: usize,
}

/// Sees every import of a call: the audit of `vsm-plugin test`, crash injection in the
/// test harness. Not for changing what a call does.
#[async_trait]
pub trait ImportObserver: Send + Sync {
    /// Before the backend is called (it may never return: a simulated crash).
    async fn before(&self, _scope: &CallScope, _import: &Import<'_>) {}
    fn after(&self, _scope: &CallScope, _import: &Import<'_>, _result: &ImportResult) {}
}

/// Every backend one call's imports use, chosen once per call (live or plan mode).
#[derive(Clone)]
pub struct Backends {
    pub kube: Arc<dyn KubeBackend>,
    pub vsphere: Arc<dyn VsphereBackend>,
    pub state: Arc<dyn StateBackend>,
    pub backup: Arc<dyn BackupBackend>,
    pub log: Arc<dyn LogBackend>,
    pub clock: Arc<dyn ClockBackend>,
    pub observer: Option<Arc<dyn ImportObserver>>,
}

impl Backends {
    /// The same backends with an observer.
    pub fn observed(mut self, observer: Arc<dyn ImportObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Backends for a phase that needs none: every call fails, the clock works. For the no-op
/// benchmarks and tests of the sandbox itself.
pub struct Unavailable;

impl Backends {
    pub fn unavailable() -> Backends {
        let none = Arc::new(Unavailable);
        Backends {
            kube: none.clone(),
            vsphere: none.clone(),
            state: none.clone(),
            backup: none.clone(),
            log: none,
            clock: Arc::new(SystemClock),
            observer: None,
        }
    }
}

fn no_cluster() -> KubeError {
    KubeError::Transient("no cluster".into())
}

#[async_trait]
impl KubeBackend for Unavailable {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        Err(KubeError::NotFound(format!("{} {}: no cluster", ty.api_version, ty.kind)))
    }
    async fn get(&self, _: &CallScope, _: &ResolvedType, _: Option<&str>, _: &str) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn list(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn create(&self, _: &CallScope, _: &ResolvedType, _: Option<&str>, _: &str) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn apply(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
        _: &str,
        _: bool,
    ) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn patch(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
        _: PatchType,
        _: &str,
    ) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn replace(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
        _: &str,
    ) -> Result<String, KubeError> {
        Err(no_cluster())
    }
    async fn delete(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
        _: Option<Preconditions>,
    ) -> Result<(), KubeError> {
        Err(no_cluster())
    }
    async fn validate_replace(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
        _: &str,
    ) -> Result<String, KubeError> {
        Err(no_cluster())
    }
}

#[async_trait]
impl VsphereBackend for Unavailable {
    fn route(&self, _: VsphereOp) -> Result<&dyn VsphereBackend, VsphereError> {
        Err(VsphereError::NotFound("no vCenter".into()))
    }
}

#[async_trait]
impl StateBackend for Unavailable {
    async fn get(&self, _: &CallScope, _: Scope, _: &str) -> Option<String> {
        None
    }
    async fn set(&self, _: &CallScope, _: Scope, _: &str, _: &str) -> Result<(), StateError> {
        Err(StateError::Unavailable("no state store".into()))
    }
    async fn delete(&self, _: &CallScope, _: Scope, _: &str) -> Result<(), StateError> {
        Err(StateError::Unavailable("no state store".into()))
    }
}

#[async_trait]
impl BackupBackend for Unavailable {
    async fn snapshot(
        &self,
        _: &CallScope,
        _: &ResolvedType,
        _: Option<&str>,
        _: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        Err(BackupError::Failed("no backup store".into()))
    }
    async fn restore_journal(&self, _: &CallScope) -> Vec<RestoreReport> {
        Vec::new()
    }
}

#[async_trait]
impl LogBackend for Unavailable {
    fn write(&self, _: &CallScope, _: Level, _: &str, _: &[(String, String)]) {}
    async fn event(&self, _: &CallScope, _: EventType, _: &str, _: &str) {}
    fn progress(&self, _: &CallScope, _: u8, _: &str) {}
}
