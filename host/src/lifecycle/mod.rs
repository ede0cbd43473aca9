//! The lifecycle of a migration, as pure functions: (spec, status, phase catalogue, the
//! facts the controller gathered, last outcome, now) → (new status, next action, events).
//! No I/O; the controller gathers the facts, performs the action and persists the status.
//!
//! - [`decide`] looks at the spec, the status and the facts and says what to do next: start
//!   a phase, call the running one, wait until a time, release a deleted migration, or
//!   nothing (pending, paused, awaiting approval, terminal).
//! - [`record`] folds what a call returned into the status (its outcome, the plan entries
//!   and backups it produced, the progress it reported): advance on done, wait, retry with
//!   backoff on a retryable failure, fail (and roll back, when asked) otherwise.
//! - [`standing`]: the conditions that hold whatever the run does (TLS verification, plugin
//!   availability, a blocked deletion).
//!
//! Terminal states (Completed, Planned, Failed, RolledBack, RollbackFailed) never run a
//! phase again. A rollback is its own sequence, newest completed phase first; its failures
//! are recorded and end in RollbackFailed, never in RolledBack.

mod conditions;
mod standing;
#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use jiff::Timestamp;

pub use crate::api::duration::parse as parse_duration;
use crate::api::{
    ApprovalMode, ApprovalRecord, BackupRef, CurrentPhase, Delay, Direction, MigrationSpec, MigrationState,
    MigrationStatus, Mode, PhaseRecord, PhaseResult, PlannedChange, PlannedPhase, PluginRef, RollbackStatus,
    SourceVCenter, Stage, Time,
};
pub use conditions::{set_condition, types as condition_types};

/// Shortest pause between two calls of a waiting phase, however many watch events arrive.
pub const MIN_CALL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait a phase may ask for; watch events end waits sooner.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Backoff after a retryable failure: 2 s, doubling, at most 5 min.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Default time without progress before the migration is reported Degraded.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How soon a run whose plugin is unavailable is looked at again (a hot reload also wakes it).
pub const PLUGIN_RETRY: Duration = Duration::from_secs(30);

/// What the machine knows about a phase from its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseEntry {
    pub name: String,
    pub has_rollback: bool,
    pub default_deadline: Duration,
    /// The plugin that would serve the phase now, or why none can (not loaded, or it breaks
    /// the spec's pins). Without one the entry assumes the worst: it may need undoing.
    pub plugin: Result<PluginRef, String>,
}

/// The phases in migration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub phases: Vec<PhaseEntry>,
}

impl Catalogue {
    pub fn get(&self, name: &str) -> Option<&PhaseEntry> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// An approval the controller found in the object's managed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSeen {
    pub phase: String,
    pub by: String,
}

/// Everything [`decide`] and [`record`] look at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub spec: &'a MigrationSpec,
    pub generation: i64,
    pub status: &'a MigrationStatus,
    pub catalogue: &'a Catalogue,
    pub now: Timestamp,
    /// Who added each entry of spec.approvals.
    pub approvals_seen: &'a [ApprovalSeen],
    /// Source vCenters discovered by the controller (used once, when the migration starts).
    pub discovered_sources: Option<Vec<SourceVCenter>>,
    /// Another migration of the cluster is active (its name).
    pub blocked_by: Option<String>,
    /// A spec problem the schema cannot catch, naming the field.
    pub invalid: Option<String>,
    /// The object is being deleted (deletionTimestamp set, the finalizer still on).
    pub deleting: bool,
    /// This reconcile came from a watch event before the current run's next call was due
    /// (not from the timer the machine asked for).
    pub woken_by_event: bool,
    /// This operator instance: a run last called by another one was taken over (a restart
    /// or a leader change).
    pub instance: &'a str,
}

/// What the controller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Call `status.current` now.
    Call { phase: String, direction: Direction, attempt: u32, dry_run: bool },
    /// Nothing to do before this time (a watch event may come sooner).
    RequeueAt(Timestamp),
    /// Nothing to do until the spec changes.
    Idle,
    /// The object is being deleted and may go: remove what the operator created for it
    /// (backups, state) and release the finalizer.
    Finalize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to emit about the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// The new status, the next action and the events of the transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: MigrationStatus,
    pub action: Action,
    pub events: Vec<Event>,
}

