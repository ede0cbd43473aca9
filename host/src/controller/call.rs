//! One plugin call with the operator's backends, in the order it happens: build the call's
//! backends (plan or live layers) and its context, call the plugin, count it, and return
//! everything it produced for the lifecycle to fold in ([`CallOutcome`]).

use std::time::{Duration, Instant};

use super::Reconciler;
use crate::api::{Direction, MigrationStatus, VSphereMigration};
use crate::backends::{CallOutputs, MigrationBackends};
use crate::lifecycle::{CallOutcome, CallResult};
use crate::metrics::{OutcomeLabels, PhaseLabels};
use crate::runtime::bindings::{CallContext, Migration, Outcome};
use crate::runtime::{CallReport, LoadedPlugin, RuntimeError};

/// Call `plugin` for the migration's current run of `phase`. None if leadership was lost
/// first.
pub(super) async fn call(
    ctx: &Reconciler,
    m: &VSphereMigration,
    phase: &str,
    plugin: &LoadedPlugin,
    direction: Direction,
    attempt: u32,
    dry_run: bool,
) -> Option<CallOutcome> {
    if !ctx.leader.is_leader() {
        return None;
    }
    let status = m.status.clone().unwrap_or_default();
    let backends = MigrationBackends::new(&ctx.clients, m, status.sources.clone(), dry_run);
    let context = call_context(m, &status, attempt, dry_run);
    let servers: Vec<String> =
        context.migration.source_servers.iter().chain(&context.migration.target_servers).cloned().collect();

    let t0 = Instant::now();
    let result = plugin.call(phase, backends.backends.clone(), context, direction, servers).await;
    // By the phase it serves (a vendor's component may serve a shipped phase).
    let labels = PhaseLabels { phase: phase.to_string(), direction: direction.label().into() };
    ctx.metrics.call_duration.get_or_create(&labels).observe(t0.elapsed().as_secs_f64());
    ctx.metrics.vcenter_sessions.set(ctx.clients.vsphere.stats().open_sessions);
    if let Err(e) = &result {
        tracing::warn!(%phase, plugin = %plugin.component, error = %e, "plugin call failed");
    }
    let result = call_result(result);

    let mut outputs = backends.outputs.take();
    if matches!(result, CallResult::Done(_)) && direction == Direction::Execute && !dry_run {
        // Backups written by calls that died before the status listed them (a kill, a lost
        // status write) and that the phase did not meet again: listed from the store itself.
        match backends.journal.list_phase(phase).await {
            Ok(found) => outputs.backups.extend(found.into_iter().flatten().map(|s| s.reference())),
            Err(e) => tracing::warn!(%phase, error = %e, "could not list the phase's backups"),
        }
    }
    count(ctx, &labels, &result, &outputs);
    let CallOutputs { plan, progress, backups, .. } = outputs;
    Some(CallOutcome { result, plan, backups, progress })
}

/// What the phase is told about the migration and this call.
fn call_context(m: &VSphereMigration, status: &MigrationStatus, attempt: u32, dry_run: bool) -> CallContext {
    let started_at_ms =
        status.current.as_ref().map(|c| c.started_at.timestamp().as_millisecond().max(0) as u64).unwrap_or_default();
    CallContext {
        migration: Migration {
            name: m.metadata.name.clone().unwrap_or_default(),
            namespace: m.metadata.namespace.clone().unwrap_or_default(),
            uid: m.metadata.uid.clone().unwrap_or_default(),
            spec_json: serde_json::to_string(&m.spec.spec).expect("the spec serializes"),
            source_servers: status.sources.iter().map(|s| s.server.clone()).collect(),
            target_servers: m.spec.target_servers().into_iter().map(str::to_string).collect(),
        },
        attempt,
        dry_run,
        started_at_ms,
    }
}

fn call_result(result: Result<CallReport, RuntimeError>) -> CallResult {
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

fn count(ctx: &Reconciler, labels: &PhaseLabels, result: &CallResult, outputs: &CallOutputs) {
    ctx.metrics.kube_requests.get_or_create(labels).inc_by(outputs.kube_requests);
    ctx.metrics.vsphere_calls.get_or_create(labels).inc_by(outputs.vsphere_calls);
    let result = match result {
        CallResult::Done(_) => "done",
        CallResult::Wait { .. } => "wait",
        CallResult::Failed { retryable: true, .. } => "retryable",
        CallResult::Failed { .. } => "failed",
    };
    let labels =
        OutcomeLabels { phase: labels.phase.clone(), direction: labels.direction.clone(), result: result.into() };
    ctx.metrics.calls.get_or_create(&labels).inc();
}
