//! `clock`: the time, from the call's clock backend (the wall clock outside tests).

use wasmtime::Result as WasmResult;

use super::HostState;
use crate::runtime::backend::{ClockBackend, SystemClock};
use crate::runtime::bindings::vsm::phase::clock;

impl clock::Host for HostState {
    async fn now_ms(&mut self) -> WasmResult<u64> {
        self.imports_made += 1;
        Ok(match &self.env {
            Some(env) => env.backends.clock.now_ms(),
            None => SystemClock.now_ms(),
        })
    }
}
