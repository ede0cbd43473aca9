//! RecreateCPMS: point the ControlPlaneMachineSet (regenerated Inactive by its operator
//! after DeleteCPMS) at the target failure domains of `spec.controlPlaneMachineSetConfig`
//! (its failure domains list them all; its provider spec is placed in the first), set it
//! Active, and wait for the control-plane rollout: the operator has seen the change
//! (observedGeneration), updated = ready = replicas, every control-plane machine runs in
//! one of those domains with a Ready node, every domain holds a master when there are at
//! least as many masters as domains, and all of that holds for the
//! stability window (`spec.health.stabilityWindow`, default 2m) without a regression.
//! The Go controller could call the rollout done on its first look, before it started.
//! MachineHealthChecks over the masters (selecting the CPMS template's machine labels) are
//! paused before the CPMS changes and resumed when the rollout is stable
//! (`vsm_common::health_checks`), so none remediates a master the rollout is replacing.
//!
//! Rollback: an Active CPMS cannot go back to Inactive (a CEL rule), so the rollback puts
//! the original machine template back (those health checks paused again meanwhile), waits
//! until the masters have returned to the source vCenter, and then (if the CPMS was
//! Inactive before) deletes it so its operator regenerates it Inactive, and restores the
//! phase's before-image onto that.

use serde::{Deserialize, Serialize};
use vsm_common::machines::{self, CPMS_TEMPLATE, Readiness};
use vsm_common::{duration, health_checks, infra, replacements};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{CPMS, INFRASTRUCTURE, MACHINE_API_NAMESPACE};
use vsm_sdk::{Preconditions, spec::FailureDomain};

const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);
const POLL_MS: u64 = 30_000;
const DEFAULT_WINDOW_MS: u64 = 2 * 60 * 1000;

/// Phase state: the CPMS before the phase changed it ([`Before`]).
const BEFORE_KEY: &str = "before";
/// Phase state: set just before the phase changes the CPMS (so a rollback knows it may
/// have to move the masters back).
const CHANGED_KEY: &str = "changed";
/// Phase state: the CPMS generation the phase's change produced.
const GENERATION_KEY: &str = "generation";
/// Phase state: when the rollout was first seen complete (ms), cleared on a regression.
const STABLE_KEY: &str = "stable-since";
/// Rollback state: the generation of the restored template, and the uid of the CPMS the
/// rollback deleted to deactivate it.
const ROLLBACK_GENERATION_KEY: &str = "rollback-generation";
const ROLLBACK_DELETED_KEY: &str = "rollback-deleted-uid";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Before {
    state: String,
    template: Value,
}

pub struct RecreateCpms;

impl Phase for RecreateCpms {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "RecreateCPMS",
            env!("CARGO_PKG_VERSION"),
            "Point the control-plane machine set at the target vCenter, activate it and wait for a stable rollout of the masters",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("machine.openshift.io", "controlplanemachinesets", &["get", "update", "delete"], NS)
        .kube("machine.openshift.io", "machines", &["list"], NS)
        .kube("machine.openshift.io", "machinehealthchecks", &["get", "list", "patch"], NS)
        .kube("", "nodes", &["list"], None)
        .with_rollback()
        .deadline_minutes(120)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        rollback(cx)
    }
}

fn cpms_name() -> String {
    format!("ControlPlaneMachineSet {MACHINE_API_NAMESPACE}/{CPMS}")
}

fn state_of(cpms: &Object) -> &str {
    cpms.str_at("/spec/state").unwrap_or("Inactive")
}

/// Pause the health checks over the machines `cpms` makes (its template's machine labels).
fn pause_health_checks(cx: &Cx, cpms: &Object) -> Result<Vec<String>, PhaseError> {
    let labels = cpms.at(&format!("{CPMS_TEMPLATE}/metadata/labels")).cloned().unwrap_or_else(|| json!({}));
    health_checks::pause(cx, &[labels])
}

/// How the masters stand against a placement: on `servers`, all ready, as many as the
/// CPMS wants, nothing left over, and the CPMS status agreeing.
struct Rollout {
    complete: bool,
    progress: u8,
    message: String,
    failed: Vec<String>,
}

/// Where the masters belong: failure domains (execute) or vCenters (rollback).
struct Placement {
    /// The failure domains, shaped as the Infrastructure stores them (empty: by server).
    domains: Vec<Value>,
    servers: Vec<String>,
    description: String,
}

