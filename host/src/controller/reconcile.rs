//! One reconcile of one migration, in three steps:
//!
//! 1. gather the facts the lifecycle decides on ([`Facts`]; the cluster is read only when
//!    the decision needs it);
//! 2. decide, and while the decision is a call, call the phase plugin ([`call`]) and let
//!    the lifecycle fold in everything the call returned;
//! 3. apply each decision: write the status when it changed, emit its Events, and end in
//!    the action it asks for (a requeue, nothing, or releasing a deleted migration).
//!
//! More than one call may run in one reconcile (a phase that completes lets the next start
//! at once), bounded so other migrations get their turn.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};

use super::Reconciler;
use super::call::call;
use super::gather::{Facts, Unverified, has_finalizer};
use super::status::{WriteError, set_finalizer, write_status};
use crate::api::{MigrationStatus, VSphereMigration};
use crate::backends::MigrationBackends;
use crate::lifecycle::{self, Action as Next, Decision, EventType};
use crate::metrics::{OutcomeLabels, ReconcileLabels};

/// Calls made in one reconcile before yielding to others.
const MAX_CALLS_PER_RECONCILE: usize = 16;
/// Safety net for idle migrations (approval, pause, terminal): nothing should be missed,
/// but nothing needs polling either.
const IDLE_REQUEUE: Duration = Duration::from_secs(600);
/// A decision made from an object that changed meanwhile is made again at once.
const AGAIN: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Unverified(#[from] Unverified),
}

pub async fn reconcile(obj: Arc<VSphereMigration>, ctx: Arc<Reconciler>) -> Result<Action, ReconcileError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let api: Api<VSphereMigration> = Api::namespaced(ctx.clients.client.clone(), &obj.namespace().unwrap_or_default());
    let Some(mut m) = current(&ctx, &api, &obj).await? else {
        return Ok(Action::await_change());
    };
    // Starts are serialised, so two migrations cannot both become active.
    let _start =
        if m.status.as_ref().is_none_or(|s| s.started_at.is_none()) { Some(ctx.start_lock.lock().await) } else { None };
    let generation = m.metadata.generation.unwrap_or_default();

    let mut facts = Facts::gather(&ctx, &m).await?;
    let mut decision = decide(&ctx, &m, &facts);
    if matches!(decision.action, Next::Call { .. }) && !facts.validated {
        // A phase is due: now the spec is checked against the cluster, and decided on again.
        facts.validate(&ctx, &m).await?;
        decision = decide(&ctx, &m, &facts);
    }

    let mut calls = 0;
    loop {
        apply(&ctx, &api, &mut m, &decision).await?;
        if m.metadata.generation.unwrap_or_default() != generation {
            // A spec edit (a pause, a rollback, an approval) or a deletion landed while
            // this reconcile worked: what it recorded stands, but the next step is decided
            // from the current object.
            count(&ctx, "spec-changed");
            return Ok(Action::requeue(AGAIN));
        }
        let (phase, direction, attempt, dry_run) = match decision.action {
            Next::Call { phase, direction, attempt, dry_run } => (phase, direction, attempt, dry_run),
            Next::RequeueAt(t) => {
                count(&ctx, "waiting");
                let wait = Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or_default();
                return Ok(Action::requeue(wait.max(Duration::from_millis(50))));
            }
            Next::Idle => {
                count(&ctx, "idle");
                return Ok(Action::requeue(IDLE_REQUEUE));
            }
            Next::Finalize => {
                count(&ctx, "finalize");
                finalize(&ctx, &api, &mut m).await?;
                return Ok(Action::await_change());
            }
        };
        if calls >= MAX_CALLS_PER_RECONCILE {
            count(&ctx, "yield");
            return Ok(Action::requeue(AGAIN));
        }
        calls += 1;
        // The lifecycle calls only a phase whose plugin the catalogue found.
        let plugin = facts.plugins.get(&phase).cloned().expect("a called phase has a plugin");
        let Some(outcome) = call(&ctx, &m, &phase, &plugin, direction, attempt, dry_run).await else {
            return Ok(Action::requeue(Duration::from_secs(5)));
        };
        facts.called();
        let status = m.status.clone().unwrap_or_default();
        decision = lifecycle::record(&facts.input(&ctx, &m, &status), outcome);
        count(&ctx, "call");
    }
}

/// The object to work on: the cache's, or a fresh read when the cache is behind this
/// operator's own last write; the finalizer added first. None: deleted and released.
async fn current(
    ctx: &Reconciler,
    api: &Api<VSphereMigration>,
    obj: &VSphereMigration,
) -> Result<Option<VSphereMigration>, ReconcileError> {
    let mut m = obj.clone();
    if ctx.last_writes.may_be_behind(&m) {
        m = api.get(&m.name_any()).await?;
    }
    match (m.metadata.deletion_timestamp.is_some(), has_finalizer(&m)) {
        (true, false) => return Ok(None),
        (false, false) => {
            m = set_finalizer(api, &m, true).await?;
            ctx.last_writes.record(&m);
        }
        _ => {}
    }
    Ok(Some(m))
}

fn decide(ctx: &Reconciler, m: &VSphereMigration, facts: &Facts) -> Decision {
    let status = m.status.clone().unwrap_or_default();
    lifecycle::decide(&facts.input(ctx, m, &status))
}

/// Persist a decision: its status when it changed, its Events, its finished runs in the
/// metrics.
async fn apply(
    ctx: &Reconciler,
    api: &Api<VSphereMigration>,
    m: &mut VSphereMigration,
    decision: &Decision,
) -> Result<(), ReconcileError> {
    let before = m.status.clone().unwrap_or_default();
    if decision.status != before {
        write_status(api, m, &decision.status, &ctx.leader, &ctx.last_writes).await?;
    }
    observe_finished(ctx, &before, &decision.status);
    publish(ctx, m, &decision.events).await;
    Ok(())
}

/// Release a deleted migration the lifecycle let go: remove what the operator created for
/// it (backups, state, the plan overlay), then the finalizer.
async fn finalize(
    ctx: &Reconciler,
    api: &Api<VSphereMigration>,
    m: &mut VSphereMigration,
) -> Result<(), ReconcileError> {
    let sources = m.status.as_ref().map(|s| s.sources.clone()).unwrap_or_default();
    let stores = MigrationBackends::new(&ctx.clients, m, sources, false);
    let removed = stores.journal.delete_all().await.map_err(|e| match e {
        crate::backends::journal::JournalError::Kube(k) => ReconcileError::Kube(k),
        other => ReconcileError::Kube(kube::Error::Service(other.to_string().into())),
    })?;
    stores.state.delete_store().await?;
    stores.overlay.delete().await?;
    tracing::info!(migration = %m.name_any(), backups = removed, "migration deleted; its backups and state removed");
    set_finalizer(api, m, false).await?;
    ctx.last_writes.forget(m);
    Ok(())
}

fn count(ctx: &Reconciler, result: &str) {
    ctx.metrics.reconciles.get_or_create(&ReconcileLabels { result: result.into() }).inc();
}

async fn publish(ctx: &Reconciler, m: &VSphereMigration, events: &[lifecycle::Event]) {
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
        if let Err(err) = ctx.clients.recorder.publish(&event, &m.object_ref(&())).await {
            tracing::warn!(reason = e.reason, error = %err, "could not publish an event");
        }
        tracing::info!(migration = %m.name_any(), reason = e.reason, "{}", e.message);
    }
}

/// Record finished runs in the metrics.
fn observe_finished(ctx: &Reconciler, before: &MigrationStatus, after: &MigrationStatus) {
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
