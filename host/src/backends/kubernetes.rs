//! The live Kubernetes backend: discovery (apiVersion + kind → resource), the calls
//! themselves on `DynamicObject`s (with `dryRun=All` for plan mode's validation), and error
//! mapping to the contract's typed errors. Its client is the operator's fenced one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope as DiscoveryScope;
use kube::error::DiscoveryError;
use serde_json::Value;

use async_trait::async_trait;

use super::Outputs;
use crate::runtime::bindings::{KubeError, ObjectType, PatchType, Preconditions};
use crate::runtime::{CallScope, KubeBackend, ResolvedType};

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
        kube::Error::Service(e) if e.is::<super::fencing::NotLeader>() => KubeError::Transient(e.to_string()),
        // Discovery answered, and the kind is not there: as final as a 404.
        kube::Error::Discovery(
            e @ (DiscoveryError::MissingKind(_)
            | DiscoveryError::MissingApiGroup(_)
            | DiscoveryError::MissingResource(_)),
        ) => KubeError::NotFound(e.to_string()),
        other => KubeError::Transient(other.to_string()),
    }
}

pub(super) fn parse(json: &str) -> Result<Value, KubeError> {
    serde_json::from_str(json).map_err(|e| KubeError::Invalid(format!("malformed JSON from the phase: {e}")))
}

fn to_object(v: Value) -> Result<DynamicObject, KubeError> {
    serde_json::from_value(v).map_err(|e| KubeError::Invalid(format!("not a Kubernetes object: {e}")))
}

fn json_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// An object as JSON, or None if there is none.
pub async fn get_json(
    client: &kube::Client,
    ty: &ResolvedType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, KubeError> {
    match api(client, ty, namespace).get_opt(name).await.map_err(map_error)? {
        Some(o) => Ok(Some(serde_json::to_value(o).map_err(|e| KubeError::Transient(e.to_string()))?)),
        None => Ok(None),
    }
}

/// The name a created object carries.
pub fn name_of(object: &str) -> Option<String> {
    serde_json::from_str::<Value>(object).ok()?.pointer("/metadata/name")?.as_str().map(str::to_string)
}

/// The Kubernetes API itself: each call one request on behalf of the phase, with the
/// phase's own field manager. With `dry_run`, mutations are sent with `dryRun=All`: the
/// API server validates and admits them, nothing is persisted (plan mode's validation).
pub struct LiveKube {
    pub client: kube::Client,
    pub discovery: Discovery,
    pub outputs: Outputs,
    pub dry_run: bool,
}

fn manager(s: &CallScope) -> String {
    format!("vsm-phase-{}", s.phase.to_lowercase())
}

#[async_trait]
impl KubeBackend for LiveKube {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        self.discovery.resolve(&self.client, ty).await
    }

    async fn get(&self, _: &CallScope, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        self.outputs.count_kube();
        api(&self.client, ty, ns).get(name).await.map(|o| json_of(&o)).map_err(map_error)
    }

    async fn list(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<String, KubeError> {
        self.outputs.count_kube();
        let mut lp = ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        let list = api(&self.client, ty, ns).list(&lp).await.map_err(map_error)?;
        // Lists come back without apiVersion/kind per item; phases expect full objects.
        let api_version = api_resource(ty).api_version;
        let items: Vec<Value> = list
            .items
            .into_iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                v["apiVersion"] = Value::String(api_version.clone());
                v["kind"] = Value::String(ty.kind.clone());
                v
            })
            .collect();
        Ok(Value::Array(items).to_string())
    }

    async fn create(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        object: &str,
    ) -> Result<String, KubeError> {
        self.outputs.count_kube();
        let obj = to_object(parse(object)?)?;
        let pp = PostParams { dry_run: self.dry_run, field_manager: Some(manager(s)) };
        api(&self.client, ty, ns).create(&pp, &obj).await.map(|o| json_of(&o)).map_err(map_error)
    }

    async fn apply(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        force: bool,
    ) -> Result<String, KubeError> {
        self.outputs.count_kube();
        let mut pp = PatchParams::apply(&manager(s));
        if force {
            pp = pp.force();
        }
        if self.dry_run {
            pp = pp.dry_run();
        }
        let patch = Patch::Apply(parse(object)?);
        api(&self.client, ty, ns).patch(name, &pp, &patch).await.map(|o| json_of(&o)).map_err(map_error)
    }

    async fn patch(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &str,
    ) -> Result<String, KubeError> {
        self.outputs.count_kube();
        let mut pp = PatchParams { field_manager: Some(manager(s)), ..Default::default() };
        if self.dry_run {
            pp = pp.dry_run();
        }
        let body = parse(patch)?;
        let patch = match patch_type {
            PatchType::Merge => Patch::Merge(body),
            PatchType::Json => Patch::Json(
                serde_json::from_value(body)
                    .map_err(|e| KubeError::Invalid(format!("not an RFC 6902 JSON patch: {e}")))?,
            ),
        };
        api(&self.client, ty, ns).patch(name, &pp, &patch).await.map(|o| json_of(&o)).map_err(map_error)
    }

    async fn replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.put(s, ty, ns, name, object, self.dry_run).await
    }

    async fn delete(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        preconditions: Option<Preconditions>,
    ) -> Result<(), KubeError> {
        self.outputs.count_kube();
        let dp = DeleteParams {
            dry_run: self.dry_run,
            preconditions: preconditions.map(to_kube_preconditions),
            ..Default::default()
        };
        api(&self.client, ty, ns).delete(name, &dp).await.map(|_| ()).map_err(map_error)
    }

    async fn validate_replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.put(s, ty, ns, name, object, true).await
    }
}

impl LiveKube {
    /// A replace (PUT), stored unless `dry_run`.
    async fn put(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        dry_run: bool,
    ) -> Result<String, KubeError> {
        self.outputs.count_kube();
        let obj = to_object(parse(object)?)?;
        let pp = PostParams { dry_run, field_manager: Some(manager(s)) };
        api(&self.client, ty, ns).replace(name, &pp, &obj).await.map(|o| json_of(&o)).map_err(map_error)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_discovery_does_not_find_is_not_found_not_transient() {
        for e in [
            DiscoveryError::MissingKind("CloudCredential".into()),
            DiscoveryError::MissingApiGroup("operator.openshift.io".into()),
            DiscoveryError::MissingResource("cloudcredentials".into()),
        ] {
            assert!(matches!(map_error(kube::Error::Discovery(e)), KubeError::NotFound(_)));
        }
        let other = map_error(kube::Error::Discovery(DiscoveryError::EmptyApiGroup("x".into())));
        assert!(matches!(other, KubeError::Transient(_)), "{other:?}");
    }
}
