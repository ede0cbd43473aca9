//! The vendor's path with the real binary: `vsm-plugin new` makes a crate whose native test
//! passes; it builds into a component that `vsm-plugin inspect` describes and `vsm-plugin
//! test` passes against the real environment (execute, idempotent re-run, rollback that
//! removes what it created, audit); a component calling outside its capabilities fails.
//!
//! The generated crate is built in the workspace's target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn vsm_plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsm-plugin")).args(args).output().expect("vsm-plugin runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target"))
        .output()
        .expect("cargo runs")
}

#[test]
fn a_new_phase_passes_its_own_test_builds_inspects_and_passes_the_kit_test() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site-gate");
    let out = vsm_plugin(&["new", "site-gate", "--phase", "monitorhealth", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("created"), "{}", text(&out));
    assert!(dir.join("Cargo.lock").is_file(), "the workspace's dependency versions (no download)");

    let out = cargo(&dir, &["test", "--offline"]);
    assert!(out.status.success(), "the generated crate's test fails:\n{}", text(&out));
    assert!(text(&out).contains("test result: ok. 1 passed"), "{}", text(&out));

    let out = cargo(&dir, &["build", "--offline", "--release", "--target", "wasm32-wasip2"]);
    assert!(out.status.success(), "{}", text(&out));
    let wasm = root().join("target/wasm32-wasip2/release/site_gate.wasm");

    let out = vsm_plugin(&["inspect", wasm.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        i["contractVersions"],
        serde_json::json!([vsm_plugin::inspect::contract_version(vsm_plugin::inspect::HOST_CONTRACT).unwrap()])
    );
    assert_eq!(i["phase"]["name"], "MonitorHealth");
    assert_eq!(i["phase"]["hasRollback"], true);
    let caps = i["phase"]["capabilities"]["kube"].to_string();
    assert!(caps.contains("nodes") && caps.contains("configmaps"), "{caps}");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&wasm).unwrap()))
    };
    assert_eq!(i["sha256"], sha);
    let human = text(&vsm_plugin(&["inspect", wasm.to_str().unwrap()]));
    assert!(human.contains("contract:    vsm:phase@") && human.contains("kube     list core/nodes"), "{human}");

    let out = vsm_plugin(&["test", wasm.to_str().unwrap()]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for line in ["PASS execute", "PASS capabilities", "PASS idempotent", "PASS rollback", "PASSED"] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(report.contains("recorded in vsphere-migration/site-gate-report"), "{report}");
    assert!(report.contains("execute  kube    create            core/configmaps in vsphere-migration"), "{report}");
    assert!(report.contains("rollback backup  restore-journal"), "{report}");
}

#[test]
fn a_component_calling_outside_its_capabilities_fails_the_kit_test() {
    let hostile = root().join("target/test-plugins/hostile-forbidden.wasm");
    assert!(hostile.is_file(), "run `cargo xtask plugins`");
    let out = vsm_plugin(&["test", hostile.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"capabilities") && failed.contains(&"execute"), "{report}");
    assert!(report["denials"].to_string().contains("secrets"), "{report}");
    assert!(report["unusedCapabilities"].to_string().contains("kube get core/configmaps in default"), "{report}");
}
