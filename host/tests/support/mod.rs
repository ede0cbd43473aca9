//! Test doubles for the runtime's services: an in-memory object store and a log of every
//! call that reached the host. Only for the runtime's own tests; the real services are
//! tested against the real test environment.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use vsm_host::runtime::bindings::*;
use vsm_host::runtime::{
    Backends, BackupBackend, CallScope, ClockBackend, KubeBackend, LogBackend, ResolvedType, StateBackend,
    VsphereBackend,
};
use vsm_sdk::patch::merge_patch;

/// The test components built by `cargo xtask plugins`.
pub fn test_component(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `cargo xtask plugins` (or `cargo xtask test`)", path.display());
    path
}

#[derive(Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<String>>,
    objects: Mutex<BTreeMap<(String, String, String), Value>>,
    state: Mutex<BTreeMap<String, String>>,
    /// The phase of every state call's scope.
    state_phases: Mutex<std::collections::BTreeSet<String>>,
    next_id: Mutex<u64>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// The phases whose state the calls used.
    pub fn state_phases(&self) -> Vec<String> {
        self.state_phases.lock().unwrap().iter().cloned().collect()
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, what: impl Into<String>) {
        self.calls.lock().unwrap().push(what.into());
    }

    fn id(&self, prefix: &str) -> String {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        format!("{prefix}-{n}")
    }
}

fn key(ty: &ResolvedType, ns: Option<&str>, name: &str) -> (String, String, String) {
    (ty.resource.clone(), ns.unwrap_or_default().to_string(), name.to_string())
}

impl Recorder {
    /// Every interface served by this recorder.
    pub fn backends(self: &Arc<Self>) -> Backends {
        Backends {
            kube: self.clone(),
            vsphere: self.clone(),
            state: self.clone(),
            backup: self.clone(),
            log: self.clone(),
            clock: self.clone(),
            observer: None,
        }
    }

    fn object_call(&self, verb: &str, ty: &ResolvedType) {
        self.record(format!("kube.{verb} {}", ty.resource));
    }

    fn upsert(&self, ty: &ResolvedType, ns: Option<&str>, name: &str, body: &str) -> Result<String, KubeError> {
        let o: Value = serde_json::from_str(body).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let mut objects = self.objects.lock().unwrap();
        let entry = objects.entry(key(ty, ns, name)).or_insert(json!({}));
        merge_patch(entry, &o);
        Ok(entry.to_string())
    }

    fn vsphere_call(&self, op: &str, server: &str) {
        self.record(format!("vsphere.{op} {server}"));
    }

    fn ensured(&self) -> Ensured {
        Ensured { id: self.id("urn"), created: true }
    }
}

#[async_trait]
impl KubeBackend for Recorder {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        let (group, version) = match ty.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), ty.api_version.clone()),
        };
        let namespaced = !matches!(ty.kind.as_str(), "Node" | "Infrastructure" | "ClusterOperator");
        Ok(ResolvedType {
            group,
            version,
            kind: ty.kind.clone(),
            resource: format!("{}s", ty.kind.to_lowercase()),
            namespaced,
        })
    }
    async fn get(&self, _: &CallScope, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        self.object_call("get", ty);
        let objects = self.objects.lock().unwrap();
        objects.get(&key(ty, ns, name)).map(|o| o.to_string()).ok_or(KubeError::NotFound(name.into()))
    }
    async fn list(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        _: Option<&str>,
    ) -> Result<String, KubeError> {
        self.object_call("list", ty);
        let ns = ns.unwrap_or_default();
        let objects = self.objects.lock().unwrap();
        let items: Vec<&Value> = objects
            .iter()
            .filter(|((r, n, _), _)| *r == ty.resource && (ns.is_empty() || *n == ns))
            .map(|(_, v)| v)
            .collect();
        Ok(json!(items).to_string())
    }
    async fn create(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        object: &str,
    ) -> Result<String, KubeError> {
        self.object_call("create", ty);
        let o: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let name = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut objects = self.objects.lock().unwrap();
        let k = key(ty, ns, &name);
        if objects.contains_key(&k) {
            return Err(KubeError::AlreadyExists(name));
        }
        objects.insert(k, o.clone());
        Ok(o.to_string())
    }
    async fn apply(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        _: bool,
    ) -> Result<String, KubeError> {
        self.object_call("patch", ty);
        self.upsert(ty, ns, name, object)
    }
    async fn patch(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        _: PatchType,
        patch: &str,
    ) -> Result<String, KubeError> {
        self.object_call("patch", ty);
        if !self.objects.lock().unwrap().contains_key(&key(ty, ns, name)) {
            return Err(KubeError::NotFound(name.into()));
        }
        self.upsert(ty, ns, name, patch)
    }
    async fn replace(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.object_call("update", ty);
        self.upsert(ty, ns, name, object)
    }
    async fn delete(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        _: Option<Preconditions>,
    ) -> Result<(), KubeError> {
        self.object_call("delete", ty);
        self.objects.lock().unwrap().remove(&key(ty, ns, name)).map(|_| ()).ok_or(KubeError::NotFound(name.into()))
    }
    async fn validate_replace(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.object_call("validate", ty);
        if !self.objects.lock().unwrap().contains_key(&key(ty, ns, name)) {
            return Err(KubeError::NotFound(name.into()));
        }
        Ok(object.to_string())
    }
}