/// The outcome of one call, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    Done(String),
    Wait { after: Duration, progress: u8, message: String },
    Failed { message: String, retryable: bool },
}

/// Everything one call returned: its outcome and what it produced on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub result: CallResult,
    /// Changes it would have made (plan mode).
    pub plan: Vec<PlannedChange>,
    /// Backups it wrote or completed (listed again with their current checksum).
    pub backups: Vec<BackupRef>,
    /// The last `log.progress` it reported.
    pub progress: Option<(u8, String)>,
}

impl From<CallResult> for CallOutcome {
    fn from(result: CallResult) -> Self {
        CallOutcome { result, plan: Vec::new(), backups: Vec::new(), progress: None }
    }
}

/// `t` as the status writes it (for times kept outside the status, e.g. annotations).
pub fn format_time(t: Timestamp) -> String {
    Time::from(t).to_string()
}

fn since(now: Timestamp, then: Time) -> Duration {
    Duration::try_from(now.duration_since(then.timestamp())).unwrap_or_default()
}

fn add(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)).unwrap_or(now)
}

fn is_terminal(phase: Option<&Stage>) -> bool {
    phase.is_some_and(Stage::is_terminal)
}

struct Step<'a> {
    input: &'a Input<'a>,
    status: MigrationStatus,
    events: Vec<Event>,
}

impl<'a> Step<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let mut status = input.status.clone();
        status.observed_generation = Some(input.generation);
        Step { input, status, events: Vec::new() }
    }

    fn now(&self) -> Timestamp {
        self.input.now
    }

    fn now_time(&self) -> Time {
        Time::from(self.input.now)
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: impl Into<String>) {
        self.events.push(Event { type_, reason, message: message.into() });
    }

    fn condition(&mut self, type_: &str, value: bool, reason: &str, message: impl Into<String>) {
        let (generation, now) = (self.input.generation, self.now_time());
        set_condition(&mut self.status.conditions, type_, value, reason, &message.into(), generation, now);
    }

    fn finish(mut self, action: Action) -> Decision {
        standing::apply(&mut self);
        self.status.progress = Some(progress(&self.status, self.input.catalogue));
        let rollback_available = can_roll_back(&self.status, self.input.catalogue);
        self.condition(
            condition_types::ROLLBACK_AVAILABLE,
            rollback_available,
            if rollback_available { "CompletedPhasesCanBeUndone" } else { "NothingToUndo" },
            if rollback_available {
                "set spec.state to Rollback to undo the completed phases"
            } else {
                "no completed phase can be undone"
            },
        );
        Decision { status: self.status, action, events: self.events }
    }

    fn deadline(&self, phase: &str) -> Duration {
        if let Some(d) = self.input.spec.phase_deadlines.get(phase).and_then(|s| parse_duration(s)) {
            return d;
        }
        self.input.catalogue.get(phase).map(|p| p.default_deadline).unwrap_or(Duration::from_secs(30 * 60))
    }

    fn stall_timeout(&self) -> Duration {
        self.input.spec.health.stall_timeout.as_deref().and_then(parse_duration).unwrap_or(DEFAULT_STALL_TIMEOUT)
    }

    fn dry_run(&self) -> bool {
        self.input.spec.mode == Mode::Plan
    }
}

/// Completed phases out of the catalogue, e.g. "5/16 (31%)".
fn progress(status: &MigrationStatus, catalogue: &Catalogue) -> String {
    let total = catalogue.phases.len().max(1);
    let done = catalogue.phases.iter().filter(|p| succeeded(status, &p.name)).count();
    match status.phase {
        Some(Stage::RollingBack) => {
            let left = status.rollback.as_ref().map(|r| r.remaining.len()).unwrap_or(0);
            format!("rolling back, {left} to undo")
        }
        _ => format!("{done}/{total} ({}%)", done * 100 / total),
    }
}

