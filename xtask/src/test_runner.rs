//! The test step of `cargo xtask test`: every test binary of the workspace is built once
//! (`cargo test --no-run`), then run `jobs` at a time. Most binaries spend their time
//! waiting on API servers, vCenter simulators and simulated delays rather than computing,
//! so two at a time on two cores nearly halves the wall time of the suite.
//!
//! Each binary runs as `cargo test` would run it (in its package's directory, with `CARGO`
//! and `CARGO_MANIFEST_DIR` set); its output goes to `target/test-logs/<binary>.log`, and
//! a failing binary's output is printed after the summary. The slowest binaries of the last
//! run start first (`target/test-logs/durations.json`). The workspace has no doctests.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, root};

/// One test executable, as cargo built it.
#[derive(Debug, Clone)]
struct TestBinary {
    /// `package::target` (unit tests of a library: `package::lib`).
    label: String,
    executable: PathBuf,
    package_dir: PathBuf,
}

struct Finished {
    label: String,
    ok: bool,
    took: Duration,
    log: PathBuf,
}

/// Build the test binaries and list them, from cargo's JSON messages.
fn build(cargo_args: &[String]) -> Result<Vec<TestBinary>> {
    let mut child = cargo()
        .args(["test", "--workspace", "--exclude", "xtask", "--no-run", "--message-format=json-render-diagnostics"])
        .args(cargo_args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test --no-run")?;
    let mut binaries = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(&line?) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = msg["executable"].as_str() else { continue };
        let manifest = PathBuf::from(msg["manifest_path"].as_str().unwrap_or_default());
        let package = package_name(msg["package_id"].as_str().unwrap_or_default());
        let target = msg["target"]["name"].as_str().unwrap_or_default();
        let kind = msg["target"]["kind"][0].as_str().unwrap_or_default();
        let label = if kind == "test" { format!("{package}::{target}") } else { format!("{package}::{kind}:{target}") };
        binaries.push(TestBinary {
            label,
            executable: PathBuf::from(executable),
            package_dir: manifest.parent().map(Path::to_path_buf).unwrap_or_else(root),
        });
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the tests failed ({status})");
    }
    Ok(binaries)
}

/// The name in a package id: `path+file:///…/dir#name@version`, or `path+file:///…/name#version`
/// when the name is the directory's.
fn package_name(id: &str) -> &str {
    let (url, fragment) = id.split_once('#').unwrap_or((id, ""));
    match fragment.split_once('@') {
        Some((name, _)) => name,
        None => url.rsplit('/').next().unwrap_or(url),
    }
}

fn durations_path() -> PathBuf {
    root().join("target/test-logs/durations.json")
}

fn load_durations() -> BTreeMap<String, f64> {
    std::fs::read_to_string(durations_path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

fn run_one(bin: &TestBinary, log: &Path) -> Result<bool> {
    let out = File::create(log)?;
    let status = Command::new(&bin.executable)
        .current_dir(&bin.package_dir)
        .env("CARGO", std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .env("CARGO_MANIFEST_DIR", &bin.package_dir)
        // The release operator `test` built: the reliability suite runs it instead of
        // building it again (a nested cargo may be another toolchain's and rebuild it).
        .env("VSM_OPERATOR_BIN", root().join("target/release/vsm-operator"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("starting {}", bin.executable.display()))?;
    Ok(status.success())
}

/// Build, then run every test binary, `jobs` at a time.
pub fn run(cargo_args: &[String], jobs: usize) -> Result<()> {
    let binaries = build(cargo_args)?;
    let logs = root().join("target/test-logs");
    std::fs::create_dir_all(&logs)?;
    let mut durations = load_durations();
    let mut queue: Vec<TestBinary> = binaries;
    // Longest first (unknown ones too: they may be long); then by name.
    queue.sort_by(|a, b| {
        let d = |t: &TestBinary| durations.get(&t.label).copied().unwrap_or(f64::MAX);
        d(b).total_cmp(&d(a)).then_with(|| a.label.cmp(&b.label))
    });
    let total = queue.len();
    let jobs = jobs.clamp(1, total.max(1));
    eprintln!("running {total} test binaries, {jobs} at a time (logs in {})", logs.display());
    let queue = Arc::new(Mutex::new(VecDeque::from(queue)));
    let finished = Arc::new(Mutex::new(Vec::<Finished>::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (queue, finished, logs) = (queue.clone(), finished.clone(), logs.clone());
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let Some(bin) = queue.lock().expect("queue").pop_front() else { return Ok(()) };
                    let log = logs.join(format!("{}.log", bin.label.replace([':', '/'], "_")));
                    let t = Instant::now();
                    let ok = run_one(&bin, &log)?;
                    let took = t.elapsed();
                    let mut done = finished.lock().expect("finished");
                    eprintln!(
                        "[{:>3}/{total}] {} {:>7.1}s  {}",
                        done.len() + 1,
                        if ok { "ok  " } else { "FAIL" },
                        took.as_secs_f64(),
                        bin.label
                    );
                    done.push(Finished { label: bin.label, ok, took, log });
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("test worker panicked")?;
    }
    let finished = std::mem::take(&mut *finished.lock().expect("finished"));
    for f in &finished {
        durations.insert(f.label.clone(), f.took.as_secs_f64());
    }
    std::fs::write(durations_path(), serde_json::to_string_pretty(&durations)?)?;
    let failed: Vec<&Finished> = finished.iter().filter(|f| !f.ok).collect();
    for f in &failed {
        let text = std::fs::read_to_string(&f.log).unwrap_or_default();
        eprintln!("\n======== {} failed ({}):\n{text}", f.label, f.log.display());
    }
    let busy: f64 = finished.iter().map(|f| f.took.as_secs_f64()).sum();
    eprintln!(
        "{} of {total} test binaries passed in {:.0}s ({busy:.0}s of test time, {jobs} at a time)",
        total - failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("failed: {}", failed.iter().map(|f| f.label.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_names_from_ids() {
        assert_eq!(super::package_name("path+file:///work/main/tests#vsm-testenv@0.1.0"), "vsm-testenv");
        assert_eq!(super::package_name("path+file:///work/main/xtask#0.1.0"), "xtask");
    }
}