impl Placement {
    fn domains(fds: &[&FailureDomain]) -> Placement {
        Placement {
            domains: fds.iter().map(|fd| serde_json::to_value(fd).unwrap_or_default()).collect(),
            servers: fds.iter().map(|fd| fd.server.clone()).collect(),
            description: describe(fds),
        }
    }

    fn servers(servers: Vec<String>) -> Placement {
        let description = format!("vCenter {}", servers.join(", "));
        Placement { domains: Vec::new(), servers, description }
    }

    fn domain_of(&self, machine: &Object) -> Option<String> {
        replacements::domain_of(machine.at(machines::MACHINE_PROVIDER_SPEC)?, &self.domains)
    }

    fn holds(&self, machine: &Object) -> bool {
        if self.domains.is_empty() {
            return self.servers.iter().any(|s| s == machines::machine_server(machine));
        }
        self.domain_of(machine).is_some()
    }

    /// The domains without a master, when there are masters enough for every domain.
    fn empty_domains(&self, placed: &[Object], want: usize) -> Vec<&str> {
        if want < self.domains.len() {
            return Vec::new();
        }
        let used: Vec<String> = placed.iter().filter_map(|m| self.domain_of(m)).collect();
        self.domains
            .iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str))
            .filter(|n| !used.iter().any(|u| u == n))
            .collect()
    }
}

fn rollout(cx: &Cx, cpms: &Object, place: &Placement, generation: i64) -> Result<Rollout, PhaseError> {
    let observed = cpms.i64_at("/status/observedGeneration").unwrap_or(0);
    if observed < generation {
        return Ok(Rollout {
            complete: false,
            progress: 5,
            message: format!(
                "waiting for the control-plane machine set operator to see the change (generation {generation}, observed {observed})"
            ),
            failed: Vec::new(),
        });
    }
    let want = cpms.i64_at("/spec/replicas").unwrap_or(3).max(0) as usize;
    let selector = machines::selector_string(cpms)
        .ok_or_else(|| PhaseError::invalid(format!("{} has no spec.selector.matchLabels", cpms_name())))?;
    let masters = cx.kube().list(&types::MACHINE, NS, Some(&selector))?;
    let nodes = cx.kube().list(&types::NODE, None, None)?;
    let (placed, elsewhere): (Vec<Object>, Vec<Object>) = masters.into_iter().partition(|m| place.holds(m));
    let empty: Vec<&str> = place.empty_domains(&placed, want);
    let r = Readiness::of(&placed, &nodes);
    let status = |k: &str| cpms.i64_at(&format!("/status/{k}")).unwrap_or(0).max(0) as usize;
    let (replicas, updated, ready) = (status("replicas"), status("updatedReplicas"), status("readyReplicas"));
    let degraded = cpms.condition("Degraded").filter(|c| c.is_true());
    let complete = r.complete(want)
        && elsewhere.is_empty()
        && empty.is_empty()
        && replicas == want
        && updated == want
        && ready == want
        && degraded.is_none();
    let mut parts = vec![format!(
        "{}/{want} masters ready in {}; CPMS reports {updated}/{want} updated, {ready}/{want} ready, {replicas} machines",
        r.ready.len(),
        place.description
    )];
    if !empty.is_empty() {
        parts.push(format!("no master in failure domain(s) {} yet", empty.join(", ")));
    }
    if !r.waiting.is_empty() {
        parts.push(machines::list_some(&r.waiting, 3));
    }
    if !elsewhere.is_empty() {
        let names: Vec<String> = elsewhere
            .iter()
            .map(|m| {
                format!(
                    "{} ({}{})",
                    m.name(),
                    machines::machine_server(m),
                    if m.is_deleting() { ", deleting" } else { "" }
                )
            })
            .collect();
        parts.push(format!("still elsewhere: {}", machines::list_some(&names, 3)));
    }
    if let Some(d) = degraded {
        parts.push(format!("CPMS Degraded: {} {}", d.reason, d.message));
    }
    Ok(Rollout { complete, progress: percent(r.ready.len(), want.max(1)), message: parts.join("; "), failed: r.failed })
}

