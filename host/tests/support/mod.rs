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
use vsm_host::runtime::{CallScope, KubeOp, PhaseServices, ResolvedType, VsphereOp, VsphereReply};
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
    next_id: Mutex<u64>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
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

fn key(ty: &ResolvedType, ns: &Option<String>, name: &str) -> (String, String, String) {
    (ty.resource.clone(), ns.clone().unwrap_or_default(), name.to_string())
}

#[async_trait]
impl PhaseServices for Recorder {
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

    async fn kube(&self, _: &CallScope, ty: &ResolvedType, op: KubeOp) -> Result<String, KubeError> {
        let verb = op.verbs()[0];
        self.record(format!("kube.{verb} {}", ty.resource));
        let mut objects = self.objects.lock().unwrap();
        match op {
            KubeOp::Get { namespace, name } => {
                objects.get(&key(ty, &namespace, &name)).map(|o| o.to_string()).ok_or(KubeError::NotFound(name))
            }
            KubeOp::List { namespace, .. } => {
                let ns = namespace.unwrap_or_default();
                let items: Vec<&Value> = objects
                    .iter()
                    .filter(|((r, n, _), _)| *r == ty.resource && (ns.is_empty() || *n == ns))
                    .map(|(_, v)| v)
                    .collect();
                Ok(json!(items).to_string())
            }
            KubeOp::Create { namespace, object } => {
                let o: Value = serde_json::from_str(&object).map_err(|e| KubeError::Invalid(e.to_string()))?;
                let name = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let k = key(ty, &namespace, &name);
                if objects.contains_key(&k) {
                    return Err(KubeError::AlreadyExists(name));
                }
                objects.insert(k, o.clone());
                Ok(o.to_string())
            }
            KubeOp::Apply { namespace, name, object, .. } | KubeOp::Replace { namespace, name, object } => {
                let o: Value = serde_json::from_str(&object).map_err(|e| KubeError::Invalid(e.to_string()))?;
                let entry = objects.entry(key(ty, &namespace, &name)).or_insert(json!({}));
                merge_patch(entry, &o);
                Ok(entry.to_string())
            }
            KubeOp::Patch { namespace, name, patch, .. } => {
                let p: Value = serde_json::from_str(&patch).map_err(|e| KubeError::Invalid(e.to_string()))?;
                let entry =
                    objects.get_mut(&key(ty, &namespace, &name)).ok_or_else(|| KubeError::NotFound(name.clone()))?;
                merge_patch(entry, &p);
                Ok(entry.to_string())
            }
            KubeOp::Delete { namespace, name, .. } => {
                objects.remove(&key(ty, &namespace, &name)).map(|_| "{}".to_string()).ok_or(KubeError::NotFound(name))
            }
        }
    }

    async fn vsphere(&self, _: &CallScope, server: &str, op: VsphereOp) -> Result<VsphereReply, VsphereError> {
        let name = serde_json::to_value(&op).unwrap()["op"].as_str().unwrap().to_string();
        self.record(format!("vsphere.{name} {server}"));
        Ok(match op {
            VsphereOp::About => VsphereReply::About(AboutInfo {
                product: "sim".into(),
                version: "8.0.3".into(),
                api_version: "8.0.3.0".into(),
                instance_uuid: "uuid".into(),
            }),
            VsphereOp::FindObject { kind, path } => {
                VsphereReply::Object(ObjectRef { kind, moref: "datacenter-1".into(), path })
            }
            VsphereOp::ListVms { .. } => VsphereReply::Vms(vec![]),
            VsphereOp::CreateFolder { .. } | VsphereOp::EnsureCategory { .. } | VsphereOp::EnsureTag { .. } => {
                VsphereReply::Ensured(Ensured { id: self.id("urn"), created: true })
            }
            VsphereOp::DeleteFolder { .. } | VsphereOp::DeleteTag { .. } | VsphereOp::DeleteCategory { .. } => {
                VsphereReply::Flag(true)
            }
            VsphereOp::AttachTag { .. } | VsphereOp::DetachTag { .. } => VsphereReply::Unit,
            VsphereOp::ListAttachedTags { .. } => VsphereReply::Tags(vec![]),
        })
    }

    async fn state_get(&self, _: &CallScope, which: Scope, key: &str) -> Option<String> {
        self.record(format!("state.get {which:?}"));
        self.state.lock().unwrap().get(&format!("{which:?}/{key}")).cloned()
    }
    async fn state_set(&self, _: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError> {
        self.record(format!("state.set {which:?}"));
        self.state.lock().unwrap().insert(format!("{which:?}/{key}"), value.to_string());
        Ok(())
    }
    async fn state_delete(&self, _: &CallScope, which: Scope, key: &str) -> Result<(), StateError> {
        self.record(format!("state.delete {which:?}"));
        self.state.lock().unwrap().remove(&format!("{which:?}/{key}"));
        Ok(())
    }
    async fn backup_snapshot(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        _: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        self.record(format!("backup.snapshot {}", ty.resource));
        Ok(SnapshotInfo { name: format!("snap-{name}"), sha256: "0".repeat(64), size: 1, created: true })
    }
    async fn backup_restore_journal(&self, _: &CallScope) -> Vec<RestoreReport> {
        self.record("backup.restore_journal");
        vec![RestoreReport { subject: "ConfigMap exerciser/exercised".into(), error: None }]
    }
    fn log(&self, _: &CallScope, level: Level, message: &str, _: &[(String, String)]) {
        self.record(format!("log.write {level:?} {message}"));
    }
    async fn event(&self, _: &CallScope, _: EventType, reason: &str, _: &str) {
        self.record(format!("log.event {reason}"));
    }
    fn progress(&self, _: &CallScope, percent: u8, _: &str) {
        self.record(format!("log.progress {percent}"));
    }
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
