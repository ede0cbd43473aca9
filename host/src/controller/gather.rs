//! The facts the lifecycle decides on, read before it decides: the phase catalogue from
//! the loaded plugins, who approved what, whether this reconcile was woken by an event,
//! and, only when the decision needs them, the spec checked against the cluster, the
//! source vCenters and the one-active-migration check.
//!
//! Most reconciles find a waiting phase rate-limited and need no read of the cluster at
//! all: [`Facts::gather`] reads the cluster only when [`validate_first`] says so, and
//! [`Facts::validate`] completes the facts when a phase is about to be called.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::Api;

use super::Reconciler;
use super::approvals::approvals_seen;
use crate::api::{FINALIZER, MigrationState, MigrationStatus, PHASES, PluginRef, SourceVCenter, VSphereMigration};
use crate::facts::CheckError;
use crate::lifecycle::{ApprovalSeen, Catalogue, Input, PhaseEntry, condition_types};
use crate::runtime::LoadedPlugin;

/// Until a plugin appears, a phase is assumed to need undoing and to take this long.
const UNKNOWN_PLUGIN_DEADLINE: Duration = Duration::from_secs(1800);

/// What the lifecycle is told about one migration and the cluster around it.
pub(super) struct Facts {
    pub catalogue: Catalogue,
    /// The plugin of each phase that has one, as the catalogue resolved it.
    pub plugins: HashMap<String, Arc<LoadedPlugin>>,
    approvals: Vec<ApprovalSeen>,
    sources: Option<Vec<SourceVCenter>>,
    blocked_by: Option<String>,
    invalid: Option<String>,
    /// Whether `invalid` was checked, or left out because the decision did not need it.
    pub validated: bool,
    woken_by_event: bool,
}

impl Facts {
    /// The facts without I/O, and the cluster's when [`validate_first`] asks for them.
    pub async fn gather(ctx: &Reconciler, m: &VSphereMigration) -> Result<Facts, Unverified> {
        let status = m.status.clone().unwrap_or_default();
        let (catalogue, plugins) = catalogue(ctx, m, &status);
        let mut facts = Facts {
            catalogue,
            plugins,
            approvals: approvals_seen(m),
            sources: None,
            blocked_by: None,
            invalid: None,
            validated: false,
            woken_by_event: woken_by_event(ctx, &status),
        };
        if validate_first(m, &status) {
            facts.validate(ctx, m).await?;
        }
        Ok(facts)
    }

    /// Check the spec against the cluster (the Secrets it names); before the start, also
    /// discover the source vCenters and look for another active migration. A check the
    /// cluster could not answer is an error: nothing is decided on a guess.
    pub async fn validate(&mut self, ctx: &Reconciler, m: &VSphereMigration) -> Result<(), Unverified> {
        self.validated = true;
        let status = m.status.clone().unwrap_or_default();
        if status.finished_at.is_some() || m.spec.state == MigrationState::Pending {
            return Ok(());
        }
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        self.invalid = match crate::facts::validate_spec(&ctx.clients.client, &ns, &m.spec).await {
            Ok(()) => None,
            Err(e) => Some(problem(e)?),
        };
        if status.started_at.is_some() || m.spec.state != MigrationState::Running || self.invalid.is_some() {
            return Ok(());
        }
        match crate::facts::discover_sources(&ctx.clients.client, &m.spec).await {
            Ok(found) => self.sources = Some(found),
            Err(e) => self.invalid = Some(problem(e)?),
        }
        self.blocked_by = other_active(ctx, m).await?;
        Ok(())
    }

    /// After a call the migration has started: discovery and the one-at-a-time check are
    /// done, and what woke the reconcile no longer matters.
    pub fn called(&mut self) {
        self.sources = None;
        self.blocked_by = None;
        self.woken_by_event = false;
    }

    pub fn input<'a>(&'a self, ctx: &'a Reconciler, m: &'a VSphereMigration, status: &'a MigrationStatus) -> Input<'a> {
        Input {
            spec: &m.spec,
            generation: m.metadata.generation.unwrap_or_default(),
            status,
            catalogue: &self.catalogue,
            now: Timestamp::now(),
            approvals_seen: &self.approvals,
            discovered_sources: self.sources.clone(),
            blocked_by: self.blocked_by.clone(),
            invalid: self.invalid.clone(),
            // `reconcile` works only on objects that still hold the finalizer.
            deleting: m.metadata.deletion_timestamp.is_some(),
            woken_by_event: self.woken_by_event,
            instance: &ctx.instance,
        }
    }
}

/// A check of the spec the cluster could not answer: the reconcile stops and is retried,
/// and the conditions keep what the last answered check said.
#[derive(Debug, thiserror::Error)]
#[error("the spec could not be checked against the cluster: {0}")]
pub struct Unverified(pub String);

