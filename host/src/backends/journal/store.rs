//! The backup journal: before-images of the Kubernetes objects each phase mutates and the
//! vSphere objects it creates, stored in Secrets owned by the migration (never in status),
//! each with a sha256 and a size limit. Written ahead of the change, so a crash between
//! the journal write and the change loses nothing.
//!
//! One entry per (phase, object): the first mutation of an object by a phase records its
//! before-image; later mutations by the same phase do not. Rolling back a phase restores
//! its entries newest first, so a full rollback passes back through every intermediate
//! state. Explicit snapshots (the Backup phase) are separate and never overwritten.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{BackupRef, FIELD_MANAGER};
use crate::runtime::ResolvedType;
use crate::runtime::bindings::ObjectRef;

/// Largest entry: a Secret holds at most 1 MiB, base64 and metadata included.
pub const MAX_ENTRY_BYTES: usize = 700 << 10;

/// The label and annotation keys of the entries (the API's, which `kubectl vsm` reads too).
pub use crate::api::labels;

const DATA_KEY: &str = "entry.json";

/// What one journal entry undoes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// A Kubernetes object as it was before the phase's first mutation (`None`: it did not
    /// exist, so undoing means deleting it).
    Object {
        group: String,
        version: String,
        object_kind: String,
        resource: String,
        namespaced: bool,
        namespace: Option<String>,
        name: String,
        before: Option<Value>,
    },
    /// A VM folder the phase created: levels from `created_from` down to `path`.
    Folder { server: String, path: String, created_from: String },
    /// A tag category the phase created (id filled in once known).
    Category { server: String, name: String, id: Option<String> },
    /// A tag the phase created.
    Tag { server: String, category_id: String, name: String, id: Option<String> },
    /// A tag the phase attached.
    Attachment { server: String, tag_id: String, target: ObjectRefJson },
    /// An (empty) VM folder the phase deleted: undoing creates it again.
    RemovedFolder { server: String, path: String },
    /// A tag category the phase deleted, with its tags and what they were attached to:
    /// undoing creates them again (new ids, same names) and attaches each tag to the
    /// objects that still exist.
    RemovedCategory { server: String, category: CategoryJson, tags: Vec<RemovedTag> },
    /// A tag the phase deleted from the category named `category`.
    RemovedTag { server: String, category: String, tag: RemovedTag },
}

/// A tag category's specification, as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryJson {
    pub name: String,
    pub description: String,
    /// `SINGLE` or `MULTIPLE`.
    pub cardinality: String,
    pub associable_types: Vec<String>,
}

/// A deleted tag: its name, description and the objects it was attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedTag {
    pub name: String,
    pub description: String,
    pub attached: Vec<ObjectRefJson>,
}

/// `ObjectRef` in a serializable, stable shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRefJson {
    pub kind: String,
    pub moref: String,
    pub path: String,
}

impl ObjectRefJson {
    /// An object a tag is attached to, as vCenter lists it (type and id; no path).
    pub fn attached(type_name: &str, value: &str) -> Self {
        let kind = match type_name {
            "Datacenter" => "Datacenter",
            "ClusterComputeResource" => "ComputeCluster",
            "Datastore" => "Datastore",
            "Network" | "DistributedVirtualPortgroup" => "Network",
            "ResourcePool" => "ResourcePool",
            "Folder" => "Folder",
            _ => "VirtualMachine",
        };
        ObjectRefJson { kind: kind.into(), moref: format!("{type_name}:{value}"), path: String::new() }
    }
}

impl From<&vsm_vsphere::CategorySpec> for CategoryJson {
    fn from(c: &vsm_vsphere::CategorySpec) -> Self {
        CategoryJson {
            name: c.name.clone(),
            description: c.description.clone(),
            cardinality: match c.cardinality {
                vsm_vsphere::Cardinality::Single => "SINGLE".into(),
                vsm_vsphere::Cardinality::Multiple => "MULTIPLE".into(),
            },
            associable_types: c.associable_types.clone(),
        }
    }
}

impl From<&ObjectRef> for ObjectRefJson {
    fn from(o: &ObjectRef) -> Self {
        ObjectRefJson { kind: format!("{:?}", o.kind), moref: o.moref.clone(), path: o.path.clone() }
    }
}

impl Entry {
    pub fn object(ty: &ResolvedType, namespace: Option<&str>, name: &str, before: Option<Value>) -> Entry {
        Entry::Object {
            group: ty.group.clone(),
            version: ty.version.clone(),
            object_kind: ty.kind.clone(),
            resource: ty.resource.clone(),
            namespaced: ty.namespaced,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            before,
        }
    }

