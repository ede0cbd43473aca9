//! The runtime's backends over an SDK [`FakeHost`], so a phase component (through
//! the real runtime: sandbox, capability checks, canonical ABI) and the same phase's logic
//! called natively see one and the same in-memory cluster.
//!
//! The host's bindings and the SDK's are generated from the same `wit/phase.wit` but are
//! distinct Rust types: everything crossing is converted field by field.

use std::sync::{Arc, MutexGuard};

use async_trait::async_trait;
use vsm_host::runtime::bindings as h;

use vsm_host::runtime::{
    Backends, BackupBackend, CallScope, ClockBackend, KubeBackend, LogBackend, ResolvedType, StateBackend,
    VsphereBackend,
};
use vsm_sdk::Host;
use vsm_sdk::bindings::vsm::phase::{backup as sb, state as ss};
use vsm_sdk::testing::FakeHost;
use vsm_sdk::testing::kube::namespaced;
use vsm_sdk::testing::plural;

use crate::{SharedHost, lock};

/// Every backend trait served by a [`FakeHost`] (which also does its own checks of the
/// caller's declared capabilities, set by `FakeHost::context_for`).
///
/// Each import locks the host for the one `FakeHost` call it makes and releases it before
/// returning (the guard is a temporary of that statement, never held across an `await`).
/// A `FakeHost` runs its hooks with itself as the argument, so no call re-enters the lock.
pub struct FakeServices {
    host: SharedHost,
}

impl FakeServices {
    pub fn new(host: SharedHost) -> Self {
        FakeServices { host }
    }

    fn host(&self) -> MutexGuard<'_, FakeHost> {
        lock(&self.host)
    }
}

// ----- host bindings → SDK -----

fn object_type(ty: &ResolvedType) -> vsm_sdk::ObjectType {
    let api_version = if ty.group.is_empty() { ty.version.clone() } else { format!("{}/{}", ty.group, ty.version) };
    vsm_sdk::ObjectType { api_version, kind: ty.kind.clone() }
}

fn patch_type(p: h::PatchType) -> vsm_sdk::PatchType {
    match p {
        h::PatchType::Merge => vsm_sdk::PatchType::Merge,
        h::PatchType::Json => vsm_sdk::PatchType::Json,
    }
}

fn object_kind(k: h::ObjectKind) -> vsm_sdk::ObjectKind {
    use vsm_sdk::ObjectKind as S;
    match k {
        h::ObjectKind::Datacenter => S::Datacenter,
        h::ObjectKind::ComputeCluster => S::ComputeCluster,
        h::ObjectKind::Datastore => S::Datastore,
        h::ObjectKind::Network => S::Network,
        h::ObjectKind::ResourcePool => S::ResourcePool,
        h::ObjectKind::Folder => S::Folder,
        h::ObjectKind::VirtualMachine => S::VirtualMachine,
    }
}

fn object_ref(r: &h::ObjectRef) -> vsm_sdk::ObjectRef {
    vsm_sdk::ObjectRef { kind: object_kind(r.kind), moref: r.moref.clone(), path: r.path.clone() }
}

fn category_spec(s: &h::CategorySpec) -> vsm_sdk::CategorySpec {
    vsm_sdk::CategorySpec {
        name: s.name.clone(),
        description: s.description.clone(),
        cardinality: match s.cardinality {
            h::Cardinality::Single => vsm_sdk::Cardinality::Single,
            h::Cardinality::Multiple => vsm_sdk::Cardinality::Multiple,
        },
        associable_types: s.associable_types.clone(),
    }
}

fn scope(s: h::Scope) -> vsm_sdk::Scope {
    match s {
        h::Scope::Phase => vsm_sdk::Scope::Phase,
        h::Scope::Migration => vsm_sdk::Scope::Migration,
    }
}

/// The call context the SDK built, as the runtime passes it.
pub fn call_context(c: &vsm_sdk::CallContext) -> h::CallContext {
    let m = &c.migration;
    h::CallContext {
        migration: h::Migration {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            spec_json: m.spec_json.clone(),
            source_servers: m.source_servers.clone(),
            target_servers: m.target_servers.clone(),
        },
        attempt: c.attempt,
        dry_run: c.dry_run,
        started_at_ms: c.started_at_ms,
    }
}