fn succeeded(status: &MigrationStatus, phase: &str) -> bool {
    status.history.iter().any(|h| {
        h.phase == phase
            && h.direction == Direction::Execute
            && matches!(h.result, PhaseResult::Succeeded | PhaseResult::Planned)
    })
}

/// Phases that completed and can be undone, newest first, each once.
fn undoable(status: &MigrationStatus, catalogue: &Catalogue) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in status.history.iter().rev() {
        if h.direction == Direction::Execute
            && h.result == PhaseResult::Succeeded
            && catalogue.get(&h.phase).is_some_and(|p| p.has_rollback)
            && !out.contains(&h.phase)
        {
            out.push(h.phase.clone());
        }
    }
    out
}

fn can_roll_back(status: &MigrationStatus, catalogue: &Catalogue) -> bool {
    let open = !matches!(
        status.phase,
        Some(Stage::Completed | Stage::Planned | Stage::RollingBack | Stage::RolledBack | Stage::RollbackFailed)
    );
    let failed_last = status.phase == Some(Stage::Failed)
        && status.history.last().is_some_and(|h| {
            h.direction == Direction::Execute && catalogue.get(&h.phase).is_some_and(|p| p.has_rollback)
        });
    let running = status.current.as_ref().is_some_and(|c| c.direction == Direction::Execute && c.attempt > 0);
    open && (!undoable(status, catalogue).is_empty() || failed_last || running)
}

/// Decide what to do next.
pub fn decide(input: &Input) -> Decision {
    if input.deleting && standing::may_be_deleted(input.status) {
        return Decision { status: input.status.clone(), action: Action::Finalize, events: Vec::new() };
    }
    let mut d = next_step(input);
    if input.deleting && d.action == Action::Idle && standing::may_be_deleted(&d.status) {
        // It ended just now (a rollback finished): what it came to is written, then it goes.
        d.action = Action::Finalize;
    }
    d
}

fn next_step(input: &Input) -> Decision {
    let mut s = Step::new(input);
    let phase = s.status.phase.clone();

    if let Some(problem) = &input.invalid {
        s.condition(condition_types::READY, false, "InvalidSpec", problem.clone());
        s.condition(condition_types::DEGRADED, true, "InvalidSpec", problem.clone());
        if s.status.started_at.is_none() || is_terminal(phase.as_ref()) {
            s.condition(condition_types::PROGRESSING, false, "InvalidSpec", "fix the spec to start");
            return s.finish(Action::Idle);
        }
    }

    // A rollback that is under way continues whatever spec.state says (except Paused).
    if phase == Some(Stage::RollingBack) {
        if input.spec.state == MigrationState::Paused {
            return pause(s);
        }
        resume_if_paused(&mut s);
        return drive_rollback(s);
    }

    if is_terminal(phase.as_ref()) {
        let failed = phase == Some(Stage::Failed);
        if failed && input.spec.state == MigrationState::Rollback {
            // The phase that failed may have half-applied changes: undo it too.
            let failed_phase =
                s.status.history.last().filter(|h| h.direction == Direction::Execute).map(|h| h.phase.clone());
            start_rollback(&mut s, "requested by spec.state=Rollback after the failure".into(), failed_phase);
            return drive_rollback(s);
        }
        return terminal(s);
    }

    match input.spec.state {
        MigrationState::Pending => {
            s.condition(condition_types::READY, false, "Pending", "set spec.state to Running to start");
            s.condition(condition_types::PROGRESSING, false, "Pending", "not started");
            s.condition(condition_types::AWAITING_APPROVAL, false, "Pending", "not started");
            if input.invalid.is_none() {
                s.condition(condition_types::DEGRADED, false, "AsExpected", "");
            }
            s.finish(Action::Idle)
        }
        MigrationState::Paused => pause(s),
        MigrationState::Rollback => {
            if s.status.started_at.is_none() {
                s.condition(condition_types::READY, false, "NothingToRollBack", "the migration never started");
                return s.finish(Action::Idle);
            }
            resume_if_paused(&mut s);
            // A run that was never called changed nothing; one that was is undone first.
            let interrupted = s.status.current.take().filter(|cur| cur.attempt > 0).map(|cur| {
                let message = format!("interrupted by rollback: {}", cur.message);
                s.status.history.push(record_of(&cur, PhaseResult::Failed, message, s.now_time()));
                cur.name
            });
            start_rollback(&mut s, "requested by spec.state=Rollback".into(), interrupted);
            drive_rollback(s)
        }
        MigrationState::Running => {
            if s.status.started_at.is_none() {
                if let Some(other) = &input.blocked_by {
                    let msg = format!("waiting: migration {other} is active in this cluster (one at a time)");
                    s.condition(condition_types::READY, false, "Blocked", msg.clone());
                    s.condition(condition_types::PROGRESSING, false, "Blocked", msg);
                    return s.finish(Action::Idle);
                }
                let Some(sources) = input.discovered_sources.clone() else {
                    s.condition(
                        condition_types::PROGRESSING,
                        false,
                        "DiscoveringSources",
                        "reading the source vCenters from the Infrastructure",
                    );
                    return s.finish(Action::Idle);
                };
                s.status.started_at = Some(s.now_time());
                let names: Vec<String> = sources.iter().map(|v| v.server.clone()).collect();
                s.status.sources = sources;
                let mode = if s.dry_run() { "plan" } else { "apply" };
                s.event(
                    EventType::Normal,
                    "MigrationStarted",
                    format!("migration started in {mode} mode; source vCenter(s): {}", names.join(", ")),
                );
            }
            resume_if_paused(&mut s);
            drive_forward(s)
        }
    }
}

