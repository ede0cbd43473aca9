//! The in-memory Kubernetes store of [`FakeHost`](super::FakeHost): objects by type,
//! namespace and name, with the API server behaviour phases rely on (resourceVersion
//! conflicts, uid/generation, Secret `stringData`, finalizers, label selectors, merge and
//! JSON patches, preconditions). Selectors and patches are [`crate::selector`] and
//! [`crate::patch`], the implementations the host's plan overlay uses too.
//!
//! Not modelled: schemas and CEL rules (use a hook to reject), server-side apply field
//! ownership (apply is a deep merge), admission, watches.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::KubeError;
use crate::selector::Selector;

/// Kinds that are cluster-scoped (everything else is namespaced).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "Infrastructure",
    "ClusterOperator",
    "ClusterVersion",
    "FeatureGate",
    "Proxy",
    "CloudCredential",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
];

/// Whether objects of `kind` live in a namespace.
pub fn namespaced(kind: &str) -> bool {
    !CLUSTER_SCOPED.contains(&kind)
}

/// Where an object lives: type and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Key {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    /// "Secret kube-system/vsphere-creds", as the host names journal subjects.
    pub fn subject(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The objects, and the counters the API server keeps.
#[derive(Debug, Default, Clone)]
pub struct Store {
    pub objects: BTreeMap<Key, Value>,
    revision: u64,
    uids: u64,
}

fn not_found(key: &Key) -> KubeError {
    KubeError::NotFound(format!("{} not found", key.subject()))
}

/// The scope rules of the real API: a namespace exactly for namespaced kinds.
pub fn check_scope(kind: &str, namespace: Option<&str>, single: bool) -> Result<(), KubeError> {
    match (namespaced(kind), namespace) {
        (true, None) if single => Err(KubeError::Invalid(format!("{kind} is namespaced: a namespace is required"))),
        (false, Some(ns)) => {
            Err(KubeError::Invalid(format!("{kind} is cluster-scoped: namespace {ns} makes no sense")))
        }
        _ => Ok(()),
    }
}

impl Store {
    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    pub fn get(&self, key: &Key) -> Result<Value, KubeError> {
        self.objects.get(key).cloned().ok_or_else(|| not_found(key))
    }

    pub fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        let selector = Selector::parse(selector.unwrap_or_default())?;
        Ok(self
            .objects
            .iter()
            .filter(|(k, _)| k.api_version == api_version && k.kind == kind)
            .filter(|(k, _)| namespace.is_none() || k.namespace.as_deref() == namespace)
            .filter(|(_, v)| selector.matches_object(v))
            .map(|(_, v)| v.clone())
            .collect())
    }

    /// The object as the API server would store it on create (not stored).
    pub fn prepare_create(&mut self, key: &Key, mut object: Value) -> Result<Value, KubeError> {
        if self.objects.contains_key(key) {
            return Err(KubeError::AlreadyExists(format!("{} already exists", key.subject())));
        }
        normalize(&mut object, key)?;
        self.uids += 1;
        let meta = object["metadata"].as_object_mut().expect("normalized");
        meta.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{:012}", self.uids)));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.insert("resourceVersion".into(), json!(self.next_revision()));
        Ok(object)
    }

    /// The object as an update (PUT, patch, apply) would store it (not stored): identity
    /// and status from `live`, a conflict if `resourceVersion` is given and stale.
    pub fn prepare_update(
        &mut self,
        key: &Key,
        live: &Value,
        mut object: Value,
        check_version: bool,
    ) -> Result<Value, KubeError> {
        normalize(&mut object, key)?;
        let live_rv = live.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        if check_version
            && let Some(rv) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            && !rv.is_empty()
            && rv != live_rv
        {
            return Err(KubeError::Conflict(format!(
                "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                key.subject()
            )));
        }
        let meta = object["metadata"].as_object_mut().expect("normalized");
        for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
            match live.pointer(&format!("/metadata/{field}")) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        // Status is a subresource: the main resource never changes it.
        match live.get("status") {
            Some(s) => object["status"] = s.clone(),
            None => {
                object.as_object_mut().expect("an object").remove("status");
            }
        }
        let generation = live.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        let changed_spec = strip_meta(&object) != strip_meta(live);
        let object_meta = object["metadata"].as_object_mut().expect("normalized");
        object_meta.insert("generation".into(), json!(if changed_spec { generation + 1 } else { generation }));
        if object == *live || without_version(&object) == without_version(live) {
            // A no-op write keeps the resourceVersion, as the real API server does.
            return Ok(live.clone());
        }
        object["metadata"]["resourceVersion"] = json!(self.next_revision());
        Ok(object)
    }

    /// What a delete would leave: `None` when the object goes, or the object marked for
    /// deletion when finalizers hold it.
    pub fn prepare_delete(
        &mut self,
        key: &Key,
        uid: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<Option<Value>, KubeError> {
        let live = self.get(key)?;
        let meta =
            |f: &str| live.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(uid) = uid
            && uid != meta("uid")
        {
            return Err(KubeError::Conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta("uid")
            )));
        }
        if let Some(rv) = resource_version
            && rv != meta("resourceVersion")
        {
            return Err(KubeError::Conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta("resourceVersion")
            )));
        }
        let finalizers = live.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if !finalizers {
            return Ok(None);
        }
        let mut marked = live.clone();
        if marked.pointer("/metadata/deletionTimestamp").is_none() {
            marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
            marked["metadata"]["resourceVersion"] = json!(self.next_revision());
        }
        Ok(Some(marked))
    }

    /// Store (or, with `None`, remove) an object.
    pub fn commit(&mut self, key: &Key, object: Option<Value>) {
        match object {
            Some(o) => {
                self.objects.insert(key.clone(), o);
            }
            None => {
                self.objects.remove(key);
            }
        }
    }

    /// Seed or overwrite an object directly (tests): status kept as given, a new
    /// resourceVersion, identity kept if it existed.
    pub fn put(&mut self, key: &Key, mut object: Value) -> Result<Value, KubeError> {
        normalize(&mut object, key)?;
        let existing = self.objects.get(key).cloned();
        match existing {
            None => {
                let status = object.get("status").cloned();
                let mut made = self.prepare_create(key, object)?;
                if let Some(s) = status {
                    made["status"] = s;
                }
                self.commit(key, Some(made.clone()));
                Ok(made)
            }
            Some(live) => {
                for field in ["uid", "creationTimestamp", "generation"] {
                    if let Some(v) = live.pointer(&format!("/metadata/{field}")) {
                        object["metadata"][field] = v.clone();
                    }
                }
                object["metadata"]["resourceVersion"] = json!(self.next_revision());
                self.commit(key, Some(object.clone()));
                Ok(object)
            }
        }
    }
}

