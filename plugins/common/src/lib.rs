//! Helpers shared by the shipped phases. Pure functions over the JSON objects the phases
//! read, so they are unit-tested natively; the phases do the I/O through `vsm_sdk::Cx`.
//!
//! Ownership while the phases are being written: `health` (lead), `infra` and `creds`
//! (phases part 1), `cloud_config` and `machines` (phases part 2).

pub mod cloud_config;
pub mod creds;
pub mod duration;
pub mod health;
pub mod health_checks;
pub mod infra;
pub mod infra_update;
pub mod machines;
pub mod pem;
pub mod privileges;
pub mod replacements;
pub mod shared_state;
pub mod trust;
