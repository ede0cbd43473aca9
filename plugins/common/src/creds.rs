//! vCenter credentials in Secrets: `kube-system/vsphere-creds` (what the cluster uses) and
//! the migration's target credentials Secret, both with keys `<server>.username` and
//! `<server>.password` in base64 `data`.
//!
//! Values are handled as the base64 text the API server returns, so a copy is byte-exact
//! (a trailing newline in a password stays). [`Creds`] never prints its values.

use base64::Engine;
use serde_json::{Map, Value};
use vsm_sdk::Object;

/// `<server>.username`
pub fn username_key(server: &str) -> String {
    format!("{server}.username")
}

/// `<server>.password`
pub fn password_key(server: &str) -> String {
    format!("{server}.password")
}

/// Base64 of `text`, as Secret `data` holds it.
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The text behind a base64 `data` value (`None` if it is not base64 or not UTF-8).
pub fn decode(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// One server's credentials as base64 `data` values.
#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Creds { <redacted> }")
    }
}

/// A Secret's `data`, or an empty map.
pub fn data(secret: &Object) -> Map<String, Value> {
    secret.at("/data").and_then(Value::as_object).cloned().unwrap_or_default()
}

fn nonempty(data: &Map<String, Value>, key: &str) -> Option<String> {
    let v = data.get(key)?.as_str()?;
    let text = decode(v)?;
    (!text.trim().is_empty()).then(|| v.to_string())
}

/// `server`'s credentials from a Secret, if both keys are there and not blank.
pub fn creds(secret: &Object, server: &str) -> Option<Creds> {
    let data = data(secret);
    Some(Creds { username: nonempty(&data, &username_key(server))?, password: nonempty(&data, &password_key(server))? })
}

/// The keys a Secret lacks (or has blank) for these servers, in order.
pub fn missing_keys(secret: &Object, servers: &[&str]) -> Vec<String> {
    let data = data(secret);
    servers.iter().flat_map(|s| [username_key(s), password_key(s)]).filter(|k| nonempty(&data, k).is_none()).collect()
}

/// The Secrets the release's vSphere CredentialsRequests name (`spec.secretRef`), which the
/// cloud credential operator fills with a copy of `kube-system/vsphere-creds` in its
/// default (passthrough) mode and nothing fills in Manual mode: machine-api-operator
/// `install/0000_30_machine-api-operator_00_credentials-request.yaml`,
/// cluster-storage-operator `manifests/03_credentials_request_vsphere_csi.yaml` and
/// `03_credentials_request_vsphere_detector.yaml`, cluster-cloud-controller-manager-operator
/// `manifests/0000_26_cloud-controller-manager-operator_17_credentialsrequest-vsphere.yaml`.
pub const COMPONENT_SECRETS: [(&str, &str); 4] = [
    ("openshift-machine-api", "vsphere-cloud-credentials"),
    ("openshift-cluster-csi-drivers", "vmware-vsphere-cloud-credentials"),
    ("openshift-cluster-storage-operator", "vsphere-cloud-credentials"),
    ("openshift-cloud-controller-manager", "vsphere-cloud-credentials"),
];

/// What [`set`] did to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Added,
    Changed,
    Unchanged,
}

/// Put `server`'s credentials into `data`: a missing key is added, a different value is
/// replaced (a rotated password is updated, never skipped).
pub fn set(data: &mut Map<String, Value>, server: &str, creds: &Creds) -> Vec<(String, KeyChange)> {
    [(username_key(server), &creds.username), (password_key(server), &creds.password)]
        .into_iter()
        .map(|(key, value)| {
            let change = match data.get(&key).and_then(Value::as_str) {
                None => KeyChange::Added,
                Some(v) if v == value => KeyChange::Unchanged,
                Some(_) => KeyChange::Changed,
            };
            if change != KeyChange::Unchanged {
                data.insert(key.clone(), Value::String(value.clone()));
            }
            (key, change)
        })
        .collect()
}

/// Remove `server`'s keys from `data`; returns the keys that were there.
pub fn remove(data: &mut Map<String, Value>, server: &str) -> Vec<String> {
    [username_key(server), password_key(server)].into_iter().filter(|k| data.remove(k).is_some()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret(data: Value) -> Object {
        Object(json!({"metadata": {"name": "vsphere-creds"}, "data": data}))
    }

    #[test]
    fn values_round_trip_through_base64_byte_exact() {
        assert_eq!(encode("s3cr3t!\n"), "czNjcjN0IQo=");
        assert_eq!(decode("czNjcjN0IQo=").as_deref(), Some("s3cr3t!\n"));
        assert_eq!(decode("not base64!"), None);
    }

    #[test]
    fn credentials_are_read_when_both_keys_are_there_and_not_blank() {
        let s = secret(json!({"a.username": encode("u"), "a.password": encode("p"), "b.username": encode("u"),
                              "c.username": encode(" "), "c.password": encode("p")}));
        assert_eq!(creds(&s, "a"), Some(Creds { username: encode("u"), password: encode("p") }));
        assert_eq!(creds(&s, "b"), None);
        assert_eq!(creds(&s, "c"), None);
        assert_eq!(missing_keys(&s, &["a", "b", "c"]), ["b.password", "c.username"]);
        assert_eq!(format!("{:?}", creds(&s, "a").unwrap()), "Creds { <redacted> }");
    }

    #[test]
    fn set_adds_updates_a_changed_password_and_leaves_equal_values() {
        let mut data =
            data(&secret(json!({"t.username": encode("u"), "t.password": encode("old"), "s.password": encode("x")})));
        let changes = set(&mut data, "t", &Creds { username: encode("u"), password: encode("new") });
        assert_eq!(changes, [("t.username".into(), KeyChange::Unchanged), ("t.password".into(), KeyChange::Changed)]);
        assert_eq!(data["t.password"], json!(encode("new")));
        let changes = set(&mut data, "n", &Creds { username: encode("u2"), password: encode("p2") });
        assert!(changes.iter().all(|(_, c)| *c == KeyChange::Added));
        assert_eq!(data["s.password"], json!(encode("x")), "other servers are untouched");
        assert_eq!(remove(&mut data, "n"), ["n.username", "n.password"]);
        assert!(remove(&mut data, "n").is_empty());
    }
}
