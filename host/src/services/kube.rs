//! Kubernetes calls on behalf of phases: discovery (apiVersion + kind → resource), the
//! calls themselves on `DynamicObject`s, plan mode (`dryRun=All`), and error mapping to
//! the contract's typed errors.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope as DiscoveryScope;
use serde_json::Value;

use crate::runtime::bindings::{KubeError, ObjectType, PatchType, Preconditions};
use crate::runtime::{KubeOp, ResolvedType};

/// Discovery results, cached for the operator's lifetime (kinds do not move).
#[derive(Clone, Default)]
pub struct Discovery {
    cache: Arc<RwLock<HashMap<(String, String), ResolvedType>>>,
}

impl Discovery {
    pub async fn resolve(&self, client: &kube::Client, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        let key = (ty.api_version.clone(), ty.kind.clone());
        if let Some(hit) = self.cache.read().expect("discovery lock").get(&key) {
            return Ok(hit.clone());
        }
        let (group, version) = match ty.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), ty.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &ty.kind);
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| match map_error(e) {
            KubeError::NotFound(_) => {
                KubeError::NotFound(format!("{} {} is not served by this cluster", ty.api_version, ty.kind))
            }
            other => other,
        })?;
        let resolved = ResolvedType {
            group,
            version,
            kind: ty.kind.clone(),
            resource: ar.plural.clone(),
            namespaced: matches!(caps.scope, DiscoveryScope::Namespaced),
        };
        self.cache.write().expect("discovery lock").insert(key, resolved.clone());
        Ok(resolved)
    }
}

pub fn api_resource(ty: &ResolvedType) -> ApiResource {
    ApiResource {
        group: ty.group.clone(),
        version: ty.version.clone(),
        api_version: if ty.group.is_empty() { ty.version.clone() } else { format!("{}/{}", ty.group, ty.version) },
        kind: ty.kind.clone(),
        plural: ty.resource.clone(),
    }
}

pub fn api(client: &kube::Client, ty: &ResolvedType, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource(ty);
    match namespace {
        Some(ns) if ty.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Map a kube client error to the contract's error.
pub fn map_error(e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(status) => {
            let msg = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            match status.code {
                404 => KubeError::NotFound(msg),
                409 if status.reason == "AlreadyExists" => KubeError::AlreadyExists(msg),
                409 => KubeError::Conflict(msg),
                401 | 403 => KubeError::Forbidden(msg),
                400 | 422 => KubeError::Invalid(msg),
                _ => KubeError::Transient(format!("{} {}: {msg}", status.code, status.reason)),
            }
        }
        other => KubeError::Transient(other.to_string()),
    }
}

fn parse(json: &str) -> Result<Value, KubeError> {
    serde_json::from_str(json).map_err(|e| KubeError::Invalid(format!("malformed JSON from the phase: {e}")))
}

fn to_object(v: Value) -> Result<DynamicObject, KubeError> {
    serde_json::from_value(v).map_err(|e| KubeError::Invalid(format!("not a Kubernetes object: {e}")))
}

fn json_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// The name an operation targets (for create: from the object).
pub fn target_name(op: &KubeOp) -> Option<String> {
    match op {
        KubeOp::Get { name, .. }
        | KubeOp::Apply { name, .. }
        | KubeOp::Patch { name, .. }
        | KubeOp::Replace { name, .. }
        | KubeOp::Delete { name, .. } => Some(name.clone()),
        KubeOp::Create { object, .. } => {
            serde_json::from_str::<Value>(object).ok()?.pointer("/metadata/name")?.as_str().map(str::to_string)
        }
        KubeOp::List { .. } => None,
    }
}

/// Perform one operation. With `dry_run`, mutations are sent with `dryRun=All`: the API
/// server validates and admits them, nothing is persisted.
pub async fn perform(
    client: &kube::Client,
    ty: &ResolvedType,
    op: KubeOp,
    field_manager: &str,
    dry_run: bool,
) -> Result<String, KubeError> {
    let api = api(client, ty, op.namespace());
    match op {
        KubeOp::Get { name, .. } => api.get(&name).await.map(|o| json_of(&o)).map_err(map_error),
        KubeOp::List { label_selector, .. } => {
            let mut lp = ListParams::default();
            if let Some(sel) = &label_selector {
                lp = lp.labels(sel);
            }
            let list = api.list(&lp).await.map_err(map_error)?;
            // Lists come back without apiVersion/kind per item; phases expect full objects.
            let items: Vec<Value> = list
                .items
                .into_iter()
                .map(|o| {
                    let mut v = serde_json::to_value(o).unwrap_or_default();
                    v["apiVersion"] = Value::String(api_resource(ty).api_version);
                    v["kind"] = Value::String(ty.kind.clone());
                    v
                })
                .collect();
            Ok(Value::Array(items).to_string())
        }
        KubeOp::Create { object, .. } => {
            let obj = to_object(parse(&object)?)?;
            let pp = PostParams { dry_run, field_manager: Some(field_manager.to_string()) };
            api.create(&pp, &obj).await.map(|o| json_of(&o)).map_err(map_error)
        }
        KubeOp::Apply { name, object, force, .. } => {
            let mut pp = PatchParams::apply(field_manager);
            if force {
                pp = pp.force();
            }
            if dry_run {
                pp = pp.dry_run();
            }
            api.patch(&name, &pp, &Patch::Apply(parse(&object)?)).await.map(|o| json_of(&o)).map_err(map_error)
        }
        KubeOp::Patch { name, patch_type, patch, .. } => {
            let mut pp = PatchParams { field_manager: Some(field_manager.to_string()), ..Default::default() };
            if dry_run {
                pp = pp.dry_run();
            }
            let body = parse(&patch)?;
            let patch = match patch_type {
                PatchType::Merge => Patch::Merge(body),
                PatchType::Json => Patch::Json(
                    serde_json::from_value(body)
                        .map_err(|e| KubeError::Invalid(format!("not an RFC 6902 JSON patch: {e}")))?,
                ),
            };
            api.patch(&name, &pp, &patch).await.map(|o| json_of(&o)).map_err(map_error)
        }
        KubeOp::Replace { name, object, .. } => {
            let obj = to_object(parse(&object)?)?;
            let pp = PostParams { dry_run, field_manager: Some(field_manager.to_string()) };
            api.replace(&name, &pp, &obj).await.map(|o| json_of(&o)).map_err(map_error)
        }
        KubeOp::Delete { name, preconditions, .. } => {
            let dp =
                DeleteParams { dry_run, preconditions: preconditions.map(to_kube_preconditions), ..Default::default() };
            api.delete(&name, &dp).await.map(|_| "{}".to_string()).map_err(map_error)
        }
    }
}

fn to_kube_preconditions(p: Preconditions) -> kube::api::Preconditions {
    kube::api::Preconditions { uid: p.uid, resource_version: p.resource_version }
}

/// Fields the API server owns; removed before an object is written back from a copy.
pub fn strip_server_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    if let Some(obj) = object.as_object_mut() {
        obj.remove("status");
    }
}
