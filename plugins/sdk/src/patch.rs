//! Kubernetes patch semantics without an API server: the one implementation that the
//! host's plan overlay and [`FakeHost`](crate::testing) apply patches with, so plan mode
//! computes the object the phase tests check. Both operations are the `json-patch`
//! crate's; this module only fixes how they are called and how their failures read.
//!
//! - Merge patch (`application/merge-patch+json`, RFC 7386), [`merge_patch`]: an object
//!   patch merges member by member, a `null` member removes that member, and any other
//!   patch value replaces the target. A patch object merged into a member that is missing
//!   (or not an object) starts from an empty object, so its own `null` members remove
//!   nothing and are not stored: `{"a": {"b": null, "c": 1}}` into `{}` gives
//!   `{"a": {"c": 1}}`.
//! - JSON patch (`application/json-patch+json`, RFC 6902), [`json_patch`]: the operations
//!   are decoded first (a malformed list changes nothing), then applied in order; if one
//!   fails (a `test` whose value differs, a `remove` or `replace` of a missing path, a
//!   bad index) the document is left as it was.
//!
//! - Server-side apply, [`apply_merge`], without field ownership: the applied object
//!   merged in as a merge patch in which `null` means nothing, so nothing is removed;
//!   objects merge, everything else (lists included) is replaced.
//!
//! Errors: the API server answers a JSON patch it cannot decode with 400 and one that does
//! not apply with 422; the host maps both to `invalid`, and so does everything here: a
//! [`PatchError`] becomes [`KubeError::Invalid`] with the error's text.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::KubeError;

/// Apply an RFC 7386 merge patch to `target` in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// A stand-in for server-side apply (no field ownership is modelled): the applied object
/// merged in as a merge patch in which `null` means nothing, so nothing is removed;
/// objects merge, everything else (lists included) is replaced.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    if !applied.is_null() {
        merge_patch(target, &without_nulls(applied));
    }
}

/// `value` without the `null` members of its objects, at every depth (lists are values
/// and kept whole).
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        other => other.clone(),
    }
}

/// Apply an RFC 6902 JSON patch (a list of operations) to `target`, all or nothing.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        json_patch::Patch::deserialize(ops).map_err(|e| PatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::DoesNotApply(e.to_string()))
}

/// Why a JSON patch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Not a list of RFC 6902 operations (the API server's 400).
    Malformed(String),
    /// A well-formed patch that does not apply to this object, e.g. a failed `test`
    /// (the API server's 422).
    DoesNotApply(String),
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::Malformed(why) => write!(f, "not an RFC 6902 JSON patch: {why}"),
            PatchError::DoesNotApply(why) => write!(f, "JSON patch does not apply: {why}"),
        }
    }
}

impl std::error::Error for PatchError {}

impl From<PatchError> for KubeError {
    fn from(e: PatchError) -> Self {
        KubeError::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_merges_objects_ignores_nulls_and_replaces_lists() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        apply_merge(&mut doc, &json!({"a": {"b": null, "d": {"e": null, "f": 3}}, "l": [null, 3]}));
        assert_eq!(doc, json!({"a": {"b": 1, "c": 2, "d": {"f": 3}}, "l": [null, 3]}));
        apply_merge(&mut doc, &Value::Null);
        assert_eq!(doc["a"]["b"], json!(1));
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn nulls_of_a_patch_object_put_into_a_missing_member_are_dropped() {
        let mut doc = json!({"spec": {}});
        merge_patch(&mut doc, &json!({"spec": {"new": {"gone": null, "deeper": {"x": null, "y": 1}}}}));
        assert_eq!(doc, json!({"spec": {"new": {"deeper": {"y": 1}}}}));
        let mut scalar = json!({"a": 1});
        merge_patch(&mut scalar, &json!({"a": {"b": null}}));
        assert_eq!(scalar, json!({"a": {}}), "an object patch replaces a scalar, without its nulls");
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
        assert!(matches!(failed, Err(PatchError::DoesNotApply(_))), "{failed:?}");
        assert_eq!(doc, before, "a failed patch changes nothing");
        assert!(matches!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::DoesNotApply(_))
        ));
        assert!(matches!(json_patch(&mut doc, &json!({"op": "add"})), Err(PatchError::Malformed(_))));
        assert!(matches!(json_patch(&mut doc, &json!([{"op": "frob", "path": "/a"}])), Err(PatchError::Malformed(_))));
        assert_eq!(doc, before);
    }

    #[test]
    fn errors_are_invalid_requests() {
        let e = PatchError::DoesNotApply("value did not match".into());
        assert_eq!(KubeError::from(e), KubeError::Invalid("JSON patch does not apply: value did not match".into()));
    }
}