    /// Stable identity of what the entry is about (one entry per phase and subject).
    pub fn subject(&self) -> String {
        match self {
            Entry::Object { object_kind, namespace, name, .. } => match namespace {
                Some(ns) => format!("{object_kind} {ns}/{name}"),
                None => format!("{object_kind} {name}"),
            },
            Entry::Folder { server, path, .. } => format!("vCenter {server} folder {path}"),
            Entry::Category { server, name, .. } => format!("vCenter {server} tag category {name}"),
            Entry::Tag { server, category_id, name, .. } => format!("vCenter {server} tag {name} in {category_id}"),
            Entry::Attachment { server, tag_id, target } => format!("vCenter {server} tag {tag_id} on {}", target.path),
            Entry::RemovedFolder { server, path } => format!("vCenter {server} removed folder {path}"),
            Entry::RemovedCategory { server, category, .. } => {
                format!("vCenter {server} removed tag category {}", category.name)
            }
            Entry::RemovedTag { server, category, tag } => {
                format!("vCenter {server} removed tag {} of category {category}", tag.name)
            }
        }
    }

    pub fn resolved_type(&self) -> Option<ResolvedType> {
        match self {
            Entry::Object { group, version, object_kind, resource, namespaced, .. } => Some(ResolvedType {
                group: group.clone(),
                version: version.clone(),
                kind: object_kind.clone(),
                resource: resource.clone(),
                namespaced: *namespaced,
            }),
            _ => None,
        }
    }
}

/// Whether an entry is a rollback journal entry or an explicit snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Journal,
    Snapshot,
}

impl EntryKind {
    fn label(self) -> &'static str {
        match self {
            EntryKind::Journal => "journal",
            EntryKind::Snapshot => "snapshot",
        }
    }
    fn from_label(label: &str) -> Option<EntryKind> {
        [EntryKind::Journal, EntryKind::Snapshot].into_iter().find(|k| k.label() == label)
    }
    fn short(self) -> &'static str {
        match self {
            EntryKind::Journal => "j",
            EntryKind::Snapshot => "s",
        }
    }
}

/// An entry read back, with what the store knows about it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub secret: String,
    pub entry: Entry,
    pub phase: String,
    pub kind: EntryKind,
    pub sequence: u64,
    pub restored: bool,
    pub sha256: String,
    pub size: u64,
}

