//! Every transition of the state machine, without I/O. Each test names the upstream
//! defect it guards against where there is one (../shared/reference, §10).

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::{MigrationSpec, MigrationStatus};

/// A valid spec for tests, with `extra` fields set on top.
pub(crate) fn spec(extra: serde_json::Value) -> MigrationSpec {
    let mut base = json!({
        "state": "Running",
        "targetVCenterCredentialsSecret": {"name": "target-creds"},
        "failureDomains": [{"name": "fd", "region": "r", "zone": "z", "server": "vc-b",
            "topology": {"datacenter": "dc", "computeCluster": "/dc/host/c", "datastore": "/dc/datastore/d", "networks": ["n"], "template": "/dc/vm/t"}}],
        "machineSetConfig": {"failureDomain": "fd"},
        "controlPlaneMachineSetConfig": {"failureDomain": "fd"}
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn catalogue() -> Catalogue {
    let entry = |name: &str, has_rollback: bool| PhaseEntry {
        name: name.into(),
        has_rollback,
        default_deadline: Duration::from_secs(600),
        plugin: Ok(mk_plugin(name)),
    };
    Catalogue { phases: vec![entry("Preflight", false), entry("UpdateSecrets", true), entry("CreateTags", true)] }
}

fn mk_plugin(phase: &str) -> PluginRef {
    PluginRef { component: phase.to_lowercase(), version: "1.0.0".into(), sha256: format!("sha-{phase}") }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A small driver: holds spec/status/time and applies decisions.
struct World {
    spec: MigrationSpec,
    status: MigrationStatus,
    catalogue: Catalogue,
    now: Timestamp,
    approvals: Vec<ApprovalSeen>,
    events: Vec<Event>,
    blocked_by: Option<String>,
    invalid: Option<String>,
    deleting: bool,
    woken_by_event: bool,
    instance: String,
}

impl World {
    fn new(extra: serde_json::Value) -> Self {
        World {
            spec: spec(extra),
            status: MigrationStatus::default(),
            catalogue: catalogue(),
            now: t(0),
            approvals: vec![],
            events: vec![],
            blocked_by: None,
            invalid: None,
            deleting: false,
            woken_by_event: false,
            instance: "first".into(),
        }
    }

    fn input(&self) -> Input<'_> {
        Input {
            spec: &self.spec,
            generation: 1,
            status: &self.status,
            catalogue: &self.catalogue,
            now: self.now,
            approvals_seen: &self.approvals,
            discovered_sources: Some(vec![crate::api::SourceVCenter { server: "vc-a".into(), port: 443 }]),
            blocked_by: self.blocked_by.clone(),
            invalid: self.invalid.clone(),
            deleting: self.deleting,
            woken_by_event: self.woken_by_event,
            instance: &self.instance,
        }
    }

    fn apply(&mut self, d: Decision) -> Action {
        self.status = d.status;
        self.events.extend(d.events);
        d.action
    }

    fn decide(&mut self) -> Action {
        let d = decide(&self.input());
        self.apply(d)
    }

    fn record(&mut self, r: impl Into<CallOutcome>) -> Action {
        // The controller records with the facts of the call: no event woke it.
        self.woken_by_event = false;
        let d = record(&self.input(), r);
        self.apply(d)
    }

    fn advance(&mut self, secs: i64) {
        self.now = self.now.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap();
    }

    fn cond(&self, type_: &str) -> (String, String) {
        let c = self.status.condition(type_).unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone())
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.reason).collect()
    }
}

fn call(phase: &str, direction: Direction, attempt: u32) -> Action {
    Action::Call { phase: phase.into(), direction, attempt, dry_run: false }
}

fn done(m: &str) -> CallResult {
    CallResult::Done(m.into())
}

fn failed(m: &str, retryable: bool) -> CallResult {
    CallResult::Failed { message: m.into(), retryable }
}

#[test]
fn pending_does_nothing_and_says_how_to_start() {
    let mut w = World::new(json!({"state": "Pending"}));
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.cond("Ready"), ("False".into(), "Pending".into()));
    assert!(
        w.status.started_at.is_none() && w.status.current.is_none(),
        "pending records no start (upstream set startTime on first sight)"
    );
}

