//! The API types, from the `vsm-api` crate (with its `crd` feature): the
//! `VSphereMigration` resource, its spec and status, the phase list, `Direction`, `Stage`,
//! `Time` and the label keys. Re-exported whole, so `crate::api::X` names them here.

pub use vsm_api::*;
