//! Write-ahead journalling over the live Kubernetes and vSphere backends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::store::{CategoryJson, Entry, EntryKind, Journal, JournalError, ObjectRefJson, RemovedTag};
use crate::backends::Outputs;
use crate::backends::kubernetes::{LiveKube, get_json, name_of};
use crate::backends::vcenter::{LiveVsphere, category_spec, ensured, folder_levels, from_ref, map_error, to_ref};
use crate::runtime::bindings::{
    CategorySpec, Ensured, KubeError, ObjectRef, ObjectType, PatchType, Preconditions, VsphereError,
};
use crate::runtime::{CallScope, Direction, KubeBackend, ResolvedType, VsphereBackend, VsphereOp};
use vsm_vsphere as vs;

/// Entries are written by executing phases; a rollback undoes, it records nothing.
fn journalling(s: &CallScope) -> bool {
    s.direction == Direction::Execute && !s.dry_run
}

/// Kubernetes writes with the object's before-image journalled first.
pub struct JournaledKube {
    pub inner: Arc<LiveKube>,
    pub journal: Journal,
    pub outputs: Outputs,
    /// Entries this call has seen or written (one per phase and object).
    journalled: Mutex<HashSet<String>>,
}

impl JournaledKube {
    pub fn new(inner: Arc<LiveKube>, journal: Journal, outputs: Outputs) -> Self {
        JournaledKube { inner, journal, outputs, journalled: Mutex::new(HashSet::new()) }
    }

    fn seen(&self, secret: &str) -> bool {
        self.journalled.lock().expect("journal lock").contains(secret)
    }

    fn mark(&self, secret: String, seen: bool) {
        let mut set = self.journalled.lock().expect("journal lock");
        if seen {
            set.insert(secret);
        } else {
            set.remove(&secret);
        }
    }

    /// Write the before-image of an object ahead of the phase's first mutation of it.
    /// Returns the entry's Secret if this call wrote it.
    async fn before(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, KubeError> {
        if !journalling(s) {
            return Ok(None);
        }
        let subject = Entry::object(ty, ns, name, None).subject();
        let secret = self.journal.secret_name(EntryKind::Journal, &s.phase, &subject);
        if self.seen(&secret) {
            return Ok(None);
        }
        let journal_error =
            |e: JournalError| KubeError::Transient(format!("cannot journal {subject} before changing it: {e}"));
        match self.journal.read(&secret).await {
            // A restored entry is spent; `Journal::write` replaces it below.
            Ok(stored) if !stored.restored => {
                // Listed again: the call that wrote it may have died before the status did.
                self.outputs.backup(stored.reference());
                self.mark(secret, true);
                return Ok(None);
            }
            Ok(_) => {}
            Err(JournalError::Kube(kube::Error::Api(s))) if s.code == 404 => {}
            Err(e) => return Err(journal_error(e)),
        }
        self.outputs.count_kube();
        let before = get_json(&self.inner.client, ty, ns, name).await?;
        let entry = Entry::object(ty, ns, name, before);
        let (reference, created) =
            self.journal.write(EntryKind::Journal, &s.phase, &entry).await.map_err(|e| match e {
                JournalError::TooLarge { .. } => KubeError::Invalid(format!("refusing to change {subject}: {e}")),
                e => journal_error(e),
            })?;
        self.mark(secret.clone(), true);
        // Reported whether new or found: a call that wrote it may have died before the
        // status listed it (the status merge drops duplicates).
        self.outputs.backup(reference);
        Ok(created.then_some(secret))
    }
}

#[async_trait]
impl KubeBackend for JournaledKube {
    async fn resolve(&self, ty: &ObjectType) -> Result<ResolvedType, KubeError> {
        self.inner.resolve(ty).await
    }

    async fn get(&self, s: &CallScope, ty: &ResolvedType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        self.inner.get(s, ty, ns, name).await
    }

