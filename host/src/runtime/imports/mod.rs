//! The host side of every import, one module per WIT interface (the shape of Spin's host
//! components): each generated `Host` impl bounds what the guest sent, checks it against
//! the plugin's effective capabilities, tells the call's observer, and hands it to that
//! interface's backend ([`super::backend`]). This module holds the store data of one call
//! and what the interfaces share.

mod backup;
mod clock;
mod kube;
mod log;
mod state;
mod vsphere;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result as WasmResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::backend::{Backends, CallScope, Import, ImportResult};
use super::bindings::vsm::phase::types;
use super::capability::Effective;

/// Largest object or patch a guest may send in one Kubernetes call (etcd's own limit is
/// 1.5 MiB; this leaves room for base64 and JSON overhead).
pub const MAX_OBJECT_BYTES: usize = 3 << 20;
/// Largest log line or event message kept; longer ones are truncated.
pub const MAX_LOG_BYTES: usize = 4096;
/// Largest state value.
pub const MAX_STATE_VALUE_BYTES: usize = 64 << 10;

/// Everything a call's imports need that is not in the store itself.
pub struct CallEnv {
    pub backends: Backends,
    pub scope: CallScope,
    pub caps: Arc<Effective>,
    /// The vCenter servers of the migration; any other server is forbidden.
    pub servers: Vec<String>,
}

impl CallEnv {
    async fn before(&self, import: &Import<'_>) {
        if let Some(o) = &self.backends.observer {
            o.before(&self.scope, import).await;
        }
    }

    fn after<T, E: std::fmt::Debug>(&self, import: &Import<'_>, result: &Result<T, E>, created: bool) {
        if let Some(o) = &self.backends.observer {
            let error = result.as_ref().err().map(|e| format!("{e:?}"));
            o.after(&self.scope, import, &ImportResult { error, created, items: 0 });
        }
    }
}

/// Memory cap with a record of the refusal, so an out-of-memory trap is reported as such.
pub struct MemoryLimiter {
    pub limit: usize,
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> WasmResult<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> WasmResult<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The data of one store (one call).
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// Epoch ticks the guest has run for, and how many it may.
    pub cpu_ticks: u64,
    pub cpu_budget_ticks: u64,
    /// None while running describe(): no import is available then.
    env: Option<Arc<CallEnv>>,
    pub imports_made: u64,
    pub denials: Vec<String>,
}

impl HostState {
    pub fn new(wasi: WasiCtx, limiter: MemoryLimiter, cpu_budget_ticks: u64, env: Option<Arc<CallEnv>>) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            cpu_ticks: 0,
            cpu_budget_ticks,
            env,
            imports_made: 0,
            denials: Vec::new(),
        }
    }

    /// The call's environment, counting the import.
    fn env(&mut self) -> Result<Arc<CallEnv>, String> {
        self.imports_made += 1;
        self.env.clone().ok_or_else(|| "host imports are not available during describe()".to_string())
    }

    /// Record a capability refusal; the message for the guest.
    fn deny(&mut self, env: &CallEnv, what: String) -> String {
        let message = format!("plugin {} may not {what}", env.scope.plugin);
        tracing::warn!(plugin = %env.scope.plugin, phase = %env.scope.phase, migration = %env.scope.migration_name, denied = %what, "capability check denied a call");
        self.denials.push(message.clone());
        message
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}