/// The control plane's target failure domains (`spec.controlPlaneMachineSetConfig`), each
/// already in the Infrastructure, and the infraID.
fn target_domains<'a>(cx: &'a Cx) -> Result<(Vec<&'a FailureDomain>, String), PhaseError> {
    let spec = cx.spec()?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let vsphere = infra::vsphere_spec(&infra);
    let names = spec.control_plane_machine_set_config.domains();
    if names.is_empty() {
        return Err(PhaseError::invalid("spec.controlPlaneMachineSetConfig names no failure domain"));
    }
    let mut fds = Vec::new();
    for name in names {
        let fd = spec.failure_domain(name).ok_or_else(|| {
            PhaseError::invalid(format!(
                "spec.controlPlaneMachineSetConfig names failure domain {name:?}, which is not one of spec.failureDomains"
            ))
        })?;
        if !infra::failure_domains(&vsphere).iter().any(|f| f.get("name").and_then(Value::as_str) == Some(name)) {
            return Err(PhaseError::invalid(format!(
                "failure domain {name} is not in the Infrastructure: UpdateInfrastructure must run before RecreateCPMS"
            )));
        }
        fds.push(fd);
    }
    Ok((fds, infra::infra_id(&infra)?.to_string()))
}

/// `failure domain(s) a, b (vCenter x)` for messages.
fn describe(fds: &[&FailureDomain]) -> String {
    let names: Vec<&str> = fds.iter().map(|f| f.name.as_str()).collect();
    let mut servers: Vec<&str> = fds.iter().map(|f| f.server.as_str()).collect();
    servers.dedup();
    format!("failure domain(s) {} (vCenter {})", names.join(", "), servers.join(", "))
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let window = duration::or_default(spec.health.stability_window.as_deref(), DEFAULT_WINDOW_MS)
        .map_err(|e| PhaseError::invalid(format!("spec.health.stabilityWindow: {e}")))?;
    let (fds, infra_id) = target_domains(cx)?;
    let place = Placement::domains(&fds);
    let Some(cpms) = cx.kube().get(&types::CONTROL_PLANE_MACHINE_SET, NS, CPMS)? else {
        return Ok(wait(
            5_000,
            0,
            format!(
                "waiting for the control-plane machine set operator to regenerate {} (deleted by DeleteCPMS)",
                cpms_name()
            ),
        ));
    };
    if cpms.is_deleting() {
        return Ok(wait(5_000, 0, format!("waiting for the deleted {} to be regenerated", cpms_name())));
    }

    let generation = match cx.state().get_json::<i64>(GENERATION_KEY)? {
        Some(g) => g,
        None => {
            let (desired, dropped) = machines::cpms_template_for(&cpms, &fds, &infra_id, &spec.static_ips)
                .map_err(|e| PhaseError::invalid(e.to_string()))?;
            if cx.state().get(BEFORE_KEY).is_none() {
                let before = Before {
                    state: state_of(&cpms).to_string(),
                    template: cpms.at(CPMS_TEMPLATE).cloned().unwrap_or(Value::Null),
                };
                cx.state().put(BEFORE_KEY, &before)?;
            }
            let g = if state_of(&cpms) == "Active" && cpms.at(CPMS_TEMPLATE) == Some(&desired) {
                cpms.generation()
            } else {
                for d in &dropped {
                    cx.warn(format!("{}: not carried over to the target: {d}", cpms_name()));
                }
                pause_health_checks(cx, &cpms)?;
                cx.state().mark(CHANGED_KEY)?;
                let mut changed = cpms.clone();
                changed.set(CPMS_TEMPLATE, desired);
                changed.set("/spec/state", json!("Active"));
                let stored = cx.kube().replace(&types::CONTROL_PLANE_MACHINE_SET, &changed)?;
                let message = format!(
                    "pointed {} at {} and set it Active; the control plane rolls over one master at a time",
                    cpms_name(),
                    place.description
                );
                cx.log().event(EventType::Normal, "ControlPlaneMoving", &message);
                cx.info(&message);
                stored.generation()
            };
            cx.state().put(GENERATION_KEY, &g)?;
            g
        }
    };

    let r = rollout(cx, &cpms, &place, generation)?;
    if !r.failed.is_empty() {
        return Err(PhaseError::invalid(format!(
            "control-plane machine(s) failed in {}: {}",
            place.description,
            machines::list_some(&r.failed, 3)
        )));
    }
    if !r.complete {
        if cx.state().get(STABLE_KEY).is_some() {
            cx.warn(format!("the control plane regressed during its stability window: {}", r.message));
            cx.state().delete(STABLE_KEY)?;
        }
        return Ok(wait(POLL_MS, (r.progress as u32 * 9 / 10) as u8, format!("control-plane rollout: {}", r.message)));
    }
    let now = cx.now_ms();
    let since = match cx.state().get_json::<u64>(STABLE_KEY)? {
        Some(s) => s,
        None => {
            cx.state().put(STABLE_KEY, &now)?;
            now
        }
    };
    let stable = now.saturating_sub(since);
    if stable >= window {
        health_checks::resume(cx)?;
        return Ok(done(format!(
            "the control plane runs in {} and stayed healthy for {}: {}",
            place.description,
            duration::format_ms(window),
            r.message
        )));
    }
    Ok(wait(
        (window - stable).min(POLL_MS),
        90,
        format!(
            "control plane rolled out to {}; watching it stay healthy ({} of {})",
            place.description,
            duration::format_ms(stable),
            duration::format_ms(window)
        ),
    ))
}

