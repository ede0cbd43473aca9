//! Build every phase component and test component for wasm32-wasip2.
//!
//! Phase crates live in `plugins/<name>/` with package name `vsm-phase-<name>` and land in
//! `target/plugins/<name>.wasm`, the operator's default plugin directory. Test components
//! land in `target/test-plugins/`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{cargo, root, run};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// Test components: (package, features, output name).
const TEST_COMPONENTS: &[(&str, &[&str], &str)] = &[
    ("vsm-test-exerciser", &[], "exerciser"),
    ("vsm-test-exerciser", &["v2"], "exerciser-v2"),
    ("vsm-test-exerciser", &["slow"], "exerciser-slow"),
    ("vsm-test-hostile", &[], "hostile"),
    ("vsm-test-hostile", &["loop"], "hostile-loop"),
    ("vsm-test-hostile", &["alloc"], "hostile-alloc"),
    ("vsm-test-hostile", &["trap"], "hostile-trap"),
    ("vsm-test-hostile", &["forbidden"], "hostile-forbidden"),
    ("vsm-test-hostile", &["oversized"], "hostile-oversized"),
    ("vsm-test-hostile", &["panic"], "hostile-panic"),
    ("vsm-test-exerciser", &["fence"], "exerciser-fence"),
    ("vsm-test-exerciser", &["quota"], "exerciser-quota"),
    ("vsm-test-wrong-major", &[], "wrong-major"),
];

/// Phase packages: every `plugins/*/Cargo.toml` whose package is `vsm-phase-*`.
fn phase_packages() -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root().join("plugins"))? {
        let manifest = entry?.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("name = \"vsm-phase-")) {
            found.push(format!("vsm-phase-{}", name.trim_end_matches('"')));
        }
    }
    found.sort();
    Ok(found)
}

fn artifact(package: &str) -> PathBuf {
    root().join("target").join(TARGET).join(PROFILE).join(format!("{}.wasm", package.replace('-', "_")))
}

fn build(packages: &[String], features: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let mut cmd = cargo();
    cmd.args(["build", "--target", TARGET, "--profile", PROFILE]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run(&mut cmd)
}

fn install(package: &str, dir: &PathBuf, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let to = dir.join(format!("{name}.wasm"));
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    // Copy then rename, so a watching operator never sees half a file.
    std::fs::copy(artifact(package), &tmp).with_context(|| format!("copying {package}"))?;
    std::fs::rename(&tmp, &to)?;
    Ok(to)
}

/// Build everything; returns the installed component paths.
pub fn build_all() -> Result<Vec<PathBuf>> {
    let phases = phase_packages()?;
    let mut installed = Vec::new();
    build(&phases, &[])?;
    let plugin_dir = root().join("target/plugins");
    for p in &phases {
        installed.push(install(p, &plugin_dir, p.trim_start_matches("vsm-phase-"))?);
    }
    let test_dir = root().join("target/test-plugins");
    for (package, features, name) in TEST_COMPONENTS {
        build(&[package.to_string()], features)?;
        installed.push(install(package, &test_dir, name)?);
    }
    eprintln!(
        "built {} phase components into {} and {} test components into {}",
        phases.len(),
        plugin_dir.display(),
        TEST_COMPONENTS.len(),
        test_dir.display()
    );
    Ok(installed)
}
