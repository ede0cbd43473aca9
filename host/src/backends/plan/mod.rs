//! Plan mode, chosen once per call: a backend set of its own instead of the journalling
//! and live layers. Reads see the cluster as the earlier planned changes would have left
//! it ([`overlay`]); Kubernetes writes are validated by the API server with `dryRun=All`,
//! recorded in the plan ([`diff`]) and laid into the overlay; vSphere changes are recorded
//! with planned ids (`planned:<what>`) that later planned calls accept. Nothing a plan does
//! changes the cluster or a vCenter, except the overlay Secret (through the fenced client).

pub mod diff;
pub mod overlay;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use super::Outputs;
use super::journal::{Entry, snapshot_source};
use super::kubernetes::{LiveKube, get_json, name_of, parse, strip_server_fields};
use super::vcenter::{LiveVsphere, ensured, folder_levels, map_error, to_ref};
use crate::runtime::bindings::{
    BackupError, CategorySpec, Ensured, KubeError, ObjectRef, ObjectType, PatchType, Preconditions, RestoreReport,
    SnapshotInfo, VsphereError,
};
use crate::runtime::{BackupBackend, CallScope, KubeBackend, ResolvedType, VsphereBackend, VsphereOp};
use overlay::{Overlay, OverlayStore, key};
use vsm_vsphere as vs;

/// Kubernetes in plan mode.
pub struct PlanKube {
    /// With `dry_run` set: every write is validated, none persisted.
    pub live: Arc<LiveKube>,
    pub store: OverlayStore,
    pub overlay: Mutex<Option<Overlay>>,
    pub outputs: Outputs,
}

fn target(ty: &ResolvedType, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{} {ns}/{name}", ty.kind),
        None => format!("{} {name}", ty.kind),
    }
}

/// How a planned update changes the object it starts from.
enum Update<'a> {
    Apply(&'a str),
    Patch(PatchType, &'a str),
    Replace(&'a str),
}

impl Update<'_> {
    fn action(&self) -> &'static str {
        match self {
            Update::Apply(_) => "apply",
            Update::Patch(..) => "patch",
            Update::Replace(_) => "update",
        }
    }

    /// The change applied to the planned object, as the API server would.
    fn apply_to(&self, base: &Value) -> Result<Value, KubeError> {
        Ok(match self {
            Update::Replace(object) => parse(object)?,
            Update::Apply(object) => {
                // Server-side apply as FakeHost applies it (one implementation).
                let mut d = base.clone();
                vsm_sdk::patch::apply_merge(&mut d, &parse(object)?);
                d
            }
            Update::Patch(PatchType::Merge, patch) => {
                let mut d = base.clone();
                overlay::merge_patch(&mut d, &parse(patch)?);
                d
            }
            Update::Patch(PatchType::Json, patch) => {
                let mut d = base.clone();
                overlay::json_patch(&mut d, &parse(patch)?)?;
                d
            }
        })
    }
}

