//! The in-memory Kubernetes store of [`FakeHost`](super::FakeHost): objects by type,
//! namespace and name, with the API server behaviour phases rely on (resourceVersion
//! conflicts, uid/generation, Secret `stringData`, finalizers, label selectors, merge and
//! JSON patches, preconditions).
//!
//! Not modelled: schemas and CEL rules (use a hook to reject), server-side apply field
//! ownership (apply is a deep merge), admission, watches.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::KubeError;

/// Kinds that are cluster-scoped (everything else is namespaced).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "Infrastructure",
    "ClusterOperator",
    "ClusterVersion",
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
        let selector = match selector {
            Some(s) if !s.trim().is_empty() => Some(Selector::parse(s)?),
            _ => None,
        };
        Ok(self
            .objects
            .iter()
            .filter(|(k, _)| k.api_version == api_version && k.kind == kind)
            .filter(|(k, _)| namespace.is_none() || k.namespace.as_deref() == namespace)
            .filter(|(_, v)| selector.as_ref().is_none_or(|s| s.matches(v.pointer("/metadata/labels"))))
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

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A deep merge standing in for server-side apply: objects merge, everything else
/// (lists included) is replaced; `null` values are ignored.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    match applied {
        Value::Object(a) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made");
            for (k, v) in a {
                if !v.is_null() {
                    apply_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        Value::Null => {}
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), KubeError> {
    let (parent, last) =
        path.rsplit_once('/').ok_or_else(|| KubeError::Invalid(format!("bad JSON pointer {path:?}")))?;
    Ok((parent.to_string(), unescape(last)))
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), KubeError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let index = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| KubeError::Invalid(format!("bad array index in {path}")))?
            };
            if index > a.len() {
                return Err(KubeError::Invalid(format!("index out of range in {path}")));
            }
            a.insert(index, value);
            Ok(())
        }
        _ => Err(KubeError::Invalid(format!("doc is missing path: {path}"))),
    }
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, KubeError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || KubeError::Invalid(format!("doc is missing path: {path}"));
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            if index >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(index))
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test). A failed `test` is
/// `invalid`, as the API server answers (422).
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), KubeError> {
    let ops = ops.as_array().ok_or_else(|| KubeError::Invalid("a JSON patch is a list of operations".into()))?;
    let mut work = doc.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let value = || op.get("value").cloned().ok_or_else(|| KubeError::Invalid(format!("{kind} {path}: no value")));
        match kind {
            "add" => add_at(&mut work, path, value()?)?,
            "remove" => {
                remove_at(&mut work, path)?;
            }
            "replace" => {
                remove_at(&mut work, path)?;
                add_at(&mut work, path, value()?)?;
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
                let v = if kind == "move" {
                    remove_at(&mut work, from)?
                } else {
                    work.pointer(from)
                        .cloned()
                        .ok_or_else(|| KubeError::Invalid(format!("doc is missing path: {from}")))?
                };
                add_at(&mut work, path, v)?;
            }
            "test" => {
                if work.pointer(path) != Some(&value()?) {
                    return Err(KubeError::Invalid(format!(
                        "the server rejected our request: test operation failed at {path}"
                    )));
                }
            }
            other => return Err(KubeError::Invalid(format!("unknown JSON patch operation {other:?}"))),
        }
    }
    *doc = work;
    Ok(())
}

/// A parsed label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, KubeError> {
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let bad = |p: &str| KubeError::Invalid(format!("unable to parse requirement {p:?} of label selector {text:?}"));
        let set = |s: &str| -> Vec<String> {
            s.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(|v| v.trim().to_string()).collect()
        };
        let mut reqs = Vec::new();
        for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v))
            } else if let Some((k, v)) = p.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v))
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if p.contains(|c: char| c.is_whitespace() || c == '(') {
                return Err(bad(p));
            } else {
                Requirement::Exists(p.into())
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_cover_the_kubernetes_syntax() {
        let labels = json!({"app": "cvo", "tier": "control", "role": "master"});
        let m = |s: &str| Selector::parse(s).unwrap().matches(Some(&labels));
        assert!(m("app=cvo"));
        assert!(m("app==cvo,tier=control"));
        assert!(!m("app=other"));
        assert!(m("app!=other"));
        assert!(m("role"));
        assert!(!m("!role"));
        assert!(m("!missing"));
        assert!(m("role in (master,worker)"));
        assert!(!m("role notin (master, worker)"));
        assert!(m("missing notin (x)"));
        assert!(!m("missing in (x)"));
        assert!(Selector::parse("a b").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_applies_all_or_nothing() {
        let mut doc = json!({"data": {"a": "1"}, "l": [1, 2]});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/data/a", "value": "1"},
                {"op": "add", "path": "/data/b~1c", "value": "2"},
                {"op": "replace", "path": "/data/a", "value": "9"},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "remove", "path": "/l/0"},
                {"op": "copy", "from": "/data/a", "path": "/copied"},
                {"op": "move", "from": "/copied", "path": "/moved"}
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"data": {"a": "9", "b/c": "2"}, "l": [2, 3], "moved": "9"}));
        let before = doc.clone();
        let failed = json_patch(
            &mut doc,
            &json!([{"op": "remove", "path": "/data/a"}, {"op": "test", "path": "/data/b~1c", "value": "x"}]),
        );
        assert!(matches!(failed, Err(KubeError::Invalid(_))));
        assert_eq!(doc, before, "a failed patch changes nothing");
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

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