    async fn list(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<String, KubeError> {
        self.inner.list(s, ty, ns, label_selector).await
    }

    async fn create(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        object: &str,
    ) -> Result<String, KubeError> {
        let Some(name) = name_of(object) else {
            return Err(KubeError::Invalid("the object has no metadata.name (generateName is not supported)".into()));
        };
        let written = self.before(s, ty, ns, &name).await?;
        let result = self.inner.create(s, ty, ns, object).await;
        if let (Err(KubeError::AlreadyExists(_)), Some(secret)) = (&result, written) {
            // Someone else created it between our look and our create: not ours to undo.
            unjournal(&self.journal, &self.outputs, &secret).await;
            self.mark(secret, false);
        }
        result
    }

    async fn apply(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        force: bool,
    ) -> Result<String, KubeError> {
        self.before(s, ty, ns, name).await?;
        self.inner.apply(s, ty, ns, name, object, force).await
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
        self.before(s, ty, ns, name).await?;
        self.inner.patch(s, ty, ns, name, patch_type, patch).await
    }

    async fn replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.before(s, ty, ns, name).await?;
        self.inner.replace(s, ty, ns, name, object).await
    }

    async fn delete(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        preconditions: Option<Preconditions>,
    ) -> Result<(), KubeError> {
        self.before(s, ty, ns, name).await?;
        self.inner.delete(s, ty, ns, name, preconditions).await
    }

    /// Changes nothing: nothing to journal.
    async fn validate_replace(
        &self,
        s: &CallScope,
        ty: &ResolvedType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.inner.validate_replace(s, ty, ns, name, object).await
    }
}

/// A journal entry this call wrote for an object that already existed must go (it would
/// make a rollback delete something the migration did not create).
async fn unjournal(journal: &Journal, outputs: &Outputs, secret: &str) {
    if let Err(e) = journal.delete(secret).await {
        tracing::warn!(secret, error = %e, "could not drop a journal entry for an object that already existed");
    }
    outputs.drop_backup(secret);
}

/// vSphere objects journalled before the phase creates them.
pub struct JournaledVsphere {
    pub inner: Arc<LiveVsphere>,
    pub journal: Journal,
    pub outputs: Outputs,
}

impl JournaledVsphere {
    /// Journal a vSphere object ahead of creating it: its Secret, and whether this call
    /// wrote it.
    async fn journal_ahead(&self, s: &CallScope, entry: &Entry) -> Result<(String, bool), VsphereError> {
        let (reference, created) = self.journal.write(EntryKind::Journal, &s.phase, entry).await.map_err(|e| {
            VsphereError::Transient(format!("cannot journal {} before creating it: {e}", entry.subject()))
        })?;
        // Reported even when found (see `JournaledKube::before`).
        self.outputs.backup(reference.clone());
        Ok((reference.name, created))
    }

    /// Whether this phase's journal holds the creation of `created`, not yet undone: deleting
    /// it needs no entry of its own (undoing the creation already leaves nothing there). On
    /// any doubt, no: the deletion is journalled.
    async fn created_here(&self, s: &CallScope, created: &Entry) -> bool {
        let secret = self.journal.secret_name(EntryKind::Journal, &s.phase, &created.subject());
        matches!(self.journal.read(&secret).await, Ok(stored) if !stored.restored)
    }

