//! Plan mode's view of the cluster: what every earlier planned mutation would have left
//! behind, laid over the live objects. Without it, a later phase would plan against a
//! cluster its predecessors never changed (Cleanup removing a source vCenter from an
//! Infrastructure that never received the target). Each planned write is still validated
//! by the API server (`dryRun=All`); the result goes into the overlay, which is kept in a
//! Secret owned by the migration (planned objects may carry credentials).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::Value;

use crate::api::FIELD_MANAGER;
use crate::runtime::ResolvedType;
use crate::runtime::bindings::KubeError;

const DATA_KEY: &str = "overlay.json";

/// Identity of an object in the overlay.
pub fn key(ty: &ResolvedType, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{}/{}/{}", ty.group, ty.resource, namespace.unwrap_or(""), name)
}

/// Planned objects by key; `None` is a planned deletion.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overlay {
    pub objects: BTreeMap<String, Option<Value>>,
}

impl Overlay {
    /// What the overlay says about an object: Some(None) deleted, Some(Some) planned
    /// content, None unknown (read the live one).
    pub fn get(&self, key: &str) -> Option<Option<&Value>> {
        self.objects.get(key).map(Option::as_ref)
    }

    /// A live list with the planned creations, changes and deletions of that resource and
    /// namespace applied.
    pub fn merge_list(
        &self,
        ty: &ResolvedType,
        namespace: Option<&str>,
        selector: Option<&str>,
        live: Vec<Value>,
    ) -> Result<Vec<Value>, KubeError> {
        let selector = Selector::parse(selector.unwrap_or(""))?;
        let prefix = format!("{}/{}/", ty.group, ty.resource);
        let mut by_key: BTreeMap<String, Value> = live
            .into_iter()
            .map(|o| {
                let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
                let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
                (key(ty, ns.as_deref(), &name), o)
            })
            .collect();
        for (k, planned) in &self.objects {
            let Some(rest) = k.strip_prefix(&prefix) else { continue };
            let ns = rest.split('/').next().unwrap_or("");
            if namespace.is_some_and(|want| want != ns) {
                continue;
            }
            match planned {
                None => {
                    by_key.remove(k);
                }
                Some(o) => {
                    by_key.insert(k.clone(), o.clone());
                }
            }
        }
        Ok(by_key.into_values().filter(|o| selector.matches(o.pointer("/metadata/labels"))).collect())
    }
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// RFC 6902 JSON patch (test operations included).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), KubeError> {
    let patch: json_patch::Patch = serde_json::from_value(ops.clone())
        .map_err(|e| KubeError::Invalid(format!("not an RFC 6902 JSON patch: {e}")))?;
    json_patch::patch(target, &patch).map_err(|e| KubeError::Invalid(format!("JSON patch does not apply: {e}")))
}

/// Equality- and set-based label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
/// `a`, `!a`).
#[derive(Debug, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top(text: &str) -> Vec<String> {
    let (mut parts, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

fn values(list: &str) -> Vec<String> {
    list.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(|v| v.trim().to_string()).collect()
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, KubeError> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let bad = || KubeError::Invalid(format!("label selector {text:?}: cannot parse {part:?}"));
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), values(v))
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), values(v))
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c)) {
                Requirement::Exists(part.clone())
            } else {
                return Err(bad());
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
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Where the overlay of one migration is kept.
#[derive(Clone)]
pub struct OverlayStore {
    secrets: Api<Secret>,
    name: String,
    owner: OwnerReference,
}

impl OverlayStore {
    pub fn new(client: kube::Client, namespace: &str, migration_name: &str, owner: OwnerReference) -> Self {
        let prefix: String = migration_name.chars().take(240).collect();
        OverlayStore { secrets: Api::namespaced(client, namespace), name: format!("{prefix}-plan"), owner }
    }

    pub async fn load(&self) -> Result<Overlay, KubeError> {
        let secret = self.secrets.get_opt(&self.name).await.map_err(crate::backends::kubernetes::map_error)?;
        let Some(bytes) = secret.and_then(|s| s.data).and_then(|d| d.get(DATA_KEY).cloned()) else {
            return Ok(Overlay::default());
        };
        let objects = serde_json::from_slice(&bytes.0)
            .map_err(|e| KubeError::Transient(format!("plan overlay unreadable: {e}")))?;
        Ok(Overlay { objects })
    }

    pub async fn save(&self, overlay: &Overlay) -> Result<(), KubeError> {
        let bytes = serde_json::to_vec(&overlay.objects).expect("values serialize");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some("migration.openshift.io/plan".into()),
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(bytes))])),
            ..Default::default()
        };
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": secret.metadata, "type": secret.type_, "data": secret.data,
        });
        self.secrets
            .patch(&self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await
            .map(|_| ())
            .map_err(crate::backends::kubernetes::map_error)
    }

    pub async fn delete(&self) -> Result<(), kube::Error> {
        match self.secrets.delete(&self.name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty() -> ResolvedType {
        ResolvedType {
            group: "machine.openshift.io".into(),
            version: "v1beta1".into(),
            kind: "MachineSet".into(),
            resource: "machinesets".into(),
            namespaced: true,
        }
    }

    fn ms(name: &str, role: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "m", "labels": {"role": role}}})
    }

    #[test]
    fn lists_show_planned_creations_changes_and_deletions() {
        let t = ty();
        let mut o = Overlay::default();
        o.objects.insert(key(&t, Some("m"), "new"), Some(ms("new", "worker")));
        o.objects.insert(key(&t, Some("m"), "old"), None);
        o.objects.insert(key(&t, Some("m"), "kept"), Some(ms("kept", "infra")));
        o.objects.insert(key(&t, Some("other"), "elsewhere"), Some(ms("elsewhere", "worker")));
        let live = vec![ms("old", "worker"), ms("kept", "worker"), ms("plain", "worker")];
        let names =
            |v: Vec<Value>| v.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(names(o.merge_list(&t, Some("m"), None, live.clone()).unwrap()), ["kept", "new", "plain"]);
        assert_eq!(names(o.merge_list(&t, Some("m"), Some("role=worker"), live).unwrap()), ["new", "plain"]);
    }

    #[test]
    fn selectors() {
        let labels = json!({"a": "1", "b": "x"});
        for (sel, want) in [
            ("a=1", true),
            ("a==1,b=x", true),
            ("a!=1", false),
            ("b in (x, y)", true),
            ("b notin (x)", false),
            ("a", true),
            ("!c", true),
            ("c", false),
            ("", true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(Some(&labels)), want, "{sel}");
        }
        assert!(Selector::parse("a b c").is_err());
    }

    #[test]
    fn patches_apply_locally() {
        let mut v = json!({"spec": {"a": 1, "b": 2}});
        merge_patch(&mut v, &json!({"spec": {"a": null, "c": 3}}));
        assert_eq!(v, json!({"spec": {"b": 2, "c": 3}}));
        json_patch(
            &mut v,
            &json!([{"op": "test", "path": "/spec/b", "value": 2}, {"op": "replace", "path": "/spec/b", "value": 5}]),
        )
        .unwrap();
        assert_eq!(v["spec"]["b"], 5);
        assert!(
            json_patch(&mut v, &json!([{"op": "test", "path": "/spec/b", "value": 2}])).is_err(),
            "a failed test op refuses the patch"
        );
    }
}