#[test]
fn starting_records_the_sources_once_and_calls_the_first_phase() {
    let mut w = World::new(json!({}));
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 1));
    assert_eq!(w.status.sources, vec![crate::api::SourceVCenter { server: "vc-a".into(), port: 443 }]);
    assert_eq!(w.status.phase, Some(Stage::Phase("Preflight".into())));
    assert_eq!(w.reasons(), vec!["MigrationStarted", "PhaseStarted"]);
    assert_eq!(w.cond("Progressing").0, "True");
}

#[test]
fn without_discovered_sources_nothing_starts() {
    let w = World::new(json!({}));
    let mut input = w.input();
    input.discovered_sources = None;
    let d = decide(&input);
    assert_eq!(d.action, Action::Idle);
    assert!(d.status.started_at.is_none());
}

#[test]
fn done_advances_to_the_next_phase_and_the_last_completes() {
    let mut w = World::new(json!({}));
    w.decide();
    assert_eq!(w.record(done("ok")), call("UpdateSecrets", Direction::Execute, 1));
    assert_eq!(w.status.history[0].result, PhaseResult::Succeeded);
    assert_eq!(w.status.progress.as_deref(), Some("1/3 (33%)"));
    w.record(done("ok"));
    assert_eq!(w.record(done("ok")), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Completed));
    assert_eq!(w.cond("Ready"), ("True".into(), "Completed".into()));
    assert_eq!(w.cond("RollbackAvailable").0, "False");
    // Terminal: a later reconcile never runs a phase again.
    w.advance(3600);
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.status.history.len(), 3);
    assert!(w.reasons().contains(&"MigrationCompleted"));
}

#[test]
fn history_records_real_start_and_finish_times() {
    // Upstream defect: every history entry had startTime == completionTime.
    let mut w = World::new(json!({}));
    w.decide();
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 10, message: "waiting".into() });
    w.advance(40);
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 2));
    w.record(done("ok"));
    let h = &w.status.history[0];
    assert_eq!((h.started_at, h.finished_at, h.attempts), (Time::from(t(0)), Time::from(t(40)), 2));
}

#[test]
fn a_wait_is_honoured_and_ended_early_by_a_watch_event_but_rate_limited() {
    // Upstream defect: requeue intervals were computed and thrown away.
    let mut w = World::new(json!({}));
    w.decide();
    let action =
        w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 40, message: "2/3 ready".into() });
    assert_eq!(action, Action::RequeueAt(t(30)));
    assert_eq!(w.status.current.as_ref().unwrap().progress, 40);
    // A reconcile right away (no time passed) does not call again...
    assert_eq!(w.decide(), Action::RequeueAt(t(30)));
    // ...but one a few seconds later, triggered by a watch event, looks again now.
    w.advance(5);
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 2));
}

#[test]
fn waits_are_clamped_between_half_a_second_and_ten_minutes() {
    let mut w = World::new(json!({}));
    w.decide();
    assert_eq!(
        w.record(CallResult::Wait { after: Duration::from_secs(86_400), progress: 0, message: "x".into() }),
        Action::RequeueAt(t(600))
    );
}

#[test]
fn retryable_failures_back_off_exponentially_and_events_do_not_shorten_it() {
    let mut w = World::new(json!({}));
    w.decide();
    assert_eq!(w.record(failed("apiserver timeout", true)), Action::RequeueAt(t(2)));
    assert!(w.status.current.as_ref().unwrap().message.contains("apiserver timeout"));
    w.advance(1);
    assert_eq!(w.decide(), Action::RequeueAt(t(2)), "a backoff is not ended by a watch event");
    w.advance(1);
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 2));
    assert_eq!(w.record(failed("again", true)), Action::RequeueAt(t(2 + 4)));
    assert_eq!(backoff(1), Duration::from_secs(2));
    assert_eq!(backoff(3), Duration::from_secs(8));
    assert_eq!(backoff(30), BACKOFF_MAX);
    assert_eq!(w.reasons().iter().filter(|r| **r == "PhaseRetrying").count(), 1, "retry events are not spammed");
}

