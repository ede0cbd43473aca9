//! A Kubernetes object as JSON, with the accessors phases use all the time.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::PhaseError;

/// A Kubernetes object (any kind) held as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Object(pub Value);

/// One entry of `status.conditions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

impl Object {
    /// Parse the JSON the host returned.
    pub fn parse(json: &str) -> Result<Self, PhaseError> {
        let value: Value = serde_json::from_str(json)?;
        if !value.is_object() {
            return Err(PhaseError::invalid("expected a JSON object"));
        }
        Ok(Object(value))
    }

    pub fn to_json(&self) -> String {
        self.0.to_string()
    }

    /// The value at a JSON pointer, e.g. `/spec/replicas`.
    pub fn at(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// Mutable value at a JSON pointer.
    pub fn at_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        self.0.pointer_mut(pointer)
    }

    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.at(pointer).and_then(Value::as_str)
    }

    pub fn i64_at(&self, pointer: &str) -> Option<i64> {
        self.at(pointer).and_then(Value::as_i64)
    }

    pub fn bool_at(&self, pointer: &str) -> Option<bool> {
        self.at(pointer).and_then(Value::as_bool)
    }

    /// The array at a pointer, or an empty slice.
    pub fn array_at(&self, pointer: &str) -> &[Value] {
        self.at(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Deserialize the value at a pointer.
    pub fn typed_at<T: DeserializeOwned>(&self, pointer: &str) -> Result<Option<T>, PhaseError> {
        match self.at(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                serde_json::from_value(v.clone()).map(Some).map_err(|e| PhaseError::invalid(format!("{pointer}: {e}")))
            }
        }
    }

    /// Set the value at a pointer, creating intermediate objects as needed.
    pub fn set(&mut self, pointer: &str, value: Value) {
        set_pointer(&mut self.0, pointer, value);
    }

    /// Remove the value at a pointer; returns it if it was there.
    pub fn remove(&mut self, pointer: &str) -> Option<Value> {
        let (parent, last) = pointer.rsplit_once('/')?;
        let last = unescape(last);
        match self.0.pointer_mut(parent)? {
            Value::Object(map) => map.remove(&last),
            Value::Array(items) => {
                let index: usize = last.parse().ok()?;
                (index < items.len()).then(|| items.remove(index))
            }
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    pub fn uid(&self) -> &str {
        self.str_at("/metadata/uid").unwrap_or_default()
    }

    pub fn resource_version(&self) -> &str {
        self.str_at("/metadata/resourceVersion").unwrap_or_default()
    }

    pub fn generation(&self) -> i64 {
        self.i64_at("/metadata/generation").unwrap_or_default()
    }

    pub fn is_deleting(&self) -> bool {
        self.at("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.at("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.at("/metadata/annotations").and_then(|l| l.get(key)).and_then(Value::as_str)
    }

    /// `status.conditions[type]`.
    pub fn condition(&self, type_: &str) -> Option<Condition> {
        self.array_at("/status/conditions").iter().find_map(|c| {
            (c.get("type")?.as_str()? == type_).then(|| Condition {
                type_: type_.to_string(),
                status: c.get("status").and_then(Value::as_str).unwrap_or("Unknown").to_string(),
                reason: c.get("reason").and_then(Value::as_str).unwrap_or_default().to_string(),
                message: c.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        })
    }

    /// Whether `status.conditions[type].status` is "True".
    pub fn condition_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.is_true())
    }

    /// `ns/name` (or `name` for cluster-scoped objects), for messages.
    pub fn key(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_string(),
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *root = value;
        return;
    }
    let mut current = root;
    let tokens: Vec<String> = pointer.trim_start_matches('/').split('/').map(unescape).collect();
    for (i, token) in tokens.iter().enumerate() {
        let last = i == tokens.len() - 1;
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
        current = match current {
            Value::Array(items) => {
                let index: usize = token.parse().unwrap_or(items.len());
                if index >= items.len() {
                    items.push(Value::Null);
                }
                let index = index.min(items.len() - 1);
                &mut items[index]
            }
            other => {
                if !other.is_object() {
                    *other = Value::Object(Map::new());
                }
                other.as_object_mut().expect("just made an object").entry(token.clone()).or_insert(Value::Null)
            }
        };
        if last {
            *current = value;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_creates_intermediate_objects_and_remove_takes_them_back() {
        let mut o = Object(json!({"metadata": {"name": "a"}}));
        o.set("/spec/template/replicas", json!(3));
        assert_eq!(o.i64_at("/spec/template/replicas"), Some(3));
        o.set("/data/a.b~1c", json!("x"));
        assert_eq!(o.at("/data").unwrap(), &json!({"a.b/c": "x"}));
        assert_eq!(o.remove("/data/a.b~1c"), Some(json!("x")));
        assert_eq!(o.remove("/data/missing"), None);
    }

    #[test]
    fn conditions_are_found_by_type() {
        let o = Object(json!({"status": {"conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Degraded", "status": "False", "reason": "AsExpected"}
        ]}}));
        assert!(o.condition_true("Available"));
        assert!(!o.condition_true("Degraded"));
        assert_eq!(o.condition("Degraded").unwrap().reason, "AsExpected");
        assert!(o.condition("Progressing").is_none());
    }

    #[test]
    fn key_names_namespaced_and_cluster_objects() {
        assert_eq!(Object(json!({"metadata": {"name": "a", "namespace": "b"}})).key(), "b/a");
        assert_eq!(Object(json!({"metadata": {"name": "cluster"}})).key(), "cluster");
    }
}
