//! The operator's implementation of the phase imports, as layers over the real cluster
//! and vCenters. What one phase call passes through, outside in:
//!
//! ```text
//! runtime::imports         capability check and size limits, per WIT interface
//!   plan (plan mode)  OR   overlay reads, dryRun=All writes, the intended change recorded
//!   fencing                no vSphere change once this replica may have lost the lease
//!     journal              write-ahead before-image of what is about to change
//!       live               kubernetes (kube-rs) and vcenter (vsm-vsphere)
//! ```
//!
//! The Kubernetes side of fencing is the operator's client itself ([`fencing::client`]):
//! every backend and store writes through it, so no write path goes around it.
//! [`MigrationBackends::new`] chooses the layers once per call; what the calls produced
//! for the status (plan entries, progress, backups, request counts) is collected in
//! [`Outputs`].

pub mod fencing;
pub mod journal;
pub mod kubernetes;
pub mod log;
pub mod plan;
pub mod state;
pub mod vcenter;

use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::events::{Recorder, Reporter};
use vsm_vsphere as vs;

use crate::api::{BackupRef, PlannedChange, SourceVCenter, VSphereMigration};
use crate::leader::LeaderHandle;
use crate::runtime::backend::SystemClock;
use crate::runtime::{Backends, VsphereBackend};
use journal::{JournalBackup, JournaledKube, JournaledVsphere};
use kubernetes::{Discovery, LiveKube};
use plan::overlay::OverlayStore;
use plan::{PlanBackup, PlanKube, PlanVsphere};
use state::{StateStore, StoreState};
use vcenter::{Endpoints, LiveVsphere};

/// What the whole operator shares: clients, caches, the vCenter session pool.
pub struct Clients {
    /// Fenced ([`fencing::client`]): refuses every write while this replica does not lead.
    pub client: kube::Client,
    pub discovery: Discovery,
    pub vsphere: vs::SessionPool,
    pub recorder: Recorder,
    /// Checked before every change a phase asks for: a replica that lost the lease while a
    /// call was in flight (frozen, partitioned) must not change anything when it goes on.
    pub leader: LeaderHandle,
}

impl Clients {
    /// `client` is wrapped in the fencing layer here.
    pub fn new(client: kube::Client, vsphere: vs::SessionPool, instance: &str, leader: LeaderHandle) -> Arc<Self> {
        let client = fencing::client(client, leader.clone());
        let reporter =
            Reporter { controller: "vsphere-migration-operator".into(), instance: Some(instance.to_string()) };
        Arc::new(Clients {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            discovery: Discovery::default(),
            vsphere,
            leader,
        })
    }
}

/// What the calls of one reconcile produced for the status and the metrics.
#[derive(Debug, Default, Clone)]
pub struct CallOutputs {
    pub plan: Vec<PlannedChange>,
    pub progress: Option<(u8, String)>,
    pub backups: Vec<BackupRef>,
    pub kube_requests: u64,
    pub vsphere_calls: u64,
}

/// The collector every layer of one call writes its [`CallOutputs`] into.
#[derive(Clone, Default)]
pub struct Outputs(Arc<Mutex<CallOutputs>>);

impl Outputs {
    fn with<T>(&self, f: impl FnOnce(&mut CallOutputs) -> T) -> T {
        f(&mut self.0.lock().expect("outputs lock"))
    }

    /// Take what the calls so far produced.
    pub fn take(&self) -> CallOutputs {
        self.with(std::mem::take)
    }

    pub fn plan(&self, system: &str, action: &str, target: String, details: Vec<String>) {
        let change = PlannedChange { system: system.into(), action: action.into(), target, details };
        self.with(|o| o.plan.push(change));
    }

    pub fn backup(&self, reference: BackupRef) {
        self.with(|o| o.backups.push(reference));
    }

    pub fn drop_backup(&self, name: &str) {
        self.with(|o| o.backups.retain(|b| b.name != name));
    }