    /// After an ensure: fill in the id of an entry this migration created (also one an
    /// interrupted earlier call wrote), or drop an entry for an object that existed.
    async fn settle(&self, s: &CallScope, written: Option<(String, bool)>, created: bool, filled: Entry) {
        let secret = match &written {
            Some((secret, _)) => secret.clone(),
            None => self.journal.secret_name(EntryKind::Journal, &s.phase, &filled.subject()),
        };
        if let Some((_, true)) = written
            && !created
        {
            unjournal(&self.journal, &self.outputs, &secret).await;
            return;
        }
        if created || matches!(self.journal.exists(&secret).await, Ok(true)) {
            match self.journal.update(&secret, &filled).await {
                Ok((sha256, size)) => self.outputs.update_backup(&secret, sha256, size),
                Err(e) => {
                    tracing::warn!(secret, error = %e, "could not record the id of a created vSphere object; rollback will look it up by name")
                }
            }
        }
    }
}

/// The first level of `path` that does not exist yet, if any.
async fn first_missing(client: &vs::Client, path: &str) -> Result<Option<String>, VsphereError> {
    for level in folder_levels(path) {
        match client.find(vs::ObjectKind::Folder, &level).await {
            Ok(_) => {}
            Err(vs::VsphereError::NotFound { .. }) => return Ok(Some(level)),
            Err(e) => return Err(map_error(e)),
        }
    }
    Ok(None)
}

#[async_trait]
impl VsphereBackend for JournaledVsphere {
    /// What creates nothing passes through.
    fn route(&self, _: VsphereOp) -> Result<&dyn VsphereBackend, VsphereError> {
        Ok(self.inner.as_ref())
    }

    /// Journalled from the first level that is missing (rollback removes only those).
    async fn create_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        if !journalling(s) || folder_levels(path).is_empty() {
            return self.inner.create_folder(s, server, path).await;
        }
        let client = self.inner.client(server).await?;
        let Some(created_from) = first_missing(&client, path).await? else {
            let mo = client.find(vs::ObjectKind::Folder, path).await.map_err(map_error)?;
            return Ok(ensured(to_ref(&mo).moref, false));
        };
        let entry = Entry::Folder { server: server.into(), path: path.into(), created_from };
        let (secret, wrote) = self.journal_ahead(s, &entry).await?;
        let (mo, created) = client.create_folder(path).await.map_err(map_error)?;
        if wrote && !created {
            unjournal(&self.journal, &self.outputs, &secret).await;
        }
        Ok(ensured(to_ref(&mo).moref, created))
    }

    async fn ensure_category(&self, s: &CallScope, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        if !journalling(s) {
            return self.inner.ensure_category(s, server, spec).await;
        }
        let client = self.inner.client(server).await?;
        let existing = client.category_id(&spec.name).await.map_err(map_error)?;
        let written = match existing {
            None => Some(
                self.journal_ahead(s, &Entry::Category { server: server.into(), name: spec.name.clone(), id: None })
                    .await?,
            ),
            Some(_) => None,
        };
        let (id, created) = client.ensure_category(&category_spec(spec)).await.map_err(map_error)?;
        let filled = Entry::Category { server: server.into(), name: spec.name.clone(), id: Some(id.clone()) };
        self.settle(s, written, created, filled).await;
        Ok(ensured(id, created))
    }

    async fn ensure_tag(
        &self,
        s: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        if !journalling(s) {
            return self.inner.ensure_tag(s, server, category_id, name, description).await;
        }
        let client = self.inner.client(server).await?;
        let existing = client.tag_id(category_id, name).await.map_err(map_error)?;
        let entry = |id| Entry::Tag { server: server.into(), category_id: category_id.into(), name: name.into(), id };
        let written = match existing {
            None => Some(self.journal_ahead(s, &entry(None)).await?),
            Some(_) => None,
        };
        let (id, created) = client.ensure_tag(category_id, name, description).await.map_err(map_error)?;
        self.settle(s, written, created, entry(Some(id.clone()))).await;
        Ok(ensured(id, created))
    }

    async fn attach_tag(
        &self,
        s: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        if !journalling(s) {
            return self.inner.attach_tag(s, server, tag_id, target).await;
        }
        let (client, mo) = (self.inner.client(server).await?, from_ref(target)?);
        if client.list_attached_tags(&mo).await.map_err(map_error)?.iter().any(|t| t.id == tag_id) {
            return Ok(());
        }
        let entry = Entry::Attachment { server: server.into(), tag_id: tag_id.into(), target: target.into() };
        self.journal_ahead(s, &entry).await?;
        client.attach_tag(tag_id, &mo).await.map_err(map_error)
    }