#[async_trait]
impl VsphereBackend for Recorder {
    async fn about(&self, _: &CallScope, server: &str) -> Result<AboutInfo, VsphereError> {
        self.vsphere_call("about", server);
        Ok(AboutInfo {
            product: "sim".into(),
            version: "8.0.3".into(),
            api_version: "8.0.3.0".into(),
            instance_uuid: "uuid".into(),
        })
    }
    async fn find_object(
        &self,
        _: &CallScope,
        server: &str,
        kind: ObjectKind,
        path: &str,
    ) -> Result<ObjectRef, VsphereError> {
        self.vsphere_call("findObject", server);
        Ok(ObjectRef { kind, moref: "datacenter-1".into(), path: path.into() })
    }
    async fn list_vms(&self, _: &CallScope, server: &str, _: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.vsphere_call("listVms", server);
        Ok(vec![])
    }
    async fn create_folder(&self, _: &CallScope, server: &str, _: &str) -> Result<Ensured, VsphereError> {
        self.vsphere_call("createFolder", server);
        Ok(self.ensured())
    }
    async fn delete_folder(&self, _: &CallScope, server: &str, _: &str) -> Result<bool, VsphereError> {
        self.vsphere_call("deleteFolder", server);
        Ok(true)
    }
    async fn ensure_category(&self, _: &CallScope, server: &str, _: &CategorySpec) -> Result<Ensured, VsphereError> {
        self.vsphere_call("ensureCategory", server);
        Ok(self.ensured())
    }
    async fn ensure_tag(
        &self,
        _: &CallScope,
        server: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Ensured, VsphereError> {
        self.vsphere_call("ensureTag", server);
        Ok(self.ensured())
    }
    async fn delete_tag(&self, _: &CallScope, server: &str, _: &str) -> Result<bool, VsphereError> {
        self.vsphere_call("deleteTag", server);
        Ok(true)
    }
    async fn delete_category(&self, _: &CallScope, server: &str, _: &str) -> Result<bool, VsphereError> {
        self.vsphere_call("deleteCategory", server);
        Ok(true)
    }
    async fn attach_tag(&self, _: &CallScope, server: &str, _: &str, _: &ObjectRef) -> Result<(), VsphereError> {
        self.vsphere_call("attachTag", server);
        Ok(())
    }
    async fn detach_tag(&self, _: &CallScope, server: &str, _: &str, _: &ObjectRef) -> Result<(), VsphereError> {
        self.vsphere_call("detachTag", server);
        Ok(())
    }
    async fn list_attached_tags(
        &self,
        _: &CallScope,
        server: &str,
        _: &ObjectRef,
    ) -> Result<Vec<TagInfo>, VsphereError> {
        self.vsphere_call("listAttachedTags", server);
        Ok(vec![])
    }
}

#[async_trait]
impl StateBackend for Recorder {
    async fn get(&self, s: &CallScope, which: Scope, key: &str) -> Option<String> {
        self.state_phases.lock().unwrap().insert(s.phase.clone());
        self.record(format!("state.get {which:?}"));
        self.state.lock().unwrap().get(&format!("{which:?}/{key}")).cloned()
    }
    async fn set(&self, s: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError> {
        self.state_phases.lock().unwrap().insert(s.phase.clone());
        self.record(format!("state.set {which:?}"));
        self.state.lock().unwrap().insert(format!("{which:?}/{key}"), value.to_string());
        Ok(())
    }
    async fn delete(&self, s: &CallScope, which: Scope, key: &str) -> Result<(), StateError> {
        self.state_phases.lock().unwrap().insert(s.phase.clone());
        self.record(format!("state.delete {which:?}"));
        self.state.lock().unwrap().remove(&format!("{which:?}/{key}"));
        Ok(())
    }
}

#[async_trait]
impl BackupBackend for Recorder {
    async fn snapshot(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        _: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        self.record(format!("backup.snapshot {}", ty.resource));
        Ok(SnapshotInfo { name: format!("snap-{name}"), sha256: "0".repeat(64), size: 1, created: true })
    }
    async fn restore_journal(&self, _: &CallScope) -> Vec<RestoreReport> {
        self.record("backup.restore_journal");
        vec![RestoreReport { subject: "ConfigMap exerciser/exercised".into(), error: None }]
    }
}

#[async_trait]
impl LogBackend for Recorder {
    fn write(&self, _: &CallScope, level: Level, message: &str, _: &[(String, String)]) {
        self.record(format!("log.write {level:?} {message}"));
    }
    async fn event(&self, _: &CallScope, _: EventType, reason: &str, _: &str) {
        self.record(format!("log.event {reason}"));
    }
    fn progress(&self, _: &CallScope, percent: u8, _: &str) {
        self.record(format!("log.progress {percent}"));
    }
}

impl ClockBackend for Recorder {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000
    }
}

/// A call context for a test migration.
pub fn context(spec: Value) -> CallContext {
    CallContext {
        migration: Migration {
            name: "test".into(),
            namespace: "vsphere-migration".into(),
            uid: "uid-1".into(),
            spec_json: spec.to_string(),
            source_servers: vec!["source.example".into()],
            target_servers: vec!["vcenter".into()],
        },
        attempt: 1,
        dry_run: false,
        started_at_ms: 1_700_000_000_000,
    }
}

pub fn servers() -> Vec<String> {
    vec!["source.example".into(), "vcenter".into()]
}
