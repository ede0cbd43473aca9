//! `kube`: the payload bounded, the namespace and name checked as Kubernetes names (they
//! become parts of a request path), the type resolved (discovery), the scope checked (a
//! namespaced kind needs a namespace for single objects, a cluster-scoped one never takes
//! one), the RBAC-style grant checked for the verb and namespace; then the kube backend.

use std::sync::Arc;

use wasmtime::Result as WasmResult;

use super::{CallEnv, HostState, MAX_OBJECT_BYTES, truncate};
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
        name: Option<&str>,
        payload_len: usize,
    ) -> Result<Admitted, KubeError> {
        let env = self.env().map_err(KubeError::Forbidden)?;
        if payload_len > MAX_OBJECT_BYTES {
            return Err(KubeError::Invalid(format!(
                "payload of {payload_len} bytes exceeds the limit of {MAX_OBJECT_BYTES}"
            )));
        }
        if let Some(problem) = path_problem(namespace, name) {
            return Err(KubeError::Invalid(problem));
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

impl HostState {
    /// Server-side apply creates an object that does not exist, and the API server asks for
    /// `create` then, not `patch`: so does the grant. Without `create`, the object is looked
    /// up first (an apply that only updates needs no more than `patch`). Left: an object
    /// deleted between the look-up and the apply is created.
    async fn apply_may_create(&mut self, a: &Admitted, ns: Option<&str>, name: &str) -> Result<(), KubeError> {
        let (group, resource) = (&a.ty.group, &a.ty.resource);
        if a.env.caps.allows_kube(group, resource, "create", ns) {
            return Ok(());
        }
        match a.env.backends.kube.get(&a.env.scope, &a.ty, ns, name).await {
            Ok(_) => Ok(()),
            Err(KubeError::NotFound(_)) => {
                let group = if group.is_empty() { "core" } else { group };
                let place = ns.map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " cluster-wide".into());
                let what = format!("create {group}/{resource}{place} (apply of {name}, which does not exist)");
                Err(KubeError::Forbidden(self.deny(&a.env, what)))
            }
            Err(e) => Err(e),
        }
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

/// The longest object name the API server accepts (a DNS subdomain's length).
const MAX_NAME: usize = 253;

/// What the API server requires of the parts of a request path a plugin names: a namespace
/// is a DNS label (RFC 1123: at most 63 lower-case letters, digits and `-`, starting and
/// ending with a letter or digit); an object name is a valid path segment (not `.` or `..`,
/// no `/` or `%`; `IsValidPathSegmentName`, the rule every kind's names follow) of at most
/// 253 bytes. Anything else could address another path than the one checked.
fn path_problem(namespace: Option<&str>, name: Option<&str>) -> Option<String> {
    let label = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if let Some(ns) = namespace.filter(|ns| !label(ns)) {
        return Some(format!(
            "namespace {:?} is not a namespace name (a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit)",
            truncate(ns, 80)
        ));
    }
    let segment = |n: &str| !n.is_empty() && n.len() <= MAX_NAME && n != "." && n != ".." && !n.contains(['/', '%']);
    if let Some(n) = name.filter(|n| !segment(n)) {
        return Some(format!(
            "name {:?} is not an object name (1 to {MAX_NAME} bytes, not '.' or '..', without '/' or '%')",
            truncate(n, 80)
        ));
    }
    None
}

/// Admit the call or return its error to the guest.
macro_rules! admit {
    ($self:ident, $ty:expr, $op:expr, $ns:expr, $name:expr, $len:expr) => {
        match $self.admit_kube(&$ty, $op, $ns, $name, $len).await {
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
        let a = admit!(self, ty, KubeOp::Get, ns, Some(&name), 0);
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
        let a = admit!(self, ty, KubeOp::List, ns, None, 0);
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
        let a = admit!(self, ty, KubeOp::Create, ns, None, object.len());
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
        let a = admit!(self, ty, KubeOp::Apply, ns, Some(&name), object.len());
        if let Err(e) = self.apply_may_create(&a, ns, &name).await {
            return Ok(Err(e));
        }
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
        let a = admit!(self, ty, KubeOp::Patch, ns, Some(&name), patch.len());
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
        let a = admit!(self, ty, KubeOp::Replace, ns, Some(&name), object.len());
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
        let a = admit!(self, ty, KubeOp::Delete, ns, Some(&name), 0);
        let import = a.import(KubeOp::Delete, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.delete(&a.env.scope, &a.ty, ns, &name, preconditions).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }

    async fn validate_replace(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        object: String,
    ) -> WasmResult<Result<String, KubeError>> {
        let ns = namespace.as_deref();
        let a = admit!(self, ty, KubeOp::Validate, ns, Some(&name), object.len());
        let import = a.import(KubeOp::Validate, ns, Some(&name));
        a.env.before(&import).await;
        let result = a.env.backends.kube.validate_replace(&a.env.scope, &a.ty, ns, &name, &object).await;
        a.env.after(&import, &result, false);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_names_that_would_change_the_request_path_are_refused() {
        assert_eq!(path_problem(Some("openshift-machine-api"), Some("vsm-test-x7k2p-worker-0")), None);
        assert_eq!(path_problem(None, Some("system:controller:node-controller")), None, "':' is a valid name");
        assert_eq!(path_problem(Some("a"), Some(&"n".repeat(MAX_NAME))), None);
        for ns in ["", "a/b", "..", "Upper", "-a", "a-", "a.b", &"a".repeat(64)] {
            let p = path_problem(Some(ns), Some("x")).unwrap_or_else(|| panic!("namespace {ns:?} accepted"));
            assert!(p.starts_with("namespace "), "{p}");
        }
        for name in ["", ".", "..", "a/b", "../secrets", "a%2Fb", &"n".repeat(MAX_NAME + 1)] {
            let p = path_problem(Some("a"), Some(name)).unwrap_or_else(|| panic!("name {name:?} accepted"));
            assert!(p.starts_with("name "), "{p}");
        }
        // The guest's string is bounded in the message.
        let p = path_problem(Some(&"A".repeat(10_000)), None).unwrap();
        assert!(p.len() < 300, "{} bytes", p.len());
    }
}
