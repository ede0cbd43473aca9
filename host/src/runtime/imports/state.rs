//! `state`: the phase's key/value store, keys and values bounded before the host keeps
//! them.

use wasmtime::Result as WasmResult;

use super::{HostState, MAX_STATE_VALUE_BYTES};
use crate::runtime::backend::Import;
use crate::runtime::bindings::vsm::phase::state;
use crate::runtime::bindings::{Scope, StateError};

/// Longest key (a Kubernetes name's limit).
const MAX_KEY: usize = 253;

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StateError::TooLarge(format!("key must be 1-{MAX_KEY} bytes, is {}", key.len())));
    }
    Ok(())
}

impl state::Host for HostState {
    async fn get(&mut self, which: Scope, key: String) -> WasmResult<Option<String>> {
        let Ok(env) = self.env() else { return Ok(None) };
        let import = Import::State { verb: "get", scope: which, key: &key };
        env.before(&import).await;
        let value = env.backends.state.get(&env.scope, which, &key).await;
        env.after::<_, ()>(&import, &Ok(()), false);
        Ok(value)
    }

    async fn set(&mut self, which: Scope, key: String, value: String) -> WasmResult<Result<(), StateError>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(Err(StateError::Unavailable(e))),
        };
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            let size = value.len();
            return Ok(Err(StateError::TooLarge(format!("value of {size} bytes exceeds {MAX_STATE_VALUE_BYTES}"))));
        }
        let import = Import::State { verb: "set", scope: which, key: &key };
        env.before(&import).await;
        let result = env.backends.state.set(&env.scope, which, &key, &value).await;
        env.after(&import, &result, false);
        Ok(result)
    }

    async fn delete(&mut self, which: Scope, key: String) -> WasmResult<Result<(), StateError>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(Err(StateError::Unavailable(e))),
        };
        let import = Import::State { verb: "delete", scope: which, key: &key };
        env.before(&import).await;
        let result = env.backends.state.delete(&env.scope, which, &key).await;
        env.after(&import, &result, false);
        Ok(result)
    }
}
