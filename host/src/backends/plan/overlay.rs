//! Plan mode's view of the cluster: what every earlier planned mutation would have left
//! behind, laid over the live objects. Without it, a later phase would plan against a
//! cluster its predecessors never changed (Cleanup removing a source vCenter from an
//! Infrastructure that never received the target). Each planned write is still validated
//! by the API server (`dryRun=All`); the result goes into the overlay, which is kept in a
//! Secret owned by the migration (planned objects may carry credentials).
//!
//! Patches are applied to the planned object and lists filtered by label selector with
//! [`vsm_sdk::patch`] and [`vsm_sdk::selector`], the implementations the SDK's FakeHost
//! uses, so a plan computes the object the phase tests check (the parity tests below).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::Value;
use vsm_sdk::selector::Selector;

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
        let selector = Selector::parse(selector.unwrap_or("")).map_err(|e| KubeError::Invalid(e.to_string()))?;
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
        Ok(by_key.into_values().filter(|o| selector.matches_object(o)).collect())
    }
}

/// RFC 7386 merge patch: [`vsm_sdk::patch::merge_patch`], the implementation FakeHost
/// uses too.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    vsm_sdk::patch::merge_patch(target, patch);
}

/// RFC 6902 JSON patch, all or nothing: [`vsm_sdk::patch::json_patch`], the
/// implementation FakeHost uses too; a patch that is malformed or does not apply (a failed
/// `test`) is `invalid`, as the API server's 400 and 422 are.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), KubeError> {
    vsm_sdk::patch::json_patch(target, ops).map_err(|e| KubeError::Invalid(e.to_string()))
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
}

/// The plan overlay and the SDK's FakeHost are the two places that apply Kubernetes
/// semantics without an API server. The same cases go through the overlay's functions
/// and through FakeHost's `kube-patch` / `kube-list` imports, and must come out the same:
/// the same object, or the same error kind and message.
#[cfg(test)]
mod parity {
    use serde_json::{Value, json};
    use vsm_sdk::Host as _;
    use vsm_sdk::testing::FakeHost;

    use super::{Overlay, json_patch, key, merge_patch};
    use crate::runtime::ResolvedType;
    use crate::runtime::bindings::KubeError;

    const NS: &str = "parity";

    fn config_map_type() -> (ResolvedType, vsm_sdk::ObjectType) {
        let resolved = ResolvedType {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespaced: true,
        };
        (resolved, vsm_sdk::ObjectType { api_version: "v1".into(), kind: "ConfigMap".into() })
    }

