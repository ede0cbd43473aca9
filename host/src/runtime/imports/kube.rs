//! `kube`: the payload bounded, the type resolved (discovery), the scope checked (a
//! namespaced kind needs a namespace for single objects, a cluster-scoped one never takes
//! one), the RBAC-style grant checked for the verb and namespace; then the kube backend.

use std::sync::Arc;

use wasmtime::Result as WasmResult;

use super::{CallEnv, HostState, MAX_OBJECT_BYTES};
use crate::runtime::backend::{Import, KubeOp, ResolvedType};
use crate::runtime::bindings::vsm::phase::kube;
use crate::runtime::bindings::{KubeError, ObjectType, PatchType, Preconditions};

/// A call that passed every check.
struct Admitted {
    env: Arc<CallEnv>,
    ty: ResolvedType,
}

impl HostState {
    async fn admit_kube(
        &mut self,
        ty: &ObjectType,
        op: KubeOp,
        namespace: Option<&str>,
        payload_len: usize,
    ) -> Result<Admitted, KubeError> {
        let env = self.env().map_err(KubeError::Forbidden)?;
        if payload_len > MAX_OBJECT_BYTES {
            return Err(KubeError::Invalid(format!(
                "payload of {payload_len} bytes exceeds the limit of {MAX_OBJECT_BYTES}"
            )));
        }
        let resolved = env.backends.kube.resolve(ty).await?;
        if let Some(problem) = scope_problem(&resolved, op, namespace) {
            return Err(KubeError::Invalid(problem));
        }
        let verb = op.verb();
        if !env.caps.allows_kube(&resolved.group, &resolved.resource, verb, namespace) {
            let group = if resolved.group.is_empty() { "core" } else { &resolved.group };
            let place = namespace.map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " cluster-wide".into());
            return Err(KubeError::Forbidden(self.deny(&env, format!("{verb} {group}/{}{place}", resolved.resource))));
        }
        Ok(Admitted { env, ty: resolved })
    }
}

impl Admitted {
    fn import<'a>(&'a self, op: KubeOp, namespace: Option<&'a str>, name: Option<&'a str>) -> Import<'a> {
        Import::Kube { op, ty: &self.ty, namespace, name }
    }
}

/// A namespaced kind needs a namespace for single-object calls; a cluster-scoped kind
/// never takes one.
fn scope_problem(ty: &ResolvedType, op: KubeOp, namespace: Option<&str>) -> Option<String> {
    let single = op != KubeOp::List;
    match (ty.namespaced, namespace) {
        (true, None) if single => Some(format!("{} is namespaced: a namespace is required", ty.kind)),
        (false, Some(ns)) => Some(format!("{} is cluster-scoped: namespace {ns} makes no sense", ty.kind)),
        _ => None,
    }
}

/// Admit the call or return its error to the guest.
macro_rules! admit {
    ($self:ident, $ty:expr, $op:expr, $ns:expr, $len:expr) => {
        match $self.admit_kube(&$ty, $op, $ns, $len).await {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl kube::Host for HostState {
    async fn get(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Get, ns, 0);
        let import = a.import(KubeOp::Get, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.get(&a.env.scope, &a.ty, ns, &name).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn list(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::List, ns, 0);
        let import = a.import(KubeOp::List, ns, None);
        a.env.before(&import).await;
        let result = a.env.backends.kube.list(&a.env.scope, &a.ty, ns, label_selector.as_deref()).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn create(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        object: String,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Create, ns, object.len());
        let import = a.import(KubeOp::Create, ns, None);
        a.env.before(&import).await;
        let result = a.env.backends.kube.create(&a.env.scope, &a.ty, ns, &object).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn apply(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        object: String,
        force: bool,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Apply, ns, object.len());
        let import = a.import(KubeOp::Apply, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.apply(&a.env.scope, &a.ty, ns, &name, &object, force).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn patch(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        patch_type: PatchType,
        patch: String,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Patch, ns, patch.len());
        let import = a.import(KubeOp::Patch, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.patch(&a.env.scope, &a.ty, ns, &name, patch_type, &patch).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn replace(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        object: String,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Replace, ns, object.len());
        let import = a.import(KubeOp::Replace, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.replace(&a.env.scope, &a.ty, ns, &name, &object).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn delete(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        preconditions: Option<Preconditions>,
    ) -> WasmResult<Result<(), KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Delete, ns, 0);
        let import = a.import(KubeOp::Delete, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.delete(&a.env.scope, &a.ty, ns, &name, preconditions).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }
}
