//! `log`: log lines, Events and progress, truncated to fixed sizes before the host keeps
//! them. Never refused (a phase may always say what it does), never failing.

use wasmtime::Result as WasmResult;

use super::{HostState, MAX_LOG_BYTES, truncate};
use crate::runtime::backend::Import;
use crate::runtime::bindings::vsm::phase::log;
use crate::runtime::bindings::{EventType, Level};

/// Fields kept per log line, and their sizes.
const MAX_FIELDS: usize = 32;
const MAX_FIELD_KEY: usize = 64;
const MAX_FIELD_VALUE: usize = 512;
const MAX_REASON: usize = 128;
const MAX_MESSAGE: usize = 1024;

impl log::Host for HostState {
    async fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            let fields: Vec<(String, String)> = fields
                .into_iter()
                .take(MAX_FIELDS)
                .map(|(k, v)| (truncate(&k, MAX_FIELD_KEY).to_string(), truncate(&v, MAX_FIELD_VALUE).to_string()))
                .collect();
            env.backends.log.write(&env.scope, level, truncate(&message, MAX_LOG_BYTES), &fields);
        }
        Ok(())
    }

    async fn event(&mut self, ty: EventType, reason: String, message: String) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            let (reason, message) = (truncate(&reason, MAX_REASON), truncate(&message, MAX_MESSAGE));
            let import = Import::Event { reason, message };
            env.before(&import).await;
            env.backends.log.event(&env.scope, ty, reason, message).await;
            env.after::<(), ()>(&import, &Ok(()), false);
        }
        Ok(())
    }

    async fn progress(&mut self, percent: u8, message: String) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            env.backends.log.progress(&env.scope, percent.min(100), truncate(&message, MAX_MESSAGE));
        }
        Ok(())
    }
}