fn clear(cx: &Cx) -> Result<(), PhaseError> {
    for k in [BEFORE_KEY, CHANGED_KEY, GENERATION_KEY, STABLE_KEY, ROLLBACK_GENERATION_KEY, ROLLBACK_DELETED_KEY] {
        cx.state().delete(k)?;
    }
    Ok(())
}

fn finish(cx: &Cx, what: &str) -> Step {
    cx.backup().restore_all()?;
    health_checks::resume(cx)?;
    clear(cx)?;
    Ok(done(format!("{} restored: {what}", cpms_name())))
}

fn rollback(cx: &Cx) -> Step {
    let before = cx.state().get_json::<Before>(BEFORE_KEY)?;
    let Some(before) = before.filter(|_| cx.state().is_marked(CHANGED_KEY)) else {
        cx.backup().restore_all()?;
        health_checks::resume(cx)?;
        clear(cx)?;
        return Ok(done(format!("nothing to undo: this phase did not change {}", cpms_name())));
    };
    let cpms = cx.kube().get(&types::CONTROL_PLANE_MACHINE_SET, NS, CPMS)?;

    // Deactivating: the rollback deleted the Active CPMS; its operator makes a new one.
    if let Some(uid) = cx.state().get(ROLLBACK_DELETED_KEY) {
        return match cpms {
            Some(c) if c.uid() != uid && !c.is_deleting() && state_of(&c) == "Inactive" => {
                finish(cx, "the masters are back in the source vCenter and the CPMS is Inactive again")
            }
            Some(c) if c.uid() != uid && !c.is_deleting() => Err(PhaseError::invalid(format!(
                "{} came back in state {} instead of Inactive",
                cpms_name(),
                state_of(&c)
            ))),
            _ => Ok(wait(
                5_000,
                90,
                format!("waiting for the control-plane machine set operator to regenerate {}", cpms_name()),
            )),
        };
    }
    let Some(cpms) = cpms else {
        return Ok(wait(
            5_000,
            0,
            format!("waiting for the control-plane machine set operator to regenerate {}", cpms_name()),
        ));
    };
    if state_of(&cpms) != "Active" {
        // Never activated (or already Inactive again): the before-image is all there is.
        return finish(cx, "the CPMS was never activated");
    }

    let generation = match cx.state().get_json::<i64>(ROLLBACK_GENERATION_KEY)? {
        Some(g) => g,
        None => {
            let g = if cpms.at(CPMS_TEMPLATE) == Some(&before.template) {
                cpms.generation()
            } else {
                pause_health_checks(cx, &cpms)?;
                let mut changed = cpms.clone();
                changed.set(CPMS_TEMPLATE, before.template.clone());
                let stored = cx.kube().replace(&types::CONTROL_PLANE_MACHINE_SET, &changed)?;
                cx.info(format!("put the original machine template back on {}", cpms_name()));
                stored.generation()
            };
            cx.state().put(ROLLBACK_GENERATION_KEY, &g)?;
            g
        }
    };
    let r = rollout(cx, &cpms, &Placement::servers(cx.source_servers().to_vec()), generation)?;
    if !r.failed.is_empty() {
        return Err(PhaseError::invalid(format!(
            "control-plane machine(s) failed while returning to the source: {}",
            machines::list_some(&r.failed, 3)
        )));
    }
    if !r.complete {
        return Ok(wait(POLL_MS, r.progress, format!("moving the control plane back: {}", r.message)));
    }
    if before.state == "Active" {
        return finish(cx, "the masters are back in the source vCenter");
    }
    let pre = Preconditions { uid: Some(cpms.uid().to_string()), resource_version: None };
    cx.state().set(ROLLBACK_DELETED_KEY, cpms.uid())?;
    cx.kube().delete(&types::CONTROL_PLANE_MACHINE_SET, NS, CPMS, Some(&pre))?;
    cx.info(format!("deleted {} so that its operator regenerates it Inactive", cpms_name()));
    Ok(wait(
        5_000,
        95,
        format!("waiting for the control-plane machine set operator to regenerate {} Inactive", cpms_name()),
    ))
}

export_phase!(RecreateCpms);
