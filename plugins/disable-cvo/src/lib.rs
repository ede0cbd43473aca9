//! DisableCVO: scale the cluster-version operator (CVO) to zero for the migration, and wait
//! until its pods are gone.
//!
//! Why (docs/ARCHITECTURE.md, "Does the cluster-version operator have to stop?"): nothing
//! this migration edits belongs to the release payload (the Infrastructure instance, the
//! cloud config, vsphere-creds, the control-plane machine set and MachineSets come from the
//! installer), and the one thing the CVO would revert, the Infrastructure CRD, is never
//! edited (the Go controller stopped the CVO to edit it). What a running CVO could still do
//! is start a release update while machines move: it would roll machine-api, the cloud
//! controller manager and the CSI driver mid-migration. Stopping it is what keeps that from
//! happening; the phase's result says so.
//!
//! The original replica count is recorded once, before the first change, in the
//! migration's state under [`CVO_REPLICAS`] (a JSON number; this phase owns the key): the Verify phase re-enables
//! the CVO with it, and the rollback restores it (the Go controller assumed 1).

use vsm_common::shared_state::CVO_REPLICAS;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{CVO, CVO_NAMESPACE};

/// How long to wait between looks at the pods (the host also calls back on pod events).
const POLL_MS: u64 = 5_000;

pub struct DisableCvo;

impl Phase for DisableCvo {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "DisableCVO",
            env!("CARGO_PKG_VERSION"),
            "Scale the cluster-version operator to zero (remembering its replica count) so no release update starts while machines move",
        )
        .kube("apps", "deployments", &["get", "patch"], Some(CVO_NAMESPACE))
        .kube("", "pods", &["list"], Some(CVO_NAMESPACE))
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        rollback(cx)
    }
}

fn cvo_name() -> String {
    format!("Deployment {CVO_NAMESPACE}/{CVO}")
}

fn read_cvo(cx: &Cx) -> Result<Object, PhaseError> {
    cx.kube().get(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO)?.ok_or_else(|| {
        PhaseError::invalid(format!(
            "the cluster-version operator ({}) does not exist: is this an OpenShift cluster?",
            cvo_name()
        ))
    })
}

/// `spec.replicas` (the API server defaults it to 1).
pub fn replicas(deployment: &Object) -> i64 {
    deployment.i64_at("/spec/replicas").unwrap_or(1)
}

/// The label selector of the Deployment's pods, in selector syntax.
pub fn pod_selector(deployment: &Object) -> Result<String, PhaseError> {
    let labels = deployment.at("/spec/selector/matchLabels").and_then(Value::as_object);
    let parts: Vec<String> = labels
        .map(|l| l.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect())
        .unwrap_or_default();
    if parts.is_empty() {
        return Err(PhaseError::invalid(format!(
            "{} has no spec.selector.matchLabels to find its pods by",
            cvo_name()
        )));
    }
    Ok(parts.join(","))
}

/// The remembered count, if recorded.
pub fn remembered(cx: &Cx) -> Result<Option<i64>, PhaseError> {
    match cx.shared().get_json::<i64>(CVO_REPLICAS)? {
        Some(n) if n >= 0 => Ok(Some(n)),
        Some(n) => Err(PhaseError::invalid(format!("state {CVO_REPLICAS} holds a negative replica count ({n})"))),
        None => Ok(None),
    }
}

fn scale(cx: &Cx, to: i64) -> Result<(), PhaseError> {
    cx.kube().merge_patch(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO, &json!({"spec": {"replicas": to}}))?;
    Ok(())
}

fn execute(cx: &Cx) -> Step {
    let cvo = read_cvo(cx)?;
    let current = replicas(&cvo);
    let original = match remembered(cx)? {
        Some(n) => n,
        None => {
            // Recorded before the first change, so a crash right after it loses nothing.
            cx.shared().put(CVO_REPLICAS, &current)?;
            if current == 0 {
                cx.warn(format!("{} was already scaled to 0 before the migration; it will be left at 0", cvo_name()));
            }
            current
        }
    };
    if current != 0 {
        scale(cx, 0)?;
        cx.info(format!("scaled {} from {current} to 0 replicas (original count {original} recorded)", cvo_name()));
        cx.log().event(
            EventType::Normal,
            "CVOScaledDown",
            &format!("scaled the cluster-version operator from {current} to 0 replicas"),
        );
    }
    if cx.dry_run() {
        return Ok(done(format!(
            "would scale {} from {current} to 0 replicas and wait for its pods to stop",
            cvo_name()
        )));
    }
    let pods = cx.kube().list(&types::POD, Some(CVO_NAMESPACE), Some(&pod_selector(&cvo)?))?;
    if !pods.is_empty() {
        let names: Vec<String> = pods
            .iter()
            .map(|p| {
                format!(
                    "{} ({})",
                    p.name(),
                    if p.is_deleting() { "terminating" } else { p.str_at("/status/phase").unwrap_or("Unknown") }
                )
            })
            .collect();
        return Ok(wait(
            POLL_MS,
            50,
            format!("waiting for {} cluster-version-operator pod(s) to stop: {}", pods.len(), names.join(", ")),
        ));
    }
    Ok(done(format!(
        "the cluster-version operator is scaled to 0 and its pods are gone (it had {original} replica(s); Verify or a rollback restores them), \
         so no release update starts while machines move; nothing the migration edits belongs to the release payload"
    )))
}

fn rollback(cx: &Cx) -> Step {
    let Some(original) = remembered(cx)? else {
        return Ok(done("nothing to undo: the CVO's replica count was never recorded, so it was never scaled down"));
    };
    let cvo = read_cvo(cx)?;
    if replicas(&cvo) != original {
        scale(cx, original)?;
        cx.log().event(
            EventType::Normal,
            "CVORestored",
            &format!("scaled the cluster-version operator back to {original} replica(s)"),
        );
    }
    let cvo = read_cvo(cx)?;
    let ready = cvo.i64_at("/status/readyReplicas").unwrap_or(0);
    let observed = cvo.i64_at("/status/observedGeneration").unwrap_or(0);
    if original > 0 && (ready < original || observed < cvo.generation()) {
        return Ok(wait(
            POLL_MS,
            percent(ready.max(0) as usize, original as usize),
            format!("waiting for the cluster-version operator to be ready again: {ready}/{original} replicas ready"),
        ));
    }
    Ok(done(format!("the cluster-version operator is back at its original {original} replica(s)")))
}

export_phase!(DisableCvo);

#[cfg(test)]
mod tests;
