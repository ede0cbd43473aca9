//! The journalling layer: a write-ahead before-image of what a phase is about to change,
//! taken by the host so no phase can forget it, and the restore that undoes it.
//!
//! - [`store`]: the entries themselves, in Secrets owned by the migration.
//! - [`JournaledKube`] / [`JournaledVsphere`]: over the live backends; on a phase's first
//!   mutation of an object (execute only) the before-image is written first, then the
//!   change is made. A vSphere object the phase creates is journalled before it is
//!   created (and the entry dropped if it turns out to exist already: not ours to undo).
//! - [`JournalBackup`]: the `backup` interface: explicit snapshots, and restoring a
//!   phase's journal newest first, each write through the fenced client and vSphere
//!   backend, so a deposed replica stops at the next object.

mod layer;
mod restore;
mod store;

pub use layer::{JournaledKube, JournaledVsphere};
pub use restore::{JournalBackup, restore_object, snapshot_source};
pub use store::*;