fn pause(mut s: Step) -> Decision {
    if s.status.paused_at.is_none() && s.status.started_at.is_some() {
        s.status.paused_at = Some(s.now_time());
        s.event(
            EventType::Normal,
            "Paused",
            "paused by spec.state=Paused; no phase is called until it is Running again",
        );
    }
    s.condition(condition_types::PROGRESSING, false, "Paused", "spec.state is Paused");
    s.condition(condition_types::READY, false, "Paused", "spec.state is Paused");
    s.finish(Action::Idle)
}

fn resume_if_paused(s: &mut Step) {
    if let Some(at) = s.status.paused_at.take() {
        let paused = since(s.now(), at);
        let now = s.now_time();
        if let Some(cur) = &mut s.status.current {
            cur.paused_ms += paused.as_millis() as u64;
            // The stall clock restarts too: being paused is not being stuck.
            cur.progress_changed_at = now;
        }
        s.event(EventType::Normal, "Resumed", format!("resumed after {}", humanize(paused)));
    }
}

fn terminal(mut s: Step) -> Decision {
    let phase = s.status.phase.clone();
    let (ready, reason, message) = match phase {
        Some(Stage::Completed) => (true, "Completed", "the cluster runs on the target vCenter".to_string()),
        Some(Stage::Planned) => (true, "Planned", "plan written to status.plan; nothing was changed".to_string()),
        Some(Stage::RolledBack) => (false, "RolledBack", "every completed phase was undone".to_string()),
        Some(Stage::RollbackFailed) => {
            let failures = s.status.rollback.as_ref().map(|r| r.failures.join("; ")).unwrap_or_default();
            (false, "RollbackFailed", format!("rollback finished with failures: {failures}"))
        }
        _ => {
            let last = s.status.history.iter().rev().find(|h| h.result == PhaseResult::Failed);
            let msg =
                last.map(|h| format!("phase {} failed: {}", h.phase, h.message)).unwrap_or_else(|| "failed".into());
            (false, "Failed", format!("{msg}; set spec.state to Rollback to undo the completed phases"))
        }
    };
    s.condition(condition_types::READY, ready, reason, message.clone());
    s.condition(condition_types::PROGRESSING, false, reason, "finished");
    s.condition(condition_types::AWAITING_APPROVAL, false, reason, "finished");
    let degraded = matches!(phase, Some(Stage::Failed | Stage::RollbackFailed));
    s.condition(
        condition_types::DEGRADED,
        degraded,
        if degraded { reason } else { "AsExpected" },
        if degraded { message } else { String::new() },
    );
    s.finish(Action::Idle)
}

