//! The fake vSphere inventory of [`FakeHost`](super::FakeHost): one per vCenter server,
//! with objects by inventory path, folders, tag categories, tags and attachments, behaving
//! as the host's `vsphere` import does (paths, `Type:value` morefs, SINGLE cardinality
//! enforced on attach as vCenter does, a folder deleted only when empty), and the
//! migration user's privileges: every privilege the server defines, everywhere, except
//! those a test withholds on an object and everything below it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    AboutInfo, Cardinality, CategoryInfo, CategorySpec, EntityPrivileges, ObjectKind, ObjectRef, PrivilegeReport,
    TagInfo, VmInfo, VsphereError,
};

/// One managed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ObjectKind,
    pub moref: String,
    /// Virtual machines only.
    pub template: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub description: String,
    pub cardinality: Cardinality,
    pub associable_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub category_id: String,
    pub description: String,
}

/// One vCenter.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Objects by absolute inventory path.
    pub objects: BTreeMap<String, Item>,
    pub categories: Vec<Category>,
    pub tags: Vec<Tag>,
    /// (tag id, object path).
    pub attachments: BTreeSet<(String, String)>,
    /// Every call to this server fails with this error (e.g. `AuthFailed`, `Tls`).
    pub down: Option<VsphereError>,
    pub instance_uuid: String,
    /// The privilege ids this vCenter defines ([`PRIVILEGES`] unless a test changes it).
    pub privileges: BTreeSet<String>,
    /// Privileges the migration's user lacks on the object at a path and everything below
    /// it (as a narrower role set there would).
    pub withheld: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
}

/// The privilege ids a fake vCenter defines: part of vCenter 8's catalogue (the ones a
/// cluster's machines, storage and tags use, and the basic system ones).
pub const PRIVILEGES: &[&str] = &[
    "Cns.Searchable",
    "Datastore.AllocateSpace",
    "Datastore.Browse",
    "Datastore.FileManagement",
    "Folder.Create",
    "Folder.Delete",
    "Host.Config.Storage",
    "Host.Inventory.EditCluster",
    "InventoryService.Tagging.AttachTag",
    "InventoryService.Tagging.CreateCategory",
    "InventoryService.Tagging.CreateTag",
    "InventoryService.Tagging.DeleteCategory",
    "InventoryService.Tagging.DeleteTag",
    "InventoryService.Tagging.EditCategory",
    "InventoryService.Tagging.EditTag",
    "InventoryService.Tagging.ObjectAttachable",
    "Network.Assign",
    "Resource.AssignVMToPool",
    "Sessions.ValidateSession",
    "StorageProfile.Update",
    "StorageProfile.View",
    "System.Anonymous",
    "System.Read",
    "System.View",
    "VApp.AssignResourcePool",
    "VApp.Import",
    "VirtualMachine.Config.AddExistingDisk",
    "VirtualMachine.Config.AddNewDisk",
    "VirtualMachine.Config.AddRemoveDevice",
    "VirtualMachine.Config.AdvancedConfig",
    "VirtualMachine.Config.Annotation",
    "VirtualMachine.Config.CPUCount",
    "VirtualMachine.Config.DiskExtend",
    "VirtualMachine.Config.DiskLease",
    "VirtualMachine.Config.EditDevice",
    "VirtualMachine.Config.Memory",
    "VirtualMachine.Config.RemoveDisk",
    "VirtualMachine.Config.Rename",
    "VirtualMachine.Config.ResetGuestInfo",
    "VirtualMachine.Config.Resource",
    "VirtualMachine.Config.Settings",
    "VirtualMachine.Config.UpgradeVirtualHardware",
    "VirtualMachine.Interact.GuestControl",
    "VirtualMachine.Interact.PowerOff",
    "VirtualMachine.Interact.PowerOn",
    "VirtualMachine.Interact.Reset",
    "VirtualMachine.Inventory.Create",
    "VirtualMachine.Inventory.CreateFromExisting",
    "VirtualMachine.Inventory.Delete",
    "VirtualMachine.Provisioning.Clone",
    "VirtualMachine.Provisioning.DeployTemplate",
    "VirtualMachine.Provisioning.MarkAsTemplate",
];