#[test]
fn a_permanent_failure_is_recorded_and_rolls_back_newest_first_including_the_failed_phase() {
    // Upstream defect: a failure skipped the status write, so it was invisible and looped.
    let mut w = World::new(json!({}));
    w.decide();
    w.record(done("preflight ok"));
    w.record(done("secrets ok"));
    let action = w.record(failed("tag category has a different cardinality", false));
    assert_eq!(w.status.phase, Some(Stage::RollingBack));
    let rb = w.status.rollback.clone().unwrap();
    assert_eq!(rb.remaining, vec!["CreateTags".to_string(), "UpdateSecrets".to_string()], "Preflight has no rollback");
    assert!(rb.reason.contains("CreateTags failed"));
    assert_eq!(action, call("CreateTags", Direction::Rollback, 1));
    assert_eq!(w.status.history.last().unwrap().result, PhaseResult::Failed);
    assert_eq!(w.record(done("tags removed")), call("UpdateSecrets", Direction::Rollback, 1));
    assert_eq!(w.record(done("keys removed")), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::RolledBack));
    assert_eq!(w.cond("Ready"), ("False".into(), "RolledBack".into()));
    assert!(w.reasons().ends_with(&["RollbackStepCompleted", "RollbackFinished"]));
}

#[test]
fn rollback_runs_once_and_never_loops() {
    // Upstream defect: state Rollback re-ran every rollback action every minute.
    let mut w = World::new(json!({}));
    w.decide();
    w.record(done("ok"));
    w.record(done("ok"));
    // CreateTags was started but never called: nothing to undo there.
    w.spec.state = MigrationState::Rollback;
    assert_eq!(w.decide(), call("UpdateSecrets", Direction::Rollback, 1));
    assert!(w.status.history.iter().all(|h| h.phase != "CreateTags"));
    assert_eq!(w.record(done("undone")), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::RolledBack));
    for _ in 0..5 {
        w.advance(60);
        assert_eq!(w.decide(), Action::Idle);
    }
    assert_eq!(w.status.history.iter().filter(|h| h.direction == Direction::Rollback).count(), 1);
}

#[test]
fn a_rollback_requested_mid_phase_undoes_the_interrupted_phase_first() {
    let mut w = World::new(json!({}));
    w.decide();
    w.record(done("ok"));
    w.record(done("ok"));
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 50, message: "half".into() });
    w.spec.state = MigrationState::Rollback;
    assert_eq!(w.decide(), call("CreateTags", Direction::Rollback, 1));
    let interrupted = w.status.history.last().unwrap();
    assert_eq!((interrupted.phase.as_str(), interrupted.result), ("CreateTags", PhaseResult::Failed));
    assert!(interrupted.message.starts_with("interrupted by rollback"));
    w.record(done("undone"));
    w.record(done("undone"));
    assert_eq!(w.status.phase, Some(Stage::RolledBack));
    for _ in 0..3 {
        w.advance(120);
        assert_eq!(w.decide(), Action::Idle);
    }
    let rollback_calls = w.status.history.iter().filter(|h| h.direction == Direction::Rollback).count();
    assert_eq!(rollback_calls, 2, "each phase is undone exactly once");
}

