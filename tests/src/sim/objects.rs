//! Names, API resources and small helpers shared by the seeder and the controllers.

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const MACHINE_API_NS: &str = "openshift-machine-api";
pub const CVO_NS: &str = "openshift-cluster-version";
pub const CCM_NS: &str = "openshift-cloud-controller-manager";
pub const CSI_NS: &str = "openshift-cluster-csi-drivers";
pub const MCO_NS: &str = "openshift-machine-config-operator";

pub const INFRA_NAME: &str = "cluster";
pub const CPMS_NAME: &str = "cluster";
pub const CREDS_NS: &str = "kube-system";
pub const CREDS_NAME: &str = "vsphere-creds";
pub const CLOUD_CONFIG_NS: &str = "openshift-config";
pub const CLOUD_CONFIG_NAME: &str = "cloud-provider-config";
pub const CLOUD_CONFIG_KEY: &str = "config";
pub const CVO_NAME: &str = "cluster-version-operator";

pub const MACHINE_FINALIZER: &str = "machine.machine.openshift.io";
pub const LABEL_CLUSTER: &str = "machine.openshift.io/cluster-api-cluster";
pub const LABEL_ROLE: &str = "machine.openshift.io/cluster-api-machine-role";
pub const LABEL_TYPE: &str = "machine.openshift.io/cluster-api-machine-type";
pub const LABEL_MACHINESET: &str = "machine.openshift.io/cluster-api-machineset";
/// A Node's Machine, as machine-api annotates it.
pub const ANNOTATION_NODE_MACHINE: &str = "machine.openshift.io/machine";

pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn infrastructure() -> ApiResource {
    resource("config.openshift.io", "v1", "Infrastructure", "infrastructures")
}

pub fn cluster_operator() -> ApiResource {
    resource("config.openshift.io", "v1", "ClusterOperator", "clusteroperators")
}

pub fn cluster_version() -> ApiResource {
    resource("config.openshift.io", "v1", "ClusterVersion", "clusterversions")
}

pub fn cloud_credential() -> ApiResource {
    resource("operator.openshift.io", "v1", "CloudCredential", "cloudcredentials")
}

pub fn proxy() -> ApiResource {
    resource("config.openshift.io", "v1", "Proxy", "proxies")
}

pub fn feature_gate() -> ApiResource {
    resource("config.openshift.io", "v1", "FeatureGate", "featuregates")
}

pub fn machine() -> ApiResource {
    resource("machine.openshift.io", "v1beta1", "Machine", "machines")
}

pub fn machine_set() -> ApiResource {
    resource("machine.openshift.io", "v1beta1", "MachineSet", "machinesets")
}

pub fn machine_autoscaler() -> ApiResource {
    resource("autoscaling.openshift.io", "v1beta1", "MachineAutoscaler", "machineautoscalers")
}

pub fn machine_health_check() -> ApiResource {
    resource("machine.openshift.io", "v1beta1", "MachineHealthCheck", "machinehealthchecks")
}

pub fn cpms() -> ApiResource {
    resource("machine.openshift.io", "v1", "ControlPlaneMachineSet", "controlplanemachinesets")
}

pub fn machines_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), MACHINE_API_NS, &machine())
}

pub fn machine_sets_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), MACHINE_API_NS, &machine_set())
}

pub fn cpms_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), MACHINE_API_NS, &cpms())
}

pub fn infra_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &infrastructure())
}

pub fn operators_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &cluster_operator())
}

/// A string at a JSON pointer (`/spec/providerSpec/value/workspace/server`).
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A non-empty string at a JSON pointer.
pub fn nonempty_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    str_at(v, pointer).filter(|s| !s.is_empty())
}

pub fn i64_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// Now, as Kubernetes writes times (RFC 3339, seconds).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five characters from Kubernetes' name alphabet, derived from `seed` (deterministic, so
/// seeding twice picks the same names).
pub fn name_suffix(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    digest[..5].iter().map(|b| NAME_ALPHABET[*b as usize % NAME_ALPHABET.len()] as char).collect()
}

/// A suffix that differs on every call (for names the real controllers randomise).
pub fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    name_suffix(&format!("{t}-{n}-{}", std::process::id()))
}

/// A stable hex hash of a JSON value (pod-template-hash, VM uuids in tests).
pub fn short_hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    name_suffix(&hex::encode(digest)) + &hex::encode(&digest[..2])
}

/// A deterministic private address for a name (VM and pod IPs).
pub fn ip_for(prefix: &str, name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    format!("{prefix}.{}.{}", d[0], 2 + d[1] % 250)
}

