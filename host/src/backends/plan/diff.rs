//! Plan mode: what a mutation would change, as a short field-level summary. Secret data is
//! never shown, only which keys would change.

use serde_json::Value;

/// Lines shown per change at most.
const MAX_LINES: usize = 40;
const MAX_VALUE: usize = 80;

/// Fields that change on every write and say nothing about intent.
fn noise(pointer: &str) -> bool {
    pointer.starts_with("/metadata/resourceVersion")
        || pointer.starts_with("/metadata/managedFields")
        || pointer.starts_with("/metadata/generation")
        || pointer.starts_with("/metadata/creationTimestamp")
        || pointer.starts_with("/metadata/uid")
        || pointer.starts_with("/status")
}

fn show(v: &Value, secret: bool) -> String {
    if secret {
        return "<redacted>".into();
    }
    let s = v.to_string();
    if s.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(before: Option<&Value>, after: Option<&Value>, pointer: &str, secret: bool, out: &mut Vec<String>) {
    if noise(pointer) {
        return;
    }
    let data = |field: &str| pointer == field || pointer.strip_prefix(field).is_some_and(|r| r.starts_with('/'));
    let hidden = secret && (data("/data") || data("/stringData"));
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(b.get(k), a.get(k), &format!("{pointer}/{}", escape(k)), secret, out);
            }
        }
        // A Secret's data added or removed whole: which keys, one line each.
        (None, Some(Value::Object(a))) if hidden => {
            for k in a.keys() {
                walk(None, a.get(k), &format!("{pointer}/{}", escape(k)), secret, out);
            }
        }
        (Some(Value::Object(b)), None) if hidden => {
            for k in b.keys() {
                walk(b.get(k), None, &format!("{pointer}/{}", escape(k)), secret, out);
            }
        }
        (Some(b), Some(a)) if b == a => {}
        (Some(b), Some(a)) => out.push(format!("~ {pointer}: {} → {}", show(b, hidden), show(a, hidden))),
        (None, Some(a)) => out.push(format!("+ {pointer}: {}", show(a, hidden))),
        (Some(_), None) => out.push(format!("- {pointer}")),
        (None, None) => {}
    }
}

/// Field-level changes from `before` to `after` (JSON pointers).
pub fn diff(before: &Value, after: &Value) -> Vec<String> {
    let secret = after.get("kind").and_then(Value::as_str) == Some("Secret")
        || before.get("kind").and_then(Value::as_str) == Some("Secret");
    let mut out = Vec::new();
    walk(Some(before), Some(after), "", secret, &mut out);
    if out.len() > MAX_LINES {
        let more = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("… and {more} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_changed_added_and_removed_fields_without_noise() {
        let before =
            json!({"metadata": {"resourceVersion": "1", "labels": {"a": "1"}}, "spec": {"replicas": 1, "old": true}});
        let after =
            json!({"metadata": {"resourceVersion": "2", "labels": {"a": "1", "b/c": "2"}}, "spec": {"replicas": 0}});
        assert_eq!(
            diff(&before, &after),
            vec!["+ /metadata/labels/b~1c: \"2\"", "- /spec/old", "~ /spec/replicas: 1 → 0"]
        );
    }

    #[test]
    fn never_shows_secret_values() {
        let before = json!({"kind": "Secret", "data": {"vc.password": "c2VjcmV0"}});
        let after = json!({"kind": "Secret", "data": {"vc.password": "bmV3", "vc2.username": "dXNlcg=="}});
        let lines = diff(&before, &after).join("\n");
        assert!(lines.contains("/data/vc.password") && lines.contains("/data/vc2.username"));
        assert!(!lines.contains("c2VjcmV0") && !lines.contains("bmV3") && !lines.contains("dXNlcg=="), "{lines}");
    }

    #[test]
    fn secret_data_added_or_removed_whole_shows_its_keys_not_its_values() {
        let created = json!({"kind": "Secret", "metadata": {"name": "creds"},
                             "data": {"vc.password": "c2VjcmV0"}, "stringData": {"token": "plain-token"}});
        let lines = diff(&json!({}), &created);
        assert_eq!(
            lines,
            vec![
                "+ /data/vc.password: <redacted>",
                "+ /kind: \"Secret\"",
                "+ /metadata: {\"name\":\"creds\"}",
                "+ /stringData/token: <redacted>",
            ]
        );
        let lines = diff(&created, &json!({"kind": "Secret", "metadata": {"name": "creds"}})).join("\n");
        assert_eq!(lines, "- /data/vc.password\n- /stringData/token");
        // A non-object `data` is still never shown.
        let lines = diff(&json!({"kind": "Secret"}), &json!({"kind": "Secret", "data": "c2VjcmV0"})).join("\n");
        assert_eq!(lines, "+ /data: <redacted>");
        // `/database` of a Secret is not its data.
        let lines = diff(&json!({"kind": "Secret"}), &json!({"kind": "Secret", "database": "x"})).join("\n");
        assert_eq!(lines, "+ /database: \"x\"");
    }
}