#[test]
fn rollback_failures_are_recorded_the_sequence_continues_and_ends_rollback_failed() {
    let mut w = World::new(json!({}));
    w.decide();
    w.record(done("ok"));
    w.record(done("ok"));
    w.record(done("ok"));
    // Completed: no rollback any more.
    w.spec.state = MigrationState::Rollback;
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Completed));

    let mut w = World::new(json!({}));
    w.decide();
    w.record(done("ok"));
    w.record(done("ok"));
    w.spec.state = MigrationState::Rollback;
    w.decide();
    let action = w.record(failed("cannot restore vsphere-creds: checksum mismatch", false));
    assert_eq!(action, Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::RollbackFailed), "a failed rollback is never reported as success");
    assert_eq!(
        w.status.rollback.as_ref().unwrap().failures,
        vec!["UpdateSecrets: cannot restore vsphere-creds: checksum mismatch".to_string()]
    );
    assert_eq!(w.cond("Degraded").0, "True");
    assert_eq!(w.decide(), Action::Idle, "terminal");
}

#[test]
fn a_failure_without_rollback_on_failure_stops_and_waits_for_the_user() {
    let mut w = World::new(json!({"rollbackOnFailure": false}));
    w.decide();
    w.record(done("ok"));
    assert_eq!(w.record(failed("no credentials for vc-b", false)), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Failed));
    assert_eq!(w.cond("Ready"), ("False".into(), "Failed".into()));
    assert!(w.status.condition("Ready").unwrap().message.contains("no credentials for vc-b"));
    assert_eq!(w.cond("RollbackAvailable").0, "True");
    w.advance(600);
    assert_eq!(w.decide(), Action::Idle, "a failed phase is not re-run behind the user's back");
    w.spec.state = MigrationState::Rollback;
    assert_eq!(w.decide(), call("UpdateSecrets", Direction::Rollback, 1), "the failed phase is undone first");
}

#[test]
fn a_retryable_failure_fails_for_good_at_the_deadline() {
    let mut w = World::new(json!({"phaseDeadlines": {"Preflight": "1m"}, "rollbackOnFailure": false}));
    w.decide();
    w.record(failed("vCenter unreachable", true));
    w.advance(61);
    assert_eq!(w.decide(), Action::Idle);
    let last = w.status.history.last().unwrap();
    assert!(last.message.contains("deadline of 1m00s exceeded"), "{}", last.message);
    assert_eq!(w.status.phase, Some(Stage::Failed));
}

#[test]
fn a_wait_past_the_deadline_fails() {
    let mut w = World::new(json!({"rollbackOnFailure": false}));
    w.decide();
    w.record(CallResult::Wait { after: Duration::from_secs(600), progress: 1, message: "0/3 workers ready".into() });
    w.advance(601);
    w.decide();
    assert_eq!(w.status.phase, Some(Stage::Failed));
    assert!(w.status.history[0].message.contains("0/3 workers ready"), "the failure says what it was waiting for");
}

#[test]
fn no_progress_for_the_stall_timeout_makes_the_migration_degraded_not_silent() {
    let mut w = World::new(json!({"health": {"stallTimeout": "2m"}}));
    w.decide();
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 10, message: "1/3".into() });
    w.advance(60);
    w.decide();
    assert_eq!(w.cond("Degraded").0, "False");
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 10, message: "1/3".into() });
    w.advance(100);
    w.decide();
    assert_eq!(w.cond("Degraded"), ("True".into(), "Stalled".into()));
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 20, message: "2/3".into() });
    w.advance(1);
    w.decide();
    assert_eq!(w.cond("Degraded").0, "False", "progress clears the stall");
}

#[test]
fn manual_mode_blocks_before_every_phase_until_approved() {
    // Upstream defect: Manual mode never blocked.
    let mut w = World::new(json!({"approvalMode": "Manual"}));
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.cond("AwaitingApproval"), ("True".into(), "ApprovalRequired".into()));
    assert!(w.status.condition("AwaitingApproval").unwrap().message.contains("add Preflight to spec.approvals"));
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.reasons().iter().filter(|r| **r == "ApprovalNeeded").count(), 1, "asked once, not on every reconcile");

    w.spec.approvals = vec!["Preflight".into()];
    w.approvals = vec![ApprovalSeen { phase: "Preflight".into(), by: "kubectl-vsm".into() }];
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 1));
    assert_eq!(w.status.approvals[0].by, "kubectl-vsm");
    assert_eq!(w.cond("AwaitingApproval").0, "False");
    assert_eq!(w.record(done("ok")), Action::Idle, "the next phase needs its own approval");
    assert_eq!(w.status.phase, Some(Stage::Phase("UpdateSecrets".into())));
    assert!(w.reasons().contains(&"ApprovalReceived"));
}