    fn object(name: &str, body: Value) -> Value {
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}});
        for (k, v) in body.as_object().expect("an object body") {
            match (k.as_str(), v) {
                ("metadata", Value::Object(meta)) => meta.iter().for_each(|(m, v)| o["metadata"][m] = v.clone()),
                _ => o[k] = v.clone(),
            }
        }
        o
    }

    /// What the host's errors and FakeHost's errors are, side by side.
    fn host_error(e: KubeError) -> (&'static str, String) {
        match e {
            KubeError::NotFound(m) => ("not-found", m),
            KubeError::AlreadyExists(m) => ("already-exists", m),
            KubeError::Conflict(m) => ("conflict", m),
            KubeError::Forbidden(m) => ("forbidden", m),
            KubeError::Invalid(m) => ("invalid", m),
            KubeError::Transient(m) => ("transient", m),
        }
    }

    fn sdk_error(e: vsm_sdk::KubeError) -> (&'static str, String) {
        use vsm_sdk::KubeError as E;
        match e {
            E::NotFound(m) => ("not-found", m),
            E::AlreadyExists(m) => ("already-exists", m),
            E::Conflict(m) => ("conflict", m),
            E::Forbidden(m) => ("forbidden", m),
            E::Invalid(m) => ("invalid", m),
            E::Transient(m) => ("transient", m),
        }
    }

    /// The counters an update bumps (the API server's dry run bumps them for the overlay).
    fn without_counters(mut o: Value) -> Value {
        let meta = o["metadata"].as_object_mut().expect("metadata");
        meta.remove("resourceVersion");
        meta.remove("generation");
        o
    }

    type Outcome = Result<Value, (&'static str, String)>;

    /// One patch through both: the stored object FakeHost would keep, and the object the
    /// overlay computes from the same stored object.
    fn both(body: Value, json: bool, patch: Value) -> (Outcome, Outcome) {
        let (_, ty) = config_map_type();
        let host = FakeHost::new();
        let live = host.put(object("o", body)).0;
        let kind = if json { vsm_sdk::PatchType::Json } else { vsm_sdk::PatchType::Merge };
        let fake = host
            .kube_patch(&ty, Some(NS), "o", kind, &patch.to_string())
            .map(|o| without_counters(serde_json::from_str(&o).expect("JSON")))
            .map_err(sdk_error);
        let mut planned = live;
        let applied = if json {
            json_patch(&mut planned, &patch)
        } else {
            merge_patch(&mut planned, &patch);
            Ok(())
        };
        let overlay = applied.map(|()| without_counters(planned)).map_err(host_error);
        (fake, overlay)
    }

    #[test]
    fn merge_patches_give_the_same_object() {
        for (body, patch, want) in [
            (
                json!({"data": {"a": "1", "b": "2"}}),
                json!({"data": {"a": null, "c": "3"}}),
                json!({"b": "2", "c": "3"}),
            ),
            // Nested nulls in a patch object put into a missing member: dropped (the
            // overlay used to store them).
            (
                json!({"data": {}}),
                json!({"data": {"new": {"gone": null, "deeper": {"x": null, "y": "1"}}}}),
                json!({"new": {"deeper": {"y": "1"}}}),
            ),
            (json!({}), json!({"data": {"a": null, "b": {"c": null}}}), json!({"b": {}})),
            (json!({"data": {"a": "1"}}), json!({"data": {"a": {"b": null, "c": "2"}}}), json!({"a": {"c": "2"}})),
            // Lists are values: replaced whole, nulls inside kept.
            (json!({"data": {"l": [1, 2]}}), json!({"data": {"l": [{"x": null}]}}), json!({"l": [{"x": null}]})),
        ] {
            let (fake, overlay) = both(body.clone(), false, patch.clone());
            assert_eq!(fake, overlay, "{body} + {patch}");
            assert_eq!(overlay.expect("applies")["data"], want, "{body} + {patch}");
        }
        let (fake, overlay) = both(
            json!({"metadata": {"labels": {"a": "1"}}}),
            false,
            json!({"metadata": {"labels": {"a": null, "b": "2"}}}),
        );
        assert_eq!(fake, overlay);
        assert_eq!(overlay.unwrap()["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn server_side_applies_give_the_same_object() {
        // Plan mode's apply (`Update::Apply`) and FakeHost's: a null applies nothing, at
        // any depth; objects merge; lists are replaced whole.
        let (_, ty) = config_map_type();
        for (body, applied, want) in [
            (
                json!({"data": {"a": "1", "b": "2"}}),
                json!({"data": {"a": null, "c": "3"}}),
                json!({"a": "1", "b": "2", "c": "3"}),
            ),
            (json!({"data": {}}), json!({"data": {"new": {"gone": null, "y": "1"}}}), json!({"new": {"y": "1"}})),
            (json!({"data": {"l": [1, 2]}}), json!({"data": {"l": [null, 3]}}), json!({"l": [null, 3]})),
        ] {
            let host = FakeHost::new();
            let live = host.put(object("o", body.clone())).0;
            let applied = object("o", applied.clone());
            let fake = host
                .kube_apply(&ty, Some(NS), "o", &applied.to_string(), true)
                .map(|o| without_counters(serde_json::from_str(&o).expect("JSON")))
                .map_err(sdk_error);
            let planned = crate::backends::plan::Update::Apply(&applied.to_string())
                .apply_to(&live)
                .map(without_counters)
                .map_err(host_error);
            assert_eq!(fake, planned, "{body} + apply {applied}");
            assert_eq!(planned.expect("applies")["data"], want, "{body} + apply {applied}");
        }
    }

    #[test]
    fn json_patches_give_the_same_object_or_the_same_error() {
        let body = json!({"data": {"a": "1", "b/c": "2"}, "list": ["x", "y"]});
        for (patch, applies) in [
            (
                json!([{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "9"}]),
                true,
            ),
            (json!([{"op": "add", "path": "/list/-", "value": "z"}, {"op": "remove", "path": "/list/0"}]), true),
            (
                json!([{"op": "copy", "from": "/data/b~1c", "path": "/data/d"}, {"op": "move", "from": "/data/a", "path": "/data/e"}]),
                true,
            ),
            (json!([{"op": "add", "path": "/data/n", "value": null}]), true),
            // A failed test refuses the whole patch, the replace before it included.
            (
                json!([{"op": "replace", "path": "/data/a", "value": "9"}, {"op": "test", "path": "/data/a", "value": "1"}]),
                false,
            ),
            (json!([{"op": "remove", "path": "/data/missing"}]), false),
            (json!([{"op": "replace", "path": "/data/missing", "value": "x"}]), false),
            (json!([{"op": "add", "path": "/nothing/here", "value": "x"}]), false),
            (json!([{"op": "remove", "path": "/list/5"}]), false),
            (json!([{"op": "move", "from": "/data", "path": "/data/inner"}]), false),
            // Malformed: not a list, an unknown operation, a missing value.
            (json!({"op": "add", "path": "/data/x", "value": "1"}), false),
            (json!([{"op": "frobnicate", "path": "/data/a"}]), false),
            (json!([{"op": "test", "path": "/data/a"}]), false),
        ] {
            let (fake, overlay) = both(body.clone(), true, patch.clone());
            assert_eq!(fake, overlay, "{patch}");
            match overlay {
                Ok(_) => assert!(applies, "{patch} should not apply"),
                Err((kind, message)) => {
                    assert!(!applies, "{patch}: {message}");
                    assert_eq!(kind, "invalid", "{patch}: the API server answers 400 or 422");
                }
            }
        }
    }

    #[test]
    fn selectors_select_the_same_objects() {
        let (resolved, ty) = config_map_type();
        let host = FakeHost::new();
        let mut overlay = Overlay::default();
        let labelled = [
            ("plain", json!({})),
            ("master", json!({"role": "master", "tier": "control"})),
            ("worker", json!({"role": "worker", "n": "3"})),
            ("prefixed", json!({"machine.openshift.io/cluster-api-machine-role": "infra", "empty": ""})),
        ];
        for (name, labels) in labelled {
            let o = object(name, json!({"metadata": {"labels": labels}}));
            overlay.objects.insert(key(&resolved, Some(NS), name), Some(host.put(o).0));
        }
        let names = |items: Vec<Value>| {
            items.iter().map(|o| o["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
        };
        for selector in [
            "",
            "role=master",
            "role==worker,n=3",
            "role!=master",
            "role in (master, worker)",
            "role notin (master)",
            "role",
            "!role",
            "machine.openshift.io/cluster-api-machine-role=infra",
            "empty=",
            "n>2",
            "n<3",
            "role=",
            // Refused alike:
            "a b",
            "role in ()",
            "role=master,",
            "role=@",
        ] {
            let fake = host
                .kube_list(&ty, Some(NS), Some(selector))
                .map(|l| names(serde_json::from_str(&l).expect("a JSON list")))
                .map_err(sdk_error);
            let planned =
                overlay.merge_list(&resolved, Some(NS), Some(selector), Vec::new()).map(names).map_err(host_error);
            assert_eq!(fake, planned, "{selector:?}");
        }
    }
}
