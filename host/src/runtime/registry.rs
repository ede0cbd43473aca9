//! The plugin directory: which component serves which phase, hot reload, and a status
//! report per component file.
//!
//! A new or changed `*.wasm` file is compiled and validated beside the version in service
//! and swapped in only if it passes; a failure is recorded in [`Registry::status`] and the
//! previous version keeps serving. Calls in flight hold an `Arc` to the version they
//! started on. The controller asks for a phase's plugin with the sha256 it pinned when the
//! phase started, so a reload takes effect at the next phase boundary.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;

use super::cache::sha256_hex;
use super::config::PluginConfig;
use super::engine::{LoadedPlugin, Runtime};
use super::error::RuntimeError;

/// How many replaced versions stay loaded for phases that pinned them.
const RETIRED_KEPT: usize = 16;

/// Load state of one component file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadState {
    /// Serving.
    Loaded,
    /// The file failed validation; `serving_sha256` (if any) is the version still in use.
    Rejected,
}

/// What the registry knows about one component file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub component: String,
    pub state: LoadState,
    /// sha256 of the file on disk.
    pub file_sha256: String,
    /// sha256 of the version serving calls, if any.
    pub serving_sha256: Option<String>,
    pub phase: Option<String>,
    pub version: Option<String>,
    pub error: Option<String>,
    /// Declared capabilities the configuration does not grant (calls will be refused).
    pub not_granted: Vec<String>,
    #[serde(skip)]
    pub changed_at: Option<SystemTime>,
}

#[derive(Default)]
struct Inner {
    current: BTreeMap<String, Arc<LoadedPlugin>>,
    status: BTreeMap<String, ComponentStatus>,
    retired: VecDeque<Arc<LoadedPlugin>>,
    /// (sha256, config revision) per component file, to skip unchanged files on rescan.
    seen: BTreeMap<String, (String, u64)>,
}