/// A component's outcome as the SDK spells it, to compare with a native call's.
pub fn outcome(o: &h::Outcome) -> vsm_sdk::Outcome {
    match o {
        h::Outcome::Done(m) => vsm_sdk::Outcome::Done(m.clone()),
        h::Outcome::Wait(w) => vsm_sdk::Outcome::Wait(vsm_sdk::WaitInfo {
            after_ms: w.after_ms,
            progress: w.progress,
            message: w.message.clone(),
        }),
        h::Outcome::Failed(f) => {
            vsm_sdk::Outcome::Failed(vsm_sdk::Failure { message: f.message.clone(), retryable: f.retryable })
        }
    }
}

// ----- SDK → host bindings -----

fn kube_error(e: vsm_sdk::KubeError) -> h::KubeError {
    use vsm_sdk::KubeError as S;
    match e {
        S::NotFound(m) => h::KubeError::NotFound(m),
        S::AlreadyExists(m) => h::KubeError::AlreadyExists(m),
        S::Conflict(m) => h::KubeError::Conflict(m),
        S::Forbidden(m) => h::KubeError::Forbidden(m),
        S::Invalid(m) => h::KubeError::Invalid(m),
        S::Transient(m) => h::KubeError::Transient(m),
    }
}

fn vsphere_error(e: vsm_sdk::VsphereError) -> h::VsphereError {
    use vsm_sdk::VsphereError as S;
    match e {
        S::NotFound(m) => h::VsphereError::NotFound(m),
        S::AlreadyExists(m) => h::VsphereError::AlreadyExists(m),
        S::PermissionDenied(m) => h::VsphereError::PermissionDenied(m),
        S::AuthFailed(m) => h::VsphereError::AuthFailed(m),
        S::Transient(m) => h::VsphereError::Transient(m),
        S::Timeout(m) => h::VsphereError::Timeout(m),
        S::Tls(m) => h::VsphereError::Tls(m),
        S::Forbidden(m) => h::VsphereError::Forbidden(m),
        S::Invalid(m) => h::VsphereError::Invalid(m),
    }
}

fn state_error(e: ss::StateError) -> h::StateError {
    match e {
        ss::StateError::TooLarge(m) => h::StateError::TooLarge(m),
        ss::StateError::Unavailable(m) => h::StateError::Unavailable(m),
    }
}

fn backup_error(e: sb::BackupError) -> h::BackupError {
    match e {
        sb::BackupError::NotFound(m) => h::BackupError::NotFound(m),
        sb::BackupError::TooLarge(m) => h::BackupError::TooLarge(m),
        sb::BackupError::Corrupt(m) => h::BackupError::Corrupt(m),
        sb::BackupError::Forbidden(m) => h::BackupError::Forbidden(m),
        sb::BackupError::Failed(m) => h::BackupError::Failed(m),
    }
}

fn host_kind(k: vsm_sdk::ObjectKind) -> h::ObjectKind {
    use vsm_sdk::ObjectKind as S;
    match k {
        S::Datacenter => h::ObjectKind::Datacenter,
        S::ComputeCluster => h::ObjectKind::ComputeCluster,
        S::Datastore => h::ObjectKind::Datastore,
        S::Network => h::ObjectKind::Network,
        S::ResourcePool => h::ObjectKind::ResourcePool,
        S::Folder => h::ObjectKind::Folder,
        S::VirtualMachine => h::ObjectKind::VirtualMachine,
    }
}

fn host_ref(r: vsm_sdk::ObjectRef) -> h::ObjectRef {
    h::ObjectRef { kind: host_kind(r.kind), moref: r.moref, path: r.path }
}

fn ensured(e: vsm_sdk::Ensured) -> h::Ensured {
    h::Ensured { id: e.id, created: e.created }
}

fn tag_info(t: vsm_sdk::TagInfo) -> h::TagInfo {
    h::TagInfo {
        id: t.id,
        name: t.name,
        category_id: t.category_id,
        category_name: t.category_name,
        cardinality: cardinality(t.cardinality),
    }
}

fn cardinality(c: vsm_sdk::Cardinality) -> h::Cardinality {
    match c {
        vsm_sdk::Cardinality::Single => h::Cardinality::Single,
        vsm_sdk::Cardinality::Multiple => h::Cardinality::Multiple,
    }
}

impl FakeServices {
    /// One [`Backends`] set, every interface served by this host.
    pub fn backends(self) -> Backends {
        let this = Arc::new(self);
        Backends {
            kube: this.clone(),
            vsphere: this.clone(),
            state: this.clone(),
            backup: this.clone(),
            log: this.clone(),
            clock: this,
            observer: None,
        }
    }
}

