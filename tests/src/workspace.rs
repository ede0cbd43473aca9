//! The workspace's own binaries, for tests that run one as a user would: built with
//! `cargo build` on first use (a no-op when up to date; it waits on the target directory's
//! lock while another build runs). A test binary can name only its own package's binaries
//! with `CARGO_BIN_EXE_*`; this finds any package's.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The debug build of binary `bin` of `package`, built now if it is not up to date.
pub fn binary(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(root())
        .output()
        .context("running cargo")?;
    ensure!(out.status.success(), "building {bin} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(target_dir().join("debug").join(bin))
}