/// Does `labels` satisfy the selector (matchLabels and matchExpressions)?
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The selector as a label-selector string (for `status.labelSelector` and list calls).
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// The selector at a JSON pointer of a dynamic object (a missing one matches nothing).
pub fn selector_at(v: &Value, pointer: &str) -> Option<LabelSelector> {
    v.pointer(pointer).and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// The trailing `-N` of a control-plane machine name: its index.
pub fn machine_index(name: &str) -> Option<u32> {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

pub fn is_deleting<K: kube::Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_some()
}

/// The uid of the controller owner of `kind`, if any.
pub fn controller_uid<K: kube::Resource>(o: &K, kind: &str) -> Option<String> {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == kind && r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// An owner reference that makes `owner` the controller (what the real GC follows).
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "controller": true, "blockOwnerDeletion": true})
}

pub fn merge_params(manager: &str) -> PatchParams {
    PatchParams { field_manager: Some(manager.to_string()), ..Default::default() }
}

pub fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}

/// Merge-patch status only when it would change something: the controllers react to
/// every event, so a write of equal values would wake them up again for nothing.
pub async fn patch_status_if_changed(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    status: Value,
    manager: &str,
) -> Result<bool> {
    let current = obj.data.get("status").cloned().unwrap_or(Value::Null);
    if covers(&current, &status) {
        return Ok(false);
    }
    api.patch_status(&obj.name_any(), &merge_params(manager), &Patch::Merge(json!({"status": status}))).await?;
    Ok(true)
}

/// Does `have` already contain every field of `want` with the same value? (A zero or
/// empty value in `want` also matches a missing field: the API server drops them.)
pub fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => covers(hv, wv),
            None => is_empty_value(wv),
        }),
        // Element by element: extra fields the API server or another writer added (e.g.
        // lastUpdateTime) do not make a list different.
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(h, w)| covers(h, w)),
        (Value::Null, w) => is_empty_value(w),
        (h, w) => h == w,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty_value),
        Value::Bool(_) => false,
    }
}

/// A condition list `(type, status, reason, message)`, keeping the `lastTransitionTime` of
/// `current` where the status did not change (so an unchanged state is not a new write).
pub fn conditions(current: Option<&Value>, want: &[(&str, &str, &str, String)]) -> Value {
    let old = current.and_then(Value::as_array).cloned().unwrap_or_default();
    let now = now();
    Value::Array(
        want.iter()
            .map(|(t, status, reason, message)| {
                let time = old
                    .iter()
                    .find(|c| c["type"] == *t && c["status"] == *status)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now));
                json!({"type": t, "status": status, "reason": reason, "message": message, "lastTransitionTime": time})
            })
            .collect(),
    )
}

/// The status of condition `t` (`"True"`, `"False"`, ...) in a conditions array.
pub fn condition_status<'a>(conditions: Option<&'a Value>, t: &str) -> Option<&'a str> {
    conditions?.as_array()?.iter().find(|c| c["type"] == t)?.get("status")?.as_str()
}

/// Create, treating "already exists" as done.
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete, treating "not found" as done. `grace` 0 removes a pod at once (what the kubelet
/// does after its containers stopped).
pub async fn delete_ignore_missing<K>(api: &Api<K>, name: &str, grace: Option<u32>) -> Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let dp = DeleteParams { grace_period_seconds: grace, ..Default::default() };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Is this a Kubernetes "not found" or "conflict" (the object moved on under us)?
pub fn is_gone_or_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 404 || s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())].into();
        let sel = LabelSelector {
            match_labels: Some([("a".to_string(), "1".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "b".into(),
                operator: "In".into(),
                values: Some(vec!["2".into(), "3".into()]),
            }]),
        };
        assert!(selector_matches(&sel, &labels));
        assert_eq!(selector_string(&sel), "a=1,b in (2,3)");
        let not = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "c".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(!selector_matches(&not, &labels));
    }

    #[test]
    fn covers_ignores_dropped_zero_values() {
        let have = json!({"replicas": 3, "conditions": [{"type": "A"}]});
        assert!(covers(&have, &json!({"replicas": 3, "readyReplicas": 0})));
        assert!(!covers(&have, &json!({"replicas": 2})));
        assert!(!covers(&have, &json!({"conditions": [{"type": "B"}]})));
        assert!(covers(&Value::Null, &json!({"readyReplicas": 0})));
        assert!(covers(&json!([{"type": "A", "t": 1}]), &json!([{"type": "A"}])));
        assert!(!covers(&json!([{"type": "A"}]), &json!([{"type": "A"}, {"type": "B"}])));
    }

    #[test]
    fn names() {
        assert_eq!(name_suffix("x"), name_suffix("x"));
        assert_eq!(name_suffix("x").len(), 5);
        assert_ne!(random_suffix(), random_suffix());
        assert_eq!(machine_index("abc-master-0"), Some(0));
        assert_eq!(machine_index("abc-master-xyz12-2"), Some(2));
        assert_eq!(machine_index("abc-master"), None);
    }
}
