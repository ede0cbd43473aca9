//! The wasmtime engine, loading and validating components, and calling them in a sandbox:
//! a fresh instance per call from a pre-linked `InstancePre`, a guest CPU budget enforced
//! by epoch interruption, a memory cap, a wall-clock timeout, and no WASI capabilities.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use super::backend::{Backends, CallScope, Direction};
use super::bindings::{CallContext, Outcome, Phase, PhaseInfo, PhasePre};
use super::cache::{ComponentCache, sha256_hex};
use super::capability::{CapabilitySet, Effective};
use super::config::{Limits, PluginEntry};
use super::error::RuntimeError;
use super::imports::{CallEnv, HostState, MemoryLimiter};
use super::output::GuestOutput;

/// Largest message a phase may return in an outcome.
pub const MAX_OUTCOME_MESSAGE: usize = 32 << 10;
/// Guest stdout/stderr kept per call.
const GUEST_OUTPUT_BYTES: usize = 64 << 10;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; None compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Component instances alive at once (calls in flight plus validations).
    pub max_instances: u32,
    /// Largest memory any plugin may be configured for.
    pub max_memory_mib: u64,
    /// Granularity of the CPU budget.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { cache_dir: None, max_instances: 32, max_memory_mib: 256, epoch_tick: Duration::from_millis(10) }
    }
}

/// Advances the engine's epoch on a fixed tick; stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shared engine, linker and component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 16)
            .total_memories(config.max_instances * 4)
            .total_tables(config.max_instances * 8)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(32)
            .max_memory_size((config.max_memory_mib as usize) << 20);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        // Rust guests import WASI interfaces (clocks, random, stdio) even when unused; the
        // context grants nothing beyond those.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        Phase::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(engine_err)?;

        let cache = ComponentCache::new(&engine, config.cache_dir.clone())?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Arc::new(Runtime { engine, linker, cache, config, _ticker: ticker }))
    }

    /// How many components were compiled, and how many came from the on-disk cache.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.cache.stats.compiled.load(Ordering::Relaxed), self.cache.stats.loaded_from_cache.load(Ordering::Relaxed))
    }

    /// Compile (or load from cache), link, and validate a component: it must instantiate
    /// against this host's contract and answer describe() sensibly; a sha256 pin must match.
    pub async fn load(
        &self,
        component: &str,
        bytes: &[u8],
        entry: &PluginEntry,
        limits: Limits,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let sha256 = sha256_hex(bytes);
        if let Some(pin) = &entry.sha256
            && !pin.eq_ignore_ascii_case(&sha256)
        {
            return Err(RuntimeError::PinMismatch {
                component: component.into(),
                expected: pin.clone(),
                actual: sha256,
            });
        }
        if limits.memory_mib > self.config.max_memory_mib {
            return Err(RuntimeError::Config(format!(
                "{component}: memoryMiB {} exceeds the runtime's maximum of {}",
                limits.memory_mib, self.config.max_memory_mib
            )));
        }
        let compiled = self.cache.load(&self.engine, component, bytes, &sha256)?;
        let incompatible =
            |e: wasmtime::Error| RuntimeError::Incompatible { component: component.into(), message: format!("{e:#}") };
        let instance_pre = self.linker.instantiate_pre(&compiled).map_err(incompatible)?;
        let pre = PhasePre::new(instance_pre).map_err(incompatible)?;

        let mut plugin = LoadedPlugin {
            component: component.to_string(),
            sha256,
            info: PhaseInfo {
                name: String::new(),
                version: String::new(),
                purpose: String::new(),
                capabilities: super::bindings::Capabilities { kube: vec![], vsphere: vec![] },
                has_rollback: false,
                default_deadline_ms: 0,
            },
            caps: Arc::new(Effective::default()),
            limits,
            epoch_tick: self.config.epoch_tick,
            pre,
        };
        // A component built against another contract can link and still fail here.
        let info = plugin.describe().await.map_err(|e| match e {
            RuntimeError::Trap { message, .. } => RuntimeError::Incompatible { component: component.into(), message },
            other => other,
        })?;
        validate_description(component, &info)?;
        let declared = CapabilitySet::from(&info.capabilities);
        let granted = if entry.grant_declared { declared.clone() } else { entry.grants.clone() };
        plugin.caps = Arc::new(Effective { declared, granted });
        plugin.info = info;
        Ok(plugin)
    }
}

fn validate_description(component: &str, info: &PhaseInfo) -> Result<(), RuntimeError> {
    let bad = |message: String| Err(RuntimeError::InvalidDescription { component: component.into(), message });
    if info.name.is_empty() || info.name.len() > 63 || !info.name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return bad(format!("name {:?} must be 1-63 letters and digits", info.name));
    }
    if semver::Version::parse(&info.version).is_err() {
        return bad(format!("version {:?} is not semver", info.version));
    }
    if info.default_deadline_ms == 0 {
        return bad("default deadline must be positive".into());
    }
    if info.purpose.len() > 512 {
        return bad("purpose is longer than 512 bytes".into());
    }
    Ok(())
}

/// What one call produced, beyond the outcome.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: Outcome,
    /// Host imports the guest called.
    pub imports: u64,
    /// Calls the capability check refused.
    pub denials: Vec<String>,
    /// Guest CPU time, in epoch ticks.
    pub cpu_ticks: u64,
}

/// A validated component, ready to be called. Cheap to share: every call makes its own
/// store and instance.
pub struct LoadedPlugin {
    /// File name without `.wasm`.
    pub component: String,
    pub sha256: String,
    pub info: PhaseInfo,
    pub caps: Arc<Effective>,
    pub limits: Limits,
    epoch_tick: Duration,
    pre: PhasePre<HostState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("component", &self.component)
            .field("phase", &self.info.name)
            .field("version", &self.info.version)
            .field("sha256", &self.sha256)
            .finish()
    }
}

