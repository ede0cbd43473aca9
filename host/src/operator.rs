//! The whole operator as a value: plugin runtime and registry (hot-reloaded), the HTTP
//! endpoint, leader election and the controller, which runs only while this replica leads.
//! The `vsm-operator run` binary is a thin wrapper; tests start several in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use vsm_vsphere::{ClientOptions, SessionPool};

use crate::backends::Clients;
use crate::leader::{Elector, LeaderConfig, LeaderHandle};
use crate::metrics::Metrics;
use crate::runtime::config::PluginConfig;
use crate::runtime::{LoadState, Registry, Runtime, RuntimeConfig, RuntimeError};
use crate::server::{self, Health};

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub plugin_dir: PathBuf,
    pub plugin_config: PluginConfig,
    /// Compiled-component cache; None compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Watch migrations in one namespace only.
    pub namespace: Option<String>,
    /// None: no election, this replica always leads.
    pub leader: Option<LeaderConfig>,
    /// Metrics and health; None: no endpoint.
    pub listen: Option<SocketAddr>,
    pub identity: String,
    pub watch_plugins: bool,
    pub vsphere: ClientOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("metrics endpoint: {0}")]
    Listen(#[from] std::io::Error),
    #[error("kubernetes client: {0}")]
    Kube(String),
}

pub struct Operator {
    stop: Arc<AtomicBool>,
    stopped: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub leader: LeaderHandle,
    pub ops: Arc<Clients>,
    pub addr: Option<SocketAddr>,
    _watch: Option<crate::runtime::WatchHandle>,
}

impl Operator {
    /// Start with a kube client of the caller's.
    pub async fn start(client: kube::Client, cfg: OperatorConfig) -> Result<Operator, StartError> {
        Self::start_with(client, Arc::new(Metrics::new()), cfg).await
    }

    /// Start with a client built from `config` whose every API request is counted in the
    /// metrics (`vsm_kube_api_requests_total`).
    pub async fn start_counted(config: kube::Config, cfg: OperatorConfig) -> Result<Operator, StartError> {
        let metrics = Arc::new(Metrics::new());
        let client = crate::metrics::counted_client(config, &metrics).map_err(|e| StartError::Kube(e.to_string()))?;
        Self::start_with(client, metrics, cfg).await
    }

    async fn start_with(
        client: kube::Client,
        metrics: Arc<Metrics>,
        cfg: OperatorConfig,
    ) -> Result<Operator, StartError> {
        let runtime = Runtime::new(RuntimeConfig { cache_dir: cfg.cache_dir.clone(), ..Default::default() })?;
        let registry = Registry::open(runtime, &cfg.plugin_dir, cfg.plugin_config.clone()).await?;
        let watch = if cfg.watch_plugins { Some(registry.watch(Duration::from_millis(250))?) } else { None };
        let status = registry.status();
        metrics.plugins_loaded.set(status.iter().filter(|s| s.state == LoadState::Loaded).count() as i64);
        metrics.plugins_rejected.set(status.iter().filter(|s| s.state == LoadState::Rejected).count() as i64);
        for s in status.iter().filter(|s| s.state == LoadState::Rejected) {
            tracing::error!(component = %s.component, error = ?s.error, "plugin rejected at start");
        }

        let health = Arc::new(Health::default());
        let mut tasks = Vec::new();
        let addr = match cfg.listen {
            Some(listen) => {
                let (addr, task) = server::serve(listen, metrics.clone(), health.clone()).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(Notify::new());
        let leader = match cfg.leader.clone() {
            Some(lc) => {
                let (elector, handle) = Elector::new(client.clone(), lc);
                let stop = stop.clone();
                tasks.push(tokio::spawn(elector.run(stop)));
                handle
            }
            None => LeaderHandle::always(),
        };
        let ops = Clients::new(client.clone(), SessionPool::new(cfg.vsphere.clone()), &cfg.identity, leader.clone());

        // The controller runs only while this replica leads.
        {
            let (ops, registry, metrics, stop, stopped) =
                (ops.clone(), registry.clone(), metrics.clone(), stop.clone(), stopped.clone());
            let leader = leader.clone();
            let namespace = cfg.namespace.clone();
            tasks.push(tokio::spawn(async move {
                let mut changes = leader.subscribe();
                while !stop.load(Ordering::SeqCst) {
                    if !leader.is_leader() {
                        metrics.leader.set(0);
                        tokio::select! {
                            changed = changes.changed() => {
                                // A closed channel (elector gone) must not become a spin.
                                if changed.is_err() {
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                }
                            }
                            _ = stopped.notified() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                    metrics.leader.set(1);
                    tracing::info!("leading: starting the controller");
                    let (l2, s2, n2, r2) = (leader.clone(), stop.clone(), stopped.clone(), registry.clone());
                    // The watches follow the loaded plugins: a hot reload that changes what
                    // they read restarts the controller with the new set.
                    let watching = crate::controller::wanted_watches(&registry);
                    let shutdown = async move {
                        let mut changes = l2.subscribe();
                        loop {
                            if s2.load(Ordering::SeqCst) || !l2.is_leader() {
                                return;
                            }
                            if crate::controller::wanted_watches(&r2) != watching {
                                tracing::info!(
                                    "the loaded plugins read other kinds now: restarting the controller's watches"
                                );
                                return;
                            }
                            tokio::select! {
                                changed = changes.changed() => {
                                    if changed.is_err() {
                                        tokio::time::sleep(Duration::from_millis(500)).await;
                                    }
                                }
                                _ = n2.notified() => return,
                                // Fencing can lapse without a change message (a frozen
                                // renewal): look again regularly.
                                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                        }
                    };
                    crate::controller::run(
                        ops.clone(),
                        registry.clone(),
                        metrics.clone(),
                        leader.clone(),
                        namespace.clone(),
                        shutdown,
                    )
                    .await;
                    tracing::info!("controller stopped");
                }
            }));
        }
        health.ready.store(true, Ordering::SeqCst);
        Ok(Operator { stop, stopped, tasks, metrics, registry, leader, ops, addr, _watch: watch })
    }

    /// Graceful stop: the controller finishes its reconcile, the lease is released and
    /// vCenter sessions are logged out.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
        // Controller and elector end by themselves; the HTTP server is aborted.
        let mut tasks = std::mem::take(&mut self.tasks);
        if self.addr.is_some() && !tasks.is_empty() {
            tasks.remove(0).abort();
        }
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        self.ops.vsphere.shutdown().await;
    }

    /// Stop without any clean-up, as a crash would (tests).
    pub fn abort(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
    }
}