fn drive_forward(mut s: Step) -> Decision {
    if s.status.current.is_none() {
        let next = s.input.catalogue.phases.iter().find(|p| !succeeded(&s.status, &p.name)).map(|p| p.name.clone());
        let Some(next) = next else {
            s.status.phase = Some(if s.dry_run() { Stage::Planned } else { Stage::Completed });
            s.status.finished_at = Some(s.now_time());
            let msg = if s.dry_run() {
                "plan complete: see status.plan"
            } else {
                "migration completed: the cluster runs on the target vCenter"
            };
            s.event(EventType::Normal, if s.dry_run() { "PlanCompleted" } else { "MigrationCompleted" }, msg);
            return terminal(s);
        };
        if s.input.spec.approval_mode == ApprovalMode::Manual && !s.dry_run() {
            if !s.input.spec.approvals.contains(&next) {
                let already = s
                    .status
                    .condition(condition_types::AWAITING_APPROVAL)
                    .is_some_and(|c| c.status == "True" && c.message.contains(&format!("phase {next} ")));
                let msg = format!(
                    "phase {next} waits for approval: add {next} to spec.approvals (kubectl vsm approve {next})"
                );
                if !already {
                    s.event(EventType::Normal, "ApprovalNeeded", msg.clone());
                }
                s.status.phase = Some(Stage::Phase(next.clone()));
                s.condition(condition_types::AWAITING_APPROVAL, true, "ApprovalRequired", msg.clone());
                s.condition(condition_types::PROGRESSING, false, "AwaitingApproval", msg.clone());
                s.condition(condition_types::READY, false, "AwaitingApproval", msg);
                return s.finish(Action::Idle);
            }
            if !s.status.approvals.iter().any(|a| a.phase == next) {
                let by = s
                    .input
                    .approvals_seen
                    .iter()
                    .find(|a| a.phase == next)
                    .map(|a| a.by.clone())
                    .unwrap_or_else(|| "unknown".into());
                s.status.approvals.push(ApprovalRecord {
                    phase: next.clone(),
                    approved_at: s.now_time(),
                    by: by.clone(),
                });
                s.event(EventType::Normal, "ApprovalReceived", format!("phase {next} approved by {by}"));
            }
        }
        s.condition(condition_types::AWAITING_APPROVAL, false, "NotWaiting", "");
        start_run(&mut s, &next, Direction::Execute);
    }
    call_current(s)
}

fn start_run(s: &mut Step, phase: &str, direction: Direction) {
    let now = s.now_time();
    s.status.current = Some(CurrentPhase {
        name: phase.to_string(),
        direction,
        started_at: now,
        attempt: 0,
        failures: 0,
        progress: 0,
        message: "starting".into(),
        progress_changed_at: now,
        next_call_at: None,
        delay: None,
        last_call_at: None,
        paused_ms: 0,
        // Pinned by the controller at the first call of the run.
        plugin: None,
        instance: None,
        resumed: 0,
    });
    match direction {
        Direction::Execute => {
            s.status.phase = Some(Stage::Phase(phase.to_string()));
            let how = if s.dry_run() { " (plan mode)" } else { "" };
            s.event(EventType::Normal, "PhaseStarted", format!("phase {phase} started{how}"));
        }
        Direction::Rollback => s.event(EventType::Normal, "RollbackStepStarted", format!("undoing phase {phase}")),
    }
}

/// Progressing=True with what the run is doing; returns "running" or "undoing".
fn mark_running(s: &mut Step, cur: &CurrentPhase) -> &'static str {
    let verb = if cur.direction == Direction::Execute { "running" } else { "undoing" };
    s.condition(
        condition_types::PROGRESSING,
        true,
        "PhaseRunning",
        format!("{verb} phase {}: {}", cur.name, cur.message),
    );
    verb
}

