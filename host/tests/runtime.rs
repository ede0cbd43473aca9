//! The plugin runtime against real components: every import, capability denials, the
//! hostile set, the precompiled cache, pins and hot reload.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Recorder, context, servers, test_component};
use vsm_host::runtime::bindings::Outcome;
use vsm_host::runtime::capability::{CapabilitySet, KubeRule, VsphereClass};
use vsm_host::runtime::config::{Limits, PluginConfig, PluginEntry};
use vsm_host::runtime::{Direction, LoadState, LoadedPlugin, Registry, Runtime, RuntimeConfig, RuntimeError};

fn runtime() -> Arc<Runtime> {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

fn grant_declared() -> PluginEntry {
    PluginEntry { grant_declared: true, ..Default::default() }
}

async fn load(rt: &Runtime, name: &str, entry: &PluginEntry, limits: Limits) -> Result<LoadedPlugin, RuntimeError> {
    let bytes = std::fs::read(test_component(name)).unwrap();
    rt.load(name, &bytes, entry, limits).await
}

async fn execute(
    plugin: &LoadedPlugin,
    services: Arc<Recorder>,
    spec: Value,
) -> Result<vsm_host::runtime::CallReport, RuntimeError> {
    plugin.call(&plugin.info.name, services.backends(), context(spec), Direction::Execute, servers()).await
}

/// A grant of `verbs` on ConfigMaps in every namespace, and `vsphere`.
fn configmaps_grant(verbs: &[&str], vsphere: Vec<VsphereClass>) -> PluginEntry {
    let rule = KubeRule {
        group: String::new(),
        resource: "configmaps".into(),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        namespace: None,
    };
    PluginEntry { grants: CapabilitySet { kube: vec![rule], vsphere }, ..Default::default() }
}

fn done_message(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Done(m) => m,
        other => panic!("expected done, got {other:?}"),
    }
}

#[tokio::test]
async fn describe_reports_what_the_component_declares() {
    let rt = runtime();
    let p = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    assert_eq!(p.info.name, "Exerciser");
    assert_eq!(p.info.version, "0.1.0");
    assert!(p.info.has_rollback);
    assert_eq!(p.info.default_deadline_ms, 5 * 60 * 1000);
    assert!(p.caps.declared.allows_kube("", "configmaps", "delete", Some("exerciser")));
    assert!(!p.caps.declared.allows_kube("", "secrets", "get", Some("exerciser")));
}

#[tokio::test]
async fn a_component_uses_the_state_of_the_phase_it_runs_as_not_the_name_it_declares() {
    let rt = runtime();
    let p = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    assert_eq!(p.info.name, "Exerciser");
    let rec = Recorder::new();
    let spec = json!({"action": "all", "server": "vcenter"});
    p.call("Backup", rec.backends(), context(spec), Direction::Execute, servers()).await.unwrap();
    assert_eq!(rec.state_phases(), vec!["Backup".to_string()], "bound to Backup: Backup's state, whatever it declares");
}

#[tokio::test]
async fn every_import_reaches_the_host() {
    let rt = runtime();
    let p = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    let rec = Recorder::new();
    let report = execute(&p, rec.clone(), json!({"action": "all", "server": "vcenter"})).await.unwrap();
    let results: Value = serde_json::from_str(done_message(&report.outcome)).unwrap();
    for (step, value) in results.as_object().unwrap() {
        assert!(value.get("error").is_none(), "{step} failed: {value}");
    }
    assert_eq!(results["kube.get"], json!("1"));
    assert_eq!(results["kube.merge_patch"], json!("2"));
    assert_eq!(results["kube.apply"], json!("3"));
    assert_eq!(results["kube.replace"], json!("4"));
    assert_eq!(results["state.get"], json!("v"), "a value set is read back");
    assert_eq!(results["shared.get"], json!("shared"));

    let calls = rec.calls().join("\n");
    for expected in [
        "kube.get configmaps",
        "kube.list configmaps",
        "kube.create configmaps",
        "kube.patch configmaps",
        "kube.update configmaps",
        "kube.delete configmaps",
        "vsphere.about vcenter",
        "vsphere.findObject vcenter",
        "vsphere.listVms vcenter",
        "vsphere.createFolder vcenter",
        "vsphere.deleteFolder vcenter",
        "vsphere.ensureCategory vcenter",
        "vsphere.ensureTag vcenter",
        "vsphere.attachTag vcenter",
        "vsphere.listAttachedTags vcenter",
        "vsphere.detachTag vcenter",
        "vsphere.deleteTag vcenter",
        "vsphere.deleteCategory vcenter",
        "state.set Scope::Phase",
        "state.get Scope::Phase",
        "state.delete Scope::Phase",
        "state.set Scope::Migration",
        "state.get Scope::Migration",
        "backup.snapshot configmaps",
        "backup.restore_journal",
        "log.write Level::Info exercising",
        "log.event Exercised",
        "log.progress 50",
    ] {
        assert!(calls.contains(expected), "{expected} missing from:\n{calls}");
    }
    assert!(report.denials.is_empty(), "{:?}", report.denials);
    assert!(report.imports >= 28, "imports counted: {}", report.imports);
}

