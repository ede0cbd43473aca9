//! `cargo xtask <task>`: the project's build and test tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod fuzz;
mod plugins;
mod test_runner;
mod testenv;
mod wit_check;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vsphere-migration project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the phase components (and the test components) for wasm32-wasip2.
    Plugins,
    /// A whole migration on the embedded test environment, shown live.
    Demo {
        /// Stop before every phase until you approve it (Enter).
        #[arg(long)]
        manual: bool,
        /// Plan mode: show the intended changes, change nothing.
        #[arg(long)]
        plan: bool,
        /// Worker machines in the simulated cluster.
        #[arg(long, default_value_t = 3)]
        workers: u32,
        /// A zonal cluster over this many failure domains (1-6) in the source vCenter, each
        /// moved to its own target domain; the control plane over the first three.
        #[arg(long)]
        zones: Option<u32>,
        /// Leave everything running afterwards (explore with kubectl), until Ctrl-C.
        #[arg(long)]
        keep: bool,
        /// Simulated cluster delays set to zero (as fast as the operator can go).
        #[arg(long)]
        instant: bool,
    },
    /// Regenerate crds/ from the Rust types.
    Crds,
    /// Check that wit/phase.wit is a compatible upgrade of the releases of its track, and
    /// that a released version (docs included) is unchanged.
    WitCheck,
    /// Build the test tools and start the test environment (etcd, kube-apiserver, two
    /// vCenters): a smoke check, then stop; with --keep, print how to reach it until Ctrl-C.
    Testenv {
        #[arg(long)]
        keep: bool,
    },
    /// Run the cargo-fuzz targets of tests/fuzz, each for --seconds (installs the nightly
    /// toolchain and cargo-fuzz when missing).
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (soap, rest, cloud_config, spec).
        targets: Vec<String>,
    },
    /// Benchmarks: criterion micro-benchmarks and whole-system figures of the operator
    /// (footprint, controller overhead, scale, reconciles); JSON in target/bench/.
    Bench {
        /// Fewer samples and repetitions (a smoke run; not for the document).
        #[arg(long)]
        quick: bool,
        /// Only these parts (comma-separated): runtime, phases, footprint, overhead, scale, reconcile, zonal.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Worker counts of the scale runs.
        #[arg(long, value_delimiter = ',', default_value = "3,25,100,250")]
        workers: Vec<u32>,
        /// Operator start-ups per cache state (cold and warm) for the footprint.
        #[arg(long)]
        starts: Option<usize>,
        /// Repetitions of each overhead migration (instant and realistic delays).
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Everything the tests need, then every test: `cargo xtask test`.
    Test {
        /// Test binaries run at the same time.
        #[arg(long, env = "VSM_TEST_JOBS", default_value_t = 2)]
        jobs: usize,
        /// Extra arguments for building the tests, e.g. `-- -p vsm-host` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Plugins => plugins::build_all().map(|_| ()),
        Task::WitCheck => wit_check::check(),
        Task::Crds => crds(),
        Task::Demo { manual, plan, workers, zones, keep, instant } => demo(manual, plan, workers, zones, keep, instant),
        Task::Testenv { keep } => testenv::run(keep),
        Task::Test { jobs, cargo_args } => test(&cargo_args, jobs),
        Task::Fuzz { seconds, targets } => fuzz::run(seconds, &targets).map(|_| ()),
        Task::Bench { quick, only, workers, starts, runs } => bench::run_bench(bench::BenchOptions {
            quick,
            only,
            workers,
            starts: starts.unwrap_or(if quick { 2 } else { 5 }),
            runs: runs.unwrap_or(if quick { 1 } else { 3 }),
        }),
    }
}

/// The workspace root (this crate's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Run a command from the workspace root, failing with its command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.current_dir(root()).status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(cargo_args: &[String], jobs: usize) -> Result<()> {
    plugins::build_all()?;
    // The Go tools of the test environment (instant when cached); built here so the first
    // test does not sit silently behind a multi-minute build.
    vsm_testenv::tools::ensure_built()?;
    // The reliability suite runs the operator as a separate process: the release binary.
    run(cargo().args(["build", "--release", "-p", "vsm-host", "--bin", "vsm-operator"]))?;
    test_runner::run(cargo_args, jobs)
}

/// Write the CRD YAML the operator generates from its types into `crds/`.
fn crds() -> Result<()> {
    let out = cargo()
        .args(["run", "--quiet", "-p", "vsm-host", "--bin", "vsm-operator", "--", "crd"])
        .current_dir(root())
        .output()
        .context("running vsm-operator crd")?;
    if !out.status.success() {
        bail!("vsm-operator crd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = root().join("crds/vspheremigrations.migration.openshift.io.yaml");
    std::fs::write(&path, &out.stdout)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn demo(manual: bool, plan: bool, workers: u32, zones: Option<u32>, keep: bool, instant: bool) -> Result<()> {
    plugins::build_all()?;
    vsm_testenv::tools::ensure_built()?;
    let out_dir = root().join("target/demo");
    vsm_testenv::demo::log_to_file(&out_dir.join("operator.log"))?;
    let opts = vsm_testenv::demo::DemoOptions {
        workers,
        zones,
        manual,
        plan,
        keep,
        sim: if instant { vsm_testenv::sim::SimOptions::instant() } else { vsm_testenv::sim::SimOptions::realistic() },
        out_dir,
        ..Default::default()
    };
    let report = tokio::runtime::Runtime::new()?.block_on(vsm_testenv::demo::run(opts))?;
    let wanted = if plan { "Planned" } else { "Completed" };
    if report.result != wanted {
        bail!("the migration ended {} (expected {wanted}); see {}", report.result, report.report_path.display());
    }
    Ok(())
}
