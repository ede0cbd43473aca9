//! One reconcile of one migration: gather the facts, let the state machine decide, call
//! the phase plugin when it says so, fold the outcome back in, persist, emit Events; repeat
//! while there is more to do right away (bounded), then requeue when the machine asks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};

use super::Context;
use super::approvals::approvals_seen;
use super::status::{WriteError, set_finalizer, write_status};
use crate::api::{
    BackupRef, Direction, FINALIZER, MigrationState, MigrationStatus, PHASES, PlannedPhase, PluginRef, Stage, Time,
    VSphereMigration,
};
use crate::backends::{CallOutputs, MigrationBackends};
use crate::machine::{
    self, Action as Next, CallResult, Catalogue, Decision, EventType, Input, PhaseEntry, condition_types,
};
use crate::metrics::{OutcomeLabels, PhaseLabels, ReconcileLabels};
use crate::runtime::bindings::{CallContext, Migration, Outcome};
use crate::runtime::{LoadedPlugin, RuntimeError};

/// Calls made in one reconcile before yielding to others.
const MAX_CALLS_PER_RECONCILE: usize = 16;
/// Safety net for idle migrations (approval, pause, terminal): nothing should be missed,
/// but nothing needs polling either.
const IDLE_REQUEUE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// The phases in order, as the loaded plugins describe them.
fn catalogue(ctx: &Context, m: &VSphereMigration) -> (Catalogue, Vec<String>) {
    let mut missing = Vec::new();
    let phases = PHASES
        .iter()
        .map(|name| {
            let component = m.spec.plugins.get(*name).and_then(|p| p.component.as_deref());
            match ctx.registry.plugin_for(name, component, None) {
                Ok(p) => PhaseEntry {
                    name: name.to_string(),
                    has_rollback: p.info.has_rollback,
                    default_deadline: Duration::from_millis(p.info.default_deadline_ms),
                },
                Err(e) => {
                    missing.push(e.to_string());
                    // Assume the worst until the plugin appears: it may need undoing.
                    PhaseEntry {
                        name: name.to_string(),
                        has_rollback: true,
                        default_deadline: Duration::from_secs(1800),
                    }
                }
            }
        })
        .collect();
    (Catalogue { phases }, missing)
}

/// The plugin for a run: the one pinned when the run started if still loaded, else the
/// current one; refused if it breaks the spec's pins.
fn plugin_for(
    ctx: &Context,
    m: &VSphereMigration,
    phase: &str,
    pinned: Option<&PluginRef>,
) -> Result<Arc<LoadedPlugin>, String> {
    let selection = m.spec.plugins.get(phase);
    let component = selection.and_then(|s| s.component.as_deref());
    let plugin =
        ctx.registry.plugin_for(phase, component, pinned.map(|p| p.sha256.as_str())).map_err(|e| e.to_string())?;
    if let Some(sel) = selection {
        if let Some(sha) = &sel.sha256
            && !sha.eq_ignore_ascii_case(&plugin.sha256)
        {
            return Err(format!(
                "spec.plugins.{phase}.sha256 pins {sha}, but the plugin serving {phase} is {}",
                plugin.sha256
            ));
        }
        if let Some(req) = &sel.version {
            let ok = semver::VersionReq::parse(req)
                .ok()
                .zip(semver::Version::parse(&plugin.info.version).ok())
                .is_some_and(|(r, v)| r.matches(&v));
            if !ok {
                return Err(format!(
                    "spec.plugins.{phase}.version requires {req}, but the plugin serving {phase} is version {}",
                    plugin.info.version
                ));
            }
        }
    }
    Ok(plugin)
}

fn now() -> Timestamp {
    Timestamp::now()
}

