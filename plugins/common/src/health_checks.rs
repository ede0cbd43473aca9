//! MachineHealthChecks while machines move. A health check that selects the machines a
//! phase creates or removes would remediate them: a new machine still booting past its
//! `nodeStartupTimeout`, an old one draining. machine-api's health-check controller skips
//! a MachineHealthCheck annotated [`PAUSED_ANNOTATION`] (its `PausedAnnotation`), so a
//! phase that moves machines:
//!
//! 1. lists the health checks of `openshift-machine-api` and picks those whose selector
//!    matches the labels of any machine it moves ([`to_pause`]), leaving alone one that is
//!    already paused (by its owner: it must stay paused after the migration);
//! 2. records their names in its phase state ([`PAUSED_KEY`]) before the first patch, so a
//!    crash between the two never leaves a check paused that nothing will resume;
//! 3. annotates them, valued [`PAUSED_BY`];
//! 4. when its machines have moved (and at the end of its rollback), removes the
//!    annotation from exactly those it recorded, if it still carries [`PAUSED_BY`].
//!
//! The selector and patch logic is pure; [`pause`] and [`resume`] are the small piece of
//! I/O the machine-moving phases share.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use vsm_sdk::prelude::*;
use vsm_sdk::selector::Selector;
use vsm_sdk::types::names::MACHINE_API_NAMESPACE;

/// machine-api's `PausedAnnotation` (pkg/controller/machinehealthcheck).
pub const PAUSED_ANNOTATION: &str = "cluster.x-k8s.io/paused";
/// The annotation's value when the migration paused the check.
pub const PAUSED_BY: &str = "vsphere-migration";
/// Phase state: the health checks this phase paused (a JSON list of names).
pub const PAUSED_KEY: &str = "paused-health-checks";

const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);

/// A `metav1.LabelSelector` (matchLabels, matchExpressions) in its string form; the empty
/// selector (which selects every machine) is the empty string.
pub fn selector_string(label_selector: &Value) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(labels) = label_selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in label_selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
        parts.push(match op {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(format!("selector operator {other:?} on {key}")),
        });
    }
    Ok(parts.join(","))
}

/// Whether the check is paused (by anyone).
pub fn is_paused(mhc: &Object) -> bool {
    mhc.at("/metadata/annotations").and_then(|a| a.get(PAUSED_ANNOTATION)).is_some()
}

/// The health checks, not paused yet, whose selector matches any of `machine_labels` (the
/// labels of the machines a phase moves: its sets' machine templates). Err names a check
/// whose selector cannot be read: it might select them, so it is not passed over.
pub fn to_pause(mhcs: &[Object], machine_labels: &[Value]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for mhc in mhcs.iter().filter(|m| !is_paused(m)) {
        let text = selector_string(mhc.at("/spec/selector").unwrap_or(&Value::Null))
            .map_err(|e| format!("MachineHealthCheck {}: {e}", mhc.name()))?;
        let selector = Selector::parse(&text).map_err(|e| format!("MachineHealthCheck {}: {}", mhc.name(), e.0))?;
        if machine_labels.iter().any(|l| selector.matches(Some(l))) {
            names.push(mhc.name().to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Pause the health checks that select any of `machine_labels` (steps 1–3). Returns the
/// names of every check this phase holds paused.
pub fn pause(cx: &Cx, machine_labels: &[Value]) -> Result<Vec<String>, PhaseError> {
    let mut paused: BTreeSet<String> = cx.state().get_json(PAUSED_KEY)?.unwrap_or_default();
    let mhcs = cx.kube().list(&types::MACHINE_HEALTH_CHECK, NS, None)?;
    let new = to_pause(&mhcs, machine_labels).map_err(PhaseError::invalid)?;
    if new.iter().any(|n| !paused.contains(n)) {
        paused.extend(new.iter().cloned());
        cx.state().put(PAUSED_KEY, &paused)?;
    }
    for name in &new {
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: PAUSED_BY}}});
        cx.kube().merge_patch(&types::MACHINE_HEALTH_CHECK, NS, name, &patch)?;
        cx.info(format!("paused MachineHealthCheck {name} while its machines move"));
    }
    Ok(paused.into_iter().collect())
}

/// Resume the health checks this phase paused (step 4); a check deleted meanwhile, or one
/// whose annotation someone else has since set, is left as it is.
pub fn resume(cx: &Cx) -> Result<Vec<String>, PhaseError> {
    let Some(paused) = cx.state().get_json::<Vec<String>>(PAUSED_KEY)? else { return Ok(Vec::new()) };
    for name in &paused {
        let Some(mhc) = cx.kube().get(&types::MACHINE_HEALTH_CHECK, NS, name)? else { continue };
        let ours = mhc.at("/metadata/annotations").and_then(|a| a.get(PAUSED_ANNOTATION)).and_then(Value::as_str)
            == Some(PAUSED_BY);
        if ours {
            let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}});
            cx.kube().merge_patch(&types::MACHINE_HEALTH_CHECK, NS, name, &patch)?;
            cx.info(format!("resumed MachineHealthCheck {name}"));
        }
    }
    cx.state().delete(PAUSED_KEY)?;
    Ok(paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_mhc(name: &str, selector: Value, paused: Option<&str>) -> Object {
        let mut o =
            json!({"metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE}, "spec": {"selector": selector}});
        if let Some(by) = paused {
            o["metadata"]["annotations"] = json!({PAUSED_ANNOTATION: by});
        }
        Object(o)
    }

    #[test]
    fn label_selectors_read_as_strings() {
        let s = json!({"matchLabels": {"role": "worker"}, "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "gpu", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["x"]}, {"key": "set", "operator": "Exists"}]});
        assert_eq!(selector_string(&s).unwrap(), "role=worker,zone in (a,b),!gpu,tier notin (x),set");
        assert_eq!(selector_string(&json!({})).unwrap(), "");
        assert!(selector_string(&json!({"matchExpressions": [{"key": "k", "operator": "Gt"}]})).is_err());
    }

    #[test]
    fn the_checks_selecting_moving_machines_are_paused_unless_already_paused() {
        let worker = json!({"machine.openshift.io/cluster-api-machine-role": "worker", "zone": "a"});
        let mhcs = vec![
            mk_mhc(
                "workers",
                json!({"matchLabels": {"machine.openshift.io/cluster-api-machine-role": "worker"}}),
                None,
            ),
            mk_mhc(
                "masters",
                json!({"matchLabels": {"machine.openshift.io/cluster-api-machine-role": "master"}}),
                None,
            ),
            mk_mhc("all", json!({}), None),
            mk_mhc("zone-b", json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}), None),
            mk_mhc("owner-paused", json!({}), Some("")),
        ];
        assert_eq!(to_pause(&mhcs, &[worker]).unwrap(), ["all", "workers"]);
        let broken = vec![mk_mhc("odd", json!({"matchExpressions": [{"key": "k", "operator": "Gt"}]}), None)];
        assert!(to_pause(&broken, &[json!({})]).unwrap_err().contains("MachineHealthCheck odd"));
    }
}