/// The problem a check found in the spec, or why it could not be made.
fn problem(e: CheckError) -> Result<String, Unverified> {
    match e {
        CheckError::Invalid(problem) => Ok(problem),
        CheckError::Unverified(why) => Err(Unverified(why)),
    }
}

pub(super) fn has_finalizer(m: &VSphereMigration) -> bool {
    m.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Whether the spec must be checked against the cluster before deciding at all: it was
/// edited since the status was written, the status shows it invalid (so the condition
/// clears once the Secret is fixed), or the migration is about to start. Otherwise the
/// check waits until a phase is about to be called.
fn validate_first(m: &VSphereMigration, status: &MigrationStatus) -> bool {
    let edited = status.observed_generation != m.metadata.generation;
    let shown_invalid = status.condition(condition_types::DEGRADED).is_some_and(|c| c.reason == "InvalidSpec");
    edited || shown_invalid || status.started_at.is_none()
}

/// Whether this reconcile came before the current run's next call was due (a watch event
/// or a spec edit), counted in the metrics either way.
fn woken_by_event(ctx: &Reconciler, status: &MigrationStatus) -> bool {
    let Some(cur) = &status.current else { return false };
    let early = cur.next_call_at.is_some_and(|t| t.timestamp() > Timestamp::now());
    let trigger = if early { "event" } else { "timer" };
    ctx.metrics.reconcile_triggers.get_or_create(&crate::metrics::TriggerLabels { trigger: trigger.into() }).inc();
    early
}

/// Another active migration of the cluster, from a fresh list rather than the cache: the
/// start lock makes this check-and-start atomic. A list that fails proves nothing.
async fn other_active(ctx: &Reconciler, m: &VSphereMigration) -> Result<Option<String>, Unverified> {
    let all: Api<VSphereMigration> = Api::all(ctx.clients.client.clone());
    let list = all
        .list(&Default::default())
        .await
        .map_err(|e| Unverified(format!("listing migrations for another active one: {e}")))?;
    Ok(list
        .items
        .iter()
        .filter(|o| o.metadata.uid != m.metadata.uid)
        .find(|o| o.status.as_ref().is_some_and(|s| s.started_at.is_some() && s.finished_at.is_none()))
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default()
            )
        }))
}

/// The phases in order, as the loaded plugins describe them, and the plugin of each.
fn catalogue(
    ctx: &Reconciler,
    m: &VSphereMigration,
    status: &MigrationStatus,
) -> (Catalogue, HashMap<String, Arc<LoadedPlugin>>) {
    let mut plugins = HashMap::new();
    let phases = PHASES
        .iter()
        .map(|name| {
            // The current run keeps the plugin pinned at its first call while it is loaded.
            let pinned = status.current.as_ref().filter(|c| c.name == *name).and_then(|c| c.plugin.as_ref());
            match plugin_for(ctx, m, name, pinned) {
                Ok(p) => {
                    let entry = PhaseEntry {
                        name: name.to_string(),
                        has_rollback: p.info.has_rollback,
                        default_deadline: Duration::from_millis(p.info.default_deadline_ms),
                        plugin: Ok(PluginRef {
                            component: p.component.clone(),
                            version: p.info.version.clone(),
                            sha256: p.sha256.clone(),
                        }),
                    };
                    plugins.insert(name.to_string(), p);
                    entry
                }
                Err(problem) => PhaseEntry {
                    name: name.to_string(),
                    has_rollback: true,
                    default_deadline: UNKNOWN_PLUGIN_DEADLINE,
                    plugin: Err(problem),
                },
            }
        })
        .collect();
    (Catalogue { phases }, plugins)
}

/// The plugin for a run: the one pinned when the run started if still loaded, else the
/// current one; refused if it breaks the spec's pins.
fn plugin_for(
    ctx: &Reconciler,
    m: &VSphereMigration,
    phase: &str,
    pinned: Option<&PluginRef>,
) -> Result<Arc<LoadedPlugin>, String> {
    let selection = m.spec.plugins.get(phase);
    let component = selection.and_then(|s| s.component.as_deref());
    let plugin =
        ctx.registry.plugin_for(phase, component, pinned.map(|p| p.sha256.as_str())).map_err(|e| e.to_string())?;
    let Some(sel) = selection else { return Ok(plugin) };
    if let Some(sha) = &sel.sha256
        && !sha.eq_ignore_ascii_case(&plugin.sha256)
    {
        return Err(format!(
            "spec.plugins.{phase}.sha256 pins {sha}, but the plugin serving {phase} is {}",
            plugin.sha256
        ));
    }
    if let Some(req) = &sel.version {
        let ok = semver::VersionReq::parse(req)
            .ok()
            .zip(semver::Version::parse(&plugin.info.version).ok())
            .is_some_and(|(r, v)| r.matches(&v));
        if !ok {
            return Err(format!(
                "spec.plugins.{phase}.version requires {req}, but the plugin serving {phase} is version {}",
                plugin.info.version
            ));
        }
    }
    Ok(plugin)
}
