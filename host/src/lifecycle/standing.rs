//! Conditions that hold whatever the current run does, set on every decision from the spec
//! and the facts in the input:
//!
//! - `InsecureTLS`: True while any `spec.vcenters[]` turns certificate verification off.
//! - `PluginsReady`: False, naming each problem, while a phase has no plugin that may
//!   serve it (not loaded, or it breaks `spec.plugins` pins).
//! - `Degraded=DeletionBlocked` while the object is deleted in flight: its backups are
//!   needed to undo it, so it stays until it is rolled back or completes. Set last, so it
//!   wins over the run's own Degraded reason while the deletion waits; the Event is sent
//!   once, when the condition first appears.

use super::{EventType, Step, condition_types};
use crate::api::MigrationStatus;

/// A deleted migration may go when it never started or ended cleanly; anything else would
/// lose the backups a rollback needs.
pub(super) fn may_be_deleted(status: &MigrationStatus) -> bool {
    status.started_at.is_none() || status.phase.as_ref().is_some_and(|p| p.ended_cleanly())
}

pub(super) fn apply(s: &mut Step) {
    insecure_tls(s);
    plugins_ready(s);
    if s.input.deleting {
        deletion_blocked(s);
    }
}

fn insecure_tls(s: &mut Step) {
    let insecure: Vec<&str> = s.input.spec.vcenters.iter().filter(|c| c.insecure).map(|c| c.server.as_str()).collect();
    if insecure.is_empty() {
        s.condition(condition_types::INSECURE_TLS, false, "Verified", "every vCenter certificate is verified");
    } else {
        let message =
            format!("TLS verification is off for {}: set spec.vcenters[].caSecret or .thumbprint", insecure.join(", "));
        s.condition(condition_types::INSECURE_TLS, true, "InsecureConnection", message);
    }
}

fn plugins_ready(s: &mut Step) {
    let problems: Vec<&str> =
        s.input.catalogue.phases.iter().filter_map(|p| p.plugin.as_ref().err()).map(String::as_str).collect();
    if problems.is_empty() {
        s.condition(condition_types::PLUGINS_READY, true, "AllPhasesServed", "a plugin serves every phase");
    } else {
        let message = problems.join("; ");
        s.condition(condition_types::PLUGINS_READY, false, "PluginUnavailable", message);
    }
}

fn deletion_blocked(s: &mut Step) {
    let stage = s.status.phase.as_ref().map_or("", |p| p.as_str()).to_string();
    let message = format!(
        "deletion blocked: the migration is {stage}; roll it back (spec.state: Rollback) or let it complete. Its backups are needed to undo it."
    );
    let shown = s.input.status.condition(condition_types::DEGRADED).is_some_and(|c| c.reason == "DeletionBlocked");
    if !shown {
        s.event(EventType::Warning, "DeletionBlocked", message.clone());
    }
    s.condition(condition_types::DEGRADED, true, "DeletionBlocked", message);
}