#[test]
fn pause_stops_calls_and_paused_time_does_not_count_against_the_deadline() {
    let mut w = World::new(json!({"phaseDeadlines": {"Preflight": "5m"}}));
    w.decide();
    w.record(CallResult::Wait { after: Duration::from_secs(10), progress: 10, message: "x".into() });
    w.spec.state = MigrationState::Paused;
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.cond("Progressing"), ("False".into(), "Paused".into()));
    w.advance(3600);
    assert_eq!(w.decide(), Action::Idle);
    w.spec.state = MigrationState::Running;
    assert_eq!(
        w.decide(),
        call("Preflight", Direction::Execute, 2),
        "resumes the same run; an hour paused is not past the 5m deadline"
    );
    assert_eq!(w.status.current.as_ref().unwrap().paused_ms, 3_600_000);
    assert!(w.reasons().contains(&"Paused") && w.reasons().contains(&"Resumed"));
}

#[test]
fn plan_mode_runs_every_phase_dry_without_waiting_or_approvals_and_ends_planned() {
    let mut w = World::new(json!({"mode": "Plan", "approvalMode": "Manual"}));
    assert_eq!(
        w.decide(),
        Action::Call { phase: "Preflight".into(), direction: Direction::Execute, attempt: 1, dry_run: true }
    );
    let next = w.record(CallResult::Wait {
        after: Duration::from_secs(60),
        progress: 0,
        message: "would wait for 3 workers".into(),
    });
    assert!(matches!(next, Action::Call { ref phase, dry_run: true, .. } if phase == "UpdateSecrets"));
    assert_eq!(w.status.plan[0].waits, vec!["would wait for 3 workers".to_string()]);
    w.record(done("planned"));
    assert_eq!(w.record(done("planned")), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Planned));
    assert!(w.status.history.iter().all(|h| h.result == PhaseResult::Planned));
}

#[test]
fn plan_mode_failures_never_roll_back() {
    let mut w = World::new(json!({"mode": "Plan"}));
    w.decide();
    assert_eq!(w.record(failed("target datastore missing", false)), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Failed));
    assert!(w.status.rollback.is_none());
}

#[test]
fn a_second_migration_waits_with_a_condition_naming_the_first() {
    let mut w = World::new(json!({}));
    w.blocked_by = Some("ns/first".into());
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.cond("Ready"), ("False".into(), "Blocked".into()));
    assert!(w.status.condition("Ready").unwrap().message.contains("ns/first"));
    assert!(w.status.started_at.is_none());
}

#[test]
fn an_invalid_spec_names_the_field_and_does_not_start() {
    let mut w = World::new(json!({}));
    w.invalid = Some("spec.targetVCenterCredentialsSecret: secret target-creds has no key vc-b.password".into());
    assert_eq!(w.decide(), Action::Idle);
    assert_eq!(w.cond("Ready"), ("False".into(), "InvalidSpec".into()));
    assert!(w.status.condition("Degraded").unwrap().message.contains("vc-b.password"));
}

#[test]
fn conditions_carry_the_generation_and_keep_transition_times() {
    let mut w = World::new(json!({}));
    w.decide();
    let first = w.status.condition("Progressing").unwrap().last_transition_time;
    w.advance(30);
    w.record(CallResult::Wait { after: Duration::from_secs(5), progress: 5, message: "a".into() });
    let c = w.status.condition("Progressing").unwrap();
    assert_eq!(c.last_transition_time, first, "still True: no transition");
    assert_eq!(c.observed_generation, Some(1));
    assert_eq!(w.status.observed_generation, Some(1));
}