impl PlanKube {
    /// The overlay, loaded on first use.
    async fn overlay(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Overlay>>, KubeError> {
        let mut guard = self.overlay.lock().await;
        if guard.is_none() {
            *guard = Some(self.store.load().await?);
        }
        Ok(guard)
    }

    fn plan(&self, action: &str, target: String, details: Vec<String>) {
        self.outputs.plan("kube", action, target, details);
    }

    /// The object as the plan so far leaves it: Some(None) deleted by the plan.
    fn planned(overlay: &Overlay, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Option<Option<Value>> {
        overlay.get(&key(ty, ns, name)).map(|o| o.cloned())
    }

    async fn update(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        update: Update<'_>,
    ) -> Result<String, KubeError> {
        let mut guard = self.overlay().await?;
        let overlay = guard.as_mut().expect("loaded");
        let live = get_json(&self.live.client, ty, ns, name).await?;
        let base = match Self::planned(overlay, ty, ns, name) {
            Some(Some(o)) => Some(o),
            Some(None) => return Err(KubeError::NotFound(format!("{} (deleted by the plan)", target(ty, ns, name)))),
            None => live.clone(),
        };
        let base = match (base, &update) {
            (Some(b), _) => b,
            (None, Update::Apply(_)) => Value::Object(Default::default()),
            (None, _) => return Err(KubeError::NotFound(target(ty, ns, name))),
        };
        let mut desired = update.apply_to(&base)?;
        // Validated against the live object (or as a creation if only the plan has it).
        let result = match live {
            Some(l) => {
                desired["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
                desired["metadata"]["uid"] = l["metadata"]["uid"].clone();
                self.live.replace(s, ty, ns, name, &desired.to_string()).await?
            }
            None => {
                strip_server_fields(&mut desired);
                self.live.create(s, ty, ns, &desired.to_string()).await?
            }
        };
        let planned = parse(&result)?;
        self.plan(update.action(), target(ty, ns, name), diff::diff(&base, &planned));
        overlay.objects.insert(key(ty, ns, name), Some(planned));
        self.store.save(overlay).await?;
        Ok(result)
    }
}

#[async_trait]
impl KubeBackend for PlanKube {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        self.live.resolve(ty).await
    }

    async fn get(&self, s: &CallScope, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        let guard = self.overlay().await?;
        match Self::planned(guard.as_ref().expect("loaded"), ty, ns, name) {
            Some(Some(o)) => Ok(o.to_string()),
            Some(None) => Err(KubeError::NotFound(format!("{} (deleted by the plan)", target(ty, ns, name)))),
            None => self.live.get(s, ty, ns, name).await,
        }
    }

    async fn list(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<String, KubeError> {
        let guard = self.overlay().await?;
        let live = self.live.list(s, ty, ns, label_selector).await?;
        let live: Vec<Value> = serde_json::from_str(&live).map_err(|e| KubeError::Transient(e.to_string()))?;
        let merged = guard.as_ref().expect("loaded").merge_list(ty, ns, label_selector, live)?;
        Ok(Value::Array(merged).to_string())
    }

    async fn create(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        object: &str,
    ) -> Result<String, KubeError> {
        let mut guard = self.overlay().await?;
        let overlay = guard.as_mut().expect("loaded");
        let name = name_of(object).unwrap_or_default();
        if matches!(Self::planned(overlay, ty, ns, &name), Some(Some(_))) {
            return Err(KubeError::AlreadyExists(format!("{} (created by the plan)", target(ty, ns, &name))));
        }
        let result = self.live.create(s, ty, ns, object).await?;
        overlay.objects.insert(key(ty, ns, &name), Some(parse(&result)?));
        self.plan("create", target(ty, ns, &name), vec!["+ (new object)".into()]);
        self.store.save(overlay).await?;
        Ok(result)
    }

    async fn apply(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        _force: bool,
    ) -> Result<String, KubeError> {
        self.update(s, ty, ns, name, Update::Apply(object)).await
    }

    async fn patch(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &str,
    ) -> Result<String, KubeError> {
        self.update(s, ty, ns, name, Update::Patch(patch_type, patch)).await
    }

    async fn replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.update(s, ty, ns, name, Update::Replace(object)).await
    }

    async fn delete(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        _preconditions: Option<Preconditions>,
    ) -> Result<(), KubeError> {
        let mut guard = self.overlay().await?;
        let overlay = guard.as_mut().expect("loaded");
        let exists = match Self::planned(overlay, ty, ns, name) {
            Some(o) => o.is_some(),
            None => get_json(&self.live.client, ty, ns, name).await?.is_some(),
        };
        if !exists {
            return Err(KubeError::NotFound(target(ty, ns, name)));
        }
        overlay.objects.insert(key(ty, ns, name), None);
        self.plan("delete", target(ty, ns, name), vec![]);
        self.store.save(overlay).await?;
        Ok(())
    }

    /// Changes nothing, so nothing is planned: the API server checks the object against
    /// what it stores (not against the plan's overlay).
    async fn validate_replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.live.validate_replace(s, ty, ns, name, object).await
    }
}

/// A planned vSphere id: later planned calls recognise it.
fn planned_id(what: &str) -> String {
    format!("planned:{what}")
}

/// vSphere in plan mode: reads are live, changes recorded.
pub struct PlanVsphere {
    pub live: Arc<LiveVsphere>,
    pub outputs: Outputs,
}

impl PlanVsphere {
    fn plan(&self, action: &str, target: String, details: Vec<String>) {
        self.outputs.plan("vsphere", action, target, details);
    }
}

#[async_trait]
impl VsphereBackend for PlanVsphere {
    /// Reads are live; a change this layer does not record is refused, never made.
    fn route(&self, op: VsphereOp) -> Result<&dyn VsphereBackend, VsphereError> {
        if op.is_mutation() {
            return Err(VsphereError::Invalid(format!("plan mode cannot plan {}", op.name())));
        }
        Ok(self.live.as_ref())
    }

