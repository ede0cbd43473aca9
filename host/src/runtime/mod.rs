//! The WebAssembly phase runtime: loads phase components, sandboxes their calls, checks
//! every host import against the capabilities granted, and hot-reloads the plugin
//! directory.

pub mod backend;
pub mod bindings;
mod cache;
pub mod capability;
pub mod config;
mod engine;
mod error;
mod imports;
mod output;
pub mod registry;

pub use backend::{
    Backends, BackupBackend, CallScope, ClockBackend, Direction, Import, ImportObserver, ImportResult, KubeBackend,
    KubeOp, LogBackend, ResolvedType, StateBackend, VsphereBackend, VsphereOp,
};
pub use cache::sha256_hex;
pub use engine::{CallReport, LoadedPlugin, MAX_OUTCOME_MESSAGE, Runtime, RuntimeConfig};
pub use error::RuntimeError;
pub use imports::{MAX_LOG_BYTES, MAX_OBJECT_BYTES, MAX_STATE_VALUE_BYTES};
pub use registry::{ComponentStatus, LoadState, Registry, ScanSummary, WatchHandle};
