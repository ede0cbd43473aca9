//! The host's imports as a trait, so phase logic can run inside a component (against the
//! real host) or natively (against a test double).

use crate::bindings::vsm::phase::{backup, clock, kube, log, state, vsphere};
use crate::{
    AboutInfo, CategoryInfo, CategorySpec, Ensured, EventType, KubeError, Level, ObjectKind, ObjectRef, ObjectType,
    PatchType, Preconditions, PrivilegeReport, RestoreReport, Scope, SnapshotInfo, TagInfo, VmInfo, VsphereError,
};
use backup::BackupError;
use state::StateError;

/// Everything a phase can ask of the host. Mirrors `wit/phase.wit` one to one.
#[allow(missing_docs)]
pub trait Host {
    fn kube_get(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<String, KubeError>;
    fn kube_list(&self, ty: &ObjectType, ns: Option<&str>, selector: Option<&str>) -> Result<String, KubeError>;
    fn kube_create(&self, ty: &ObjectType, ns: Option<&str>, object: &str) -> Result<String, KubeError>;
    fn kube_apply(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        force: bool,
    ) -> Result<String, KubeError>;
    fn kube_patch(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: &str,
    ) -> Result<String, KubeError>;
    fn kube_replace(&self, ty: &ObjectType, ns: Option<&str>, name: &str, object: &str) -> Result<String, KubeError>;
    fn kube_validate_replace(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError>;
    fn kube_delete(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        pre: Option<&Preconditions>,
    ) -> Result<(), KubeError>;

    fn vs_about(&self, server: &str) -> Result<AboutInfo, VsphereError>;
    fn vs_find(&self, server: &str, kind: ObjectKind, path: &str) -> Result<ObjectRef, VsphereError>;
    fn vs_list_vms(&self, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError>;
    fn vs_create_folder(&self, server: &str, path: &str) -> Result<Ensured, VsphereError>;
    fn vs_delete_folder(&self, server: &str, path: &str) -> Result<bool, VsphereError>;
    fn vs_ensure_category(&self, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError>;
    fn vs_ensure_tag(
        &self,
        server: &str,
        category: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError>;
    fn vs_delete_tag(&self, server: &str, tag: &str) -> Result<bool, VsphereError>;
    fn vs_delete_category(&self, server: &str, category: &str) -> Result<bool, VsphereError>;
    fn vs_attach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError>;
    fn vs_detach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError>;
    fn vs_list_attached_tags(&self, server: &str, target: &ObjectRef) -> Result<Vec<TagInfo>, VsphereError>;
    fn vs_user_privileges(&self, server: &str, targets: &[ObjectRef]) -> Result<PrivilegeReport, VsphereError>;
    fn vs_find_category(&self, server: &str, name: &str) -> Result<Option<CategoryInfo>, VsphereError>;
    fn vs_list_tags(&self, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError>;

    fn state_get(&self, scope: Scope, key: &str) -> Option<String>;
    fn state_set(&self, scope: Scope, key: &str, value: &str) -> Result<(), StateError>;
    fn state_delete(&self, scope: Scope, key: &str) -> Result<(), StateError>;

    fn backup_snapshot(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<SnapshotInfo, BackupError>;
    fn backup_restore_journal(&self) -> Vec<RestoreReport>;

    fn log_write(&self, level: Level, message: &str, fields: &[(String, String)]);
    fn log_event(&self, ty: EventType, reason: &str, message: &str);
    fn log_progress(&self, percent: u8, message: &str);

    fn now_ms(&self) -> u64;
}

/// The real host: the component's imports.
pub struct WasmHost;

impl Host for WasmHost {
    fn kube_get(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        kube::get(ty, ns, name)
    }
    fn kube_list(&self, ty: &ObjectType, ns: Option<&str>, selector: Option<&str>) -> Result<String, KubeError> {
        kube::list(ty, ns, selector)
    }
    fn kube_create(&self, ty: &ObjectType, ns: Option<&str>, object: &str) -> Result<String, KubeError> {
        kube::create(ty, ns, object)
    }
    fn kube_apply(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        force: bool,
    ) -> Result<String, KubeError> {
        kube::apply(ty, ns, name, object, force)
    }
    fn kube_patch(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: &str,
    ) -> Result<String, KubeError> {
        kube::patch(ty, ns, name, kind, patch)
    }
    fn kube_replace(&self, ty: &ObjectType, ns: Option<&str>, name: &str, object: &str) -> Result<String, KubeError> {
        kube::replace(ty, ns, name, object)
    }
    fn kube_validate_replace(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        kube::validate_replace(ty, ns, name, object)
    }
    fn kube_delete(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        pre: Option<&Preconditions>,
    ) -> Result<(), KubeError> {
        kube::delete(ty, ns, name, pre)
    }

    fn vs_about(&self, server: &str) -> Result<AboutInfo, VsphereError> {
        vsphere::about(server)
    }
    fn vs_find(&self, server: &str, kind: ObjectKind, path: &str) -> Result<ObjectRef, VsphereError> {
        vsphere::find_object(server, kind, path)
    }
    fn vs_list_vms(&self, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        vsphere::list_vms(server, folder)
    }
    fn vs_create_folder(&self, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        vsphere::create_folder(server, path)
    }
    fn vs_delete_folder(&self, server: &str, path: &str) -> Result<bool, VsphereError> {
        vsphere::delete_folder(server, path)
    }
    fn vs_ensure_category(&self, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        vsphere::ensure_category(server, spec)
    }
    fn vs_ensure_tag(
        &self,
        server: &str,
        category: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        vsphere::ensure_tag(server, category, name, description)
    }
    fn vs_delete_tag(&self, server: &str, tag: &str) -> Result<bool, VsphereError> {
        vsphere::delete_tag(server, tag)
    }
    fn vs_delete_category(&self, server: &str, category: &str) -> Result<bool, VsphereError> {
        vsphere::delete_category(server, category)
    }
    fn vs_attach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        vsphere::attach_tag(server, tag, target)
    }
    fn vs_detach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        vsphere::detach_tag(server, tag, target)
    }
    fn vs_list_attached_tags(&self, server: &str, target: &ObjectRef) -> Result<Vec<TagInfo>, VsphereError> {
        vsphere::list_attached_tags(server, target)
    }
    fn vs_user_privileges(&self, server: &str, targets: &[ObjectRef]) -> Result<PrivilegeReport, VsphereError> {
        vsphere::user_privileges(server, targets)
    }
    fn vs_find_category(&self, server: &str, name: &str) -> Result<Option<CategoryInfo>, VsphereError> {
        vsphere::find_category(server, name)
    }
    fn vs_list_tags(&self, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        vsphere::list_tags(server, category_id)
    }

    fn state_get(&self, scope: Scope, key: &str) -> Option<String> {
        state::get(scope, key)
    }
    fn state_set(&self, scope: Scope, key: &str, value: &str) -> Result<(), StateError> {
        state::set(scope, key, value)
    }
    fn state_delete(&self, scope: Scope, key: &str) -> Result<(), StateError> {
        state::delete(scope, key)
    }

    fn backup_snapshot(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<SnapshotInfo, BackupError> {
        backup::snapshot(ty, ns, name)
    }
    fn backup_restore_journal(&self) -> Vec<RestoreReport> {
        backup::restore_journal()
    }

    fn log_write(&self, level: Level, message: &str, fields: &[(String, String)]) {
        log::write(level, message, fields)
    }
    fn log_event(&self, ty: EventType, reason: &str, message: &str) {
        log::event(ty, reason, message)
    }
    fn log_progress(&self, percent: u8, message: &str) {
        log::progress(percent, message)
    }

    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }
}