async fn publish(ctx: &Context, m: &VSphereMigration, events: &[machine::Event]) {
    for e in events {
        let event = KubeEvent {
            type_: match e.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.to_string(),
            note: Some(e.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.ops.recorder.publish(&event, &m.object_ref(&())).await {
            tracing::warn!(reason = e.reason, error = %err, "could not publish an event");
        }
        tracing::info!(migration = %m.metadata.name.clone().unwrap_or_default(), reason = e.reason, "{}", e.message);
    }
}

/// Facts for the state machine that need I/O.
struct Facts {
    catalogue: Catalogue,
    missing_plugins: Vec<String>,
    blocked_by: Option<String>,
    invalid: Option<String>,
    sources: Option<Vec<crate::api::SourceVCenter>>,
    /// Whether `invalid` was checked (reading the Secrets the spec names), or left out
    /// because the decision did not need it.
    validated: bool,
}

/// Whether the spec must be checked against the cluster before deciding at all: it was
/// edited since the status was written, the status shows it invalid (so the condition
/// clears once the Secret is fixed), or the migration is about to start. Otherwise the
/// check waits until a phase is about to be called: most reconciles only find a waiting
/// phase rate-limited, and need no read of the cluster.
fn validate_first(m: &VSphereMigration, status: &MigrationStatus) -> bool {
    let edited = status.observed_generation != m.metadata.generation;
    let shown_invalid = status.condition(condition_types::DEGRADED).is_some_and(|c| c.reason == "InvalidSpec");
    edited || shown_invalid || status.started_at.is_none()
}

async fn gather(ctx: &Context, m: &VSphereMigration, validate: bool) -> Facts {
    let status = m.status.clone().unwrap_or_default();
    let (catalogue, missing_plugins) = catalogue(ctx, m);
    let ns = m.metadata.namespace.clone().unwrap_or_default();
    let terminal = status.finished_at.is_some();
    let mut invalid = None;
    if validate
        && !terminal
        && m.spec.state != MigrationState::Pending
        && let Err(problem) = crate::facts::validate_spec(&ctx.ops.client, &ns, &m.spec).await
    {
        invalid = Some(problem);
    }
    let mut sources = None;
    let mut blocked_by = None;
    if validate && status.started_at.is_none() && m.spec.state == MigrationState::Running && invalid.is_none() {
        match crate::facts::discover_sources(&ctx.ops.client, &m.spec).await {
            Ok(found) => sources = Some(found),
            Err(problem) => invalid = Some(problem),
        }
        // A fresh list, not the cache: the start lock makes this check-and-start atomic.
        let all: Api<VSphereMigration> = Api::all(ctx.ops.client.clone());
        if let Ok(list) = all.list(&Default::default()).await {
            blocked_by = list
                .items
                .iter()
                .filter(|o| o.metadata.uid != m.metadata.uid)
                .find(|o| o.status.as_ref().is_some_and(|s| s.started_at.is_some() && s.finished_at.is_none()))
                .map(|o| {
                    format!(
                        "{}/{}",
                        o.metadata.namespace.clone().unwrap_or_default(),
                        o.metadata.name.clone().unwrap_or_default()
                    )
                });
        }
    }
    Facts { catalogue, missing_plugins, blocked_by, invalid, sources, validated: validate }
}

/// Conditions the controller owns beside the state machine's.
fn controller_conditions(status: &mut MigrationStatus, m: &VSphereMigration, missing: &[String], generation: i64) {
    let now = Time::from(now());
    let insecure: Vec<&str> = m.spec.vcenters.iter().filter(|c| c.insecure).map(|c| c.server.as_str()).collect();
    let (value, reason, message) = if insecure.is_empty() {
        (false, "Verified", "every vCenter certificate is verified".to_string())
    } else {
        (
            true,
            "InsecureConnection",
            format!("TLS verification is off for {}: set spec.vcenters[].caSecret or .thumbprint", insecure.join(", ")),
        )
    };
    machine::set_condition(
        &mut status.conditions,
        condition_types::INSECURE_TLS,
        value,
        reason,
        &message,
        generation,
        now,
    );
    let (ok, message) = if missing.is_empty() {
        (true, "a plugin serves every phase".to_string())
    } else {
        (false, missing.join("; "))
    };
    machine::set_condition(
        &mut status.conditions,
        condition_types::PLUGINS_READY,
        ok,
        if ok { "AllPhasesServed" } else { "PluginMissing" },
        &message,
        generation,
        now,
    );
}

fn merge_outputs(status: &mut MigrationStatus, phase: &str, direction: Direction, outputs: CallOutputs) {
    if !outputs.plan.is_empty() && direction == Direction::Execute {
        match status.plan.iter_mut().find(|p| p.phase == phase) {
            Some(p) => p.changes.extend(outputs.plan),
            None => status.plan.push(PlannedPhase { phase: phase.to_string(), changes: outputs.plan, waits: vec![] }),
        }
    }
    // By name: an entry listed again carries its current checksum (a vSphere entry is
    // completed with the created object's id after it was first listed).
    for b in outputs.backups {
        match status.backups.iter_mut().find(|x: &&mut BackupRef| x.name == b.name) {
            Some(listed) => *listed = b,
            None => status.backups.push(b),
        }
    }
}

fn to_call_result(result: Result<crate::runtime::CallReport, RuntimeError>) -> CallResult {
    match result {
        Ok(report) => match report.outcome {
            Outcome::Done(m) => CallResult::Done(m),
            Outcome::Wait(w) => {
                CallResult::Wait { after: Duration::from_millis(w.after_ms), progress: w.progress, message: w.message }
            }
            Outcome::Failed(f) => CallResult::Failed { message: f.message, retryable: f.retryable },
        },
        Err(e) => CallResult::Failed { message: e.to_string(), retryable: e.is_retryable() },
    }
}

fn outcome_label(r: &CallResult) -> &'static str {
    match r {
        CallResult::Done(_) => "done",
        CallResult::Wait { .. } => "wait",
        CallResult::Failed { retryable: true, .. } => "retryable",
        CallResult::Failed { .. } => "failed",
    }
}

/// Record finished runs in the metrics.
fn observe_finished(ctx: &Context, before: &MigrationStatus, after: &MigrationStatus) {
    for rec in after.history.iter().skip(before.history.len()) {
        let labels = OutcomeLabels {
            phase: rec.phase.clone(),
            direction: rec.direction.label().into(),
            result: format!("{:?}", rec.result),
        };
        ctx.metrics.phase_outcomes.get_or_create(&labels).inc();
        ctx.metrics.phase_duration.get_or_create(&labels).observe(rec.finished_at.since(rec.started_at).as_secs_f64());
    }
}

/// Whether the spec moved on, or a deletion began, while the reconcile ran (both bump the
/// generation; a status write that met a conflict took the current object).
fn changed_since_read(m: &VSphereMigration, generation: i64) -> bool {
    m.metadata.generation.unwrap_or_default() != generation
}

fn requeue_at(t: Timestamp) -> Action {
    let wait = t.duration_since(now());
    Action::requeue(Duration::try_from(wait).unwrap_or_default().max(Duration::from_millis(50)))
}

pub async fn reconcile(obj: Arc<VSphereMigration>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let api: Api<VSphereMigration> = Api::namespaced(ctx.ops.client.clone(), &ns);
    let mut m = (*obj).clone();
    if ctx.last_writes.may_be_behind(&m) {
        m = api.get(&m.name_any()).await?;
    }

    if m.metadata.deletion_timestamp.is_some() {
        if let Some(done) = finalize(&ctx, &api, &mut m).await? {
            return Ok(done);
        }
        // Deletion is blocked: keep driving the migration, so a rollback can finish and
        // release it.
    } else if !m.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER)) {
        m = set_finalizer(&api, &m, true).await?;
        ctx.last_writes.record(&m);
    }

    let label = |r: &str| ctx.metrics.reconciles.get_or_create(&ReconcileLabels { result: r.into() }).inc();
    // Was this reconcile due (the requeue the machine asked for) or woken early?
    // An event inside the rate limit of early wake-ups (`MIN_CALL_INTERVAL` after the last
    // call) must not be lost until the phase's own timer: it wakes the phase when the limit
    // ends (found by `cargo xtask bench`: with an instant simulator every event of a wait
    // came within the limit, and CreateWorkers sat out its whole 30 s poll).
    let mut woken_by_event_at: Option<Timestamp> = None;
    if let Some(cur) = m.status.as_ref().and_then(|s| s.current.as_ref()) {
        let due = cur.next_call_at.is_none_or(|t| t.timestamp() <= now());
        let trigger = if due { "timer" } else { "event" };
        ctx.metrics.reconcile_triggers.get_or_create(&crate::metrics::TriggerLabels { trigger: trigger.into() }).inc();
        if !due && cur.delay == Some(crate::api::Delay::Wait) {
            // Timestamps have second precision: one more second covers the rounding.
            woken_by_event_at = cur.last_call_at.and_then(|t| {
                t.timestamp()
                    .checked_add(
                        jiff::SignedDuration::try_from(machine::MIN_CALL_INTERVAL + Duration::from_secs(1)).ok()?,
                    )
                    .ok()
            });
        }
    }
    let _start_guard =
        if m.status.as_ref().is_none_or(|s| s.started_at.is_none()) { Some(ctx.start_lock.lock().await) } else { None };
    let generation = m.metadata.generation.unwrap_or_default();
    let mut calls = 0;
    let mut facts =
        gather(&ctx, &m, validate_first(&m, m.status.as_ref().unwrap_or(&MigrationStatus::default()))).await;
    let status = m.status.clone().unwrap_or_default();
    let approvals = approvals_seen(&m);
    let input = |status: &'_ MigrationStatus, facts: &'_ Facts| -> Decision {
        machine::decide(&Input {
            spec: &m.spec,
            generation,
            status,
            catalogue: &facts.catalogue,
            now: now(),
            approvals_seen: &approvals,
            discovered_sources: facts.sources.clone(),
            blocked_by: facts.blocked_by.clone(),
            invalid: facts.invalid.clone(),
        })
    };
    let mut decision = input(&status, &facts);
    if matches!(decision.action, Next::Call { .. }) && !facts.validated {
        // A phase is due: now the spec is checked against the cluster, and decided on again.
        facts = gather(&ctx, &m, true).await;
        decision = input(&status, &facts);
    }

    loop {
        let before = m.status.clone().unwrap_or_default();
        controller_conditions(&mut decision.status, &m, &facts.missing_plugins, generation);
        if decision.status != before {
            write_status(&api, &mut m, &decision.status, &ctx.leader, &ctx.last_writes).await?;
        }
        observe_finished(&ctx, &before, &decision.status);
        publish(&ctx, &m, &decision.events).await;
        if changed_since_read(&m, generation) {
            // A spec edit (a pause, a rollback, an approval) or a deletion landed while
            // this reconcile worked: what it recorded stands, but the next step is decided
            // from the current object.
            label("spec-changed");
            return Ok(Action::requeue(Duration::from_millis(10)));
        }

        let (phase, direction, attempt, dry_run) = match decision.action.clone() {
            Next::Call { phase, direction, attempt, dry_run } => (phase, direction, attempt, dry_run),
            Next::RequeueAt(t) => {
                label("waiting");
                let t = match woken_by_event_at {
                    Some(limit_ends) if calls == 0 => t.min(limit_ends),
                    _ => t,
                };
                return Ok(requeue_at(t));
            }
            Next::Idle => {
                label("idle");
                // A deletion that waited for the migration to end can proceed now.
                if m.metadata.deletion_timestamp.is_some()
                    && let Some(done) = finalize(&ctx, &api, &mut m).await?
                {
                    return Ok(done);
                }
                return Ok(Action::requeue(IDLE_REQUEUE));
            }
        };
        if calls >= MAX_CALLS_PER_RECONCILE {
            label("yield");
            return Ok(Action::requeue(Duration::from_millis(10)));
        }
        calls += 1;

        // Pin the plugin for this run at its first call (a hot reload applies to the next run).
        let mut status = m.status.clone().unwrap_or_default();
        let pinned = status.current.as_ref().and_then(|c| c.plugin.clone());
        let plugin = match plugin_for(&ctx, &m, &phase, pinned.as_ref()) {
            Ok(p) => p,
            Err(problem) => {
                let now_s = Time::from(now());
                machine::set_condition(
                    &mut status.conditions,
                    condition_types::PLUGINS_READY,
                    false,
                    "PluginUnavailable",
                    &problem,
                    generation,
                    now_s,
                );
                machine::set_condition(
                    &mut status.conditions,
                    condition_types::DEGRADED,
                    true,
                    "PluginUnavailable",
                    &problem,
                    generation,
                    now_s,
                );
                write_status(&api, &mut m, &status, &ctx.leader, &ctx.last_writes).await?;
                label("plugin-missing");
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        };
        let mut stamped = pinned.is_none();
        let mut resumed = None;
        if let Some(cur) = status.current.as_mut() {
            if pinned.is_none() {
                cur.plugin = Some(PluginRef {
                    component: plugin.component.clone(),
                    version: plugin.info.version.clone(),
                    sha256: plugin.sha256.clone(),
                });
            }
            // Another instance called this run before: it was taken over (restart or
            // leader change); the run's record will say so.
            if cur.instance.as_deref() != Some(ctx.instance.as_str()) {
                if cur.instance.is_some() {
                    cur.resumed += 1;
                    resumed = Some(machine::Event {
                        type_: EventType::Normal,
                        reason: "PhaseResumed",
                        message: format!(
                            "phase {} resumed after {} call(s) by a new operator instance (restart or leader change)",
                            cur.name, cur.attempt
                        ),
                    });
                }
                cur.instance = Some(ctx.instance.clone());
                stamped = true;
            }
        }
        if stamped {
            write_status(&api, &mut m, &status, &ctx.leader, &ctx.last_writes).await?;
            if changed_since_read(&m, generation) {
                label("spec-changed");
                return Ok(Action::requeue(Duration::from_millis(10)));
            }
        }
        if let Some(event) = resumed {
            publish(&ctx, &m, &[event]).await;
        }

        let result = call(&ctx, &m, &status, &plugin, direction, attempt, dry_run).await;
        let (result, outputs) = match result {
            Some(r) => r,
            None => return Ok(Action::requeue(Duration::from_secs(5))),
        };
        let labels = PhaseLabels { phase: phase.clone(), direction: direction.label().into() };
        ctx.metrics.kube_requests.get_or_create(&labels).inc_by(outputs.kube_requests);
        ctx.metrics.vsphere_calls.get_or_create(&labels).inc_by(outputs.vsphere_calls);
        ctx.metrics
            .calls
            .get_or_create(&OutcomeLabels {
                phase: phase.clone(),
                direction: labels.direction.clone(),
                result: outcome_label(&result).into(),
            })
            .inc();

        // The migration has started now: discovery and the one-at-a-time check are done.
        facts.sources = None;
        facts.blocked_by = None;
        decision = machine::record(
            &Input {
                spec: &m.spec,
                generation,
                status: &status,
                catalogue: &facts.catalogue,
                now: now(),
                approvals_seen: &approvals,
                discovered_sources: None,
                blocked_by: None,
                invalid: facts.invalid.clone(),
            },
            result,
        );
        merge_outputs(&mut decision.status, &phase, direction, outputs);
        label("call");
    }
}

