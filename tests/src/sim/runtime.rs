//! What the simulated controllers share: the Kubernetes client, informer caches, vCenter
//! sessions, counters, the delay clock, and the task plumbing (level-triggered control
//! loops, one in-flight task per object, shutdown).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};

use super::objects::{self as o};
use super::options::SimOptions;
use super::vsphere::VCenters;

/// A controller re-checks everything this often even without events (lost-event insurance).
const RESYNC: Duration = Duration::from_secs(10);
/// A failed sync or object task waits this long before it is retried.
pub(crate) const RETRY: Duration = Duration::from_millis(500);
/// How long a controller waits for its own write to reach its cache.
const SEEN_LIMIT: Duration = Duration::from_secs(30);
const ERRORS_KEPT: usize = 50;

/// Counters of what the simulator did, and the simulated time it waited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Controller passes plus per-object task runs.
    pub reconciles: u64,
    /// Machines created by the simulated control-plane machine set operator.
    pub machines_created: u64,
    pub nodes_created: u64,
    pub nodes_deleted: u64,
    pub pods_created: u64,
    /// Pods removed (terminated by the kubelet, or garbage-collected).
    pub pods_deleted: u64,
    /// ClusterOperator condition changes written.
    pub operator_transitions: u64,
    pub cpms_regenerated: u64,
    /// Writes of the cloud credential operator's copy of the vCenter credentials.
    pub credential_copies: u64,
    /// Writes of the trust bundles and the cloud config copy ([`super::trust`]).
    pub trust_copies: u64,
    /// Restarts of the real machine controller (its pod was replaced).
    pub machine_controller_restarts: u64,
    /// Errors met (retried); [`SimHandle::errors`](super::SimHandle::errors) has the last ones.
    pub errors: u64,
    /// Sum of every simulated delay waited (overlapping delays each count).
    pub delay_total: Duration,
    /// Wall-clock time during which at least one simulated delay was running: subtract
    /// this from a run's wall time to get the time not explained by simulated delays.
    pub delay_wall: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub reconciles: AtomicU64,
    pub machines_created: AtomicU64,
    pub nodes_created: AtomicU64,
    pub nodes_deleted: AtomicU64,
    pub pods_created: AtomicU64,
    pub pods_deleted: AtomicU64,
    pub operator_transitions: AtomicU64,
    pub cpms_regenerated: AtomicU64,
    pub credential_copies: AtomicU64,
    pub trust_copies: AtomicU64,
    pub machine_controller_restarts: AtomicU64,
    pub errors: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Default)]
struct DelayState {
    active: usize,
    since: Option<Instant>,
    wall: Duration,
    total: Duration,
}

/// Measures simulated waits: their sum, and the wall time covered by at least one.
#[derive(Default)]
pub(crate) struct DelayClock {
    state: Mutex<DelayState>,
}

struct DelayGuard<'a> {
    clock: &'a DelayClock,
    start: Instant,
}

impl Drop for DelayGuard<'_> {
    // Runs also when the waiting task is cancelled: only time actually waited counts.
    fn drop(&mut self) {
        let mut s = self.clock.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total += self.start.elapsed();
        s.active -= 1;
        if s.active == 0
            && let Some(since) = s.since.take()
        {
            s.wall += since.elapsed();
        }
    }
}

impl DelayClock {
    pub async fn wait(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let guard = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.active == 0 {
                s.since = Some(Instant::now());
            }
            s.active += 1;
            DelayGuard { clock: self, start: Instant::now() }
        };
        tokio::time::sleep(d).await;
        drop(guard);
    }

    fn totals(&self) -> (Duration, Duration) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let running = s.since.map(|t| t.elapsed()).unwrap_or_default();
        (s.total, s.wall + running)
    }
}

/// Informer caches of everything the controllers look at.
pub(crate) struct Stores {
    pub machines: Store<DynamicObject>,
    pub machine_sets: Store<DynamicObject>,
    pub cpms: Store<DynamicObject>,
    pub infra: Store<DynamicObject>,
    pub operators: Store<DynamicObject>,
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub daemonsets: Store<DaemonSet>,
    pub creds: Store<Secret>,
    /// The cloud credential operator's copy for machine-api.
    pub creds_copy: Store<Secret>,
    pub cloud_config: Store<ConfigMap>,
    /// Every ConfigMap (trust bundles and their sources are spread over namespaces).
    pub config_maps: Store<ConfigMap>,
}

