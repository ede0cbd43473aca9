//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run the cargo-fuzz targets of
//! `tests/fuzz` (SOAP and REST answer parsing, the cloud-provider-config editors, the spec
//! and its durations), each for N seconds, on the nightly toolchain.
//!
//! The nightly toolchain and cargo-fuzz are installed when missing (once: rustup and
//! `cargo install` keep them). Build output goes to `target/fuzz`, the corpus each target
//! grows to `target/fuzz/corpus/<target>` (seeded from `tests/fuzz/seeds/<target>`), and a
//! crashing input to `target/fuzz/artifacts/<target>`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::root;

pub const TARGETS: &[&str] = &["soap", "rest", "cloud_config", "spec"];
const TOOLCHAIN: &str = "nightly";

/// A rustup-proxied cargo on the nightly toolchain, whatever rust-toolchain.toml says.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env("RUSTUP_TOOLCHAIN", TOOLCHAIN).env_remove("CARGO").env_remove("RUSTC").current_dir(root());
    cmd
}

fn ensure_tools() -> Result<()> {
    let have_nightly = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_nightly {
        eprintln!("installing the {TOOLCHAIN} toolchain (cargo-fuzz needs it)");
        crate::run(Command::new("rustup").args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"]))?;
    }
    let have_fuzz = nightly_cargo().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !have_fuzz {
        eprintln!("installing cargo-fuzz");
        crate::run(nightly_cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// What one target's run did.
pub struct FuzzRun {
    pub target: String,
    pub execs: u64,
    pub corpus: u64,
    pub seconds: u64,
}

pub fn run(seconds: u64, only: &[String]) -> Result<Vec<FuzzRun>> {
    let targets: Vec<&str> = if only.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in only {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t}; the targets are {}", TARGETS.join(", "));
            }
        }
        only.iter().map(String::as_str).collect()
    };
    ensure_tools()?;
    let fuzz_dir = root().join("tests/fuzz");
    let target_dir = root().join("target/fuzz");
    let mut runs = Vec::new();
    for t in targets {
        let corpus = target_dir.join("corpus").join(t);
        let artifacts = target_dir.join("artifacts").join(t);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let seeds = fuzz_dir.join("seeds").join(t);
        eprintln!("== fuzz {t} for {seconds}s");
        let out = nightly_cargo()
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg("--target-dir")
            .arg(&target_dir)
            .arg(t)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .output()
            .context("running cargo fuzz")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("fuzz target {t} failed (crash inputs in {}):\n{}", artifacts.display(), tail.join("\n"));
        }
        let stat = |name: &str| {
            stderr
                .lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or_default()
        };
        let corpus_size = std::fs::read_dir(&corpus).map(|d| d.count() as u64).unwrap_or_default();
        let run =
            FuzzRun { target: t.to_string(), execs: stat("number_of_executed_units"), corpus: corpus_size, seconds };
        eprintln!("   {t}: {} executions in {seconds}s, corpus {} inputs, no crash", run.execs, run.corpus);
        runs.push(run);
    }
    eprintln!("fuzzing done:");
    for r in &runs {
        eprintln!("  {:<14} {:>10} execs  {:>6} corpus  {}s", r.target, r.execs, r.corpus, r.seconds);
    }
    Ok(runs)
}