#[async_trait]
impl KubeBackend for FakeServices {
    async fn resolve(&self, ty: &h::ObjectType) -> Result<ResolvedType, h::KubeError> {
        let (group, version) = match ty.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), ty.api_version.clone()),
        };
        Ok(ResolvedType {
            group,
            version,
            kind: ty.kind.clone(),
            resource: plural(&ty.kind),
            namespaced: namespaced(&ty.kind),
        })
    }
    async fn get(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<String, h::KubeError> {
        self.host().kube_get(&object_type(ty), ns, name).map_err(kube_error)
    }
    async fn list(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        sel: Option<&str>,
    ) -> Result<String, h::KubeError> {
        self.host().kube_list(&object_type(ty), ns, sel).map_err(kube_error)
    }
    async fn create(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        o: &str,
    ) -> Result<String, h::KubeError> {
        self.host().kube_create(&object_type(ty), ns, o).map_err(kube_error)
    }
    async fn apply(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        o: &str,
        force: bool,
    ) -> Result<String, h::KubeError> {
        self.host().kube_apply(&object_type(ty), ns, name, o, force).map_err(kube_error)
    }
    async fn patch(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        p: h::PatchType,
        patch: &str,
    ) -> Result<String, h::KubeError> {
        self.host().kube_patch(&object_type(ty), ns, name, patch_type(p), patch).map_err(kube_error)
    }
    async fn replace(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        o: &str,
    ) -> Result<String, h::KubeError> {
        self.host().kube_replace(&object_type(ty), ns, name, o).map_err(kube_error)
    }
    async fn delete(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        pre: Option<h::Preconditions>,
    ) -> Result<(), h::KubeError> {
        let pre = pre.map(|p| vsm_sdk::Preconditions { uid: p.uid, resource_version: p.resource_version });
        self.host().kube_delete(&object_type(ty), ns, name, pre.as_ref()).map_err(kube_error)
    }
    async fn validate_replace(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        o: &str,
    ) -> Result<String, h::KubeError> {
        self.host().kube_validate_replace(&object_type(ty), ns, name, o).map_err(kube_error)
    }
}

#[async_trait]
impl VsphereBackend for FakeServices {
    async fn about(&self, _: &CallScope, server: &str) -> Result<h::AboutInfo, h::VsphereError> {
        self.host()
            .vs_about(server)
            .map(|a| h::AboutInfo {
                product: a.product,
                version: a.version,
                api_version: a.api_version,
                instance_uuid: a.instance_uuid,
            })
            .map_err(vsphere_error)
    }
    async fn find_object(
        &self,
        _: &CallScope,
        server: &str,
        kind: h::ObjectKind,
        path: &str,
    ) -> Result<h::ObjectRef, h::VsphereError> {
        self.host().vs_find(server, object_kind(kind), path).map(host_ref).map_err(vsphere_error)
    }
    async fn list_vms(&self, _: &CallScope, server: &str, folder: &str) -> Result<Vec<h::VmInfo>, h::VsphereError> {
        let vms = self.host().vs_list_vms(server, folder).map_err(vsphere_error)?;
        Ok(vms
            .into_iter()
            .map(|v| h::VmInfo {
                name: v.name,
                moref: v.moref,
                path: v.path,
                uuid: v.uuid,
                power_state: v.power_state,
                template: v.template,
            })
            .collect())
    }
    async fn create_folder(&self, _: &CallScope, server: &str, path: &str) -> Result<h::Ensured, h::VsphereError> {
        self.host().vs_create_folder(server, path).map(ensured).map_err(vsphere_error)
    }
    async fn delete_folder(&self, _: &CallScope, server: &str, path: &str) -> Result<bool, h::VsphereError> {
        self.host().vs_delete_folder(server, path).map_err(vsphere_error)
    }
    async fn ensure_category(
        &self,
        _: &CallScope,
        server: &str,
        spec: &h::CategorySpec,
    ) -> Result<h::Ensured, h::VsphereError> {
        self.host().vs_ensure_category(server, &category_spec(spec)).map(ensured).map_err(vsphere_error)
    }
    async fn ensure_tag(
        &self,
        _: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<h::Ensured, h::VsphereError> {
        self.host().vs_ensure_tag(server, category_id, name, description).map(ensured).map_err(vsphere_error)
    }
    async fn delete_tag(&self, _: &CallScope, server: &str, tag_id: &str) -> Result<bool, h::VsphereError> {
        self.host().vs_delete_tag(server, tag_id).map_err(vsphere_error)
    }
    async fn delete_category(&self, _: &CallScope, server: &str, id: &str) -> Result<bool, h::VsphereError> {
        self.host().vs_delete_category(server, id).map_err(vsphere_error)
    }
    async fn attach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &h::ObjectRef,
    ) -> Result<(), h::VsphereError> {
        self.host().vs_attach_tag(server, tag_id, &object_ref(target)).map_err(vsphere_error)
    }
    async fn detach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &h::ObjectRef,
    ) -> Result<(), h::VsphereError> {
        self.host().vs_detach_tag(server, tag_id, &object_ref(target)).map_err(vsphere_error)
    }
    async fn list_attached_tags(
        &self,
        _: &CallScope,
        server: &str,
        target: &h::ObjectRef,
    ) -> Result<Vec<h::TagInfo>, h::VsphereError> {
        let tags = self.host().vs_list_attached_tags(server, &object_ref(target)).map_err(vsphere_error)?;
        Ok(tags.into_iter().map(tag_info).collect())
    }
    async fn user_privileges(
        &self,
        _: &CallScope,
        server: &str,
        targets: &[h::ObjectRef],
    ) -> Result<h::PrivilegeReport, h::VsphereError> {
        let targets: Vec<_> = targets.iter().map(object_ref).collect();
        let r = self.host().vs_user_privileges(server, &targets).map_err(vsphere_error)?;
        Ok(h::PrivilegeReport {
            defined: r.defined,
            entities: r
                .entities
                .into_iter()
                .map(|e| h::EntityPrivileges { moref: e.moref, privileges: e.privileges })
                .collect(),
        })
    }
    async fn find_category(
        &self,
        _: &CallScope,
        server: &str,
        name: &str,
    ) -> Result<Option<h::CategoryInfo>, h::VsphereError> {
        let c = self.host().vs_find_category(server, name).map_err(vsphere_error)?;
        Ok(c.map(|c| h::CategoryInfo {
            id: c.id,
            name: c.name,
            description: c.description,
            cardinality: cardinality(c.cardinality),
            associable_types: c.associable_types,
        }))
    }
    async fn list_tags(
        &self,
        _: &CallScope,
        server: &str,
        category_id: &str,
    ) -> Result<Vec<h::TagInfo>, h::VsphereError> {
        let tags = self.host().vs_list_tags(server, category_id).map_err(vsphere_error)?;
        Ok(tags.into_iter().map(tag_info).collect())
    }
}