fn strip_meta(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn without_version(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("generation");
    }
    o
}

/// apiVersion, kind, name and namespace set from the key; Secret `stringData` folded into
/// base64 `data`.
fn normalize(object: &mut Value, key: &Key) -> Result<(), KubeError> {
    if !object.is_object() {
        return Err(KubeError::Invalid("not a JSON object".into()));
    }
    if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str)
        && name != key.name
    {
        return Err(KubeError::Invalid(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            key.name
        )));
    }
    if let (Some(ns), Some(want)) = (object.pointer("/metadata/namespace").and_then(Value::as_str), &key.namespace)
        && ns != want
    {
        return Err(KubeError::Invalid(format!(
            "the namespace of the object ({ns}) does not match the namespace on the request ({want})"
        )));
    }
    object["apiVersion"] = json!(key.api_version);
    object["kind"] = json!(key.kind);
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]["name"] = json!(key.name);
    match &key.namespace {
        Some(ns) => object["metadata"]["namespace"] = json!(ns),
        None => {
            object["metadata"].as_object_mut().expect("just made").remove("namespace");
        }
    }
    if key.kind == "Secret" {
        if let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
            let data = object["data"].as_object_mut().map(std::mem::take).unwrap_or_default();
            let mut data: Map<String, Value> = data;
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
            }
            object["data"] = Value::Object(data);
        }
        if let Some(data) = object.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                let ok = v.as_str().is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    return Err(KubeError::Invalid(format!("Secret {}: data[{k}] is not base64", key.name)));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_conflict_on_a_stale_version_and_keep_status_and_identity() {
        let mut s = Store::default();
        let key = Key::new("apps/v1", "Deployment", Some("ns"), "d");
        let made = s
            .put(&key, json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 1}}))
            .unwrap();
        let rv = made["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut next = made.clone();
        next["spec"]["replicas"] = json!(0);
        next["status"]["replicas"] = json!(7);
        let updated = s.prepare_update(&key, &made, next.clone(), true).unwrap();
        assert_eq!(updated["status"]["replicas"], json!(1), "status is a subresource");
        assert_eq!(updated["metadata"]["generation"], json!(2));
        assert_eq!(updated["metadata"]["uid"], made["metadata"]["uid"]);
        assert_ne!(updated["metadata"]["resourceVersion"].as_str().unwrap(), rv);
        s.commit(&key, Some(updated.clone()));
        assert!(matches!(s.prepare_update(&key, &updated, next, true), Err(KubeError::Conflict(_))));
        // A no-op write keeps the version.
        let same = s.prepare_update(&key, &updated, updated.clone(), true).unwrap();
        assert_eq!(same, updated);
    }

    #[test]
    fn secrets_fold_string_data_into_base64_data() {
        let mut s = Store::default();
        let key = Key::new("v1", "Secret", Some("kube-system"), "c");
        let made = s.put(&key, json!({"metadata": {}, "stringData": {"a": "hello"}, "data": {"b": "eA=="}})).unwrap();
        assert_eq!(made["data"], json!({"a": "aGVsbG8=", "b": "eA=="}));
        assert!(made.get("stringData").is_none());
        assert!(s.put(&key, json!({"data": {"x": "not base64!"}})).is_err());
    }

    #[test]
    fn deletes_honour_preconditions_and_finalizers() {
        let mut s = Store::default();
        let key = Key::new("v1", "ConfigMap", Some("ns"), "c");
        let made = s.put(&key, json!({"metadata": {"finalizers": ["x"]}})).unwrap();
        assert!(matches!(s.prepare_delete(&key, Some("other"), None), Err(KubeError::Conflict(_))));
        let marked = s.prepare_delete(&key, made["metadata"]["uid"].as_str(), None).unwrap().unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        s.put(&key, json!({"metadata": {}})).unwrap();
        assert_eq!(s.prepare_delete(&key, None, None).unwrap(), None);
    }
}