#[tokio::test]
async fn calls_outside_the_grant_are_refused_with_forbidden_and_recorded() {
    let rt = runtime();
    // Granted: reading config maps and vSphere inventory; not writing, not tags.
    let entry = configmaps_grant(&["get", "list"], vec![VsphereClass::ReadInventory]);
    let p = load(&rt, "exerciser", &entry, Limits::default()).await.unwrap();
    let not_granted = p.caps.declared.not_covered_by(&p.caps.granted);
    assert!(not_granted.contains(&"create core/configmaps in exerciser".to_string()), "{not_granted:?}");

    let rec = Recorder::new();
    let report = execute(&p, rec.clone(), json!({"action": "all", "server": "vcenter"})).await.unwrap();
    let results: Value = serde_json::from_str(done_message(&report.outcome)).unwrap();
    let create_error = results["kube.create"]["error"].as_str().unwrap();
    assert!(
        create_error.contains("Forbidden")
            && create_error.contains("may not create core/configmaps in namespace exerciser"),
        "{create_error}"
    );
    assert!(results["vsphere.create_folder"]["error"].as_str().unwrap().contains("manage-folders"));
    assert!(results["vsphere.about"].get("error").is_none(), "read-inventory was granted");
    let calls = rec.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("kube.create") || c.starts_with("vsphere.createFolder")),
        "a denied call reached the host: {calls:?}"
    );
    assert!(report.denials.iter().any(|d| d.contains("create core/configmaps")), "{:?}", report.denials);
}

#[tokio::test]
async fn server_side_apply_of_an_object_that_does_not_exist_needs_the_create_grant() {
    let rt = runtime();
    // `patch` without `create`: the exerciser's create is refused, so its apply would create.
    let entry = configmaps_grant(&["get", "list", "patch", "update"], vec![]);
    let p = load(&rt, "exerciser", &entry, Limits::default()).await.unwrap();
    let report = execute(&p, Recorder::new(), json!({"action": "all", "server": "vcenter"})).await.unwrap();
    let results: Value = serde_json::from_str(done_message(&report.outcome)).unwrap();
    let apply = results["kube.apply"]["error"].as_str().unwrap_or_default();
    assert!(
        apply.contains("Forbidden")
            && apply.contains(
                "may not create core/configmaps in namespace exerciser (apply of exercised, which does not exist)"
            ),
        "{results}"
    );
    assert!(
        results["kube.replace"]["error"].as_str().is_some_and(|e| e.contains("does not exist")),
        "nothing was created: {results}"
    );

    // Once the object exists, `patch` is enough to apply it.
    let existing = Recorder::new();
    let with_create = configmaps_grant(&["create"], vec![]);
    let creator = load(&rt, "exerciser", &with_create, Limits::default()).await.unwrap();
    execute(&creator, existing.clone(), json!({"action": "all", "server": "vcenter"})).await.unwrap();
    let report = execute(&p, existing, json!({"action": "all", "server": "vcenter"})).await.unwrap();
    let results: Value = serde_json::from_str(done_message(&report.outcome)).unwrap();
    assert_eq!(results["kube.apply"], json!("3"), "{results}");
}

#[tokio::test]
async fn a_server_outside_the_migration_is_forbidden() {
    let rt = runtime();
    let p = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    let rec = Recorder::new();
    let report = execute(&p, rec.clone(), json!({"action": "all", "server": "elsewhere.example"})).await.unwrap();
    let results: Value = serde_json::from_str(done_message(&report.outcome)).unwrap();
    assert!(results["vsphere.about"]["error"].as_str().unwrap().contains("not part of the migration"));
    assert!(!rec.calls().iter().any(|c| c.starts_with("vsphere.")));
}