/// Call the current run now, or say when.
fn call_current(mut s: Step) -> Decision {
    let cur = s.status.current.clone().expect("a current run");
    let verb = mark_running(&mut s, &cur);
    s.condition(condition_types::READY, false, "InProgress", format!("{verb} phase {}", cur.name));

    // Deadline: wall time of the run minus time spent paused.
    let elapsed = since(s.now(), cur.started_at).saturating_sub(Duration::from_millis(cur.paused_ms));
    let deadline = s.deadline(&cur.name);
    if elapsed > deadline {
        return fail_run(s, format!("deadline of {} exceeded; last status: {}", humanize(deadline), cur.message));
    }

    // Stall detection: no change of progress or message for too long.
    let quiet = since(s.now(), cur.progress_changed_at);
    let stall = s.stall_timeout();
    if quiet > stall {
        s.condition(
            condition_types::DEGRADED,
            true,
            "Stalled",
            format!("phase {} has made no progress for {}: {}", cur.name, humanize(quiet), cur.message),
        );
    } else if s
        .status
        .condition(condition_types::DEGRADED)
        .is_none_or(|c| c.reason == "Stalled" || c.reason == "PluginUnavailable")
    {
        s.condition(condition_types::DEGRADED, false, "AsExpected", "");
    }

    if let Some(next) = cur.next_call_at.map(Time::timestamp) {
        // Reconciles come from timers we set, spec edits and watch events on the objects
        // phases wait for. A wait ends early on such an event (rate-limited); a backoff
        // after a failure never does.
        let waiting = cur.delay == Some(Delay::Wait);
        let woken_early_ok = waiting && cur.last_call_at.is_none_or(|last| since(s.now(), last) >= MIN_CALL_INTERVAL);
        if next > s.now() && !woken_early_ok {
            // An event inside the rate limit must not be lost until the phase's own timer:
            // it wakes the phase when the limit ends (found by `cargo xtask bench`: with an
            // instant simulator every event of a wait came within the limit, and
            // CreateWorkers sat out its whole 30 s poll). Timestamps have second
            // precision: one more second covers the rounding.
            let limit_ends =
                cur.last_call_at.map(|last| add(last.timestamp(), MIN_CALL_INTERVAL + Duration::from_secs(1)));
            let at = match limit_ends {
                Some(limit_ends) if waiting && s.input.woken_by_event => next.min(limit_ends),
                _ => next,
            };
            return s.finish(Action::RequeueAt(at));
        }
    }
    let plugin = match s.input.catalogue.get(&cur.name).map(|p| p.plugin.clone()) {
        Some(Ok(plugin)) => plugin,
        Some(Err(problem)) => {
            s.condition(condition_types::DEGRADED, true, "PluginUnavailable", problem);
            let retry = add(s.now(), PLUGIN_RETRY);
            return s.finish(Action::RequeueAt(retry));
        }
        None => {
            let problem = format!("phase {} is not in the catalogue of this operator", cur.name);
            s.condition(condition_types::DEGRADED, true, "PluginUnavailable", problem);
            return s.finish(Action::Idle);
        }
    };
    stamp(&mut s, plugin);
    let dry_run = s.dry_run() && cur.direction == Direction::Execute;
    let action = Action::Call { phase: cur.name.clone(), direction: cur.direction, attempt: cur.attempt + 1, dry_run };
    s.finish(action)
}

/// Before a call: pin the plugin at the run's first call (a hot reload applies to the next
/// run), and note a take-over when another instance called the run before.
fn stamp(s: &mut Step, plugin: PluginRef) {
    let instance = s.input.instance;
    let cur = s.status.current.as_mut().expect("a current run");
    cur.plugin.get_or_insert(plugin);
    if cur.instance.as_deref() == Some(instance) {
        return;
    }
    let taken_over = cur.instance.is_some();
    cur.instance = Some(instance.to_string());
    if taken_over {
        cur.resumed += 1;
        let message = format!(
            "phase {} resumed after {} call(s) by a new operator instance (restart or leader change)",
            cur.name, cur.attempt
        );
        s.event(EventType::Normal, "PhaseResumed", message);
    }
}

