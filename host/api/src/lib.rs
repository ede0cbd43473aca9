//! The API of vsphere-migration: the `VSphereMigration` resource (group
//! `migration.openshift.io`, version `v1alpha1`) and the names around it, in one small crate
//! shared by the operator, the phase SDK, `kubectl-vsm`, `vsm-plugin` and the tests.
//!
//! - [`spec`]: what a user asks for ([`MigrationSpec`]); the phases read it too.
//! - [`status`]: what the operator reports ([`MigrationStatus`]); written only by the operator.
//! - [`phases`]: the phase list ([`PHASES`]), which way a phase runs ([`Direction`]) and how
//!   far a migration got ([`Stage`], `status.phase`).
//! - [`time`]: the one timestamp type of the status ([`Time`]).
//! - [`duration`]: the spec's durations (`90s`, `1h30m`), one parser for operator and phases.
//! - [`labels`]: label and annotation keys on the objects the operator creates.
//!
//! Without features the crate is plain serde types, light enough for the phase components
//! (wasm32-wasip2). Feature `schema` adds JSON schemas; feature `crd` adds the custom
//! resource itself (`VSphereMigration`, kube's derive) and `crd_yaml()`, from which
//! `cargo xtask crds` writes `crds/`.

/// The JSON schema of a type that travels as a plain string (`Stage`, `Time`): as when the
/// status held `String`s, so the CRD did not change when they became types.
#[cfg(feature = "schema")]
macro_rules! plain_string_schema {
    ($type:ty, $name:literal) => {
        impl schemars::JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string"})
            }
        }
    };
}

#[cfg(feature = "crd")]
mod crd;
pub mod duration;
pub mod phases;
pub mod spec;
pub mod status;
pub mod time;

#[cfg(feature = "crd")]
pub use crd::{VSphereMigration, VSphereMigrationSpec, crd_yaml};
pub use phases::{Direction, PHASES, Stage};
pub use spec::*;
pub use status::*;
pub use time::Time;

pub const GROUP: &str = "migration.openshift.io";
pub const VERSION: &str = "v1alpha1";
/// Finalizer that keeps a migration object until it is rolled back or completed.
pub const FINALIZER: &str = "migration.openshift.io/finalizer";
/// Field manager of the operator's own writes.
pub const FIELD_MANAGER: &str = "vsphere-migration-operator";

/// Keys of the labels and annotations on the objects the operator creates for a migration
/// (backup Secrets, state ConfigMaps); `kubectl vsm backups` reads them.
pub mod labels {
    /// Label: the migration's uid (every object the operator creates for it).
    pub const MIGRATION_UID: &str = "migration.openshift.io/migration-uid";
    /// Label: the phase that took a backup.
    pub const PHASE: &str = "migration.openshift.io/phase";
    /// Label: `snapshot` or `journal`.
    pub const KIND: &str = "migration.openshift.io/backup-kind";
    /// Annotation: what a backup holds, e.g. `Secret kube-system/vsphere-creds`.
    pub const SUBJECT: &str = "migration.openshift.io/subject";
    /// Annotation: sha256 of a backup's content.
    pub const SHA256: &str = "migration.openshift.io/sha256";
    /// Annotation: order of the journal entries of a phase.
    pub const SEQUENCE: &str = "migration.openshift.io/sequence";
    /// Annotation: when a backup was restored.
    pub const RESTORED: &str = "migration.openshift.io/restored-at";
}
