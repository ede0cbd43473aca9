//! Language independence: a phase written in Python (samples/python-phase, built with
//! componentize-py from PyPI against wit/phase.wit) is loaded by the host and run against
//! the real environment exactly like a Rust one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vsm_plugin::TestOptions;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[tokio::test]
async fn a_phase_written_in_python_is_loaded_described_and_run_by_the_host() {
    let wasm = root().join("target/python-sample/python-node-check.wasm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/python-phase/build.sh");
    let out = std::process::Command::new(&script).arg(&wasm).output().expect("build.sh runs");
    assert!(
        out.status.success(),
        "building the Python phase (python3 and PyPI access needed the first time):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let i = vsm_plugin::inspect(&wasm).await.unwrap();
    assert_eq!(i.load_error, None);
    assert_eq!(i.contract_versions, vec![i.host_contract.clone()]);
    let phase = i.phase.expect("describe()");
    assert_eq!((phase.name.as_str(), phase.has_rollback), ("MonitorHealth", false));
    assert_eq!(phase.capabilities.kube.len(), 1);
    assert_eq!(phase.capabilities.kube[0].resource, "nodes");

    let opts = TestOptions { component: wasm, workers: 2, spec: None, timeout: Duration::from_secs(600) };
    let report = vsm_plugin::test_component(&opts, &mut |_| {}).await.unwrap();
    assert!(report.passed(), "{}", vsm_plugin::check::render(&report));
    assert!(report.checks[0].detail.contains("nodes are Ready (checked by a Python phase)"), "{:?}", report.checks);
    let calls: Vec<String> = report.calls.iter().map(|c| format!("{} {} {}", c.system, c.verb, c.what)).collect();
    assert!(calls.contains(&"kube list core/nodes".to_string()), "{calls:?}");
    assert!(calls.contains(&"state set phase:nodes-seen".to_string()), "{calls:?}");
    assert!(report.unused_capabilities.is_empty(), "{:?}", report.unused_capabilities);
}