/// Result of one scan of the directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    pub loaded: Vec<String>,
    pub rejected: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    config: RwLock<(PluginConfig, u64)>,
    inner: RwLock<Inner>,
    scans: AtomicU64,
    scan_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Open a plugin directory and load what is in it. Components that fail are reported
    /// in the status, not as an error: the operator keeps running without them.
    pub async fn open(
        runtime: Arc<Runtime>,
        dir: impl Into<PathBuf>,
        config: PluginConfig,
    ) -> Result<Arc<Self>, RuntimeError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RuntimeError::Config(format!("plugin directory {} does not exist", dir.display())));
        }
        let registry = Arc::new(Registry {
            runtime,
            dir,
            config: RwLock::new((config, 0)),
            inner: RwLock::new(Inner::default()),
            scans: AtomicU64::new(0),
            scan_lock: tokio::sync::Mutex::new(()),
        });
        registry.rescan().await;
        Ok(registry)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many scans have completed (tests wait on this after touching files).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::SeqCst)
    }

    /// Replace the plugin configuration and revalidate every component against it.
    pub async fn set_config(&self, config: PluginConfig) -> ScanSummary {
        {
            let mut c = self.config.write().expect("config lock");
            c.1 += 1;
            c.0 = config;
        }
        self.rescan().await
    }

    /// Compare the directory with what is loaded and apply the differences.
    pub async fn rescan(&self) -> ScanSummary {
        let _one_at_a_time = self.scan_lock.lock().await;
        let mut summary = ScanSummary::default();
        let (config, revision) = self.config.read().expect("config lock").clone();
        let files = match list_components(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the plugin directory");
                self.scans.fetch_add(1, Ordering::SeqCst);
                return summary;
            }
        };

        for (component, path) in &files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    self.reject(component, String::new(), format!("cannot read {}: {e}", path.display()));
                    summary.rejected.push(component.clone());
                    continue;
                }
            };
            let sha = sha256_hex(&bytes);
            let unchanged =
                self.inner.read().expect("registry lock").seen.get(component) == Some(&(sha.clone(), revision));
            if unchanged {
                summary.unchanged += 1;
                continue;
            }
            let entry = config.entry(component);
            let limits = config.limits(component);
            match self.runtime.load(component, &bytes, &entry, limits).await {
                Ok(plugin) => {
                    let not_granted = plugin.caps.declared.not_covered_by(&plugin.caps.granted);
                    tracing::info!(component, phase = %plugin.info.name, version = %plugin.info.version, sha256 = %plugin.sha256, ?not_granted, "plugin loaded");
                    let mut inner = self.inner.write().expect("registry lock");
                    inner.status.insert(
                        component.clone(),
                        ComponentStatus {
                            component: component.clone(),
                            state: LoadState::Loaded,
                            file_sha256: sha.clone(),
                            serving_sha256: Some(plugin.sha256.clone()),
                            phase: Some(plugin.info.name.clone()),
                            version: Some(plugin.info.version.clone()),
                            error: None,
                            not_granted,
                            changed_at: Some(SystemTime::now()),
                        },
                    );
                    if let Some(old) = inner.current.insert(component.clone(), Arc::new(plugin)) {
                        inner.retired.push_back(old);
                        while inner.retired.len() > RETIRED_KEPT {
                            inner.retired.pop_front();
                        }
                    }
                    inner.seen.insert(component.clone(), (sha, revision));
                    summary.loaded.push(component.clone());
                }
                Err(e) => {
                    tracing::error!(component, sha256 = %sha, error = %e, "plugin rejected; the previous version (if any) keeps serving");
                    self.reject(component, sha.clone(), e.to_string());
                    self.inner.write().expect("registry lock").seen.insert(component.clone(), (sha, revision));
                    summary.rejected.push(component.clone());
                }
            }
        }

        let mut inner = self.inner.write().expect("registry lock");
        let gone: Vec<String> = inner.status.keys().filter(|c| !files.contains_key(*c)).cloned().collect();
        for component in gone {
            tracing::warn!(component, "plugin file removed; its phase is no longer served by it");
            inner.status.remove(&component);
            inner.seen.remove(&component);
            if let Some(old) = inner.current.remove(&component) {
                inner.retired.push_back(old);
            }
            summary.removed.push(component);
        }
        drop(inner);
        self.scans.fetch_add(1, Ordering::SeqCst);
        summary
    }

    fn reject(&self, component: &str, sha: String, error: String) {
        let mut inner = self.inner.write().expect("registry lock");
        let serving = inner.current.get(component).cloned();
        inner.status.insert(
            component.to_string(),
            ComponentStatus {
                component: component.to_string(),
                state: LoadState::Rejected,
                file_sha256: sha,
                serving_sha256: serving.as_ref().map(|p| p.sha256.clone()),
                phase: serving.as_ref().map(|p| p.info.name.clone()),
                version: serving.as_ref().map(|p| p.info.version.clone()),
                error: Some(error),
                not_granted: Vec::new(),
                changed_at: Some(SystemTime::now()),
            },
        );
    }

    /// The status of every component file, sorted by name.
    pub fn status(&self) -> Vec<ComponentStatus> {
        self.inner.read().expect("registry lock").status.values().cloned().collect()
    }

    /// Every plugin currently serving, sorted by component name.
    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        self.inner.read().expect("registry lock").current.values().cloned().collect()
    }

    /// The plugin for a phase. `component` selects one explicitly — it then serves the
    /// phase whatever name its describe() gives (an admin's binding, e.g. a vendor's
    /// replacement) — otherwise the phase is served by the one component whose describe()
    /// names it. `pinned_sha256` returns the exact version a running phase started with, as
    /// long as it is still loaded.
    pub fn plugin_for(
        &self,
        phase: &str,
        component: Option<&str>,
        pinned_sha256: Option<&str>,
    ) -> Result<Arc<LoadedPlugin>, RuntimeError> {
        let inner = self.inner.read().expect("registry lock");
        let serves = |p: &LoadedPlugin| match component {
            Some(c) => p.component == c,
            None => p.info.name == phase,
        };
        if let Some(sha) = pinned_sha256 {
            let pinned =
                inner.current.values().chain(inner.retired.iter()).rev().find(|p| p.sha256 == sha && serves(p));
            if let Some(p) = pinned {
                return Ok(p.clone());
            }
        }
        let mut candidates = inner.current.values().filter(|p| serves(p));
        let first = candidates.next().ok_or_else(|| {
            RuntimeError::NoPlugin(match component {
                Some(c) => format!("{phase} (component {c})"),
                None => phase.to_string(),
            })
        })?;
        if let Some(second) = candidates.next() {
            return Err(RuntimeError::Ambiguous {
                phase: phase.into(),
                first: first.component.clone(),
                second: second.component.clone(),
            });
        }
        Ok(first.clone())
    }

    /// Watch the directory and rescan (debounced) on every change until the handle drops.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle, RuntimeError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher: RecommendedWatcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("plugin directory watcher: {e}")))?;
        watcher
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .map_err(|e| RuntimeError::Engine(format!("watching {}: {e}", self.dir.display())))?;
        let registry = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (copy, rename, symlink swap) settle.
                tokio::time::sleep(debounce).await;
                while rx.try_recv().is_ok() {}
                let Some(registry) = registry.upgrade() else { break };
                let summary = registry.rescan().await;
                tracing::debug!(?summary, "plugin directory rescanned");
            }
        });
        Ok(WatchHandle { _watcher: watcher, task })
    }
}

/// Keeps the directory watch alive.
pub struct WatchHandle {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `*.wasm` files in a directory, by component name (file stem). Hidden files (such as
/// a ConfigMap volume's `..data` entries) are skipped.
fn list_components(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') || path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            out.insert(stem.to_string(), path);
        }
    }
    Ok(out)
}
