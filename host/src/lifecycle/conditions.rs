//! Conditions with `lastTransitionTime` that moves only when the status flips (the Go
//! controller bumped it on every write) and `observedGeneration` on each.

use crate::api::{Condition, Time};

pub mod types {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    pub const DEGRADED: &str = "Degraded";
    pub const ROLLBACK_AVAILABLE: &str = "RollbackAvailable";
    /// Standing conditions (see `standing`), whatever the run does.
    pub const INSECURE_TLS: &str = "InsecureTLS";
    pub const PLUGINS_READY: &str = "PluginsReady";
}

/// Upsert a condition by type.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: Time,
) {
    let status = if value { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.to_string();
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = Some(generation);
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
            observed_generation: Some(generation),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let t = |s: &str| -> Time { format!("2025-01-01T00:00:0{s}Z").parse().unwrap() };
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "Pending", "a", 1, t("1"));
        set_condition(&mut c, "Ready", false, "Running", "b", 2, t("2"));
        assert_eq!(
            (c[0].last_transition_time, c[0].reason.as_str(), c[0].observed_generation),
            (t("1"), "Running", Some(2))
        );
        set_condition(&mut c, "Ready", true, "Completed", "c", 2, t("3"));
        assert_eq!(c[0].last_transition_time, t("3"));
        assert_eq!(c.len(), 1);
    }
}
