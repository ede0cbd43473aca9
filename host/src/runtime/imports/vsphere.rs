//! `vsphere`: only the migration's own vCenters, only the operation classes granted; then
//! the vsphere backend (credentials never cross into the guest).

use std::sync::Arc;

use wasmtime::Result as WasmResult;

use super::{CallEnv, HostState};
use crate::runtime::backend::{Import, VsphereOp};
use crate::runtime::bindings::vsm::phase::vsphere;
use crate::runtime::bindings::{
    AboutInfo, CategoryInfo, CategorySpec, Ensured, ObjectKind, ObjectRef, PrivilegeReport, TagInfo, VmInfo,
    VsphereError,
};
use crate::runtime::capability::VsphereClass;

/// `user-privileges` answers for at most this many objects per call (the WIT says so).
const MAX_PRIVILEGE_TARGETS: usize = 64;

impl HostState {
    async fn admit_vsphere(&mut self, server: &str, op: VsphereOp) -> Result<Arc<CallEnv>, VsphereError> {
        let env = self.env().map_err(VsphereError::Forbidden)?;
        if !env.servers.iter().any(|s| s == server) {
            let what = format!("use vCenter {server}, which is not part of the migration");
            return Err(VsphereError::Forbidden(self.deny(&env, what)));
        }
        let class = VsphereClass::from(op.capability());
        if !env.caps.allows_vsphere(class) {
            let name =
                serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            return Err(VsphereError::Forbidden(self.deny(&env, format!("{name} on vCenter {server}"))));
        }
        env.before(&Import::Vsphere { op, server }).await;
        Ok(env)
    }
}

/// Admit the call (or return its error to the guest), run it, tell the observer (whether
/// an `ensured` call created its object).
macro_rules! call {
    ($self:ident, $server:ident, $op:expr, |$env:ident| $body:expr) => {
        call!(@run $self, $server, $op, |$env| $body, |_r| false)
    };
    ($self:ident, $server:ident, $op:expr, ensured |$env:ident| $body:expr) => {
        call!(@run $self, $server, $op, |$env| $body, |r| r.as_ref().is_ok_and(|e: &Ensured| e.created))
    };
    (@run $self:ident, $server:ident, $op:expr, |$env:ident| $body:expr, |$r:ident| $created:expr) => {{
        let $env = match $self.admit_vsphere(&$server, $op).await {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        let result = $body.await;
        let $r = &result;
        $env.after(&Import::Vsphere { op: $op, server: &$server }, &result, $created);
        Ok(result)
    }};
}

impl vsphere::Host for HostState {
    async fn about(&mut self, server: String) -> WasmResult<Result<AboutInfo, VsphereError>> {
        call!(self, server, VsphereOp::About, |env| env.backends.vsphere.about(&env.scope, &server))
    }

    async fn find_object(
        &mut self,
        server: String,
        kind: ObjectKind,
        path: String,
    ) -> WasmResult<Result<ObjectRef, VsphereError>> {
        call!(self, server, VsphereOp::FindObject, |env| env
            .backends
            .vsphere
            .find_object(&env.scope, &server, kind, &path))
    }

    async fn list_vms(&mut self, server: String, folder: String) -> WasmResult<Result<Vec<VmInfo>, VsphereError>> {
        call!(self, server, VsphereOp::ListVms, |env| env.backends.vsphere.list_vms(&env.scope, &server, &folder))
    }

    async fn create_folder(&mut self, server: String, path: String) -> WasmResult<Result<Ensured, VsphereError>> {
        call!(
            self,
            server,
            VsphereOp::CreateFolder,
            ensured | env | env.backends.vsphere.create_folder(&env.scope, &server, &path)
        )
    }

    async fn delete_folder(&mut self, server: String, path: String) -> WasmResult<Result<bool, VsphereError>> {
        call!(self, server, VsphereOp::DeleteFolder, |env| env
            .backends
            .vsphere
            .delete_folder(&env.scope, &server, &path))
    }

    async fn ensure_category(
        &mut self,
        server: String,
        spec: CategorySpec,
    ) -> WasmResult<Result<Ensured, VsphereError>> {
        call!(
            self,
            server,
            VsphereOp::EnsureCategory,
            ensured | env | env.backends.vsphere.ensure_category(&env.scope, &server, &spec)
        )
    }

    async fn ensure_tag(
        &mut self,
        server: String,
        category_id: String,
        name: String,
        description: String,
    ) -> WasmResult<Result<Ensured, VsphereError>> {
        call!(
            self,
            server,
            VsphereOp::EnsureTag,
            ensured | env | env.backends.vsphere.ensure_tag(&env.scope, &server, &category_id, &name, &description)
        )
    }

    async fn delete_tag(&mut self, server: String, tag_id: String) -> WasmResult<Result<bool, VsphereError>> {
        call!(self, server, VsphereOp::DeleteTag, |env| env.backends.vsphere.delete_tag(&env.scope, &server, &tag_id))
    }

    async fn delete_category(&mut self, server: String, category_id: String) -> WasmResult<Result<bool, VsphereError>> {
        call!(self, server, VsphereOp::DeleteCategory, |env| env.backends.vsphere.delete_category(
            &env.scope,
            &server,
            &category_id
        ))
    }

    async fn attach_tag(
        &mut self,
        server: String,
        tag_id: String,
        target: ObjectRef,
    ) -> WasmResult<Result<(), VsphereError>> {
        call!(self, server, VsphereOp::AttachTag, |env| env
            .backends
            .vsphere
            .attach_tag(&env.scope, &server, &tag_id, &target))
    }

    async fn detach_tag(
        &mut self,
        server: String,
        tag_id: String,
        target: ObjectRef,
    ) -> WasmResult<Result<(), VsphereError>> {
        call!(self, server, VsphereOp::DetachTag, |env| env
            .backends
            .vsphere
            .detach_tag(&env.scope, &server, &tag_id, &target))
    }

    async fn list_attached_tags(
        &mut self,
        server: String,
        target: ObjectRef,
    ) -> WasmResult<Result<Vec<TagInfo>, VsphereError>> {
        call!(self, server, VsphereOp::ListAttachedTags, |env| env
            .backends
            .vsphere
            .list_attached_tags(&env.scope, &server, &target))
    }

    async fn user_privileges(
        &mut self,
        server: String,
        targets: Vec<ObjectRef>,
    ) -> WasmResult<Result<PrivilegeReport, VsphereError>> {
        if targets.len() > MAX_PRIVILEGE_TARGETS {
            let n = targets.len();
            return Ok(Err(VsphereError::Invalid(format!(
                "user-privileges takes at most {MAX_PRIVILEGE_TARGETS} objects per call, not {n}"
            ))));
        }
        call!(self, server, VsphereOp::UserPrivileges, |env| env
            .backends
            .vsphere
            .user_privileges(&env.scope, &server, &targets))
    }

    async fn find_category(
        &mut self,
        server: String,
        name: String,
    ) -> WasmResult<Result<Option<CategoryInfo>, VsphereError>> {
        call!(self, server, VsphereOp::FindCategory, |env| env
            .backends
            .vsphere
            .find_category(&env.scope, &server, &name))
    }

    async fn list_tags(
        &mut self,
        server: String,
        category_id: String,
    ) -> WasmResult<Result<Vec<TagInfo>, VsphereError>> {
        call!(self, server, VsphereOp::ListTags, |env| env.backends.vsphere.list_tags(
            &env.scope,
            &server,
            &category_id
        ))
    }
}
