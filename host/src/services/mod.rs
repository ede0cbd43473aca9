//! The operator's implementation of the phase imports ([`PhaseServices`]) against the real
//! cluster and vCenters: Kubernetes through kube-rs with discovery, vSphere through the
//! shared session pool, the state store, the backup journal (written ahead of every first
//! mutation), plan mode and Events.
//!
//! One [`ClusterServices`] serves the calls of one reconcile of one migration; what the
//! calls produced for the status (plan entries, progress, new backups, request counts) is
//! collected in [`CallOutputs`].

pub mod journal;
pub mod kube;
pub mod overlay;
pub mod plan;
pub mod state;
pub mod vsphere;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use ::kube::Resource;
use ::kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::Value;
use vsm_vsphere as vs;

use crate::api::{BackupRef, PlannedChange, SourceVCenter, VSphereMigration};
use crate::leader::LeaderHandle;
use crate::runtime::bindings::{
    BackupError, EventType, KubeError, Level, ObjectType, PatchType, RestoreReport, Scope, SnapshotInfo, StateError,
    VsphereError,
};
use crate::runtime::{CallScope, Direction, KubeOp, PhaseServices, ResolvedType, VsphereOp, VsphereReply};
use journal::{Entry, EntryKind, Journal, JournalError, Stored};
use kube::{Discovery, perform, strip_server_fields, target_name};
use state::{StateStore, full_key};
use vsphere::{Endpoints, folder_levels};

/// What the whole operator shares: clients, caches, the vCenter session pool.
pub struct OperatorContext {
    pub client: ::kube::Client,
    pub discovery: Discovery,
    pub vsphere: vs::SessionPool,
    pub recorder: Recorder,
    /// Checked before every change a phase asks for: a replica that lost the lease while a
    /// call was in flight (frozen, partitioned) must not change anything when it goes on.
    pub leader: LeaderHandle,
}

impl OperatorContext {
    pub fn new(client: ::kube::Client, vsphere: vs::SessionPool, instance: &str, leader: LeaderHandle) -> Arc<Self> {
        let reporter =
            Reporter { controller: "vsphere-migration-operator".into(), instance: Some(instance.to_string()) };
        Arc::new(OperatorContext {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            discovery: Discovery::default(),
            vsphere,
            leader,
        })
    }

    /// Why a change must not be made now, if it must not.
    fn fenced(&self) -> Option<String> {
        (!self.leader.is_leader()).then(|| NOT_LEADER.to_string())
    }
}

const NOT_LEADER: &str = "this operator replica is no longer the leader: nothing was changed";

/// What the calls of one reconcile produced for the status and the metrics.
#[derive(Debug, Default, Clone)]
pub struct CallOutputs {
    pub plan: Vec<PlannedChange>,
    pub progress: Option<(u8, String)>,
    pub backups: Vec<BackupRef>,
    pub kube_requests: u64,
    pub vsphere_calls: u64,
}

/// The imports of one migration's phase calls.
pub struct ClusterServices {
    ctx: Arc<OperatorContext>,
    migration: VSphereMigration,
    endpoints: Endpoints,
    journal: Journal,
    state: StateStore,
    overlay_store: overlay::OverlayStore,
    overlay: tokio::sync::Mutex<Option<overlay::Overlay>>,
    state_cache: tokio::sync::Mutex<Option<BTreeMap<String, String>>>,
    journalled: Mutex<HashSet<String>>,
    outputs: Mutex<CallOutputs>,
}

fn owner_of(m: &VSphereMigration) -> OwnerReference {
    m.controller_owner_ref(&()).expect("a stored migration has a name and uid")
}

