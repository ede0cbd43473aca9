//! The phases of a migration: their names in order, which way a phase runs, and how far a
//! migration got.
//!
//! `status.phase` holds one string that is either the phase running now or, once the
//! migration has ended (or is rolling back), its result. [`Stage`] is that string as a
//! type: the results are variants, any other string is a phase name, so the wire format is
//! the plain string it always was and reading it never fails.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every phase, in the order a migration runs them.
pub const PHASES: [&str; 16] = [
    "Preflight",
    "Backup",
    "DisableCVO",
    "UpdateSecrets",
    "CreateTags",
    "CreateFolder",
    "DeleteCPMS",
    "UpdateInfrastructure",
    "UpdateConfig",
    "RestartPods",
    "MonitorHealth",
    "CreateWorkers",
    "RecreateCPMS",
    "ScaleOldMachines",
    "Cleanup",
    "Verify",
];

/// Which of a phase's functions a run calls: Execute (migrate) or Rollback (undo).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Direction {
    Execute,
    Rollback,
}

impl Direction {
    /// The lower-case name, as in metrics labels and the WIT export (`execute`, `rollback`).
    pub fn label(self) -> &'static str {
        match self {
            Direction::Execute => "execute",
            Direction::Rollback => "rollback",
        }
    }
}

/// How far a migration got: the phase running now (or awaiting its approval), or a result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// This phase runs now, or waits for its approval (Manual mode).
    Phase(String),
    /// Every phase succeeded: the cluster runs on the target vCenter.
    Completed,
    /// Plan mode: every phase ran with its changes recorded in `status.plan`, not applied.
    Planned,
    /// A phase failed and no rollback ran (yet).
    Failed,
    /// The completed phases are being undone.
    RollingBack,
    /// Every completed phase was undone.
    RolledBack,
    /// The rollback ended, and some steps failed.
    RollbackFailed,
}

impl Stage {
    /// The results, in the order of the variants.
    pub const RESULTS: [Stage; 6] =
        [Stage::Completed, Stage::Planned, Stage::Failed, Stage::RollingBack, Stage::RolledBack, Stage::RollbackFailed];

    /// The string in `status.phase`.
    pub fn as_str(&self) -> &str {
        match self {
            Stage::Phase(name) => name,
            Stage::Completed => "Completed",
            Stage::Planned => "Planned",
            Stage::Failed => "Failed",
            Stage::RollingBack => "RollingBack",
            Stage::RolledBack => "RolledBack",
            Stage::RollbackFailed => "RollbackFailed",
        }
    }

    /// The phase running now (or awaiting approval), if the stage is one.
    pub fn phase(&self) -> Option<&str> {
        match self {
            Stage::Phase(name) => Some(name),
            _ => None,
        }
    }

    /// Whether the migration has ended: no phase runs again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Stage::Completed | Stage::Planned | Stage::Failed | Stage::RolledBack | Stage::RollbackFailed)
    }

    /// Whether the migration ended with nothing left to undo (Completed, Planned,
    /// RolledBack), so its object and backups may go.
    pub fn ended_cleanly(&self) -> bool {
        matches!(self, Stage::Completed | Stage::Planned | Stage::RolledBack)
    }
}

impl From<&str> for Stage {
    /// A result's name is that result; any other string names a phase.
    fn from(s: &str) -> Stage {
        Stage::RESULTS.into_iter().find(|r| r.as_str() == s).unwrap_or_else(|| Stage::Phase(s.to_string()))
    }
}

impl FromStr for Stage {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Stage, Self::Err> {
        Ok(Stage::from(s))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Stage, D::Error> {
        Ok(Stage::from(String::deserialize(deserializer)?.as_str()))
    }
}

#[cfg(feature = "schema")]
plain_string_schema!(Stage, "Stage");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_the_strings_of_status_phase() {
        for (stage, wire) in [
            (Stage::Phase("CreateTags".into()), "\"CreateTags\""),
            (Stage::Completed, "\"Completed\""),
            (Stage::Planned, "\"Planned\""),
            (Stage::Failed, "\"Failed\""),
            (Stage::RollingBack, "\"RollingBack\""),
            (Stage::RolledBack, "\"RolledBack\""),
            (Stage::RollbackFailed, "\"RollbackFailed\""),
        ] {
            assert_eq!(serde_json::to_string(&stage).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Stage>(wire).unwrap(), stage);
        }
        assert_eq!(Stage::from("Verify").phase(), Some("Verify"));
        assert_eq!(Stage::Completed.phase(), None);
    }

    #[test]
    fn no_phase_is_named_like_a_result() {
        for phase in PHASES {
            assert_eq!(Stage::from(phase), Stage::Phase(phase.to_string()), "{phase}");
        }
    }

    #[test]
    fn terminal_and_clean_ends() {
        let terminal: Vec<&str> = Stage::RESULTS.iter().filter(|s| s.is_terminal()).map(Stage::as_str).collect();
        assert_eq!(terminal, ["Completed", "Planned", "Failed", "RolledBack", "RollbackFailed"]);
        let clean: Vec<&str> = Stage::RESULTS.iter().filter(|s| s.ended_cleanly()).map(Stage::as_str).collect();
        assert_eq!(clean, ["Completed", "Planned", "RolledBack"]);
        assert!(!Stage::Phase("Preflight".into()).is_terminal());
    }

    #[test]
    fn directions_keep_their_wire_names_and_labels() {
        assert_eq!(serde_json::to_string(&Direction::Rollback).unwrap(), "\"Rollback\"");
        assert_eq!((Direction::Execute.label(), Direction::Rollback.label()), ("execute", "rollback"));
    }
}