/// The root folder ("/"), which every vCenter has.
const ROOT_FOLDER: &str = "Folder:group-d1";

fn type_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Datacenter => "Datacenter",
        ObjectKind::ComputeCluster => "ClusterComputeResource",
        ObjectKind::Datastore => "Datastore",
        ObjectKind::Network => "Network",
        ObjectKind::ResourcePool => "ResourcePool",
        ObjectKind::Folder => "Folder",
        ObjectKind::VirtualMachine => "VirtualMachine",
    }
}

fn id_prefix(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Datacenter => "datacenter",
        ObjectKind::ComputeCluster => "domain-c",
        ObjectKind::Datastore => "datastore",
        ObjectKind::Network => "network",
        ObjectKind::ResourcePool => "resgroup",
        ObjectKind::Folder => "group-v",
        ObjectKind::VirtualMachine => "vm",
    }
}

/// The VM-folder levels of `path` below `/<dc>/vm`, shallowest first (as the host splits
/// them): `/dc/vm/a/b` → [`/dc/vm/a`, `/dc/vm/a/b`].
pub fn folder_levels(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if parts.len() < 4 || parts[2] != "vm" || parts[1].is_empty() {
        return Vec::new();
    }
    (4..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

impl Inventory {
    /// An empty vCenter with this instance UUID.
    pub fn new(instance_uuid: &str) -> Self {
        Inventory {
            instance_uuid: instance_uuid.into(),
            privileges: PRIVILEGES.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    fn next(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Add an object (and nothing else) at `path`; returns its reference.
    pub fn add(&mut self, kind: ObjectKind, path: &str, template: bool) -> ObjectRef {
        if let Some(item) = self.objects.get(path) {
            return ObjectRef { kind: item.kind, moref: item.moref.clone(), path: path.into() };
        }
        let moref = format!("{}:{}", type_name(kind), self.next(id_prefix(kind)));
        self.objects.insert(path.into(), Item { kind, moref: moref.clone(), template });
        ObjectRef { kind, moref, path: path.into() }
    }

    /// A datacenter with its four root folders.
    pub fn add_datacenter(&mut self, name: &str) -> ObjectRef {
        let dc = self.add(ObjectKind::Datacenter, &format!("/{name}"), false);
        for root in ["vm", "host", "datastore", "network"] {
            self.add(ObjectKind::Folder, &format!("/{name}/{root}"), false);
        }
        dc
    }

    pub fn by_path(&self, path: &str) -> Option<ObjectRef> {
        self.objects.get(path).map(|i| ObjectRef { kind: i.kind, moref: i.moref.clone(), path: path.into() })
    }

    fn check(&self) -> Result<(), VsphereError> {
        match &self.down {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub fn about(&self) -> Result<AboutInfo, VsphereError> {
        self.check()?;
        Ok(AboutInfo {
            product: "VMware vCenter Server (fake)".into(),
            version: "8.0.3".into(),
            api_version: "8.0.3.0".into(),
            instance_uuid: self.instance_uuid.clone(),
        })
    }

    pub fn find(&self, kind: ObjectKind, path: &str) -> Result<ObjectRef, VsphereError> {
        self.check()?;
        if path == "/" && kind == ObjectKind::Folder {
            return Ok(ObjectRef { kind, moref: ROOT_FOLDER.into(), path: path.into() });
        }
        match self.objects.get(path) {
            Some(item) if item.kind == kind => Ok(ObjectRef { kind, moref: item.moref.clone(), path: path.into() }),
            _ => Err(VsphereError::NotFound(format!("{} {path} not found", type_name(kind)))),
        }
    }

    pub fn list_vms(&self, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.find(ObjectKind::Folder, folder)?;
        Ok(self
            .objects
            .iter()
            .filter(|(p, i)| i.kind == ObjectKind::VirtualMachine && parent(p) == folder)
            .map(|(p, i)| VmInfo {
                name: p.rsplit('/').next().unwrap_or_default().into(),
                moref: i.moref.clone(),
                path: p.clone(),
                uuid: format!("4210{:028}", i.moref.len()),
                power_state: if i.template { "PoweredOff".into() } else { "PoweredOn".into() },
                template: i.template,
            })
            .collect())
    }

    /// The first level of `path` that does not exist, after checking it is a VM folder
    /// path in an existing datacenter.
    pub fn first_missing_folder(&self, path: &str) -> Result<Option<String>, VsphereError> {
        self.check()?;
        let levels = folder_levels(path);
        if levels.is_empty() {
            return Err(VsphereError::Invalid(format!("{path} is not a VM folder path (/<datacenter>/vm/<folder>)")));
        }
        let root = parent(&levels[0]).to_string();
        if self.objects.get(&root).is_none_or(|i| i.kind != ObjectKind::Folder) {
            return Err(VsphereError::NotFound(format!("Folder {root} not found")));
        }
        for level in &levels {
            match self.objects.get(level) {
                Some(i) if i.kind == ObjectKind::Folder => {}
                Some(_) => return Err(VsphereError::Invalid(format!("{level} exists and is not a folder"))),
                None => return Ok(Some(level.clone())),
            }
        }
        Ok(None)
    }

    /// Create every missing level; `created` is true when the last level was made.
    pub fn create_folder(&mut self, path: &str) -> Result<(String, bool), VsphereError> {
        let missing = self.first_missing_folder(path)?;
        let path = path.trim_end_matches('/');
        if missing.is_some() {
            for level in folder_levels(path) {
                self.add(ObjectKind::Folder, &level, false);
            }
        }
        let moref = self.objects[path].moref.clone();
        Ok((moref, missing.is_some()))
    }

    pub fn delete_folder(&mut self, path: &str) -> Result<bool, VsphereError> {
        self.check()?;
        match self.objects.get(path) {
            None => return Ok(false),
            Some(i) if i.kind != ObjectKind::Folder => {
                return Err(VsphereError::Invalid(format!("{path} is not a folder")));
            }
            Some(_) => {}
        }
        let prefix = format!("{path}/");
        let children: Vec<&String> = self.objects.keys().filter(|p| p.starts_with(&prefix)).collect();
        if !children.is_empty() {
            return Err(VsphereError::Invalid(format!(
                "folder {path} is not empty ({} object(s), e.g. {})",
                children.len(),
                children[0]
            )));
        }
        self.objects.remove(path);
        Ok(true)
    }

    pub fn category_by_name(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    pub fn ensure_category(&mut self, spec: &CategorySpec) -> Result<(String, bool), VsphereError> {
        self.check()?;
        if let Some(c) = self.category_by_name(&spec.name) {
            return Ok((c.id.clone(), false));
        }
        let id = format!("urn:vmomi:InventoryServiceCategory:{}:GLOBAL", self.next("cat"));
        self.categories.push(Category {
            id: id.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            cardinality: spec.cardinality,
            associable_types: spec.associable_types.clone(),
        });
        Ok((id, true))
    }

    pub fn ensure_tag(
        &mut self,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<(String, bool), VsphereError> {
        self.check()?;
        if !self.categories.iter().any(|c| c.id == category_id) {
            return Err(VsphereError::NotFound(format!("tag category {category_id} not found")));
        }
        if let Some(t) = self.tags.iter().find(|t| t.category_id == category_id && t.name == name) {
            return Ok((t.id.clone(), false));
        }
        let id = format!("urn:vmomi:InventoryServiceTag:{}:GLOBAL", self.next("tag"));
        self.tags.push(Tag {
            id: id.clone(),
            name: name.into(),
            category_id: category_id.into(),
            description: description.into(),
        });
        Ok((id, true))
    }

    pub fn delete_tag(&mut self, id: &str) -> Result<bool, VsphereError> {
        self.check()?;
        let before = self.tags.len();
        self.tags.retain(|t| t.id != id);
        self.attachments.retain(|(t, _)| t != id);
        Ok(self.tags.len() != before)
    }

    pub fn delete_category(&mut self, id: &str) -> Result<bool, VsphereError> {
        self.check()?;
        let before = self.categories.len();
        self.categories.retain(|c| c.id != id);
        let gone: Vec<String> = self.tags.iter().filter(|t| t.category_id == id).map(|t| t.id.clone()).collect();
        for t in gone {
            self.delete_tag(&t)?;
        }
        Ok(self.categories.len() != before)
    }

    fn target_path(&self, target: &ObjectRef) -> Result<String, VsphereError> {
        match self.objects.get(&target.path) {
            Some(i) if i.moref == target.moref => Ok(target.path.clone()),
            _ => {
                self.objects.iter().find(|(_, i)| i.moref == target.moref).map(|(p, _)| p.clone()).ok_or_else(|| {
                    VsphereError::NotFound(format!("object {} ({}) not found", target.moref, target.path))
                })
            }
        }
    }

    pub fn is_attached(&self, tag_id: &str, target: &ObjectRef) -> Result<bool, VsphereError> {
        let path = self.target_path(target)?;
        Ok(self.attachments.contains(&(tag_id.to_string(), path)))
    }

    pub fn attach(&mut self, tag_id: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        self.check()?;
        let path = self.target_path(target)?;
        let tag = self
            .tags
            .iter()
            .find(|t| t.id == tag_id)
            .ok_or_else(|| VsphereError::NotFound(format!("tag {tag_id} not found")))?
            .clone();
        if self.attachments.contains(&(tag_id.to_string(), path.clone())) {
            return Ok(());
        }
        let category = self.categories.iter().find(|c| c.id == tag.category_id).cloned();
        if let Some(c) = category
            && c.cardinality == Cardinality::Single
        {
            let other = self.attachments.iter().find(|(t, p)| {
                *p == path && self.tags.iter().any(|o| o.id == *t && o.category_id == c.id && o.id != tag.id)
            });
            if other.is_some() {
                return Err(VsphereError::Invalid(format!(
                    "{path} already carries a tag of the single-cardinality category {}",
                    c.name
                )));
            }
        }
        self.attachments.insert((tag_id.to_string(), path));
        Ok(())
    }

    pub fn detach(&mut self, tag_id: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        self.check()?;
        let path = self.target_path(target)?;
        self.attachments.remove(&(tag_id.to_string(), path));
        Ok(())
    }

    pub fn attached(&self, target: &ObjectRef) -> Result<Vec<TagInfo>, VsphereError> {
        self.check()?;
        let path = self.target_path(target)?;
        Ok(self
            .attachments
            .iter()
            .filter(|(_, p)| *p == path)
            .filter_map(|(t, _)| {
                let tag = self.tags.iter().find(|x| x.id == *t)?;
                let cat = self.categories.iter().find(|c| c.id == tag.category_id)?;
                Some(TagInfo {
                    id: tag.id.clone(),
                    name: tag.name.clone(),
                    category_id: cat.id.clone(),
                    category_name: cat.name.clone(),
                    cardinality: cat.cardinality,
                })
            })
            .collect())
    }

    pub fn find_category(&self, name: &str) -> Result<Option<CategoryInfo>, VsphereError> {
        self.check()?;
        Ok(self.category_by_name(name).map(|c| CategoryInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            cardinality: c.cardinality,
            associable_types: c.associable_types.clone(),
        }))
    }

    /// The tags of a category, by name (none if it does not exist).
    pub fn list_tags(&self, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        self.check()?;
        let Some(cat) = self.categories.iter().find(|c| c.id == category_id) else {
            return Ok(vec![]);
        };
        let mut tags: Vec<TagInfo> = self
            .tags
            .iter()
            .filter(|t| t.category_id == category_id)
            .map(|t| TagInfo {
                id: t.id.clone(),
                name: t.name.clone(),
                category_id: cat.id.clone(),
                category_name: cat.name.clone(),
                cardinality: cat.cardinality,
            })
            .collect();
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tags)
    }

    /// The paths of the objects a tag is attached to.
    pub fn attached_to(&self, tag_id: &str) -> Vec<String> {
        self.attachments.iter().filter(|(t, _)| t == tag_id).map(|(_, p)| p.clone()).collect()
    }

    /// Withhold `privileges` from the migration's user on the object at `path` and
    /// everything below it.
    pub fn withhold(&mut self, path: &str, privileges: &[&str]) {
        self.withheld.entry(path.to_string()).or_default().extend(privileges.iter().map(|p| p.to_string()));
    }

    pub fn user_privileges(&self, targets: &[ObjectRef]) -> Result<PrivilegeReport, VsphereError> {
        self.check()?;
        let mut entities = Vec::with_capacity(targets.len());
        for t in targets {
            let path = if t.moref == ROOT_FOLDER { "/".to_string() } else { self.target_path(t)? };
            let below = |at: &str| at == "/" || path == at || path.starts_with(&format!("{at}/"));
            let lacking: BTreeSet<&String> =
                self.withheld.iter().filter(|(at, _)| below(at)).flat_map(|(_, p)| p.iter()).collect();
            let privileges = self.privileges.iter().filter(|p| !lacking.contains(p)).cloned().collect();
            entities.push(EntityPrivileges { moref: t.moref.clone(), privileges });
        }
        Ok(PrivilegeReport { defined: self.privileges.iter().cloned().collect(), entities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, cardinality: Cardinality) -> CategorySpec {
        CategorySpec { name: name.into(), description: String::new(), cardinality, associable_types: vec![] }
    }

    #[test]
    fn folders_are_created_level_by_level_and_deleted_only_when_empty() {
        let mut inv = Inventory::default();
        inv.add_datacenter("dc");
        assert!(inv.first_missing_folder("/dc/host/x").is_err());
        assert!(matches!(inv.first_missing_folder("/other/vm/x"), Err(VsphereError::NotFound(_))));
        assert_eq!(inv.first_missing_folder("/dc/vm/a/b").unwrap().as_deref(), Some("/dc/vm/a"));
        let (id, created) = inv.create_folder("/dc/vm/a/b").unwrap();
        assert!(created && id.starts_with("Folder:"));
        assert_eq!(inv.create_folder("/dc/vm/a/b").unwrap(), (id, false));
        assert!(matches!(inv.delete_folder("/dc/vm/a"), Err(VsphereError::Invalid(_))));
        assert!(inv.delete_folder("/dc/vm/a/b").unwrap());
        assert!(inv.delete_folder("/dc/vm/a").unwrap());
        assert!(!inv.delete_folder("/dc/vm/a").unwrap());
    }

    #[test]
    fn single_cardinality_is_enforced_on_attach() {
        let mut inv = Inventory::default();
        let dc = inv.add_datacenter("dc");
        let (single, _) = inv.ensure_category(&spec("region", Cardinality::Single)).unwrap();
        let (multi, _) = inv.ensure_category(&spec("notes", Cardinality::Multiple)).unwrap();
        let (a, _) = inv.ensure_tag(&single, "a", "").unwrap();
        let (b, _) = inv.ensure_tag(&single, "b", "").unwrap();
        let (n1, _) = inv.ensure_tag(&multi, "n1", "").unwrap();
        let (n2, _) = inv.ensure_tag(&multi, "n2", "").unwrap();
        inv.attach(&a, &dc).unwrap();
        inv.attach(&a, &dc).unwrap();
        assert!(matches!(inv.attach(&b, &dc), Err(VsphereError::Invalid(_))));
        inv.attach(&n1, &dc).unwrap();
        inv.attach(&n2, &dc).unwrap();
        let names: Vec<String> = inv.attached(&dc).unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names.len(), 3);
        inv.delete_category(&multi).unwrap();
        assert_eq!(inv.attached(&dc).unwrap().len(), 1);
        assert_eq!(inv.ensure_tag(&single, "a", "").unwrap(), (a, false));
    }
}