    async fn create_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        let levels = folder_levels(path);
        if levels.is_empty() {
            return self.live.create_folder(s, server, path).await;
        }
        let client = self.live.client(server).await?;
        for level in &levels {
            match client.find(vs::ObjectKind::Folder, level).await {
                Ok(_) => {}
                Err(vs::VsphereError::NotFound { .. }) => {
                    self.plan(
                        "create-folder",
                        format!("vCenter {server} folder {path}"),
                        vec![format!("+ levels from {level}")],
                    );
                    return Ok(ensured(planned_id(&format!("folder:{path}")), true));
                }
                Err(e) => return Err(map_error(e)),
            }
        }
        let found = client.find(vs::ObjectKind::Folder, path).await.map_err(map_error)?;
        Ok(ensured(to_ref(&found).moref, false))
    }

    async fn delete_folder(&self, _: &CallScope, server: &str, path: &str) -> Result<bool, VsphereError> {
        let client = self.live.client(server).await?;
        let exists = client.find(vs::ObjectKind::Folder, path).await.is_ok();
        if exists {
            self.plan("delete-folder", format!("vCenter {server} folder {path}"), vec![]);
        }
        Ok(exists)
    }

    async fn ensure_category(&self, _: &CallScope, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        let client = self.live.client(server).await?;
        if let Some(id) = client.category_id(&spec.name).await.map_err(map_error)? {
            return Ok(ensured(id, false));
        }
        self.plan(
            "create-tag-category",
            format!("vCenter {server} tag category {}", spec.name),
            vec![format!("cardinality {:?}, associable to {}", spec.cardinality, spec.associable_types.join(", "))],
        );
        Ok(ensured(planned_id(&format!("category:{}", spec.name)), true))
    }

    async fn ensure_tag(
        &self,
        _: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        _description: &str,
    ) -> Result<Ensured, VsphereError> {
        if !category_id.starts_with("planned:") {
            let client = self.live.client(server).await?;
            if let Some(id) = client.tag_id(category_id, name).await.map_err(map_error)? {
                return Ok(ensured(id, false));
            }
        }
        self.plan("create-tag", format!("vCenter {server} tag {name}"), vec![format!("in category {category_id}")]);
        Ok(ensured(planned_id(&format!("tag:{name}")), true))
    }

    async fn delete_tag(&self, _: &CallScope, server: &str, tag_id: &str) -> Result<bool, VsphereError> {
        self.plan("delete-tag", format!("vCenter {server} tag {tag_id}"), vec![]);
        Ok(true)
    }

    async fn delete_category(&self, _: &CallScope, server: &str, category_id: &str) -> Result<bool, VsphereError> {
        self.plan("delete-tag-category", format!("vCenter {server} tag category {category_id}"), vec![]);
        Ok(true)
    }

    async fn attach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.plan("attach-tag", format!("vCenter {server} {}", target.path), vec![format!("tag {tag_id}")]);
        Ok(())
    }

    async fn detach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.plan("detach-tag", format!("vCenter {server} {}", target.path), vec![format!("tag {tag_id}")]);
        Ok(())
    }
}

/// Snapshots in plan mode: the object must exist; the snapshot is recorded, not taken.
pub struct PlanBackup {
    pub client: kube::Client,
    pub outputs: Outputs,
}

#[async_trait]
impl BackupBackend for PlanBackup {
    async fn snapshot(
        &self,
        _: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        snapshot_source(&self.client, &self.outputs, ty, ns, name).await?;
        self.outputs.plan("kube", "snapshot", Entry::object(ty, ns, name, None).subject(), vec![]);
        Ok(SnapshotInfo { name: "planned".into(), sha256: String::new(), size: 0, created: true })
    }

    /// A plan never journals, so there is nothing to restore.
    async fn restore_journal(&self, _: &CallScope) -> Vec<RestoreReport> {
        Vec::new()
    }
}
