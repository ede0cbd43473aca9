//! The `backup` interface over the journal: explicit snapshots, and undoing a phase's
//! entries newest first.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::store::{CategoryJson, Entry, EntryKind, Journal, JournalError, RemovedTag, Stored};
use crate::backends::Outputs;
use crate::backends::kubernetes::{api, get_json, strip_server_fields};
use crate::backends::vcenter::{LiveVsphere, folder_levels, from_ref_json, to_ref};
use crate::runtime::bindings::{
    BackupError, Cardinality, CategorySpec, KubeError, RestoreReport, SnapshotInfo, VsphereError,
};
use crate::runtime::{CallScope, ResolvedType, VsphereBackend};

/// Attempts at writing an object back while others keep changing it.
const RESTORE_ATTEMPTS: usize = 5;

/// Put an object back as it was (`before`), or delete it if it did not exist. Every write
/// goes through `client` (the fenced one in the operator).
pub async fn restore_object(
    client: &kube::Client,
    ty: &ResolvedType,
    namespace: Option<&str>,
    name: &str,
    before: Option<&Value>,
) -> Result<(), String> {
    let api = api(client, ty, namespace);
    let Some(before) = before else {
        return match api.delete(name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        };
    };
    for _ in 0..RESTORE_ATTEMPTS {
        let mut desired = before.clone();
        strip_server_fields(&mut desired);
        let written = match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => api.create(&Default::default(), &serde_json::from_value(desired).map_err(|e| e.to_string())?).await,
            Some(live) => {
                // Keep the live identity (it may be a regenerated object) and write
                // everything else back.
                desired["metadata"]["resourceVersion"] = Value::from(live.metadata.resource_version.clone());
                desired["metadata"]["uid"] = Value::from(live.metadata.uid.clone());
                let obj = serde_json::from_value(desired).map_err(|e| e.to_string())?;
                api.replace(name, &Default::default(), &obj).await
            }
        };
        match written {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("{} {name} kept changing; gave up after {RESTORE_ATTEMPTS} conflicts", ty.kind))
}

/// Snapshots and journal restores of one migration.
pub struct JournalBackup {
    pub journal: Journal,
    /// The operator's fenced client.
    pub client: kube::Client,
    /// For looking up what an entry names.
    pub live: Arc<LiveVsphere>,
    /// For undoing it: the fenced backend.
    pub vsphere: Arc<dyn VsphereBackend>,
    pub outputs: Outputs,
}

impl JournalBackup {
    /// Undo one journal entry.
    async fn restore(&self, s: &CallScope, stored: &Stored) -> Result<(), String> {
        let text = |e: VsphereError| format!("{e:?}");
        match &stored.entry {
            Entry::Object { namespace, name, before, .. } => {
                let ty = stored.entry.resolved_type().expect("object entries have a type");
                restore_object(&self.client, &ty, namespace.as_deref(), name, before.as_ref()).await
            }
            Entry::Folder { server, path, created_from } => {
                // Deepest first, up to the first level this phase created; each only if empty.
                for level in folder_levels(path).into_iter().rev() {
                    self.vsphere.delete_folder(s, server, &level).await.map_err(text)?;
                    if level == *created_from {
                        break;
                    }
                }
                Ok(())
            }
            Entry::Category { server, name, id } => {
                let id = match id {
                    Some(id) => Some(id.clone()),
                    None => self
                        .live
                        .client(server)
                        .await
                        .map_err(text)?
                        .category_id(name)
                        .await
                        .map_err(|e| e.to_string())?,
                };
                if let Some(id) = id {
                    self.vsphere.delete_category(s, server, &id).await.map_err(text)?;
                }
                Ok(())
            }
            Entry::Tag { server, category_id, name, id } => {
                let id = match id {
                    Some(id) => Some(id.clone()),
                    None => self
                        .live
                        .client(server)
                        .await
                        .map_err(text)?
                        .tag_id(category_id, name)
                        .await
                        .map_err(|e| e.to_string())?,
                };
                if let Some(id) = id {
                    self.vsphere.delete_tag(s, server, &id).await.map_err(text)?;
                }
                Ok(())
            }
            Entry::Attachment { server, tag_id, target } => {
                let target = to_ref(&from_ref_json(target).map_err(text)?);
                self.vsphere.detach_tag(s, server, tag_id, &target).await.map_err(text)
            }
            Entry::RemovedFolder { server, path } => {
                self.vsphere.create_folder(s, server, path).await.map_err(text)?;
                Ok(())
            }
            Entry::RemovedCategory { server, category, tags } => {
                let spec = category_spec_of(category)?;
                let id = self.vsphere.ensure_category(s, server, &spec).await.map_err(text)?.id;
                for tag in tags {
                    self.recreate_tag(s, server, &id, tag).await?;
                }
                Ok(())
            }
            Entry::RemovedTag { server, category, tag } => {
                let client = self.live.client(server).await.map_err(text)?;
                let Some(id) = client.category_id(category).await.map_err(|e| e.to_string())? else {
                    return Err(format!(
                        "tag category {category} no longer exists; tag {} cannot be recreated",
                        tag.name
                    ));
                };
                self.recreate_tag(s, server, &id, tag).await
            }
        }
    }