/// One plugin call with the operator's backends. None if leadership was lost first.
async fn call(
    ctx: &Context,
    m: &VSphereMigration,
    status: &MigrationStatus,
    plugin: &LoadedPlugin,
    direction: Direction,
    attempt: u32,
    dry_run: bool,
) -> Option<(CallResult, CallOutputs)> {
    if !ctx.leader.is_leader() {
        return None;
    }
    let call_backends = MigrationBackends::new(&ctx.ops, m, status.sources.clone(), dry_run);
    let sources: Vec<String> = status.sources.iter().map(|s| s.server.clone()).collect();
    let targets: Vec<String> = m.spec.target_servers().into_iter().map(str::to_string).collect();
    let started_at_ms =
        status.current.as_ref().map(|c| c.started_at.timestamp().as_millisecond().max(0) as u64).unwrap_or_default();
    let context = CallContext {
        migration: Migration {
            name: m.metadata.name.clone().unwrap_or_default(),
            namespace: m.metadata.namespace.clone().unwrap_or_default(),
            uid: m.metadata.uid.clone().unwrap_or_default(),
            spec_json: serde_json::to_string(&m.spec.spec).expect("the spec serializes"),
            source_servers: sources.clone(),
            target_servers: targets.clone(),
        },
        attempt,
        dry_run,
        started_at_ms,
    };
    let servers: Vec<String> = sources.into_iter().chain(targets).collect();
    let t0 = Instant::now();
    let result = plugin.call(call_backends.backends.clone(), context, direction, servers).await;
    let labels = PhaseLabels { phase: plugin.info.name.clone(), direction: direction.label().into() };
    ctx.metrics.call_duration.get_or_create(&labels).observe(t0.elapsed().as_secs_f64());
    ctx.metrics.vcenter_sessions.set(ctx.ops.vsphere.stats().open_sessions);
    if let Err(e) = &result {
        tracing::warn!(phase = %plugin.info.name, plugin = %plugin.component, error = %e, "plugin call failed");
    }
    let result = to_call_result(result);
    let mut outputs = call_backends.outputs.take();
    if matches!(result, CallResult::Done(_)) && direction == Direction::Execute && !dry_run {
        // Backups written by calls that died before the status listed them (a kill, a lost
        // status write) and that the phase did not meet again: listed from the store itself.
        match call_backends.journal.list_phase(&plugin.info.name).await {
            Ok(found) => outputs.backups.extend(found.into_iter().flatten().map(|s| s.reference())),
            Err(e) => tracing::warn!(phase = %plugin.info.name, error = %e, "could not list the phase's backups"),
        }
    }
    Some((result, outputs))
}