/// Start the rollback sequence. A phase that stopped mid-run (`unfinished`) may have
/// changed things, so it is undone first.
fn start_rollback(s: &mut Step, reason: String, unfinished: Option<String>) {
    let mut remaining: Vec<String> =
        unfinished.into_iter().filter(|p| s.input.catalogue.get(p).is_some_and(|e| e.has_rollback)).collect();
    for phase in undoable(&s.status, s.input.catalogue) {
        if !remaining.contains(&phase) {
            remaining.push(phase);
        }
    }
    s.status.phase = Some(Stage::RollingBack);
    s.status.rollback = Some(RollbackStatus {
        started_at: s.now_time(),
        reason: reason.clone(),
        remaining: remaining.clone(),
        failures: Vec::new(),
    });
    s.event(
        EventType::Warning,
        "RollbackStarted",
        format!(
            "rolling back ({reason}): {}",
            if remaining.is_empty() { "nothing to undo".into() } else { remaining.join(", ") }
        ),
    );
}

fn drive_rollback(mut s: Step) -> Decision {
    if s.status.current.as_ref().is_some_and(|c| c.direction == Direction::Rollback) {
        return call_current(s);
    }
    let rb = s.status.rollback.clone().unwrap_or_default();
    if let Some(next) = rb.remaining.first() {
        start_run(&mut s, &next.clone(), Direction::Rollback);
        return call_current(s);
    }
    let ok = rb.failures.is_empty();
    s.status.phase = Some(if ok { Stage::RolledBack } else { Stage::RollbackFailed });
    s.status.finished_at = Some(s.now_time());
    if ok {
        s.event(EventType::Normal, "RollbackFinished", "rollback finished: every completed phase was undone");
    } else {
        s.event(
            EventType::Warning,
            "RollbackFailed",
            format!("rollback finished with failures: {}", rb.failures.join("; ")),
        );
    }
    terminal(s)
}

fn record_of(cur: &CurrentPhase, result: PhaseResult, message: String, now: Time) -> PhaseRecord {
    PhaseRecord {
        phase: cur.name.clone(),
        direction: cur.direction,
        result,
        started_at: cur.started_at,
        finished_at: now,
        attempts: cur.attempt,
        message,
        plugin: cur.plugin.clone(),
        resumed: cur.resumed,
    }
}

/// The current run failed for good.
fn fail_run(mut s: Step, message: String) -> Decision {
    let cur = s.status.current.take().expect("a current run");
    s.status.history.push(record_of(&cur, PhaseResult::Failed, message.clone(), s.now_time()));
    match cur.direction {
        Direction::Execute => {
            s.event(EventType::Warning, "PhaseFailed", format!("phase {} failed: {message}", cur.name));
            if s.input.spec.rollback_on_failure && !s.dry_run() {
                start_rollback(&mut s, format!("phase {} failed: {message}", cur.name), Some(cur.name.clone()));
                drive_rollback(s)
            } else {
                s.status.phase = Some(Stage::Failed);
                s.status.finished_at = Some(s.now_time());
                terminal(s)
            }
        }
        Direction::Rollback => {
            let rb = s.status.rollback.get_or_insert_with(RollbackStatus::default);
            rb.remaining.retain(|p| *p != cur.name);
            rb.failures.push(format!("{}: {message}", cur.name));
            s.event(EventType::Warning, "RollbackStepFailed", format!("undoing phase {} failed: {message}", cur.name));
            drive_rollback(s)
        }
    }
}