    /// Journalled (its path) before it goes; a folder that is not empty is refused and
    /// leaves no entry.
    async fn delete_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<bool, VsphereError> {
        if !journalling(s) {
            return self.inner.delete_folder(s, server, path).await;
        }
        let client = self.inner.client(server).await?;
        match client.find(vs::ObjectKind::Folder, path).await {
            Ok(_) => {}
            Err(vs::VsphereError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(map_error(e)),
        }
        let made = Entry::Folder { server: server.into(), path: path.into(), created_from: String::new() };
        if self.created_here(s, &made).await {
            return self.inner.delete_folder(s, server, path).await;
        }
        let entry = Entry::RemovedFolder { server: server.into(), path: path.into() };
        let (secret, wrote) = self.journal_ahead(s, &entry).await?;
        let result = self.inner.delete_folder(s, server, path).await;
        // Kept whenever the folder may be gone: undoing creates it only if it is missing.
        if wrote && matches!(result, Ok(false) | Err(VsphereError::Invalid(_))) {
            unjournal(&self.journal, &self.outputs, &secret).await;
        }
        result
    }

    /// Journalled with its specification, its tags and their attachments before it goes.
    async fn delete_category(&self, s: &CallScope, server: &str, category_id: &str) -> Result<bool, VsphereError> {
        if !journalling(s) {
            return self.inner.delete_category(s, server, category_id).await;
        }
        let client = self.inner.client(server).await?;
        let Some(category) = client.category_by_id(category_id).await.map_err(map_error)? else {
            return Ok(false);
        };
        let made = Entry::Category { server: server.into(), name: category.spec.name.clone(), id: None };
        if self.created_here(s, &made).await {
            return self.inner.delete_category(s, server, category_id).await;
        }
        let mut tags = Vec::new();
        for t in client.tags_of_category(category_id).await.map_err(map_error)? {
            tags.push(removed_tag(&client, &t).await?);
        }
        let entry =
            Entry::RemovedCategory { server: server.into(), category: CategoryJson::from(&category.spec), tags };
        let (secret, wrote) = self.journal_ahead(s, &entry).await?;
        let result = self.inner.delete_category(s, server, category_id).await;
        if wrote && matches!(result, Ok(false)) {
            unjournal(&self.journal, &self.outputs, &secret).await;
        }
        result
    }

    /// Journalled with its category's name and its attachments before it goes.
    async fn delete_tag(&self, s: &CallScope, server: &str, tag_id: &str) -> Result<bool, VsphereError> {
        if !journalling(s) {
            return self.inner.delete_tag(s, server, tag_id).await;
        }
        let client = self.inner.client(server).await?;
        let Some(tag) = client.tag(tag_id).await.map_err(map_error)? else {
            return Ok(false);
        };
        let made = Entry::Tag {
            server: server.into(),
            category_id: tag.category_id.clone(),
            name: tag.name.clone(),
            id: None,
        };
        if self.created_here(s, &made).await {
            return self.inner.delete_tag(s, server, tag_id).await;
        }
        let entry = Entry::RemovedTag {
            server: server.into(),
            category: tag.category_name.clone(),
            tag: removed_tag(&client, &tag).await?,
        };
        let (secret, wrote) = self.journal_ahead(s, &entry).await?;
        let result = self.inner.delete_tag(s, server, tag_id).await;
        if wrote && matches!(result, Ok(false)) {
            unjournal(&self.journal, &self.outputs, &secret).await;
        }
        result
    }
}

/// A tag as journalled before it is deleted: with the objects it is attached to.
async fn removed_tag(client: &vs::Client, t: &vs::TagInfo) -> Result<RemovedTag, VsphereError> {
    let attached = client.list_attached_objects(&t.id).await.map_err(map_error)?;
    Ok(RemovedTag {
        name: t.name.clone(),
        description: t.description.clone(),
        attached: attached.into_iter().map(|(type_name, value)| ObjectRefJson::attached(&type_name, &value)).collect(),
    })
}
