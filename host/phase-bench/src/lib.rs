//! The 16 phases against one stub host, as components (the real runtime) and natively:
//! shared by the `phases` benchmark (`benches/phases.rs`) and the `phase_adapter` test
//! (`tests/phase_adapter.rs`).
//!
//! For each sample a fresh fixture is built (not timed), the phase is made the caller of
//! the host's imports, and one `execute` call is timed: natively `P::execute(&Cx)`, exactly
//! what the component's export runs, or through `LoadedPlugin::call` (fresh instance from
//! the pre-linked component, capability checks on every import, the adapter to the
//! `FakeHost`).
//!
//! The host is a [`SharedHost`]: the runtime's backends must be `Send + Sync`, and a
//! `FakeHost` is `Send`, so a `Mutex` makes it shareable; each import locks it for the call.

pub mod adapter;
pub mod fixtures;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use vsm_host::runtime::bindings as h;
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_host::runtime::{Backends, Direction, LoadedPlugin, Runtime};
use vsm_sdk::testing::{self, FakeHost};
use vsm_sdk::{CallContext, Cx, Migration, Outcome, Phase, Step};

/// The in-memory host a prepared call runs against, shared with the runtime's backends.
pub type SharedHost = Arc<Mutex<FakeHost>>;

/// The host behind `shared`, locked. Nothing in here locks it twice: the backends lock it
/// per import and release it before returning, and `FakeHost` hands its hooks itself.
pub fn lock(shared: &SharedHost) -> MutexGuard<'_, FakeHost> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One phase: its component file, and its native implementation.
pub struct Case {
    /// File stem in `target/plugins`.
    pub component: &'static str,
    pub fixture: fn() -> (FakeHost, Migration),
    prepare: fn(&FakeHost, &Migration) -> CallContext,
    execute: fn(&Cx) -> Step,
}

macro_rules! case {
    ($component:literal, $phase:ty, $fixture:path) => {
        Case {
            component: $component,
            fixture: $fixture,
            prepare: |host, m| host.context_for::<$phase>(testing::Direction::Execute, m, 1),
            execute: <$phase as Phase>::execute,
        }
    };
}

/// The shipped phases, in migration order.
pub fn cases() -> Vec<Case> {
    use fixtures as f;
    vec![
        case!("preflight", vsm_phase_preflight::Preflight, f::preflight),
        case!("backup", vsm_phase_backup::Backup, f::backup),
        case!("update-secrets", vsm_phase_update_secrets::UpdateSecrets, f::update_secrets),
        case!("create-tags", vsm_phase_create_tags::CreateTags, f::create_tags),
        case!("create-folder", vsm_phase_create_folder::CreateFolder, f::create_folder),
        case!("update-infrastructure", vsm_phase_update_infrastructure::UpdateInfrastructure, f::update_infrastructure),
        case!("update-config", vsm_phase_update_config::UpdateConfig, f::update_config),
        case!("disable-cvo", vsm_phase_disable_cvo::DisableCvo, f::disable_cvo),
        case!("create-workers", vsm_phase_create_workers::CreateWorkers, f::create_workers),
        case!("delete-cpms", vsm_phase_delete_cpms::DeleteCpms, f::delete_cpms),
        case!("recreate-cpms", vsm_phase_recreate_cpms::RecreateCpms, f::recreate_cpms),
        case!("scale-old-machines", vsm_phase_scale_old_machines::ScaleOldMachines, f::scale_old_machines),
        case!("restart-pods", vsm_phase_restart_pods::RestartPods, f::restart_pods),
        case!("monitor-health", vsm_phase_monitor_health::MonitorHealth, f::monitor_health),
        case!("cleanup", vsm_phase_cleanup::Cleanup, f::cleanup),
        case!("verify", vsm_phase_verify::Verify, f::verify),
    ]
}

/// A fixture ready for one call: the host, the context, and the same context and backends
/// as the runtime takes them.
pub struct Prepared {
    pub host: SharedHost,
    pub ctx: CallContext,
    host_ctx: h::CallContext,
    backends: Backends,
    servers: Vec<String>,
}

impl Case {
    /// A fresh fixture with the phase set as the caller (not part of any timing).
    pub fn prepare(&self) -> Prepared {
        let (host, m) = (self.fixture)();
        let ctx = (self.prepare)(&host, &m);
        let host = Arc::new(Mutex::new(host));
        let mut servers = m.source_servers.clone();
        servers.extend(m.target_servers.iter().cloned());
        Prepared {
            host_ctx: adapter::call_context(&ctx),
            backends: adapter::FakeServices::new(host.clone()).backends(),
            host,
            ctx,
            servers,
        }
    }

    /// The phase's logic, natively: what the component's `execute` export runs. The host is
    /// handed back, so that freeing the fixture is not part of a timed call.
    pub fn native(&self, p: Prepared) -> (Outcome, SharedHost) {
        let host = lock(&p.host);
        let cx = Cx::new(p.ctx, &*host);
        let outcome = match (self.execute)(&cx) {
            Ok(o) => o,
            Err(e) => e.into_outcome(),
        };
        drop(cx);
        drop(host);
        (outcome, p.host)
    }
}

/// One sandboxed call: a fresh instance of `plugin`, `execute` against the prepared host.
/// Returns the outcome, the number of host imports the guest made, and the host.
pub async fn wasm(plugin: &LoadedPlugin, p: Prepared) -> (Outcome, u64, SharedHost) {
    let report = plugin
        .call(&plugin.info.name, p.backends, p.host_ctx, Direction::Execute, p.servers)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", plugin.component));
    assert!(report.denials.is_empty(), "{}: denied {:?}", plugin.component, report.denials);
    (adapter::outcome(&report.outcome), report.imports, p.host)
}

/// The workspace's `target` directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// `target/plugins/<component>.wasm`, built by `cargo xtask plugins`.
pub fn component_path(component: &str) -> PathBuf {
    target_dir().join("plugins").join(format!("{component}.wasm"))
}

/// Load a phase component as the operator does (granted what it declares).
pub async fn load(runtime: &Runtime, component: &str) -> LoadedPlugin {
    let path = component_path(component);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing: run `cargo xtask plugins`", path.display()));
    let entry = PluginEntry { grant_declared: true, ..Default::default() };
    runtime.load(component, &bytes, &entry, Limits::default()).await.unwrap_or_else(|e| panic!("{component}: {e}"))
}
