//! Why loading or calling a plugin failed.

use std::time::Duration;

/// Errors of the plugin runtime. Each names its cause so it can go straight into a
/// migration condition.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("plugin configuration: {0}")]
    Config(String),

    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    #[error("component {component} does not compile: {message}")]
    Compile { component: String, message: String },

    #[error("component {component} does not fit this host's phase contract (vsm:phase@0.1): {message}")]
    Incompatible { component: String, message: String },

    #[error("component {component}: sha256 is {actual}, but the configuration pins {expected}")]
    PinMismatch { component: String, expected: String, actual: String },

    #[error("component {component}: describe() returned an invalid description: {message}")]
    InvalidDescription { component: String, message: String },

    #[error("components {first} and {second} both implement phase {phase}; select one in spec.plugins")]
    Ambiguous { phase: String, first: String, second: String },

    #[error("no plugin implements phase {0}")]
    NoPlugin(String),

    #[error("plugin {plugin} exceeded its CPU budget of {budget:?} and was stopped")]
    CpuBudget { plugin: String, budget: Duration },

    #[error("plugin {plugin} did not return within {timeout:?} and was stopped")]
    CallTimeout { plugin: String, timeout: Duration },

    #[error(
        "plugin {plugin} exceeded its memory limit of {limit_mib} MiB (it asked for {requested_mib} MiB) and was stopped"
    )]
    MemoryLimit { plugin: String, limit_mib: u64, requested_mib: u64 },

    #[error("plugin {plugin} crashed: {message}{}", stderr_suffix(.stderr))]
    Trap { plugin: String, message: String, stderr: String },

    #[error("plugin {plugin} returned {what} of {size} bytes; the limit is {limit}")]
    OutputTooLarge { plugin: String, what: &'static str, size: usize, limit: usize },

    #[error("wasm engine: {0}")]
    Engine(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let tail = stderr.trim();
    if tail.is_empty() {
        String::new()
    } else {
        // The last lines carry a Rust panic message; that is what an admin needs.
        let lines: Vec<&str> = tail.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
        format!(" (guest said: {})", lines.join(" | "))
    }
}

impl RuntimeError {
    /// Whether the same call might succeed later (the operator retries these).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RuntimeError::CallTimeout { .. } | RuntimeError::Io { .. })
    }
}
