//! The kube-rs controller for `VSphereMigration`s.
//!
//! Reconciles are triggered by spec edits of a migration (not by its own status writes),
//! by watch events on the kinds the loaded phases read ([`watches`]: Machines, MachineSets,
//! the CPMS, Nodes, ClusterOperators, the CVO Deployment and pods for the shipped phases,
//! whatever a vendor's phase reads besides) mapped to the active migration, and by the
//! requeue times the state machine asks for. So waits end on events, not on fixed polls.

mod approvals;
mod call;
mod gather;
mod reconcile;
mod status;
pub mod watches;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, predicates};
use tokio::sync::Mutex;

use crate::api::VSphereMigration;
use crate::backends::Clients;
use crate::leader::LeaderHandle;
use crate::metrics::Metrics;
use crate::runtime::Registry;

pub use approvals::approvals_seen;
pub use reconcile::{ReconcileError, reconcile};
use status::{LastWrites, WriteError};
use watches::Watch;

/// What every reconcile shares: the operator's clients, the plugins, the metrics, the
/// lease, the cache of migrations.
pub struct Reconciler {
    pub clients: Arc<Clients>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub leader: LeaderHandle,
    pub migrations: Store<VSphereMigration>,
    /// Serialises migration starts, so two migrations cannot both become active.
    pub start_lock: Mutex<()>,
    /// This controller run (process id and start time): a run continued by another
    /// instance was taken over after a restart or a leader change.
    pub instance: String,
    pub last_writes: LastWrites,
}

/// The kinds the loaded plugins read, which the controller watches (see [`watches`]).
pub fn wanted_watches(registry: &Registry) -> BTreeSet<Watch> {
    let loaded = registry.loaded();
    watches::watches(loaded.iter().map(|p| p.caps.as_ref()))
}

/// Migrations that are running (started and not finished): the ones watch events wake.
fn active(store: &Store<VSphereMigration>) -> Vec<ObjectRef<VSphereMigration>> {
    store
        .state()
        .iter()
        // Borrowed, not cloned: this runs for every watch event of every related object
        // (a status clone here was 5 % of the operator's CPU at 250 workers).
        .filter(|m| m.status.as_ref().is_some_and(|s| s.started_at.is_some() && s.finished_at.is_none()))
        .map(|m| ObjectRef::from_obj(m.as_ref()))
        .collect()
}

/// The controller's backoff over all its trigger streams, made a no-op: each stream has
/// its own.
struct NoSharedBackoff;

impl Iterator for NoSharedBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoSharedBackoff {
    fn reset(&mut self) {}
}

/// Only spec edits, deletion and finalizer changes of a migration trigger a reconcile;
/// its own status writes do not.
fn spec_or_lifecycle(m: &VSphereMigration) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(m).hash(&mut h);
    m.metadata.deletion_timestamp.is_some().hash(&mut h);
    m.metadata.finalizers.hash(&mut h);
    Some(h.finish())
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    clients: Arc<Clients>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    leader: LeaderHandle,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = clients.client.clone();
    let migrations: Api<VSphereMigration> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(migrations, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    // Every watch backs off on its own: the controller's shared trigger backoff would pause
    // all of them, the migrations' own cache included, whenever any one failed. After an
    // API server restart each watch meets one "too old resourceVersion" and relists; shared,
    // those errors added up to minutes of a stale cache.
    let mut controller =
        Controller::for_stream(stream, reader.clone()).trigger_backoff(NoSharedBackoff).graceful_shutdown_on(shutdown);
    for (ar, ns) in watches::resolve(&client, &wanted_watches(&registry)).await {
        // Only the metadata travels: the event is the news, the phase reads what it needs
        // (whole objects decoded here were 6 % of the operator's CPU at 250 workers).
        let api: Api<PartialObjectMeta<DynamicObject>> = match &ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let store = reader.clone();
        let kind = ar.kind.clone();
        // Status changes are what phases wait for, so every change counts (no predicate).
        let wakes = watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .filter_map(move |event| {
                if let Err(error) = &event {
                    // Kinds a cluster lacks (no OpenShift CRDs) fail here, harmlessly.
                    tracing::debug!(kind = %kind, %error, "watch of a related kind");
                }
                futures::future::ready(event.ok())
            })
            .flat_map(move |_| futures::stream::iter(active(&store)));
        controller = controller.reconcile_on(wakes);
    }
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let instance = format!("{}-{}", std::process::id(), started.as_millis());
    let ctx = Arc::new(Reconciler {
        clients,
        registry,
        metrics,
        leader,
        migrations: reader,
        start_lock: Mutex::new(()),
        instance,
        last_writes: LastWrites::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(migration = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(migration = %obj, error = %e, "reconcile failed; retrying")
                }
                // Watches of kinds a cluster lacks (no OpenShift CRDs) fail here; the
                // migrations themselves still reconcile.
                Err(e) => tracing::debug!(error = %e, "controller stream"),
            }
        })
        .await;
}

fn error_policy(_m: Arc<VSphereMigration>, error: &ReconcileError, ctx: Arc<Reconciler>) -> Action {
    if matches!(error, ReconcileError::Write(WriteError::Stale { .. })) {
        // The cache is behind the status: its watch event is on the way.
        ctx.metrics.reconciles.get_or_create(&crate::metrics::ReconcileLabels { result: "stale".into() }).inc();
        tracing::debug!(%error, "reconcile from a stale object");
        return Action::requeue(Duration::from_millis(250));
    }
    let result = if matches!(error, ReconcileError::Unverified(_)) { "unverified" } else { "error" };
    ctx.metrics.reconciles.get_or_create(&crate::metrics::ReconcileLabels { result: result.into() }).inc();
    tracing::warn!(%error, "reconcile error");
    Action::requeue(Duration::from_secs(5))
}