/// Wake-ups of the controllers (a stored permit coalesces bursts of events).
#[derive(Default)]
pub(crate) struct Triggers {
    pub kubelet: Notify,
    pub ipam: Notify,
    pub garbage_collector: Notify,
    pub credentials: Notify,
    pub cpms: Notify,
    pub workloads: Notify,
    pub operators: Notify,
    pub cluster_config: Notify,
    pub machine_controller: Notify,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Ctl {
    /// Kubelets and the cloud node lifecycle (with the real machine-api).
    Kubelet,
    /// The IP address management provider (with the real machine-api).
    Ipam,
    GarbageCollector,
    /// The cloud credential operator's copy.
    Credentials,
    Cpms,
    Workloads,
    Operators,
    /// The trust bundles and the cloud config copy.
    ClusterConfig,
    /// The real machine controller's pod (with the real machine-api).
    MachineController,
}

impl Triggers {
    pub fn get(&self, c: Ctl) -> &Notify {
        match c {
            Ctl::Kubelet => &self.kubelet,
            Ctl::Ipam => &self.ipam,
            Ctl::GarbageCollector => &self.garbage_collector,
            Ctl::Credentials => &self.credentials,
            Ctl::Cpms => &self.cpms,
            Ctl::Workloads => &self.workloads,
            Ctl::Operators => &self.operators,
            Ctl::ClusterConfig => &self.cluster_config,
            Ctl::MachineController => &self.machine_controller,
        }
    }
}

pub(crate) struct Shared {
    pub client: kube::Client,
    pub opts: SimOptions,
    pub counters: Counters,
    pub clock: DelayClock,
    pub vcenters: VCenters,
    pub stores: Stores,
    pub triggers: Triggers,
    /// BIOS UUIDs of the VMs whose kubelet has started since the VM was powered on.
    pub kubelets: Mutex<HashSet<String>>,
    /// The system CAs of the cluster's images ([`super::trust`]).
    pub system_trust: String,
    /// The real machine-api, whose machine controller [`super::trust`] restarts.
    pub machine_api: Option<Arc<crate::machine_api::MachineApi>>,
    /// The uid of the pod the machine controller process "runs in".
    pub machine_controller_pod: Mutex<Option<String>>,
    shutdown: watch::Receiver<bool>,
    live_tasks: AtomicUsize,
    tasks_done: Notify,
    in_flight: Mutex<HashSet<String>>,
    errors: Mutex<VecDeque<String>>,
    /// Per controller: passes done, and when the running one started.
    passes: Mutex<std::collections::BTreeMap<String, (u64, Option<Instant>)>>,
    caches_ready: watch::Receiver<bool>,
}

impl Shared {
    /// What is going on now: controllers in a pass (and for how long), in-flight tasks.
    pub fn diagnostics(&self) -> String {
        let passes = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        let ctl: Vec<String> = passes
            .iter()
            .map(|(k, (n, running))| match running {
                Some(t) => format!("{k}: {n} passes, one running for {:?}", t.elapsed()),
                None => format!("{k}: {n} passes, idle"),
            })
            .collect();
        let mut tasks: Vec<String> = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        tasks.sort();
        format!(
            "controllers: {ctl:?}; tasks in flight: {tasks:?}; live tasks: {}",
            self.live_tasks.load(Ordering::SeqCst)
        )
    }