struct Guest {
    store: Store<HostState>,
    stdout: GuestOutput,
    stderr: GuestOutput,
}

impl LoadedPlugin {
    fn new_store(&self, env: Option<Arc<CallEnv>>) -> Guest {
        let stdout = GuestOutput::new(GUEST_OUTPUT_BYTES);
        let stderr = GuestOutput::new(GUEST_OUTPUT_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let limiter = MemoryLimiter { limit: self.limits.memory_bytes(), refused: None };
        let budget_ticks = (self.limits.cpu_budget().as_nanos() / self.epoch_tick.as_nanos().max(1)).max(1) as u64;
        let mut store = Store::new(self.pre.engine(), HostState::new(wasi, limiter, budget_ticks, env));
        store.limiter(|s| &mut s.limiter);
        // Every tick the guest runs counts against its budget; time in host imports does
        // not (the callback only fires while guest code runs). Yielding each tick keeps a
        // spinning guest from holding a tokio worker.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.cpu_ticks += 1;
            if s.cpu_ticks > s.cpu_budget_ticks { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        Guest { store, stdout, stderr }
    }

    /// Forward guest output to the logs; return stderr for error messages.
    fn drain_output(&self, guest: &Guest, phase: &str) -> String {
        let (out, out_dropped) = guest.stdout.take();
        let (err, err_dropped) = guest.stderr.take();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "vsm::guest", plugin = %self.component, phase, stream = "stdout", "{line}");
        }
        for line in err.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(target: "vsm::guest", plugin = %self.component, phase, stream = "stderr", "{line}");
        }
        if out_dropped + err_dropped > 0 {
            tracing::warn!(target: "vsm::guest", plugin = %self.component, dropped = out_dropped + err_dropped, "guest output over the limit was dropped");
        }
        err
    }

    fn classify(&self, guest: &Guest, error: wasmtime::Error, stderr: String) -> RuntimeError {
        let state = guest.store.data();
        if let Some(requested) = state.limiter.refused {
            return RuntimeError::MemoryLimit {
                plugin: self.component.clone(),
                limit_mib: self.limits.memory_mib,
                requested_mib: requested.div_ceil(1 << 20) as u64,
            };
        }
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return RuntimeError::CpuBudget { plugin: self.component.clone(), budget: self.limits.cpu_budget() };
        }
        // The trap says what happened; the wasm backtrace (offsets, no names) is for the log.
        tracing::debug!(plugin = %self.component, error = format!("{error:?}"), "guest trapped");
        let message = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        RuntimeError::Trap { plugin: self.component.clone(), message, stderr }
    }

    /// Run describe() in a fresh instance with no imports available.
    pub async fn describe(&self) -> Result<PhaseInfo, RuntimeError> {
        let mut guest = self.new_store(None);
        let timeout = self.limits.call_timeout();
        let result = tokio::time::timeout(timeout, async {
            let phase = self.pre.instantiate_async(&mut guest.store).await?;
            phase.call_describe(&mut guest.store).await
        })
        .await;
        let stderr = self.drain_output(&guest, "describe");
        match result {
            Err(_) => Err(RuntimeError::CallTimeout { plugin: self.component.clone(), timeout }),
            Ok(Err(e)) => Err(self.classify(&guest, e, stderr)),
            Ok(Ok(info)) => Ok(info),
        }
    }

    /// One execute or rollback call of the component running as `phase` (the phase it is
    /// bound to, whatever name its describe() declares), its imports served by `backends`.
    /// The phase's state and journal are that phase's: a component cannot reach another
    /// phase's by declaring its name.
    pub async fn call(
        &self,
        phase: &str,
        backends: Backends,
        ctx: CallContext,
        direction: Direction,
        servers: Vec<String>,
    ) -> Result<CallReport, RuntimeError> {
        let scope = CallScope {
            plugin: self.component.clone(),
            phase: phase.to_string(),
            migration_name: ctx.migration.name.clone(),
            migration_namespace: ctx.migration.namespace.clone(),
            migration_uid: ctx.migration.uid.clone(),
            dry_run: ctx.dry_run,
            direction,
        };
        let env = Arc::new(CallEnv { backends, scope, caps: self.caps.clone(), servers });
        let mut guest = self.new_store(Some(env));
        let timeout = self.limits.call_timeout();
        let result = tokio::time::timeout(timeout, async {
            let phase = self.pre.instantiate_async(&mut guest.store).await?;
            match direction {
                Direction::Execute => phase.call_execute(&mut guest.store, &ctx).await,
                Direction::Rollback => phase.call_rollback(&mut guest.store, &ctx).await,
            }
        })
        .await;
        let stderr = self.drain_output(&guest, &self.info.name);
        let outcome = match result {
            Err(_) => return Err(RuntimeError::CallTimeout { plugin: self.component.clone(), timeout }),
            Ok(Err(e)) => return Err(self.classify(&guest, e, stderr)),
            Ok(Ok(outcome)) => outcome,
        };
        let size = match &outcome {
            Outcome::Done(m) => m.len(),
            Outcome::Wait(w) => w.message.len(),
            Outcome::Failed(f) => f.message.len(),
        };
        if size > MAX_OUTCOME_MESSAGE {
            return Err(RuntimeError::OutputTooLarge {
                plugin: self.component.clone(),
                what: "an outcome message",
                size,
                limit: MAX_OUTCOME_MESSAGE,
            });
        }
        let state = guest.store.data();
        Ok(CallReport {
            outcome,
            imports: state.imports_made,
            denials: state.denials.clone(),
            cpu_ticks: state.cpu_ticks,
        })
    }
}