#[test]
fn a_run_is_pinned_to_its_plugin_and_a_take_over_by_another_instance_is_counted() {
    let mut w = World::new(json!({}));
    w.decide();
    let cur = w.status.current.clone().unwrap();
    assert_eq!(cur.plugin, Some(mk_plugin("Preflight")), "pinned at the first call");
    assert_eq!((cur.instance.as_deref(), cur.resumed), (Some("first"), 0));
    w.record(CallResult::Wait { after: Duration::from_secs(1), progress: 10, message: "waiting".into() });
    // A hot reload replaces the plugin: the run keeps the one it started with.
    w.catalogue.phases[0].plugin = Ok(PluginRef { sha256: "sha-new".into(), ..mk_plugin("Preflight") });
    w.instance = "second".into();
    w.advance(2);
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 2));
    let cur = w.status.current.clone().unwrap();
    assert_eq!(cur.plugin, Some(mk_plugin("Preflight")));
    assert_eq!((cur.instance.as_deref(), cur.resumed), (Some("second"), 1));
    assert_eq!(w.reasons().iter().filter(|r| **r == "PhaseResumed").count(), 1);
    w.record(CallResult::Wait { after: Duration::from_secs(1), progress: 20, message: "still".into() });
    w.advance(2);
    w.decide();
    assert_eq!(w.status.current.as_ref().unwrap().resumed, 1, "the same instance again is no take-over");
    w.record(done("ok"));
    assert_eq!(w.status.history[0].resumed, 1, "the record shows the take-over");
    let next = w.status.current.as_ref().unwrap();
    assert_eq!(
        (next.resumed, next.plugin.clone()),
        (0, Some(mk_plugin("UpdateSecrets"))),
        "the next run starts afresh"
    );
}

#[test]
fn an_event_inside_the_rate_limit_wakes_the_phase_when_the_limit_ends() {
    let mut w = World::new(json!({}));
    w.decide();
    w.record(CallResult::Wait { after: Duration::from_secs(30), progress: 10, message: "waiting".into() });
    // A timer reconcile (or a spec edit) inside the limit keeps the phase's own time...
    assert_eq!(w.decide(), Action::RequeueAt(t(30)));
    // ...a watch event inside it is not lost: the phase looks again when the limit ends.
    w.woken_by_event = true;
    let limit_ends = add(t(0), MIN_CALL_INTERVAL + Duration::from_secs(1));
    assert_eq!(w.decide(), Action::RequeueAt(limit_ends));
    // A backoff after a failure is never shortened by events.
    w.advance(5);
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 2));
    w.record(failed("flaky", true));
    w.woken_by_event = true;
    assert_eq!(w.decide(), Action::RequeueAt(t(5 + 2)));
}

#[test]
fn a_phase_without_a_usable_plugin_is_not_called_and_the_conditions_say_why() {
    let mut w = World::new(json!({}));
    w.catalogue.phases[1].plugin = Err("spec.plugins.UpdateSecrets.version requires ^2, but ... 1.0.0".into());
    assert_eq!(w.decide(), call("Preflight", Direction::Execute, 1), "other phases go on");
    assert_eq!(w.cond("PluginsReady"), ("False".into(), "PluginUnavailable".into()));
    assert_eq!(w.record(done("ok")), Action::RequeueAt(add(t(0), PLUGIN_RETRY)));
    assert_eq!(w.cond("Degraded"), ("True".into(), "PluginUnavailable".into()));
    assert!(w.status.current.as_ref().unwrap().plugin.is_none(), "nothing pinned");
    // The plugin appears (a hot reload): the phase is called and the conditions clear.
    w.catalogue.phases[1].plugin = Ok(mk_plugin("UpdateSecrets"));
    assert_eq!(w.decide(), call("UpdateSecrets", Direction::Execute, 1));
    assert_eq!(w.cond("PluginsReady"), ("True".into(), "AllPhasesServed".into()));
    assert_eq!(w.cond("Degraded"), ("False".into(), "AsExpected".into()));
}