#[async_trait]
impl StateBackend for FakeServices {
    async fn get(&self, _: &CallScope, which: h::Scope, key: &str) -> Option<String> {
        self.host().state_get(scope(which), key)
    }
    async fn set(&self, _: &CallScope, which: h::Scope, key: &str, value: &str) -> Result<(), h::StateError> {
        self.host().state_set(scope(which), key, value).map_err(state_error)
    }
    async fn delete(&self, _: &CallScope, which: h::Scope, key: &str) -> Result<(), h::StateError> {
        self.host().state_delete(scope(which), key).map_err(state_error)
    }
}

#[async_trait]
impl BackupBackend for FakeServices {
    async fn snapshot(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<h::SnapshotInfo, h::BackupError> {
        self.host()
            .backup_snapshot(&object_type(ty), namespace, name)
            .map(|s| h::SnapshotInfo { name: s.name, sha256: s.sha256, size: s.size, created: s.created })
            .map_err(backup_error)
    }
    async fn restore_journal(&self, _: &CallScope) -> Vec<h::RestoreReport> {
        self.host()
            .backup_restore_journal()
            .into_iter()
            .map(|r| h::RestoreReport { subject: r.subject, error: r.error })
            .collect()
    }
}

#[async_trait]
impl LogBackend for FakeServices {
    fn write(&self, _: &CallScope, level: h::Level, message: &str, fields: &[(String, String)]) {
        let level = match level {
            h::Level::Debug => vsm_sdk::Level::Debug,
            h::Level::Info => vsm_sdk::Level::Info,
            h::Level::Warn => vsm_sdk::Level::Warn,
            h::Level::Error => vsm_sdk::Level::Error,
        };
        self.host().log_write(level, message, fields)
    }
    async fn event(&self, _: &CallScope, ty: h::EventType, reason: &str, message: &str) {
        let ty = match ty {
            h::EventType::Normal => vsm_sdk::EventType::Normal,
            h::EventType::Warning => vsm_sdk::EventType::Warning,
        };
        self.host().log_event(ty, reason, message)
    }
    fn progress(&self, _: &CallScope, percent: u8, message: &str) {
        self.host().log_progress(percent, message)
    }
}

impl ClockBackend for FakeServices {
    fn now_ms(&self) -> u64 {
        self.host().now_ms()
    }
}
