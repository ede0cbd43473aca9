//! `vsm-plugin`: the kit for writing vsphere-migration phases.
//!
//! - `vsm-plugin new NAME --phase PHASE`: a phase crate using vsm-sdk, with a native test
//!   against `vsm_sdk::testing::FakeHost` that passes;
//! - `vsm-plugin test COMPONENT.wasm`: the component against a real API server and vCenter
//!   simulators: execute, idempotent re-run, rollback, and a capability audit;
//! - `vsm-plugin inspect COMPONENT.wasm`: the contract version it imports, what it declares,
//!   whether this host loads it, its sha256.
//!
//! It runs from a checkout of the repository: `test` builds and starts the test environment
//! (`tests/`, Go needed the first time) and `new` points the crate at `plugins/sdk`.

mod audit;
pub mod check;
pub mod inspect;
pub mod scaffold;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use check::{TestOptions, TestReport, test_component};
pub use inspect::{Inspection, inspect};
pub use scaffold::{Scaffold, scaffold};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or input file.
    #[error("{0}")]
    Usage(String),
    /// The test environment or the cluster failed (not the component).
    #[error("test environment: {0}")]
    Env(String),
    #[error(transparent)]
    Runtime(#[from] vsm_host::runtime::RuntimeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Parser)]
#[command(name = "vsm-plugin", version, about = "Write, test and inspect vsphere-migration phase components")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a phase crate NAME (in ./NAME) with a passing native test.
    New {
        name: String,
        /// The phase it serves: one of the 16 (case-insensitive).
        #[arg(long, default_value = "MonitorHealth")]
        phase: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// vsm-sdk to depend on (default: this checkout's plugins/sdk).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a component against the test environment: execute, idempotent re-run, rollback,
    /// capability audit. Exit status 1 if a check fails.
    Test {
        component: PathBuf,
        /// Worker machines in the simulated cluster.
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// A MigrationSpec (YAML/JSON) to run with, instead of the default one.
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Give up on a run of the phase after this long.
        #[arg(long, value_parser = humantime_secs, default_value = "600")]
        timeout_secs: Duration,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a component's contract version, declared capabilities and sha256.
    Inspect {
        component: PathBuf,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>().map(Duration::from_secs).map_err(|e| format!("seconds: {e}"))
}