    /// A deleted tag again, attached to every object it was attached to that still exists.
    async fn recreate_tag(
        &self,
        s: &CallScope,
        server: &str,
        category_id: &str,
        tag: &RemovedTag,
    ) -> Result<(), String> {
        let text = |e: VsphereError| format!("{e:?}");
        let id = self.vsphere.ensure_tag(s, server, category_id, &tag.name, &tag.description).await.map_err(text)?.id;
        for target in &tag.attached {
            let target = to_ref(&from_ref_json(target).map_err(text)?);
            match self.vsphere.attach_tag(s, server, &id, &target).await {
                Ok(()) => {}
                // Deleted since (a machine's VM): nothing to attach the tag to.
                Err(VsphereError::NotFound(m)) => {
                    tracing::info!(server, tag = %tag.name, object = %target.moref, reason = %m, "not re-attached: the object is gone");
                }
                Err(e) => return Err(text(e)),
            }
        }
        Ok(())
    }
}

/// The binding's category specification of a journalled one.
fn category_spec_of(c: &CategoryJson) -> Result<CategorySpec, String> {
    let cardinality = match c.cardinality.as_str() {
        "SINGLE" => Cardinality::Single,
        "MULTIPLE" => Cardinality::Multiple,
        other => return Err(format!("tag category {}: unknown cardinality {other:?} in the journal", c.name)),
    };
    Ok(CategorySpec {
        name: c.name.clone(),
        description: c.description.clone(),
        cardinality,
        associable_types: c.associable_types.clone(),
    })
}

#[async_trait]
impl crate::runtime::BackupBackend for JournalBackup {
    async fn snapshot(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<SnapshotInfo, BackupError> {
        let object = snapshot_source(&self.client, &self.outputs, ty, ns, name).await?;
        let entry = Entry::object(ty, ns, name, Some(object));
        match self.journal.write(EntryKind::Snapshot, &s.phase, &entry).await {
            Ok((reference, created)) => {
                // Reported even when found (see `JournaledKube::before`).
                self.outputs.backup(reference.clone());
                Ok(SnapshotInfo { name: reference.name, sha256: reference.sha256, size: reference.size, created })
            }
            Err(JournalError::TooLarge { subject, size }) => {
                Err(BackupError::TooLarge(format!("{subject}: {size} bytes")))
            }
            Err(JournalError::Corrupt { secret, .. }) => Err(BackupError::Corrupt(secret)),
            Err(e) => Err(BackupError::Failed(e.to_string())),
        }
    }

    /// Every entry of the phase, newest first; each failure reported, none hidden.
    async fn restore_journal(&self, s: &CallScope) -> Vec<RestoreReport> {
        let entries = match self.journal.list(EntryKind::Journal, Some(&s.phase)).await {
            Ok(e) => e,
            Err(e) => {
                return vec![RestoreReport { subject: format!("journal of {}", s.phase), error: Some(e.to_string()) }];
            }
        };
        let mut reports = Vec::new();
        for item in entries.into_iter().rev() {
            match item {
                Err(e) => reports.push(RestoreReport { subject: "journal entry".into(), error: Some(e.to_string()) }),
                Ok(stored) if stored.restored => {}
                Ok(stored) => {
                    let subject = stored.entry.subject();
                    let result = self.restore(s, &stored).await;
                    if result.is_ok()
                        && let Err(e) = self.journal.mark_restored(&stored.secret).await
                    {
                        tracing::warn!(secret = %stored.secret, error = %e, "restored, but could not mark the journal entry");
                    }
                    tracing::info!(migration = %s.migration_name, phase = %s.phase, %subject, error = ?result.as_ref().err(), "journal entry restored");
                    reports.push(RestoreReport { subject, error: result.err() });
                }
            }
        }
        reports
    }
}

/// The object a snapshot copies.
pub async fn snapshot_source(
    client: &kube::Client,
    outputs: &Outputs,
    ty: &ResolvedType,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, BackupError> {
    outputs.count_kube();
    match get_json(client, ty, ns, name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(BackupError::NotFound(format!("{} {name}", ty.kind))),
        Err(KubeError::NotFound(m)) => Err(BackupError::NotFound(m)),
        Err(e) => Err(BackupError::Failed(format!("{e:?}"))),
    }
}
