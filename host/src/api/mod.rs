//! The API types, from the `vsm-api` crate (with its `crd` feature): the
//! `VSphereMigration` resource, its spec and status, the phase list, `Direction`, `Stage`,
//! `Time` and the label keys. Re-exported whole, so `crate::api::X` names them here.

pub use vsm_api::*;

#[cfg(test)]
mod tests {
    /// The journal still names its label keys itself; they must be the API's (`kubectl vsm
    /// backups` reads them through `vsm_api::labels`).
    #[test]
    fn the_journal_labels_are_the_apis() {
        use crate::backends::journal::labels as journal;
        use vsm_api::labels as api;
        assert_eq!(
            [journal::MIGRATION_UID, journal::PHASE, journal::KIND, journal::SUBJECT],
            [api::MIGRATION_UID, api::PHASE, api::KIND, api::SUBJECT]
        );
        assert_eq!(
            [journal::SHA256, journal::SEQUENCE, journal::RESTORED],
            [api::SHA256, api::SEQUENCE, api::RESTORED]
        );
    }
}