/// Fold what a call of `status.current` returned into the status, then decide again.
pub fn record(input: &Input, outcome: impl Into<CallOutcome>) -> Decision {
    let CallOutcome { result, plan: changes, backups, progress } = outcome.into();
    let mut s = Step::new(input);
    let Some(mut cur) = s.status.current.clone() else {
        return decide(input);
    };
    cur.attempt += 1;
    cur.last_call_at = Some(s.now_time());
    let plan = s.dry_run() && cur.direction == Direction::Execute;
    if cur.direction == Direction::Execute && !changes.is_empty() {
        plan_entry(&mut s.status, &cur.name).changes.extend(changes);
    }
    list_backups(&mut s.status, backups);
    if let Some((percent, _)) = progress {
        // How far the call got; a wait's own progress, said last, overrides it below.
        if percent.min(100) != cur.progress {
            cur.progress = percent.min(100);
            cur.progress_changed_at = s.now_time();
        }
    }

    let finished = match result {
        CallResult::Done(message) => Some(message),
        CallResult::Wait { message, .. } if plan => {
            // Plan mode does not wait: note what would have been waited for and move on.
            plan_entry(&mut s.status, &cur.name).waits.push(message.clone());
            Some(format!("planned (would wait: {message})"))
        }
        CallResult::Wait { after, progress, message } => {
            if progress != cur.progress || message != cur.message {
                cur.progress_changed_at = s.now_time();
            }
            cur.progress = progress.min(100);
            cur.message = message;
            cur.failures = 0;
            let after = after.clamp(MIN_CALL_INTERVAL, MAX_WAIT);
            cur.next_call_at = Some(Time::from(add(s.now(), after)));
            cur.delay = Some(Delay::Wait);
            s.status.current = Some(cur);
            return continue_after(s);
        }
        CallResult::Failed { message, retryable } => {
            let elapsed = since(s.now(), cur.started_at).saturating_sub(Duration::from_millis(cur.paused_ms));
            let deadline = s.deadline(&cur.name);
            if retryable && elapsed < deadline {
                cur.failures += 1;
                let backoff = backoff(cur.failures);
                cur.next_call_at = Some(Time::from(add(s.now(), backoff)));
                cur.delay = Some(Delay::Backoff);
                let text = format!("retrying in {} after: {message}", humanize(backoff));
                if text != cur.message {
                    cur.progress_changed_at = s.now_time();
                }
                cur.message = text;
                if cur.failures == 1 || cur.failures % 5 == 0 {
                    s.event(
                        EventType::Warning,
                        "PhaseRetrying",
                        format!(
                            "phase {} ({:?}): attempt {} failed, retrying in {}: {message}",
                            cur.name,
                            cur.direction,
                            cur.attempt,
                            humanize(backoff)
                        ),
                    );
                }
                s.status.current = Some(cur);
                return continue_after(s);
            }
            s.status.current = Some(cur);
            let why = if retryable {
                format!("{message} (still failing when the deadline of {} ran out)", humanize(deadline))
            } else {
                message
            };
            return fail_run(s, why);
        }
    };

    let message = finished.expect("done");
    let result = if plan { PhaseResult::Planned } else { PhaseResult::Succeeded };
    s.status.history.push(record_of(&cur, result, message.clone(), s.now_time()));
    s.status.current = None;
    match cur.direction {
        Direction::Execute => {
            s.event(EventType::Normal, "PhaseCompleted", format!("phase {} completed: {message}", cur.name))
        }
        Direction::Rollback => {
            if let Some(rb) = &mut s.status.rollback {
                rb.remaining.retain(|p| *p != cur.name);
            }
            s.event(EventType::Normal, "RollbackStepCompleted", format!("phase {} undone: {message}", cur.name));
        }
    }
    // Decide again from the new status (the next phase may start at once).
    let status = s.status;
    let events = s.events;
    let again = Input { status: &status, ..input.clone() };
    let mut d = decide(&again);
    let mut all = events;
    all.append(&mut d.events);
    d.events = all;
    d
}

/// After a wait or a backoff was recorded: say when to call next.
fn continue_after(mut s: Step) -> Decision {
    let cur = s.status.current.clone().expect("a current run");
    mark_running(&mut s, &cur);
    let next = cur.next_call_at.map_or(s.now(), Time::timestamp);
    s.finish(Action::RequeueAt(next))
}

/// By name: an entry listed again carries its current checksum (a vSphere entry is
/// completed with the created object's id after it was first listed).
fn list_backups(status: &mut MigrationStatus, backups: Vec<BackupRef>) {
    for b in backups {
        match status.backups.iter_mut().find(|x| x.name == b.name) {
            Some(listed) => *listed = b,
            None => status.backups.push(b),
        }
    }
}

fn plan_entry<'s>(status: &'s mut MigrationStatus, phase: &str) -> &'s mut PlannedPhase {
    if let Some(i) = status.plan.iter().position(|p| p.phase == phase) {
        return &mut status.plan[i];
    }
    status.plan.push(PlannedPhase { phase: phase.to_string(), changes: Vec::new(), waits: Vec::new() });
    status.plan.last_mut().expect("just pushed")
}

/// Backoff before retry `failures` (1-based): 2 s, 4 s, 8 s ... at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX)
}

pub fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}