#[test]
fn insecure_vcenters_are_named_in_a_condition() {
    let mut w = World::new(json!({}));
    w.decide();
    assert_eq!(w.cond("InsecureTLS"), ("False".into(), "Verified".into()));
    let mut w = World::new(json!({"vcenters": [{"server": "vc-b", "insecure": true}]}));
    w.decide();
    assert_eq!(w.cond("InsecureTLS"), ("True".into(), "InsecureConnection".into()));
    assert!(w.status.condition("InsecureTLS").unwrap().message.contains("vc-b"));
}

#[test]
fn deletion_waits_for_an_undoable_end_and_then_finalizes() {
    // Not started: released at once, nothing written.
    let mut w = World::new(json!({"state": "Pending"}));
    w.deleting = true;
    let d = decide(&w.input());
    assert_eq!((d.action, d.status), (Action::Finalize, MigrationStatus::default()));
    // In flight: blocked, said once, and the migration goes on so it can end.
    let mut w = World::new(json!({"rollbackOnFailure": false}));
    w.decide();
    w.deleting = true;
    assert_eq!(w.record(done("ok")), call("UpdateSecrets", Direction::Execute, 1));
    assert_eq!(w.cond("Degraded"), ("True".into(), "DeletionBlocked".into()));
    w.record(CallResult::Wait { after: Duration::from_secs(1), progress: 10, message: "waiting".into() });
    assert_eq!(w.reasons().iter().filter(|r| **r == "DeletionBlocked").count(), 1);
    // A failure keeps it blocked (the backups are needed to undo it)...
    w.advance(2);
    w.decide();
    assert_eq!(w.record(failed("broken", false)), Action::Idle);
    assert_eq!(w.status.phase, Some(Stage::Failed));
    assert_eq!(w.cond("Degraded").1, "DeletionBlocked");
    // ...until it is rolled back.
    w.spec.state = MigrationState::Rollback;
    assert_eq!(w.decide(), call("UpdateSecrets", Direction::Rollback, 1));
    assert_eq!(w.record(done("undone")), Action::Finalize);
}

#[test]
fn a_call_folds_in_its_plan_entries_backups_and_progress() {
    let change = |target: &str| PlannedChange {
        system: "kube".into(),
        action: "patch".into(),
        target: target.into(),
        details: vec![],
    };
    let backup = |sha: &str| BackupRef {
        name: "b-1".into(),
        subject: "Secret kube-system/vsphere-creds".into(),
        phase: "Preflight".into(),
        kind: "journal".into(),
        sha256: sha.into(),
        size: 10,
    };
    let mut w = World::new(json!({}));
    w.decide();
    let failed_halfway = CallOutcome {
        result: failed("vCenter busy", true),
        plan: vec![change("Infrastructure cluster")],
        backups: vec![backup("aaa")],
        progress: Some((60, "folder 3 of 5".into())),
    };
    w.record(failed_halfway);
    let cur = w.status.current.clone().unwrap();
    assert_eq!(cur.progress, 60, "how far the failed call got");
    assert!(cur.message.contains("vCenter busy"));
    assert_eq!(w.status.plan[0].changes, vec![change("Infrastructure cluster")]);
    w.advance(3);
    w.decide();
    let again = CallOutcome {
        result: CallResult::Wait { after: Duration::from_secs(5), progress: 80, message: "4 of 5".into() },
        backups: vec![backup("bbb")],
        plan: vec![],
        progress: Some((70, "folder 4".into())),
    };
    w.record(again);
    assert_eq!(w.status.current.as_ref().unwrap().progress, 80, "the outcome, said last, wins");
    assert_eq!(w.status.backups, vec![backup("bbb")], "listed once, with its current checksum");
}