#[tokio::test]
async fn hostile_components_are_stopped_with_typed_errors_and_the_host_keeps_serving() {
    let rt = runtime();
    let tight_cpu = Limits { cpu_budget_ms: 200, memory_mib: 64, call_timeout_seconds: 60 };
    let spinner = load(&rt, "hostile", &grant_declared(), tight_cpu).await.unwrap();
    // Touching 64 MiB of fresh pages can take more than 200 ms on a loaded machine: the
    // other cases get a CPU budget that only the memory cap can beat.
    let limits = Limits { cpu_budget_ms: 60_000, memory_mib: 64, call_timeout_seconds: 120 };
    let hostile = load(&rt, "hostile", &grant_declared(), limits).await.unwrap();
    let good = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    let rec = Recorder::new();

    let err = execute(&spinner, rec.clone(), json!({"hostile": "loop"})).await.unwrap_err();
    assert!(matches!(err, RuntimeError::CpuBudget { .. }), "{err}");

    let err = execute(&hostile, rec.clone(), json!({"hostile": "alloc"})).await.unwrap_err();
    match &err {
        RuntimeError::MemoryLimit { limit_mib, requested_mib, .. } => {
            assert_eq!(*limit_mib, 64);
            assert!(*requested_mib > 64, "{err}");
        }
        other => panic!("expected a memory limit error, got {other}"),
    }

    let err = execute(&hostile, rec.clone(), json!({"hostile": "trap"})).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "the trap is named: {err}");

    let err = execute(&hostile, rec.clone(), json!({"hostile": "panic"})).await.unwrap_err();
    assert!(
        err.to_string().contains("hostile component panicked on purpose"),
        "panic message must reach the error: {err}"
    );

    let report = execute(&hostile, rec.clone(), json!({"hostile": "forbidden"})).await.unwrap();
    match &report.outcome {
        Outcome::Failed(f) => {
            assert!(f.message.contains("may not get core/secrets in namespace kube-system"), "{}", f.message)
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(report.denials.len(), 1);

    let err = execute(&hostile, rec.clone(), json!({"hostile": "oversized"})).await.unwrap_err();
    assert!(matches!(err, RuntimeError::OutputTooLarge { size, .. } if size == 16 << 20), "{err}");

    // After all that, the same runtime still serves calls.
    let report = execute(&good, rec.clone(), json!({"action": "noop"})).await.unwrap();
    assert_eq!(done_message(&report.outcome), "exerciser 0.1.0");
    let report = execute(&hostile, rec, json!({"hostile": "none"})).await.unwrap();
    assert_eq!(done_message(&report.outcome), "behaved");
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_block_its_executor_thread() {
    let rt = runtime();
    // A budget the ten calls below fit in even on a loaded machine (they take milliseconds
    // each; the spinner ends when its budget does).
    let limits = Limits { cpu_budget_ms: 20_000, memory_mib: 64, call_timeout_seconds: 120 };
    let hostile = Arc::new(load(&rt, "hostile", &grant_declared(), limits).await.unwrap());
    let good = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    let rec = Recorder::new();

    let spinning = {
        let (hostile, rec) = (hostile.clone(), rec.clone());
        tokio::spawn(async move { execute(&hostile, rec, json!({"hostile": "loop"})).await })
    };
    tokio::task::yield_now().await;
    // On a single-threaded executor these only finish if the spinning guest yields.
    for _ in 0..10 {
        let report = execute(&good, rec.clone(), json!({"action": "noop"})).await.unwrap();
        assert_eq!(done_message(&report.outcome), "exerciser 0.1.0");
    }
    assert!(!spinning.is_finished(), "the loop should still be running while the other calls completed");
    let err = spinning.await.unwrap().unwrap_err();
    assert!(matches!(err, RuntimeError::CpuBudget { .. }), "{err}");
}

#[tokio::test]
async fn a_component_built_against_another_major_version_is_refused() {
    let rt = runtime();
    let err = load(&rt, "wrong-major", &grant_declared(), Limits::default()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("vsm:phase"), "the error should name the contract: {err}");
}

#[tokio::test]
async fn a_sha256_pin_must_match() {
    let rt = runtime();
    let bytes = std::fs::read(test_component("exerciser")).unwrap();
    let right = vsm_host::runtime::sha256_hex(&bytes);
    let pinned = |sha: &str| PluginEntry { sha256: Some(sha.to_string()), grant_declared: true, ..Default::default() };
    rt.load("exerciser", &bytes, &pinned(&right.to_uppercase()), Limits::default()).await.expect("the right pin loads");
    let err = rt.load("exerciser", &bytes, &pinned(&"0".repeat(64)), Limits::default()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::PinMismatch { ref actual, .. } if *actual == right), "{err}");
}

#[tokio::test]
async fn a_restart_loads_components_from_the_precompiled_cache() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    {
        let rt = Runtime::new(config.clone()).unwrap();
        load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
        assert_eq!(rt.cache_counts(), (1, 0), "first start compiles");
    }
    // A new runtime (as after an operator restart) with the same cache directory.
    let rt = Runtime::new(config).unwrap();
    let p = load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    assert_eq!(rt.cache_counts(), (0, 1), "restart loads native code without recompiling");
    let report = execute(&p, Recorder::new(), json!({"action": "noop"})).await.unwrap();
    assert_eq!(done_message(&report.outcome), "exerciser 0.1.0");
}