    fn pass(&self, ctl: Ctl, running: bool) {
        let mut passes = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        let e = passes.entry(format!("{ctl:?}")).or_default();
        if running {
            e.1 = Some(Instant::now());
        } else {
            e.0 += 1;
            e.1 = None;
        }
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (delay_total, delay_wall) = self.clock.totals();
        SimStats {
            reconciles: l(&c.reconciles),
            machines_created: l(&c.machines_created),
            nodes_created: l(&c.nodes_created),
            nodes_deleted: l(&c.nodes_deleted),
            pods_created: l(&c.pods_created),
            pods_deleted: l(&c.pods_deleted),
            operator_transitions: l(&c.operator_transitions),
            cpms_regenerated: l(&c.cpms_regenerated),
            credential_copies: l(&c.credential_copies),
            trust_copies: l(&c.trust_copies),
            machine_controller_restarts: l(&c.machine_controller_restarts),
            errors: l(&c.errors),
            delay_total,
            delay_wall,
        }
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    pub fn record_error(&self, what: &str, e: &anyhow::Error) {
        inc(&self.counters.errors);
        let msg = format!("{what}: {e:#}");
        tracing::debug!(target: "vsm_sim", "{msg}");
        let mut errs = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errs.len() == ERRORS_KEPT {
            errs.pop_front();
        }
        errs.push_back(msg);
    }

    /// A simulated wait (counted in the stats).
    pub async fn delay(&self, d: Duration) {
        self.clock.wait(d).await
    }

    /// Spawn a task that ends at shutdown.
    pub fn spawn<F>(self: &Arc<Self>, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let sh = self.clone();
        let mut stop = self.shutdown.clone();
        self.live_tasks.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = fut => {}
            }
            if sh.live_tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
                sh.tasks_done.notify_waiters();
            }
        });
    }

    /// Run `fut` for `key` unless a task for that key is running; when it ends, wake the
    /// controller so it looks again. A failed task waits [`RETRY`] first.
    pub fn spawn_keyed<F>(self: &Arc<Self>, key: String, ctl: Ctl, fut: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        if !self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            return;
        }
        let sh = self.clone();
        self.spawn(async move {
            inc(&sh.counters.reconciles);
            if let Err(e) = fut.await {
                sh.record_error(&key, &e);
                tokio::time::sleep(RETRY).await;
            }
            sh.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            sh.triggers.get(ctl).notify_one();
        });
    }

    pub fn wake(&self, ctl: Ctl) {
        self.triggers.get(ctl).notify_one();
    }

    /// Wait until all tasks have ended (after shutdown was signalled).
    pub async fn wait_stopped(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.tasks_done.notified();
            if self.live_tasks.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// Poll a cache until `pred` holds: a controller waits for its own writes to show up in
/// its cache, so its next pass does not act on a view from before them.
pub(crate) async fn wait_seen<K>(store: &Store<K>, what: &str, pred: impl Fn(&Store<K>) -> bool) -> Result<()>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let deadline = Instant::now() + SEEN_LIMIT;
    while !pred(store) {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not show up in the cache within {SEEN_LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// What the simulator takes from the environment besides the API and the vCenters.
pub(crate) struct ClusterHandles {
    pub system_trust: String,
    pub machine_api: Option<Arc<crate::machine_api::MachineApi>>,
}

/// Starts one watch once the shared state exists.
type StartWatch = Box<dyn FnOnce(&Arc<Shared>) + Send>;

/// Builds the caches, starts their watches, and returns everything shared.
pub(crate) fn start(
    client: kube::Client,
    opts: SimOptions,
    vcenters: VCenters,
    cluster: ClusterHandles,
    shutdown: watch::Receiver<bool>,
) -> Arc<Shared> {
    use Ctl::*;
    let mut pending: Vec<StartWatch> = Vec::new();

    fn dynamic(
        pending: &mut Vec<StartWatch>,
        api: Api<DynamicObject>,
        ar: ApiResource,
        cfg: watcher::Config,
        wakes: &'static [Ctl],
    ) -> Store<DynamicObject> {
        let writer = reflector::store::Writer::new(ar);
        let store = writer.as_reader();
        pending.push(Box::new(move |sh| run_watch(sh, api, writer, cfg, wakes)));
        store
    }

    fn typed<K>(pending: &mut Vec<StartWatch>, api: Api<K>, cfg: watcher::Config, wakes: &'static [Ctl]) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let writer = reflector::store::Writer::default();
        let store = writer.as_reader();
        pending.push(Box::new(move |sh| run_watch(sh, api, writer, cfg, wakes)));
        store
    }

    let (ready_tx, caches_ready) = watch::channel(false);
    let c = &client;
    let all = watcher::Config::default;
    let stores = Stores {
        machines: dynamic(&mut pending, o::machines_api(c), o::machine(), all(), &[Kubelet, GarbageCollector, Cpms]),
        machine_sets: dynamic(&mut pending, o::machine_sets_api(c), o::machine_set(), all(), &[GarbageCollector]),
        cpms: dynamic(&mut pending, o::cpms_api(c), o::cpms(), all(), &[Cpms]),
        infra: dynamic(&mut pending, o::infra_api(c), o::infrastructure(), all(), &[Cpms, Operators]),
        operators: dynamic(&mut pending, o::operators_api(c), o::cluster_operator(), all(), &[Operators]),
        nodes: typed(&mut pending, Api::all(c.clone()), all(), &[Kubelet, Cpms, Workloads, Operators]),
        pods: typed(&mut pending, Api::all(c.clone()), all(), &[Workloads, Operators, MachineController]),
        deployments: typed(&mut pending, Api::all(c.clone()), all(), &[Workloads, Operators]),
        daemonsets: typed(&mut pending, Api::all(c.clone()), all(), &[Workloads, Operators]),
        creds: typed(
            &mut pending,
            Api::namespaced(c.clone(), o::CREDS_NS),
            all().fields(&format!("metadata.name={}", o::CREDS_NAME)),
            &[Operators, Credentials],
        ),
        creds_copy: typed(
            &mut pending,
            Api::namespaced(c.clone(), o::MACHINE_API_NS),
            all().fields(&format!("metadata.name={}", super::credentials::MACHINE_API_CREDS_NAME)),
            &[Credentials],
        ),
        cloud_config: typed(
            &mut pending,
            Api::namespaced(c.clone(), o::CLOUD_CONFIG_NS),
            all().fields(&format!("metadata.name={}", o::CLOUD_CONFIG_NAME)),
            &[Operators],
        ),
        config_maps: typed(&mut pending, Api::all(c.clone()), all(), &[ClusterConfig]),
    };
    let shared = Arc::new(Shared {
        client,
        opts,
        counters: Counters::default(),
        clock: DelayClock::default(),
        vcenters,
        stores,
        triggers: Triggers::default(),
        kubelets: Mutex::default(),
        system_trust: cluster.system_trust,
        machine_api: cluster.machine_api,
        machine_controller_pod: Mutex::default(),
        shutdown,
        live_tasks: AtomicUsize::new(0),
        tasks_done: Notify::new(),
        in_flight: Mutex::default(),
        errors: Mutex::default(),
        passes: Mutex::default(),
        caches_ready,
    });
    for start in pending {
        start(&shared);
    }
    // One waiter per cache: `Store::wait_until_ready` wakes only the last of several
    // concurrent waiters, so the controllers wait on this signal instead.
    let sh = shared.clone();
    shared.spawn(async move {
        let s = &sh.stores;
        let _ = s.machines.wait_until_ready().await;
        let _ = s.machine_sets.wait_until_ready().await;
        let _ = s.cpms.wait_until_ready().await;
        let _ = s.infra.wait_until_ready().await;
        let _ = s.operators.wait_until_ready().await;
        let _ = s.nodes.wait_until_ready().await;
        let _ = s.pods.wait_until_ready().await;
        let _ = s.deployments.wait_until_ready().await;
        let _ = s.daemonsets.wait_until_ready().await;
        let _ = s.creds.wait_until_ready().await;
        let _ = s.creds_copy.wait_until_ready().await;
        let _ = s.cloud_config.wait_until_ready().await;
        let _ = s.config_maps.wait_until_ready().await;
        let _ = ready_tx.send(true);
    });
    shared
}

fn run_watch<K>(
    sh: &Arc<Shared>,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    cfg: watcher::Config,
    wakes: &'static [Ctl],
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let sh2 = sh.clone();
    sh.spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                // Mid-list events change nothing in the cache until the list is done.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => {
                    for c in wakes {
                        sh2.wake(*c);
                    }
                }
                Err(e) => sh2.record_error("watch", &anyhow::Error::new(e)),
            }
        }
    });
}

/// A level-triggered control loop: one `sync` pass per wake-up (events coalesce), every
/// [`RESYNC`] at the latest, retried after [`RETRY`] when it fails.
pub(crate) fn run_controller<F, Fut>(sh: &Arc<Shared>, ctl: Ctl, sync: F)
where
    F: Fn(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let sh2 = sh.clone();
    sh.spawn(async move {
        // Every cache filled first: an empty cache would look like "no machines", and a
        // MachineSet would create all of its replicas again.
        sh2.pass(ctl, true);
        let mut ready = sh2.caches_ready.clone();
        let _ = ready.wait_for(|r| *r).await;
        sh2.pass(ctl, false);
        sh2.wake(ctl);
        loop {
            let _ = tokio::time::timeout(RESYNC, sh2.triggers.get(ctl).notified()).await;
            inc(&sh2.counters.reconciles);
            sh2.pass(ctl, true);
            let result = sync(sh2.clone()).await;
            sh2.pass(ctl, false);
            if let Err(e) = result {
                sh2.record_error(&format!("{ctl:?}"), &e);
                tokio::time::sleep(RETRY).await;
                sh2.wake(ctl);
            }
        }
    });
}
