//! Folders: nested create (idempotent, race-tolerant) and delete.

use crate::error::VsphereError;
use crate::inventory::{Entity, ManagedObject, ObjectKind, normalize_path, paths, split_path};
use crate::session::Client;
use crate::soap::envelope::{FilterSpec, Traversal, XmlWriter};
use crate::soap::parse::MoRef;

/// What creating `path` takes: the deepest existing folder and the names still missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatePlan {
    pub parent: MoRef,
    pub parent_path: String,
    pub missing: Vec<String>,
}

/// Plan the creation of a folder path below a datacenter (`/dc/vm/a/b`).
pub(crate) fn plan_create(entities: &[Entity], path: &str) -> Result<CreatePlan, VsphereError> {
    let parts = split_path(path)?;
    let all = paths(entities);
    let by_path: std::collections::HashMap<&str, &Entity> =
        entities.iter().filter_map(|e| all.get(&e.moref).map(|p| (p.as_str(), e))).collect();
    for depth in (1..=parts.len()).rev() {
        let prefix = format!("/{}", parts[..depth].join("/"));
        let Some(e) = by_path.get(prefix.as_str()) else {
            continue;
        };
        if e.moref.type_name != "Folder" {
            // A datacenter or anything else: folders are only created inside folders
            // that belong to a datacenter (vm, host, datastore, network and below).
            return Err(if depth == parts.len() {
                VsphereError::AlreadyExists { name: format!("{prefix} (a {})", e.moref.type_name) }
            } else {
                VsphereError::invalid(format!(
                    "cannot create folder {path}: {prefix} is a {}, not a folder",
                    e.moref.type_name
                ))
            });
        }
        if !below_datacenter(entities, &e.moref) {
            break;
        }
        return Ok(CreatePlan {
            parent: e.moref.clone(),
            parent_path: prefix,
            missing: parts[depth..].iter().map(|s| s.to_string()).collect(),
        });
    }
    let dc_folder = parts.iter().take(2).cloned().collect::<Vec<_>>().join("/");
    Err(VsphereError::not_found(format!("/{dc_folder} (folders are created inside a datacenter's folders)")))
}

fn below_datacenter(entities: &[Entity], start: &MoRef) -> bool {
    let mut cur = start.clone();
    for _ in 0..=entities.len() {
        let Some(e) = entities.iter().find(|e| e.moref == cur) else {
            return false;
        };
        match &e.parent {
            Some(p) if p.type_name == "Datacenter" => return true,
            Some(p) => cur = p.clone(),
            None => return false,
        }
    }
    false
}

impl Client {
    /// Create a folder and every missing level above it (`/dc/vm/a/b`). Returns the
    /// folder and whether anything was created; a concurrent creator is tolerated.
    pub async fn create_folder(&self, path: &str) -> Result<(ManagedObject, bool), VsphereError> {
        self.op("create_folder", async {
            let want = normalize_path(path)?;
            let entities = self.entities(ObjectKind::Folder).await?;
            let plan = plan_create(&entities, &want)?;
            if plan.missing.is_empty() {
                let folder = ManagedObject { kind: ObjectKind::Folder, moref: plan.parent, path: want };
                return Ok((folder, false));
            }
            let mut parent = plan.parent;
            let mut parent_path = plan.parent_path;
            let mut created = false;
            for name in &plan.missing {
                let child_path = format!("{parent_path}/{name}");
                let mut w = XmlWriter::new();
                w.text("name", name);
                parent = match self.soap("CreateFolder", &parent, &w.into_string()).await {
                    Ok(resp) => {
                        created = true;
                        resp.child("returnval")
                            .and_then(|r| r.moref())
                            .ok_or_else(|| VsphereError::protocol("CreateFolder answered without a folder"))?
                    }
                    // Someone else (or our own retried request) made it first: use theirs.
                    Err(VsphereError::AlreadyExists { .. }) => {
                        let entities = self.entities(ObjectKind::Folder).await?;
                        crate::inventory::resolve(&entities, ObjectKind::Folder, &child_path)?.moref
                    }
                    Err(e) => return Err(e),
                };
                parent_path = child_path;
            }
            Ok((ManagedObject { kind: ObjectKind::Folder, moref: parent, path: want }, created))
        })
        .await
    }

    /// Delete an empty folder. `false` if it does not exist; Invalid if it is not empty.
    pub async fn delete_folder(&self, path: &str) -> Result<bool, VsphereError> {
        self.op("delete_folder", async {
            let folder = match self.find(ObjectKind::Folder, path).await {
                Ok(f) => f,
                Err(VsphereError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            let children = self
                .retrieve(&FilterSpec {
                    props: vec![("ManagedEntity".into(), vec!["name".into()])],
                    start: folder.moref.clone(),
                    include_start: false,
                    traversals: vec![Traversal {
                        name: "children",
                        type_name: "Folder",
                        path: "childEntity",
                        select: vec![],
                    }],
                })
                .await?;
            if !children.is_empty() {
                let names: Vec<_> = children.iter().filter_map(|c| c.prop_text("name")).take(5).collect();
                return Err(VsphereError::invalid(format!(
                    "folder {} is not empty ({} object(s), e.g. {})",
                    folder.path,
                    children.len(),
                    names.join(", ")
                )));
            }
            let task = self.soap("Destroy_Task", &folder.moref, "").await?;
            let task = task
                .child("returnval")
                .and_then(|r| r.moref())
                .ok_or_else(|| VsphereError::protocol("Destroy_Task answered without a task"))?;
            match self.wait_task(&task).await {
                Ok(_) => Ok(true),
                // Deleted by someone else meanwhile: the outcome is the same.
                Err(VsphereError::NotFound { .. }) => Ok(true),
                Err(e) => Err(e),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::inventory;

    #[test]
    fn plans() {
        let inv = inventory();
        let p = plan_create(&inv, "/DC0/vm/ocp/infra-1").unwrap();
        assert_eq!(p.parent.value, "group-v15");
        assert!(p.missing.is_empty());
        let p = plan_create(&inv, "/DC0/vm/ocp/new/deeper").unwrap();
        assert_eq!(p.parent.value, "group-v14");
        assert_eq!(p.parent_path, "/DC0/vm/ocp");
        assert_eq!(p.missing, vec!["new", "deeper"]);
        let p = plan_create(&inv, "/DC0/host/fd").unwrap();
        assert_eq!(p.parent.value, "group-h4");
    }

    #[test]
    fn refused_plans() {
        let inv = inventory();
        // No such datacenter: nothing to create it in.
        assert!(matches!(plan_create(&inv, "/nodc/vm/x"), Err(VsphereError::NotFound { .. })));
        // Directly under a datacenter or the root: not a VM folder.
        assert!(matches!(plan_create(&inv, "/DC0/x"), Err(VsphereError::Invalid { .. })));
        assert!(matches!(plan_create(&inv, "/newfolder"), Err(VsphereError::NotFound { .. })));
        // Under a cluster: not a folder.
        assert!(matches!(plan_create(&inv, "/DC0/host/DC0_C0/x"), Err(VsphereError::Invalid { .. })));
        // The path names an existing non-folder.
        assert!(matches!(plan_create(&inv, "/DC0/vm/DC0_C0_RP0_VM0"), Err(VsphereError::AlreadyExists { .. })));
        assert!(matches!(plan_create(&inv, "DC0/vm"), Err(VsphereError::Invalid { .. })));
    }
}
