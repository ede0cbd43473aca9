//! Prometheus metrics of the operator (served on `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub phase: String,
    pub direction: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// "call": the reconcile called a phase; "idle": it found nothing to do; "waiting",
    /// "yield", "plugin-missing", "stale", "unverified" (a check of the spec the cluster
    /// could not answer), "error".
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// "timer": a requeue the state machine asked for came due; "event": a watch event or
    /// spec edit woke the migration before that.
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

pub struct Metrics {
    pub registry: Registry,
    /// Wall time of whole phase runs (execute or rollback), by result.
    pub phase_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    /// Phase runs that ended, by result.
    pub phase_outcomes: Family<OutcomeLabels, Counter>,
    /// Wall time of single plugin calls.
    pub call_duration: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    pub calls: Family<OutcomeLabels, Counter>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_triggers: Family<TriggerLabels, Counter>,
    /// Every Kubernetes API request of the operator (when built with a counted client).
    pub api_requests: Family<RequestLabels, Counter>,
    /// Kubernetes API requests made on behalf of phases.
    pub kube_requests: Family<PhaseLabels, Counter>,
    /// vSphere operations made on behalf of phases.
    pub vsphere_calls: Family<PhaseLabels, Counter>,
    pub leader: Gauge,
    pub vcenter_sessions: Gauge,
    pub plugins_loaded: Gauge,
    pub plugins_rejected: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vsm");
        let phase_duration = Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            phase_histogram as fn() -> Histogram,
        );
        let call_duration = Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        let m = Metrics {
            phase_duration,
            phase_outcomes: Family::default(),
            call_duration,
            calls: Family::default(),
            reconciles: Family::default(),
            reconcile_triggers: Family::default(),
            api_requests: Family::default(),
            kube_requests: Family::default(),
            vsphere_calls: Family::default(),
            leader: Gauge::default(),
            vcenter_sessions: Gauge::default(),
            plugins_loaded: Gauge::default(),
            plugins_rejected: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("phase_duration_seconds", "Wall time of phase runs", m.phase_duration.clone());
        registry.register("phase_outcomes", "Phase runs that ended, by result", m.phase_outcomes.clone());
        registry.register("plugin_call_duration_seconds", "Wall time of single plugin calls", m.call_duration.clone());
        registry.register("plugin_calls", "Plugin calls by outcome (done, wait, failed, error)", m.calls.clone());
        registry.register("reconciles", "Reconciles of migrations", m.reconciles.clone());
        registry.register("reconcile_triggers", "What woke a running migration", m.reconcile_triggers.clone());
        registry.register(
            "kube_api_requests",
            "Kubernetes API requests of the operator, by method",
            m.api_requests.clone(),
        );
        registry.register("kube_requests", "Kubernetes API requests made for phases", m.kube_requests.clone());
        registry.register("vsphere_calls", "vSphere operations made for phases", m.vsphere_calls.clone());
        registry.register("leader", "1 while this replica is the leader", m.leader.clone());
        registry.register("vcenter_sessions", "Open vCenter sessions", m.vcenter_sessions.clone());
        registry.register("plugins_loaded", "Phase components serving", m.plugins_loaded.clone());
        registry.register(
            "plugins_rejected",
            "Phase component files that failed validation",
            m.plugins_rejected.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// A kube client whose every request is counted in `metrics.api_requests`.
pub fn counted_client(config: kube::Config, metrics: &Metrics) -> Result<kube::Client, kube::Error> {
    let counter = metrics.api_requests.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        counter.get_or_create(&RequestLabels { method: req.method().to_string() }).inc();
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build())
}
