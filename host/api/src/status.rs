//! `VSphereMigration.status`: everything the operator knows about a migration's progress.
//! No secret ever goes here: backups are referenced by name and checksum only. Written only
//! by the operator (server-side apply); `kubectl-vsm` and the tests read it.

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

use crate::{Direction, Stage, Time};

/// The observed state of a migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The phase running now, or the result: Completed, Planned, Failed, RollingBack,
    /// RolledBack, RollbackFailed. Empty until the migration starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Stage>,

    /// Overall progress, e.g. "7/16 (44%)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,

    /// The vCenters that were the source when the migration started; recorded once, so no
    /// later phase can mistake the target for the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceVCenter>,

    /// The phase call in progress (execute or rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<CurrentPhase>,

    /// Every phase run and rollback step, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PhaseRecord>,

    /// The rollback sequence, once one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,

    /// Approvals seen (Manual mode): when, and by which field manager.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Plan mode: the intended changes, per phase, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedPhase>,

    /// Backups the operator holds for this migration (Secrets it owns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupRef>,

    /// When the migration was paused (spec.state Paused); the current run's deadline
    /// does not run while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
}

/// A source vCenter as the Infrastructure named it when the migration started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SourceVCenter {
    pub server: String,
    pub port: u16,
}

/// The phase being worked on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CurrentPhase {
    pub name: String,
    pub direction: Direction,
    pub started_at: Time,
    /// Calls made so far in this run.
    pub attempt: u32,
    /// Consecutive retryable failures (for backoff).
    #[serde(default)]
    pub failures: u32,
    pub progress: u8,
    pub message: String,
    /// When progress or message last changed (stall detection).
    pub progress_changed_at: Time,
    /// Earliest time of the next call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_call_at: Option<Time>,
    /// Why the next call is delayed: a wait the phase asked for (ended early by watch
    /// events) or a backoff after a failure (never shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_call_at: Option<Time>,
    /// Milliseconds this run spent paused (not counted against the deadline).
    #[serde(default)]
    pub paused_ms: u64,
    /// The component serving this run: pinned when the run starts, so a hot reload takes
    /// effect at the next phase boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginRef>,
    /// The operator instance (one process's controller) that called this run last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Times another operator instance took this run over from the one that called it
    /// (an operator restart or a leader change mid-phase).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub enum Delay {
    Wait,
    Backoff,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginRef {
    pub component: String,
    pub version: String,
    pub sha256: String,
}

/// How a phase run (or rollback step) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub enum PhaseResult {
    Succeeded,
    Failed,
    /// Plan mode: ran with mutations recorded, not applied.
    Planned,
}

/// One finished phase run or rollback step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    pub phase: String,
    pub direction: Direction,
    pub result: PhaseResult,
    pub started_at: Time,
    pub finished_at: Time,
    pub attempts: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginRef>,
    /// Times the run was taken over by another operator instance (restart or leader
    /// change) before it ended.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: u32,
}

/// The rollback sequence: the phases to undo, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    pub started_at: Time,
    /// Why: "requested" (spec.state Rollback) or the failure that triggered it.
    pub reason: String,
    /// Phases still to undo, in order.
    pub remaining: Vec<String>,
    /// Steps that failed, with their message. A rollback with failures ends
    /// RollbackFailed, never RolledBack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub phase: String,
    pub approved_at: Time,
    /// The field manager that added the approval (who approved).
    pub by: String,
}

/// A standard Kubernetes condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Plan mode: what one phase would change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlannedPhase {
    pub phase: String,
    pub changes: Vec<PlannedChange>,
    /// What the phase would have waited for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// "kube" or "vsphere".
    pub system: String,
    /// create, update, patch, apply, delete, create-folder, ensure-tag, ...
    pub action: String,
    /// e.g. "Infrastructure cluster" or "vCenter 10.0.0.5 folder /dc/vm/infra".
    pub target: String,
    /// Field-level summary of the change (JSON pointers and values; never Secret data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// A backup Secret owned by the migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BackupRef {
    /// Secret name (in the migration's namespace).
    pub name: String,
    /// What it holds, e.g. "Secret kube-system/vsphere-creds".
    pub subject: String,
    /// The phase that took it.
    pub phase: String,
    /// "snapshot" (explicit) or "journal" (before-image of a mutation).
    pub kind: String,
    pub sha256: String,
    pub size: u64,
}

impl MigrationStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as the operator writes it: reading and writing it again changes nothing.
    #[test]
    fn the_wire_format_round_trips() {
        let written = serde_json::json!({
            "phase": "CreateTags", "progress": "4/16 (25%)", "observedGeneration": 3,
            "startedAt": "2025-01-01T00:00:00Z", "pausedAt": "2025-01-01T00:09:00Z",
            "sources": [{"server": "vc-a", "port": 443}],
            "current": {"name": "CreateTags", "direction": "Execute", "startedAt": "2025-01-01T00:05:00Z",
                "attempt": 2, "failures": 1, "progress": 40, "message": "retrying",
                "progressChangedAt": "2025-01-01T00:06:00Z", "nextCallAt": "2025-01-01T00:06:02Z",
                "delay": "Backoff", "lastCallAt": "2025-01-01T00:06:00Z", "pausedMs": 0,
                "plugin": {"component": "create-tags", "version": "0.1.0", "sha256": "ab"},
                "instance": "op-1", "resumed": 1},
            "history": [{"phase": "Preflight", "direction": "Rollback", "result": "Succeeded",
                "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:00:07Z", "attempts": 1,
                "message": "ok"}],
            "rollback": {"startedAt": "2025-01-01T00:07:00Z", "reason": "requested", "remaining": ["Backup"],
                "failures": ["UpdateSecrets: gone"]},
            "approvals": [{"phase": "Preflight", "approvedAt": "2025-01-01T00:00:00Z", "by": "kubectl-vsm"}],
            "conditions": [{"type": "Ready", "status": "False", "reason": "InProgress", "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 3}],
            "plan": [{"phase": "Backup", "changes": [{"system": "kube", "action": "create", "target": "Secret a/b"}]}],
            "backups": [{"name": "b", "subject": "Secret a/b", "phase": "Backup", "kind": "snapshot",
                "sha256": "cd", "size": 10}]
        });
        let status: MigrationStatus = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(status.phase, Some(Stage::Phase("CreateTags".into())));
        assert_eq!(status.current.as_ref().unwrap().next_call_at, Some("2025-01-01T00:06:02Z".parse().unwrap()));
        assert_eq!(serde_json::to_value(&status).unwrap(), written);
    }
}