    /// An entry completed after it was listed carries its new checksum.
    pub fn update_backup(&self, name: &str, sha256: String, size: u64) {
        self.with(|o| {
            for b in o.backups.iter_mut().filter(|b| b.name == name) {
                (b.sha256, b.size) = (sha256.clone(), size);
            }
        });
    }

    pub fn progress(&self, percent: u8, message: &str) {
        self.with(|o| o.progress = Some((percent, message.to_string())));
    }

    pub fn count_kube(&self) {
        self.with(|o| o.kube_requests += 1);
    }

    pub fn count_vsphere(&self) {
        self.with(|o| o.vsphere_calls += 1);
    }
}

/// The backends of one call of one migration, and the stores behind them.
pub struct MigrationBackends {
    pub backends: Backends,
    pub outputs: Outputs,
    pub journal: journal::Journal,
    pub state: StateStore,
    pub overlay: OverlayStore,
}

impl MigrationBackends {
    /// Plan mode (`dry_run`) or live, chosen here once for the whole call.
    pub fn new(ctx: &Arc<Clients>, migration: &VSphereMigration, sources: Vec<SourceVCenter>, dry_run: bool) -> Self {
        let namespace = migration.metadata.namespace.clone().unwrap_or_default();
        let name = migration.metadata.name.clone().unwrap_or_default();
        let owner = migration.controller_owner_ref(&()).expect("a stored migration has a name and uid");
        let client = ctx.client.clone();
        let outputs = Outputs::default();
        let journal = journal::Journal::new(client.clone(), &namespace, &name, owner.clone());
        let state = StateStore::new(client.clone(), &namespace, &name, owner.clone());
        let overlay = OverlayStore::new(client.clone(), &namespace, &name, owner);

        let live_kube = |dry_run| {
            Arc::new(LiveKube {
                client: client.clone(),
                discovery: ctx.discovery.clone(),
                outputs: outputs.clone(),
                dry_run,
            })
        };
        let endpoints = Endpoints {
            client: client.clone(),
            spec: migration.spec.spec.clone(),
            migration_namespace: namespace.clone(),
            sources,
        };
        let live_vsphere = Arc::new(LiveVsphere::new(endpoints, ctx.vsphere.clone(), outputs.clone()));
        let fenced = |inner: Arc<dyn VsphereBackend>| -> Arc<dyn VsphereBackend> {
            Arc::new(fencing::FencedVsphere { inner, leader: ctx.leader.clone() })
        };
        let log = Arc::new(log::OperatorLog {
            recorder: ctx.recorder.clone(),
            migration: migration.object_ref(&()),
            outputs: outputs.clone(),
        });

        let backends = if dry_run {
            Backends {
                kube: Arc::new(PlanKube {
                    live: live_kube(true),
                    store: overlay.clone(),
                    overlay: Default::default(),
                    outputs: outputs.clone(),
                }),
                vsphere: Arc::new(PlanVsphere { live: live_vsphere, outputs: outputs.clone() }),
                state: Arc::new(StoreState::new(state.clone())),
                backup: Arc::new(PlanBackup { client: client.clone(), outputs: outputs.clone() }),
                log,
                clock: Arc::new(SystemClock),
                observer: None,
            }
        } else {
            let journalled =
                JournaledVsphere { inner: live_vsphere.clone(), journal: journal.clone(), outputs: outputs.clone() };
            Backends {
                kube: Arc::new(JournaledKube::new(live_kube(false), journal.clone(), outputs.clone())),
                vsphere: fenced(Arc::new(journalled)),
                state: Arc::new(StoreState::new(state.clone())),
                backup: Arc::new(JournalBackup {
                    journal: journal.clone(),
                    client: client.clone(),
                    live: live_vsphere.clone(),
                    vsphere: fenced(live_vsphere),
                    outputs: outputs.clone(),
                }),
                log,
                clock: Arc::new(SystemClock),
                observer: None,
            }
        };
        MigrationBackends { backends, outputs, journal, state, overlay }
    }
}