/// Deletion: refuse while the migration is in flight (Some: handled, stop here; None:
/// blocked, go on reconciling); otherwise remove what the operator created for it
/// (backups, state) and let it go.
async fn finalize(
    ctx: &Context,
    api: &Api<VSphereMigration>,
    m: &mut VSphereMigration,
) -> Result<Option<Action>, ReconcileError> {
    if !m.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER)) {
        return Ok(Some(Action::await_change()));
    }
    let status = m.status.clone().unwrap_or_default();
    let may_go = status.started_at.is_none() || status.phase.as_ref().is_some_and(|p| p.ended_cleanly());
    if !may_go {
        let phase = status.phase.as_ref().map_or("", Stage::as_str);
        let message = format!(
            "deletion blocked: the migration is {phase}; roll it back (spec.state: Rollback) or let it complete. Its backups are needed to undo it."
        );
        let already = status.condition(condition_types::DEGRADED).is_some_and(|c| c.reason == "DeletionBlocked");
        if !already {
            let mut status = status.clone();
            let now_s = Time::from(now());
            let generation = m.metadata.generation.unwrap_or_default();
            machine::set_condition(
                &mut status.conditions,
                condition_types::DEGRADED,
                true,
                "DeletionBlocked",
                &message,
                generation,
                now_s,
            );
            write_status(api, m, &status, &ctx.leader, &ctx.last_writes).await?;
            publish(ctx, m, &[machine::Event { type_: EventType::Warning, reason: "DeletionBlocked", message }]).await;
        }
        return Ok(None);
    }
    let stores = MigrationBackends::new(&ctx.ops, m, status.sources.clone(), false);
    let removed = stores.journal.delete_all().await.map_err(|e| match e {
        crate::backends::journal::JournalError::Kube(k) => ReconcileError::Kube(k),
        other => ReconcileError::Kube(kube::Error::Service(other.to_string().into())),
    })?;
    stores.state.delete_store().await?;
    stores.overlay.delete().await?;
    tracing::info!(migration = %m.metadata.name.clone().unwrap_or_default(), backups = removed, "migration deleted; its backups and state removed");
    set_finalizer(api, m, false).await?;
    ctx.last_writes.forget(m);
    Ok(Some(Action::await_change()))
}