impl ClusterServices {
    pub fn new(ctx: Arc<OperatorContext>, migration: &VSphereMigration, sources: Vec<SourceVCenter>) -> Self {
        let namespace = migration.metadata.namespace.clone().unwrap_or_default();
        let name = migration.metadata.name.clone().unwrap_or_default();
        let owner = owner_of(migration);
        let spec = migration.spec.spec.clone();
        ClusterServices {
            endpoints: Endpoints {
                client: ctx.client.clone(),
                spec: spec.clone(),
                migration_namespace: namespace.clone(),
                sources,
            },
            journal: Journal::new(ctx.client.clone(), &namespace, &name, owner.clone()),
            state: StateStore::new(ctx.client.clone(), &namespace, &name, owner.clone()),
            overlay_store: overlay::OverlayStore::new(ctx.client.clone(), &namespace, &name, owner),
            overlay: tokio::sync::Mutex::new(None),
            state_cache: tokio::sync::Mutex::new(None),
            journalled: Mutex::new(HashSet::new()),
            outputs: Mutex::new(CallOutputs::default()),
            migration: migration.clone(),
            ctx,
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn state_store(&self) -> &StateStore {
        &self.state
    }

    pub fn overlay_store(&self) -> &overlay::OverlayStore {
        &self.overlay_store
    }

    /// Take what the calls so far produced.
    pub fn take_outputs(&self) -> CallOutputs {
        std::mem::take(&mut *self.outputs.lock().expect("outputs lock"))
    }

    fn out(&self) -> std::sync::MutexGuard<'_, CallOutputs> {
        self.outputs.lock().expect("outputs lock")
    }

    fn plan(&self, system: &str, action: &str, target: String, details: Vec<String>) {
        self.out().plan.push(PlannedChange { system: system.into(), action: action.into(), target, details });
    }

    /// Write the before-image of an object ahead of the phase's first mutation of it.
    /// Returns the journal Secret if this call wrote it.
    async fn journal_before(
        &self,
        scope: &CallScope,
        ty: &ResolvedType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, KubeError> {
        let subject = Entry::object(ty, namespace, name, None).subject();
        let secret = self.journal.secret_name(EntryKind::Journal, &scope.phase, &subject);
        if self.journalled.lock().expect("journal lock").contains(&secret) {
            return Ok(None);
        }
        let journal_error =
            |e: JournalError| KubeError::Transient(format!("cannot journal {subject} before changing it: {e}"));
        match self.journal.read(&secret).await {
            // A restored entry is spent; `Journal::write` replaces it below.
            Ok(stored) if !stored.restored => {
                // Listed again: the call that wrote it may have died before the status did.
                self.out().backups.push(stored.reference());
                self.journalled.lock().expect("journal lock").insert(secret);
                return Ok(None);
            }
            Ok(_) => {}
            Err(JournalError::Kube(::kube::Error::Api(s))) if s.code == 404 => {}
            Err(e) => return Err(journal_error(e)),
        }
        let before = match perform(
            &self.ctx.client,
            ty,
            KubeOp::Get { namespace: namespace.map(str::to_string), name: name.to_string() },
            "",
            false,
        )
        .await
        {
            Ok(json) => Some(serde_json::from_str::<Value>(&json).map_err(|e| KubeError::Transient(e.to_string()))?),
            Err(KubeError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.out().kube_requests += 1;
        let entry = Entry::object(ty, namespace, name, before);
        let (reference, created) =
            self.journal.write(EntryKind::Journal, &scope.phase, &entry).await.map_err(|e| match e {
                JournalError::TooLarge { .. } => KubeError::Invalid(format!("refusing to change {subject}: {e}")),
                e => journal_error(e),
            })?;
        self.journalled.lock().expect("journal lock").insert(secret.clone());
        // Reported whether new or found: a call that wrote it may have died before the
        // status listed it (the status merge drops duplicates).
        self.out().backups.push(reference);
        Ok(created.then_some(secret))
    }

    async fn state_map(&self) -> Result<tokio::sync::MutexGuard<'_, Option<BTreeMap<String, String>>>, StateError> {
        let mut cache = self.state_cache.lock().await;
        if cache.is_none() {
            *cache = Some(self.state.load().await?);
        }
        Ok(cache)
    }

    async fn vs_client(&self, server: &str) -> Result<Arc<vs::Client>, VsphereError> {
        self.endpoints.client(&self.ctx.vsphere, server).await
    }

    /// Undo one journal entry.
    async fn restore(&self, stored: &Stored) -> Result<(), String> {
        match &stored.entry {
            Entry::Object { namespace, name, before, .. } => {
                let ty = stored.entry.resolved_type().expect("object entries have a type");
                restore_object(&self.ctx.client, &ty, namespace.as_deref(), name, before.as_ref()).await
            }
            Entry::Folder { server, path, created_from } => {
                let client = self.vs_client(server).await.map_err(|e| format!("{e:?}"))?;
                // Deepest first, up to the first level this phase created; each only if empty.
                for level in folder_levels(path).into_iter().rev() {
                    client.delete_folder(&level).await.map_err(|e| e.to_string())?;
                    if level == *created_from {
                        break;
                    }
                }
                Ok(())
            }
            Entry::Category { server, name, id } => {
                let client = self.vs_client(server).await.map_err(|e| format!("{e:?}"))?;
                let id = match id {
                    Some(id) => Some(id.clone()),
                    None => client.category_id(name).await.map_err(|e| e.to_string())?,
                };
                if let Some(id) = id {
                    client.delete_category(&id).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Entry::Tag { server, category_id, name, id } => {
                let client = self.vs_client(server).await.map_err(|e| format!("{e:?}"))?;
                let id = match id {
                    Some(id) => Some(id.clone()),
                    None => client.tag_id(category_id, name).await.map_err(|e| e.to_string())?,
                };
                if let Some(id) = id {
                    client.delete_tag(&id).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Entry::Attachment { server, tag_id, target } => {
                let client = self.vs_client(server).await.map_err(|e| format!("{e:?}"))?;
                let target = vsphere::from_ref_json(target).map_err(|e| format!("{e:?}"))?;
                match client.detach_tag(tag_id, &target).await {
                    Ok(()) | Err(vs::VsphereError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Journal a vSphere object ahead of creating it. Returns the entry's Secret when this
    /// call wrote it (so it can be dropped if the object turns out to exist already).
    async fn journal_vsphere(&self, scope: &CallScope, entry: &Entry) -> Result<(String, bool), VsphereError> {
        let (reference, created) = self.journal.write(EntryKind::Journal, &scope.phase, entry).await.map_err(|e| {
            VsphereError::Transient(format!("cannot journal {} before creating it: {e}", entry.subject()))
        })?;
        // Reported even when found (see `journal_before`).
        self.out().backups.push(reference.clone());
        Ok((reference.name, created))
    }

    /// The object was there already: a journal entry this call wrote must go (it would
    /// make a rollback delete something the migration did not create).
    async fn unjournal(&self, secret: &str) {
        if let Err(e) = self.journal.delete(secret).await {
            tracing::warn!(secret, error = %e, "could not drop a journal entry for an object that already existed");
        }
        self.out().backups.retain(|b| b.name != secret);
    }

    async fn vsphere_op(&self, scope: &CallScope, server: &str, op: VsphereOp) -> Result<VsphereReply, VsphereError> {
        let client = self.vs_client(server).await?;
        let map = vsphere::map_error;
        let journalling = !scope.dry_run && scope.direction == Direction::Execute;
        let planned = |what: &str| format!("planned:{what}");
        match op {
            VsphereOp::About => Ok(VsphereReply::About(vsphere::about(client.about().await.map_err(map)?))),
            VsphereOp::FindObject { kind, path } => {
                let found = client.find(vsphere::kind_to_client(kind), &path).await.map_err(map)?;
                Ok(VsphereReply::Object(vsphere::to_ref(&found)))
            }
            VsphereOp::ListVms { folder } => Ok(VsphereReply::Vms(
                client.list_vms(&folder).await.map_err(map)?.into_iter().map(vsphere::vm).collect(),
            )),
            VsphereOp::ListAttachedTags { target } => {
                let target = vsphere::from_ref(&target)?;
                Ok(VsphereReply::Tags(
                    client.list_attached_tags(&target).await.map_err(map)?.into_iter().map(vsphere::tag).collect(),
                ))
            }
            VsphereOp::CreateFolder { path } => {
                let levels = folder_levels(&path);
                if levels.is_empty() {
                    return Err(VsphereError::Invalid(format!(
                        "{path} is not a VM folder path (/<datacenter>/vm/<folder>)"
                    )));
                }
                let mut first_missing = None;
                for level in &levels {
                    match client.find(vs::ObjectKind::Folder, level).await {
                        Ok(_) => {}
                        Err(vs::VsphereError::NotFound { .. }) => {
                            first_missing = Some(level.clone());
                            break;
                        }
                        Err(e) => return Err(map(e)),
                    }
                }
                let Some(first_missing) = first_missing else {
                    let mo = client.find(vs::ObjectKind::Folder, &path).await.map_err(map)?;
                    return Ok(VsphereReply::Ensured(vsphere::ensured(vsphere::to_ref(&mo).moref, false)));
                };
                if scope.dry_run {
                    self.plan(
                        "vsphere",
                        "create-folder",
                        format!("vCenter {server} folder {path}"),
                        vec![format!("+ levels from {first_missing}")],
                    );
                    return Ok(VsphereReply::Ensured(vsphere::ensured(planned(&format!("folder:{path}")), true)));
                }
                let written = if journalling {
                    Some(
                        self.journal_vsphere(
                            scope,
                            &Entry::Folder { server: server.into(), path: path.clone(), created_from: first_missing },
                        )
                        .await?,
                    )
                } else {
                    None
                };
                let (mo, created) = client.create_folder(&path).await.map_err(map)?;
                if let Some((secret, true)) = &written
                    && !created
                {
                    self.unjournal(secret).await;
                }
                Ok(VsphereReply::Ensured(vsphere::ensured(vsphere::to_ref(&mo).moref, created)))
            }
            VsphereOp::DeleteFolder { path } => {
                if scope.dry_run {
                    let exists = client.find(vs::ObjectKind::Folder, &path).await.is_ok();
                    if exists {
                        self.plan("vsphere", "delete-folder", format!("vCenter {server} folder {path}"), vec![]);
                    }
                    return Ok(VsphereReply::Flag(exists));
                }
                Ok(VsphereReply::Flag(client.delete_folder(&path).await.map_err(map)?))
            }
            VsphereOp::EnsureCategory { spec } => {
                let existing = client.category_id(&spec.name).await.map_err(map)?;
                let subject = Entry::Category { server: server.into(), name: spec.name.clone(), id: None };
                if scope.dry_run {
                    return Ok(VsphereReply::Ensured(match existing {
                        Some(id) => vsphere::ensured(id, false),
                        None => {
                            self.plan(
                                "vsphere",
                                "create-tag-category",
                                format!("vCenter {server} tag category {}", spec.name),
                                vec![format!(
                                    "cardinality {:?}, associable to {}",
                                    spec.cardinality,
                                    spec.associable_types.join(", ")
                                )],
                            );
                            vsphere::ensured(planned(&format!("category:{}", spec.name)), true)
                        }
                    }));
                }
                let written = if journalling && existing.is_none() {
                    Some(self.journal_vsphere(scope, &subject).await?)
                } else {
                    None
                };
                let (id, created) = client.ensure_category(&vsphere::category_spec(&spec)).await.map_err(map)?;
                self.settle_entry(
                    written,
                    created,
                    Entry::Category { server: server.into(), name: spec.name.clone(), id: Some(id.clone()) },
                    scope,
                )
                .await;
                Ok(VsphereReply::Ensured(vsphere::ensured(id, created)))
            }
            VsphereOp::EnsureTag { category_id, name, description } => {
                let planned_category = category_id.starts_with("planned:");
                let existing =
                    if planned_category { None } else { client.tag_id(&category_id, &name).await.map_err(map)? };
                if scope.dry_run {
                    return Ok(VsphereReply::Ensured(match existing {
                        Some(id) => vsphere::ensured(id, false),
                        None => {
                            self.plan(
                                "vsphere",
                                "create-tag",
                                format!("vCenter {server} tag {name}"),
                                vec![format!("in category {category_id}")],
                            );
                            vsphere::ensured(planned(&format!("tag:{name}")), true)
                        }
                    }));
                }
                let subject = Entry::Tag {
                    server: server.into(),
                    category_id: category_id.clone(),
                    name: name.clone(),
                    id: None,
                };
                let written = if journalling && existing.is_none() {
                    Some(self.journal_vsphere(scope, &subject).await?)
                } else {
                    None
                };
                let (id, created) = client.ensure_tag(&category_id, &name, &description).await.map_err(map)?;
                self.settle_entry(
                    written,
                    created,
                    Entry::Tag { server: server.into(), category_id, name, id: Some(id.clone()) },
                    scope,
                )
                .await;
                Ok(VsphereReply::Ensured(vsphere::ensured(id, created)))
            }
            VsphereOp::DeleteTag { tag_id } => {
                if scope.dry_run {
                    self.plan("vsphere", "delete-tag", format!("vCenter {server} tag {tag_id}"), vec![]);
                    return Ok(VsphereReply::Flag(true));
                }
                Ok(VsphereReply::Flag(client.delete_tag(&tag_id).await.map_err(map)?))
            }
            VsphereOp::DeleteCategory { category_id } => {
                if scope.dry_run {
                    self.plan(
                        "vsphere",
                        "delete-tag-category",
                        format!("vCenter {server} tag category {category_id}"),
                        vec![],
                    );
                    return Ok(VsphereReply::Flag(true));
                }
                Ok(VsphereReply::Flag(client.delete_category(&category_id).await.map_err(map)?))
            }
            VsphereOp::AttachTag { tag_id, target } => {
                if scope.dry_run {
                    self.plan(
                        "vsphere",
                        "attach-tag",
                        format!("vCenter {server} {}", target.path),
                        vec![format!("tag {tag_id}")],
                    );
                    return Ok(VsphereReply::Unit);
                }
                let mo = vsphere::from_ref(&target)?;
                let attached = client.list_attached_tags(&mo).await.map_err(map)?.iter().any(|t| t.id == tag_id);
                if attached {
                    return Ok(VsphereReply::Unit);
                }
                if journalling {
                    self.journal_vsphere(
                        scope,
                        &Entry::Attachment { server: server.into(), tag_id: tag_id.clone(), target: (&target).into() },
                    )
                    .await?;
                }
                client.attach_tag(&tag_id, &mo).await.map_err(map)?;
                Ok(VsphereReply::Unit)
            }
            VsphereOp::DetachTag { tag_id, target } => {
                if scope.dry_run {
                    self.plan(
                        "vsphere",
                        "detach-tag",
                        format!("vCenter {server} {}", target.path),
                        vec![format!("tag {tag_id}")],
                    );
                    return Ok(VsphereReply::Unit);
                }
                let mo = vsphere::from_ref(&target)?;
                match client.detach_tag(&tag_id, &mo).await {
                    Ok(()) | Err(vs::VsphereError::NotFound { .. }) => Ok(VsphereReply::Unit),
                    Err(e) => Err(map(e)),
                }
            }
        }
    }

    /// After an ensure: fill in the id of an entry this migration created (also one an
    /// interrupted earlier call wrote), or drop an entry for an object that existed.
    async fn settle_entry(&self, written: Option<(String, bool)>, created: bool, filled: Entry, scope: &CallScope) {
        let secret = match &written {
            Some((secret, _)) => secret.clone(),
            None => self.journal.secret_name(EntryKind::Journal, &scope.phase, &filled.subject()),
        };
        if let Some((_, true)) = written
            && !created
        {
            self.unjournal(&secret).await;
            return;
        }
        if created || matches!(self.journal.exists(&secret).await, Ok(true)) {
            match self.journal.update(&secret, &filled).await {
                Ok((sha256, size)) => {
                    for b in self.out().backups.iter_mut().filter(|b| b.name == secret) {
                        (b.sha256, b.size) = (sha256.clone(), size);
                    }
                }
                Err(e) => {
                    tracing::warn!(secret, error = %e, "could not record the id of a created vSphere object; rollback will look it up by name")
                }
            }
        }
    }
}

impl ClusterServices {
    /// Plan mode: reads see the cluster as the earlier planned changes would have left it
    /// (the overlay); writes are validated by the API server with `dryRun=All`, recorded
    /// in the plan, and their result laid into the overlay.
    async fn plan_kube(&self, ty: &ResolvedType, op: KubeOp, manager: &str) -> Result<String, KubeError> {
        let mut guard = self.overlay.lock().await;
        if guard.is_none() {
            *guard = Some(self.overlay_store.load().await?);
        }
        let overlay = guard.as_mut().expect("loaded");
        let namespace = op.namespace().map(str::to_string);
        let ns = namespace.as_deref();
        let client = &self.ctx.client;
        let live_get = |name: String| async move {
            match perform(client, ty, KubeOp::Get { namespace: ns.map(str::to_string), name }, "", false).await {
                Ok(json) => {
                    Ok(Some(serde_json::from_str::<Value>(&json).map_err(|e| KubeError::Transient(e.to_string()))?))
                }
                Err(KubeError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let parse = |json: &str| {
            serde_json::from_str::<Value>(json)
                .map_err(|e| KubeError::Invalid(format!("malformed JSON from the phase: {e}")))
        };
        let target = |name: &str| match ns {
            Some(ns) => format!("{} {ns}/{name}", ty.kind),
            None => format!("{} {name}", ty.kind),
        };

        // The object as earlier planned changes left it, or live.
        let current =
            |overlay: &overlay::Overlay, name: &str| overlay.get(&overlay::key(ty, ns, name)).map(|o| o.cloned());
        match op {
            KubeOp::Get { name, .. } => match current(overlay, &name) {
                Some(Some(o)) => Ok(o.to_string()),
                Some(None) => Err(KubeError::NotFound(format!("{} (deleted by the plan)", target(&name)))),
                None => perform(client, ty, KubeOp::Get { namespace: ns.map(str::to_string), name }, "", false).await,
            },
            KubeOp::List { label_selector, .. } => {
                let live = perform(
                    client,
                    ty,
                    KubeOp::List { namespace: ns.map(str::to_string), label_selector: label_selector.clone() },
                    "",
                    false,
                )
                .await?;
                let live: Vec<Value> = serde_json::from_str(&live).map_err(|e| KubeError::Transient(e.to_string()))?;
                Ok(Value::Array(overlay.merge_list(ty, ns, label_selector.as_deref(), live)?).to_string())
            }
            KubeOp::Create { object, .. } => {
                let name = target_name(&KubeOp::Create { namespace: None, object: object.clone() }).unwrap_or_default();
                if matches!(current(overlay, &name), Some(Some(_))) {
                    return Err(KubeError::AlreadyExists(format!("{} (created by the plan)", target(&name))));
                }
                let result =
                    perform(client, ty, KubeOp::Create { namespace: ns.map(str::to_string), object }, manager, true)
                        .await?;
                let created = parse(&result)?;
                overlay.objects.insert(overlay::key(ty, ns, &name), Some(created));
                self.plan("kube", "create", target(&name), vec!["+ (new object)".into()]);
                self.overlay_store.save(overlay).await?;
                Ok(result)
            }
            KubeOp::Delete { name, .. } => {
                let exists = match current(overlay, &name) {
                    Some(o) => o.is_some(),
                    None => live_get(name.clone()).await?.is_some(),
                };
                if !exists {
                    return Err(KubeError::NotFound(target(&name)));
                }
                overlay.objects.insert(overlay::key(ty, ns, &name), None);
                self.plan("kube", "delete", target(&name), vec![]);
                self.overlay_store.save(overlay).await?;
                Ok("{}".into())
            }
            update => {
                let (name, action) = match &update {
                    KubeOp::Replace { name, .. } => (name.clone(), "update"),
                    KubeOp::Apply { name, .. } => (name.clone(), "apply"),
                    KubeOp::Patch { name, .. } => (name.clone(), "patch"),
                    _ => unreachable!("reads, create and delete are handled above"),
                };
                let live = live_get(name.clone()).await?;
                let base = match current(overlay, &name) {
                    Some(Some(o)) => Some(o),
                    Some(None) => return Err(KubeError::NotFound(format!("{} (deleted by the plan)", target(&name)))),
                    None => live.clone(),
                };
                let is_apply = matches!(update, KubeOp::Apply { .. });
                let base = match (base, is_apply) {
                    (Some(b), _) => b,
                    (None, true) => Value::Object(Default::default()),
                    (None, false) => return Err(KubeError::NotFound(target(&name))),
                };
                // The change applied to the planned object, as the API server would.
                let mut desired = match update {
                    KubeOp::Replace { object, .. } => parse(&object)?,
                    KubeOp::Apply { object, .. } => {
                        let mut d = base.clone();
                        overlay::merge_patch(&mut d, &parse(&object)?);
                        d
                    }
                    KubeOp::Patch { patch_type, patch, .. } => {
                        let mut d = base.clone();
                        match patch_type {
                            PatchType::Merge => overlay::merge_patch(&mut d, &parse(&patch)?),
                            PatchType::Json => overlay::json_patch(&mut d, &parse(&patch)?)?,
                        }
                        d
                    }
                    _ => unreachable!("only updates reach here"),
                };
                // Validated against the live object (or as a creation if only the plan has it).
                let result = match live {
                    Some(l) => {
                        desired["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
                        desired["metadata"]["uid"] = l["metadata"]["uid"].clone();
                        let object = desired.to_string();
                        perform(
                            client,
                            ty,
                            KubeOp::Replace { namespace: ns.map(str::to_string), name: name.clone(), object },
                            manager,
                            true,
                        )
                        .await?
                    }
                    None => {
                        strip_server_fields(&mut desired);
                        perform(
                            client,
                            ty,
                            KubeOp::Create { namespace: ns.map(str::to_string), object: desired.to_string() },
                            manager,
                            true,
                        )
                        .await?
                    }
                };
                let planned = parse(&result)?;
                self.plan("kube", action, target(&name), plan::diff(&base, &planned));
                overlay.objects.insert(overlay::key(ty, ns, &name), Some(planned));
                self.overlay_store.save(overlay).await?;
                Ok(result)
            }
        }
    }
}

/// Put an object back as it was (`before`), or delete it if it did not exist.
pub async fn restore_object(
    client: &::kube::Client,
    ty: &ResolvedType,
    namespace: Option<&str>,
    name: &str,
    before: Option<&Value>,
) -> Result<(), String> {
    let api = kube::api(client, ty, namespace);
    let Some(before) = before else {
        return match api.delete(name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        };
    };
    for _ in 0..5 {
        let mut desired = before.clone();
        strip_server_fields(&mut desired);
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => {
                let obj = serde_json::from_value(desired).map_err(|e| e.to_string())?;
                match api.create(&Default::default(), &obj).await {
                    Ok(_) => return Ok(()),
                    Err(::kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Some(live) => {
                // Keep the live identity (it may be a regenerated object) and write
                // everything else back.
                desired["metadata"]["resourceVersion"] = Value::from(live.metadata.resource_version.clone());
                desired["metadata"]["uid"] = Value::from(live.metadata.uid.clone());
                let obj = serde_json::from_value(desired).map_err(|e| e.to_string())?;
                match api.replace(name, &Default::default(), &obj).await {
                    Ok(_) => return Ok(()),
                    Err(::kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
    Err(format!("{} {name} kept changing; gave up after 5 conflicts", ty.kind))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

#[async_trait]
impl PhaseServices for ClusterServices {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        self.ctx.discovery.resolve(&self.ctx.client, ty).await
    }

    async fn kube(&self, scope: &CallScope, ty: &ResolvedType, op: KubeOp) -> Result<String, KubeError> {
        let manager = format!("vsm-phase-{}", scope.phase.to_lowercase());
        let name = target_name(&op);
        self.out().kube_requests += 1;
        if scope.dry_run {
            return self.plan_kube(ty, op, &manager).await;
        }
        if !op.is_mutation() {
            return perform(&self.ctx.client, ty, op, &manager, false).await;
        }
        if let Some(why) = self.ctx.fenced() {
            return Err(KubeError::Transient(why));
        }
        let Some(name) = name else {
            return Err(KubeError::Invalid("the object has no metadata.name (generateName is not supported)".into()));
        };
        let namespace = op.namespace().map(str::to_string);
        let written = if scope.direction == Direction::Execute {
            self.journal_before(scope, ty, namespace.as_deref(), &name).await?
        } else {
            None
        };
        let is_create = matches!(op, KubeOp::Create { .. });
        let result = perform(&self.ctx.client, ty, op, &manager, false).await;
        if let (Err(KubeError::AlreadyExists(_)), true, Some(secret)) = (&result, is_create, &written) {
            // Someone else created it between our look and our create: not ours to undo.
            self.unjournal(secret).await;
            self.journalled.lock().expect("journal lock").remove(secret);
        }
        result
    }

    async fn vsphere(&self, scope: &CallScope, server: &str, op: VsphereOp) -> Result<VsphereReply, VsphereError> {
        self.out().vsphere_calls += 1;
        if !scope.dry_run
            && let Some(why) = self.ctx.fenced()
        {
            return Err(VsphereError::Transient(why));
        }
        self.vsphere_op(scope, server, op).await
    }

    async fn state_get(&self, scope: &CallScope, which: Scope, key: &str) -> Option<String> {
        let full = full_key(&scope.phase, which, key, scope.dry_run);
        match self.state_map().await {
            Ok(map) => map.as_ref().and_then(|m| m.get(&full).cloned()),
            Err(e) => {
                tracing::warn!(error = ?e, "state store unreadable; the phase sees no state");
                None
            }
        }
    }

    async fn state_set(&self, scope: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError> {
        if let Some(why) = self.ctx.fenced() {
            return Err(StateError::Unavailable(why));
        }
        let full = full_key(&scope.phase, which, key, scope.dry_run);
        let mut map = self.state_map().await?;
        self.state.put(&full, Some(value)).await?;
        map.get_or_insert_with(BTreeMap::new).insert(full, value.to_string());
        Ok(())
    }

    async fn state_delete(&self, scope: &CallScope, which: Scope, key: &str) -> Result<(), StateError> {
        if let Some(why) = self.ctx.fenced() {
            return Err(StateError::Unavailable(why));
        }
        let full = full_key(&scope.phase, which, key, scope.dry_run);
        let mut map = self.state_map().await?;
        self.state.put(&full, None).await?;
        if let Some(m) = map.as_mut() {
            m.remove(&full);
        }
        Ok(())
    }

    async fn backup_snapshot(
        &self,
        scope: &CallScope,
        ty: &ResolvedType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        let object = match perform(
            &self.ctx.client,
            ty,
            KubeOp::Get { namespace: namespace.map(str::to_string), name: name.to_string() },
            "",
            false,
        )
        .await
        {
            Ok(json) => serde_json::from_str::<Value>(&json).map_err(|e| BackupError::Failed(e.to_string()))?,
            Err(KubeError::NotFound(m)) => return Err(BackupError::NotFound(m)),
            Err(e) => return Err(BackupError::Failed(format!("{e:?}"))),
        };
        let entry = Entry::object(ty, namespace, name, Some(object));
        if scope.dry_run {
            self.plan("kube", "snapshot", entry.subject(), vec![]);
            return Ok(SnapshotInfo { name: "planned".into(), sha256: String::new(), size: 0, created: true });
        }
        if let Some(why) = self.ctx.fenced() {
            return Err(BackupError::Failed(why));
        }
        match self.journal.write(EntryKind::Snapshot, &scope.phase, &entry).await {
            Ok((reference, created)) => {
                // Reported even when found (see `journal_before`).
                self.out().backups.push(reference.clone());
                Ok(SnapshotInfo { name: reference.name, sha256: reference.sha256, size: reference.size, created })
            }
            Err(JournalError::TooLarge { subject, size }) => {
                Err(BackupError::TooLarge(format!("{subject}: {size} bytes")))
            }
            Err(JournalError::Corrupt { secret, .. }) => Err(BackupError::Corrupt(secret)),
            Err(e) => Err(BackupError::Failed(e.to_string())),
        }
    }

    async fn backup_restore_journal(&self, scope: &CallScope) -> Vec<RestoreReport> {
        if let Some(why) = self.ctx.fenced() {
            return vec![RestoreReport { subject: format!("journal of {}", scope.phase), error: Some(why) }];
        }
        let entries = match self.journal.list(EntryKind::Journal, Some(&scope.phase)).await {
            Ok(e) => e,
            Err(e) => {
                return vec![RestoreReport {
                    subject: format!("journal of {}", scope.phase),
                    error: Some(e.to_string()),
                }];
            }
        };
        let mut reports = Vec::new();
        for item in entries.into_iter().rev() {
            match item {
                Err(e) => reports.push(RestoreReport { subject: "journal entry".into(), error: Some(e.to_string()) }),
                Ok(stored) if stored.restored => {}
                Ok(stored) => {
                    let subject = stored.entry.subject();
                    let result = self.restore(&stored).await;
                    if result.is_ok()
                        && let Err(e) = self.journal.mark_restored(&stored.secret).await
                    {
                        tracing::warn!(secret = %stored.secret, error = %e, "restored, but could not mark the journal entry");
                    }
                    tracing::info!(migration = %scope.migration_name, phase = %scope.phase, %subject, error = ?result.as_ref().err(), "journal entry restored");
                    reports.push(RestoreReport { subject, error: result.err() });
                }
            }
        }
        reports
    }

    fn log(&self, scope: &CallScope, level: Level, message: &str, fields: &[(String, String)]) {
        let fields = if fields.is_empty() { String::new() } else { format!("{fields:?}") };
        let (migration, phase) = (&scope.migration_name, &scope.phase);
        match level {
            Level::Debug => tracing::debug!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Info => tracing::info!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Error => tracing::error!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
        }
    }

    async fn event(&self, scope: &CallScope, ty: EventType, reason: &str, message: &str) {
        if scope.dry_run || self.ctx.fenced().is_some() {
            return;
        }
        let event = KubeEvent {
            type_: match ty {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: reason.to_string(),
            note: Some(format!("[{}] {message}", scope.phase)),
            action: scope.phase.clone(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&event, &self.migration.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }

    fn progress(&self, _scope: &CallScope, percent: u8, message: &str) {
        self.out().progress = Some((percent, message.to_string()));
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}