impl Stored {
    /// Its entry in `status.backups`.
    pub fn reference(&self) -> BackupRef {
        let kind = self.kind;
        BackupRef {
            name: self.secret.clone(),
            subject: self.entry.subject(),
            phase: self.phase.clone(),
            kind: kind.label().into(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{subject} is {size} bytes; a backup holds at most {MAX_ENTRY_BYTES}")]
    TooLarge { subject: String, size: usize },
    #[error("backup {secret} does not match its checksum (stored {stored}, computed {computed}); it was not used")]
    Corrupt { secret: String, stored: String, computed: String },
    #[error("backup {secret} is unreadable: {message}")]
    Unreadable { secret: String, message: String },
    #[error("backup store: {0}")]
    Kube(#[from] kube::Error),
}

/// The journal of one migration.
#[derive(Clone)]
pub struct Journal {
    secrets: Api<Secret>,
    migration_name: String,
    migration_uid: String,
    owner: OwnerReference,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Journal {
    pub fn new(client: kube::Client, namespace: &str, migration_name: &str, owner: OwnerReference) -> Self {
        Journal {
            secrets: Api::namespaced(client, namespace),
            migration_name: migration_name.to_string(),
            migration_uid: owner.uid.clone(),
            owner,
        }
    }

    /// Deterministic Secret name for (kind, phase, subject), so a re-run finds its entry.
    pub fn secret_name(&self, kind: EntryKind, phase: &str, subject: &str) -> String {
        let digest = sha256_hex(format!("{}|{phase}|{subject}", kind.label()).as_bytes());
        // Room for "-j-" and 16 hex characters within the 253-character name limit.
        let prefix: String = self.migration_name.chars().take(230).collect();
        format!("{prefix}-{}-{}", kind.short(), &digest[..16])
    }

    pub async fn exists(&self, secret: &str) -> Result<bool, JournalError> {
        Ok(self.secrets.get_opt(secret).await?.is_some())
    }

    /// Write an entry unless one exists already; returns its reference and whether this
    /// call created it. Never overwrites.
    pub async fn write(&self, kind: EntryKind, phase: &str, entry: &Entry) -> Result<(BackupRef, bool), JournalError> {
        let subject = entry.subject();
        let name = self.secret_name(kind, phase, &subject);
        let bytes = serde_json::to_vec(entry).expect("entries serialize");
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(JournalError::TooLarge { subject, size: bytes.len() });
        }
        let sha = sha256_hex(&bytes);
        let reference = BackupRef {
            name: name.clone(),
            subject: subject.clone(),
            phase: phase.to_string(),
            kind: kind.label().into(),
            sha256: sha.clone(),
            size: bytes.len() as u64,
        };
        // Nanoseconds since the epoch order entries; ties are impossible within a phase
        // because calls of one migration are sequential.
        let sequence = jiff::Timestamp::now().as_nanosecond().to_string();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (labels::MIGRATION_UID.to_string(), self.migration_uid.clone()),
                    (labels::PHASE.to_string(), phase.to_string()),
                    (labels::KIND.to_string(), kind.label().to_string()),
                ])),
                annotations: Some(BTreeMap::from([
                    (labels::SUBJECT.to_string(), subject),
                    (labels::SHA256.to_string(), sha),
                    (labels::SEQUENCE.to_string(), sequence),
                ])),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some("migration.openshift.io/backup".into()),
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(bytes))])),
            ..Default::default()
        };
        match self
            .secrets
            .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &secret)
            .await
        {
            Ok(_) => Ok((reference, true)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self.read(&name).await?;
                if existing.restored && kind == EntryKind::Journal {
                    // A restored entry is spent: the phase runs again after its rollback
                    // (only in tests and harness resets), so journal afresh.
                    self.delete(&name).await?;
                    return Box::pin(self.write(kind, phase, entry)).await;
                }
                Ok((BackupRef { sha256: existing.sha256, size: existing.size, ..reference }, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replace the content of an existing entry (to fill in an id learnt after the call).
    /// Replace an entry's content; returns its new sha256 and size (for `status.backups`).
    pub async fn update(&self, secret: &str, entry: &Entry) -> Result<(String, u64), JournalError> {
        let bytes = serde_json::to_vec(entry).expect("entries serialize");
        let sha = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let patch = serde_json::json!({
            "metadata": {"annotations": {labels::SHA256: sha}},
            "data": {DATA_KEY: ByteString(bytes)},
        });
        self.secrets.patch(secret, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok((sha, size))
    }

    pub async fn delete(&self, secret: &str) -> Result<(), JournalError> {
        match self.secrets.delete(secret, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn decode(&self, secret: Secret) -> Result<Stored, JournalError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let labels = secret.metadata.labels.clone().unwrap_or_default();
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .map(|b| b.0.clone())
            .ok_or_else(|| JournalError::Unreadable { secret: name.clone(), message: format!("no {DATA_KEY}") })?;
        let stored = annotations.get(labels::SHA256).cloned().unwrap_or_default();
        let computed = sha256_hex(&bytes);
        if stored != computed {
            return Err(JournalError::Corrupt { secret: name, stored, computed });
        }
        let entry: Entry = serde_json::from_slice(&bytes)
            .map_err(|e| JournalError::Unreadable { secret: name.clone(), message: e.to_string() })?;
        Ok(Stored {
            secret: name,
            entry,
            phase: labels.get(labels::PHASE).cloned().unwrap_or_default(),
            kind: labels.get(labels::KIND).and_then(|k| EntryKind::from_label(k)).unwrap_or(EntryKind::Journal),
            sequence: annotations.get(labels::SEQUENCE).and_then(|s| s.parse().ok()).unwrap_or_default(),
            restored: annotations.contains_key(labels::RESTORED),
            sha256: computed,
            size: bytes.len() as u64,
        })
    }

    /// Read and verify one entry.
    pub async fn read(&self, secret: &str) -> Result<Stored, JournalError> {
        self.decode(self.secrets.get(secret).await?)
    }

    /// Entries of one kind (and phase), oldest first. Unreadable or corrupt ones are
    /// returned as errors in place, so a restore can report each.
    pub async fn list(
        &self,
        kind: EntryKind,
        phase: Option<&str>,
    ) -> Result<Vec<Result<Stored, JournalError>>, JournalError> {
        self.select(Some(kind), phase).await
    }

    /// Every entry of one phase, journal entries first, each kind oldest first (one LIST).
    pub async fn list_phase(&self, phase: &str) -> Result<Vec<Result<Stored, JournalError>>, JournalError> {
        self.select(None, Some(phase)).await
    }

    async fn select(
        &self,
        kind: Option<EntryKind>,
        phase: Option<&str>,
    ) -> Result<Vec<Result<Stored, JournalError>>, JournalError> {
        let mut selector = format!("{}={}", labels::MIGRATION_UID, self.migration_uid);
        if let Some(kind) = kind {
            selector.push_str(&format!(",{}={}", labels::KIND, kind.label()));
        }
        if let Some(phase) = phase {
            selector.push_str(&format!(",{}={phase}", labels::PHASE));
        }
        let list = self.secrets.list(&ListParams::default().labels(&selector)).await?;
        let mut out: Vec<((bool, u64), Result<Stored, JournalError>)> = list
            .items
            .into_iter()
            .map(|s| {
                let meta = &s.metadata;
                let snapshot = meta.labels.as_ref().and_then(|l| l.get(labels::KIND)).map(String::as_str)
                    == Some(EntryKind::Snapshot.label());
                let seq = meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(labels::SEQUENCE))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default();
                ((snapshot, seq), self.decode(s))
            })
            .collect();
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    pub async fn mark_restored(&self, secret: &str) -> Result<(), JournalError> {
        let now = crate::lifecycle::format_time(jiff::Timestamp::now());
        let patch = serde_json::json!({"metadata": {"annotations": {labels::RESTORED: now}}});
        self.secrets.patch(secret, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// Every backup Secret of the migration (for the finalizer's clean-up).
    pub async fn delete_all(&self) -> Result<usize, JournalError> {
        let selector = format!("{}={}", labels::MIGRATION_UID, self.migration_uid);
        let list = self.secrets.list(&ListParams::default().labels(&selector)).await?;
        let n = list.items.len();
        for s in list.items {
            if let Some(name) = s.metadata.name {
                self.delete(&name).await?;
            }
        }
        Ok(n)
    }
}