/// Several runtimes of one process compiling the same component into one cache directory
/// at once (as the test binaries do) each write their own temporary file: every load
/// succeeds and the one entry left behind is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_loads_share_the_cache_safely() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let rt = Runtime::new(config.clone()).unwrap();
            tokio::spawn(async move { load(&rt, "exerciser", &grant_declared(), Limits::default()).await.map(|_| ()) })
        })
        .collect();
    for load in loads {
        load.await.unwrap().expect("every concurrent first load succeeds");
    }
    let files: Vec<String> =
        std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(files.len() == 1 && files[0].ends_with(".cwasm"), "one whole entry, no temporary files: {files:?}");
    let rt = Runtime::new(config).unwrap();
    load(&rt, "exerciser", &grant_declared(), Limits::default()).await.unwrap();
    assert_eq!(rt.cache_counts(), (0, 1), "the entry left behind loads");
}

/// Replace a file the way a deployment should: write beside it, then rename over it.
fn replace_atomically(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn wait_for_scan(registry: &Registry, after: u64) {
    for _ in 0..6000 {
        if registry.scans() > after {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the registry never rescanned after a file change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_versions_without_failing_calls_and_keeps_the_old_one_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_component("exerciser"), dir.path().join("exerciser.wasm")).unwrap();
    let mut config = PluginConfig::default();
    config.plugins.insert("exerciser".into(), grant_declared());
    let registry = Registry::open(runtime(), dir.path(), config).await.unwrap();
    let _watch = registry.watch(Duration::from_millis(50)).unwrap();
    assert_eq!(registry.plugin_for("Exerciser", None, None).unwrap().info.version, "0.1.0");

    // Calls keep running while the file is replaced.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let caller = {
        let (registry, stop, calls) = (registry.clone(), stop.clone(), calls.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let plugin = registry.plugin_for("Exerciser", None, None).expect("a plugin is always serving");
                let report = execute(&plugin, Recorder::new(), json!({"action": "noop"}))
                    .await
                    .expect("no call fails during a reload");
                seen.push(done_message(&report.outcome).to_string());
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            seen
        })
    };
    // The old version serves at least one call before the file changes.
    while calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let scans = registry.scans();
    replace_atomically(dir.path(), "exerciser.wasm", &std::fs::read(test_component("exerciser-v2")).unwrap());
    wait_for_scan(&registry, scans).await;
    let mut v2_seen = false;
    for _ in 0..6000 {
        if registry.plugin_for("Exerciser", None, None).unwrap().info.version == "0.2.0" {
            v2_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(v2_seen, "the new version was never swapped in: {:?}", registry.status());
    let old_sha = vsm_host::runtime::sha256_hex(&std::fs::read(test_component("exerciser")).unwrap());
    assert_eq!(
        registry.plugin_for("Exerciser", None, Some(&old_sha)).unwrap().info.version,
        "0.1.0",
        "a phase that pinned the old version keeps it"
    );

    // A broken file is rejected and the working version keeps serving.
    let scans = registry.scans();
    replace_atomically(dir.path(), "exerciser.wasm", b"\0asm this is not a component");
    wait_for_scan(&registry, scans).await;
    for _ in 0..6000 {
        if registry.status()[0].state == LoadState::Rejected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = registry.status();
    assert_eq!(status[0].state, LoadState::Rejected, "{status:?}");
    assert!(status[0].error.as_deref().unwrap().contains("does not compile"), "{status:?}");
    assert_eq!(status[0].version.as_deref(), Some("0.2.0"), "the status names the version still serving");
    assert_eq!(registry.plugin_for("Exerciser", None, None).unwrap().info.version, "0.2.0");

    // And the new one serves calls after the swap.
    let after_swap = calls.load(std::sync::atomic::Ordering::SeqCst);
    while calls.load(std::sync::atomic::Ordering::SeqCst) < after_swap + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = caller.await.unwrap();
    assert!(seen.iter().any(|m| m == "exerciser 0.1.0"), "calls ran before the reload");
    assert!(seen.last().is_some_and(|m| m == "exerciser 0.2.0"), "later calls use the new version: {:?}", seen.last());
}

#[tokio::test]
async fn two_components_for_one_phase_need_a_selection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_component("exerciser"), dir.path().join("a.wasm")).unwrap();
    std::fs::copy(test_component("exerciser-v2"), dir.path().join("b.wasm")).unwrap();
    let registry = Registry::open(runtime(), dir.path(), PluginConfig::default()).await.unwrap();
    let err = registry.plugin_for("Exerciser", None, None).unwrap_err();
    assert!(matches!(err, RuntimeError::Ambiguous { .. }), "{err}");
    assert_eq!(registry.plugin_for("Exerciser", Some("b"), None).unwrap().info.version, "0.2.0");
    assert!(matches!(registry.plugin_for("Nope", None, None), Err(RuntimeError::NoPlugin(_))));
}
