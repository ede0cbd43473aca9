//! Inventory paths: one RetrievePropertiesEx collects `name` and `parent` of the part of
//! the tree a lookup can reach, and the path is resolved locally.

use std::collections::HashMap;

use crate::error::VsphereError;
use crate::session::Client;
use crate::soap::envelope::{FilterSpec, Traversal};
use crate::soap::parse::{MoRef, ObjectContent};

/// The kinds of inventory object the phases look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Datacenter,
    ComputeCluster,
    Datastore,
    Network,
    ResourcePool,
    Folder,
    VirtualMachine,
}

impl ObjectKind {
    /// Managed object types that count as this kind.
    pub fn type_names(self) -> &'static [&'static str] {
        match self {
            ObjectKind::Datacenter => &["Datacenter"],
            ObjectKind::ComputeCluster => &["ClusterComputeResource"],
            ObjectKind::Datastore => &["Datastore"],
            ObjectKind::Network => &["Network", "DistributedVirtualPortgroup", "OpaqueNetwork"],
            ObjectKind::ResourcePool => &["ResourcePool", "VirtualApp"],
            ObjectKind::Folder => &["Folder"],
            ObjectKind::VirtualMachine => &["VirtualMachine"],
        }
    }

    /// The kind of a managed object type, if it is one of ours.
    pub fn of_type(type_name: &str) -> Option<ObjectKind> {
        use ObjectKind::*;
        [Datacenter, ComputeCluster, Datastore, Network, ResourcePool, Folder, VirtualMachine]
            .into_iter()
            .find(|k| k.type_names().contains(&type_name))
    }

    /// The Datacenter child folder this kind lives under.
    fn dc_folder(self) -> Option<&'static str> {
        match self {
            ObjectKind::Datacenter | ObjectKind::Folder => None,
            ObjectKind::ComputeCluster | ObjectKind::ResourcePool => Some("hostFolder"),
            ObjectKind::Datastore => Some("datastoreFolder"),
            ObjectKind::Network => Some("networkFolder"),
            ObjectKind::VirtualMachine => Some("vmFolder"),
        }
    }

    /// Property-spec types collected for this kind (name + parent each); supertypes
    /// cover subtypes (ClusterComputeResource is a ComputeResource, StoragePod a Folder).
    fn collected_types(self) -> &'static [&'static str] {
        match self {
            ObjectKind::Datacenter => &["Folder", "Datacenter"],
            ObjectKind::ComputeCluster => &["Folder", "Datacenter", "ClusterComputeResource"],
            ObjectKind::Datastore => &["Folder", "Datacenter", "Datastore"],
            ObjectKind::Network => &["Folder", "Datacenter", "Network"],
            ObjectKind::ResourcePool => &["Folder", "Datacenter", "ComputeResource", "ResourcePool"],
            ObjectKind::Folder => &["Folder", "Datacenter"],
            ObjectKind::VirtualMachine => &["Folder", "Datacenter", "VirtualMachine"],
        }
    }
}

/// A resolved inventory object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManagedObject {
    pub kind: ObjectKind,
    pub moref: MoRef,
    /// The absolute inventory path it was found at (`/dc/host/cluster`).
    pub path: String,
}

/// One object with its name and parent, as collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entity {
    pub moref: MoRef,
    pub name: String,
    pub parent: Option<MoRef>,
}

impl Entity {
    pub fn from_content(o: &ObjectContent) -> Option<Entity> {
        Some(Entity { moref: o.obj.clone(), name: o.prop_text("name")?.to_string(), parent: o.prop_moref("parent") })
    }
}

/// Split and check an absolute inventory path: `/a/b/c` → `["a","b","c"]`.
pub fn split_path(path: &str) -> Result<Vec<&str>, VsphereError> {
    let p = path.trim();
    let Some(rest) = p.strip_prefix('/') else {
        return Err(VsphereError::invalid(format!("inventory path {path:?} must be absolute (start with /)")));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|s| s.is_empty()) {
        return Err(VsphereError::invalid(format!("inventory path {path:?} has an empty component")));
    }
    Ok(parts)
}

/// Canonical form of a path (`/a/b`).
pub fn normalize_path(path: &str) -> Result<String, VsphereError> {
    Ok(format!("/{}", split_path(path)?.join("/")))
}

/// The absolute path of every entity whose chain of parents reaches the root (the
/// entity without a parent, whose own name is not part of paths).
pub(crate) fn paths(entities: &[Entity]) -> HashMap<MoRef, String> {
    let by_ref: HashMap<&MoRef, &Entity> = entities.iter().map(|e| (&e.moref, e)).collect();
    let mut out = HashMap::new();
    for e in entities {
        let mut names = Vec::new();
        let mut cur = e;
        let mut complete = false;
        // Bounded walk: a cycle in malformed data must not hang the operator.
        for _ in 0..=entities.len() {
            match &cur.parent {
                None => {
                    complete = true;
                    break;
                }
                Some(p) => {
                    names.push(cur.name.as_str());
                    match by_ref.get(p) {
                        Some(parent) => cur = parent,
                        None => break,
                    }
                }
            }
        }
        if complete {
            names.reverse();
            out.insert(e.moref.clone(), format!("/{}", names.join("/")));
        }
    }
    out
}

/// Find the object of `kind` at `path` among collected entities.
pub(crate) fn resolve(entities: &[Entity], kind: ObjectKind, path: &str) -> Result<ManagedObject, VsphereError> {
    let want = normalize_path(path)?;
    let all = paths(entities);
    let mut hits: Vec<&MoRef> = entities
        .iter()
        .filter(|e| kind.type_names().contains(&e.moref.type_name.as_str()))
        .map(|e| &e.moref)
        .filter(|m| all.get(*m) == Some(&want))
        .collect();
    hits.sort();
    hits.dedup();
    match hits.as_slice() {
        [one] => Ok(ManagedObject { kind, moref: (*one).clone(), path: want }),
        [] => Err(VsphereError::not_found(want)),
        many => Err(VsphereError::invalid(format!(
            "{want} is ambiguous: {} objects of kind {kind:?} ({})",
            many.len(),
            many.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Networks named `name` anywhere below the network folder of the datacenter at `dc`.
pub(crate) fn resolve_network_name(entities: &[Entity], dc: &str, name: &str) -> Result<ManagedObject, VsphereError> {
    let prefix = format!("{}/network/", normalize_path(dc)?);
    let all = paths(entities);
    let mut hits: Vec<(&MoRef, &String)> = entities
        .iter()
        .filter(|e| e.name == name && ObjectKind::Network.type_names().contains(&e.moref.type_name.as_str()))
        .filter_map(|e| all.get(&e.moref).map(|p| (&e.moref, p)))
        .filter(|(_, p)| p.starts_with(&prefix))
        .collect();
    hits.sort();
    hits.dedup();
    match hits.as_slice() {
        [(m, p)] => Ok(ManagedObject { kind: ObjectKind::Network, moref: (*m).clone(), path: (*p).clone() }),
        [] => Err(VsphereError::not_found(format!("{prefix}{name}"))),
        many => Err(VsphereError::invalid(format!(
            "network name {name:?} is ambiguous in {dc}: {}",
            many.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The filter that reaches every object of `kind` from the root folder, and nothing
/// below the Datacenter child folders it does not need.
pub(crate) fn filter_for(kind: ObjectKind, root: &MoRef) -> FilterSpec {
    let dc_specs: Vec<(&'static str, &'static str)> = match kind.dc_folder() {
        Some(f) => vec![(dc_spec_name(f), f)],
        // Folders can be under any of the four.
        None if kind == ObjectKind::Folder => ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"]
            .into_iter()
            .map(|f| (dc_spec_name(f), f))
            .collect(),
        None => vec![],
    };
    let mut folder_select = vec!["folder"];
    folder_select.extend(dc_specs.iter().map(|(n, _)| *n));
    let mut traversals =
        vec![Traversal { name: "folder", type_name: "Folder", path: "childEntity", select: folder_select }];
    for (name, prop) in &dc_specs {
        let mut select = vec!["folder"];
        if kind == ObjectKind::ResourcePool {
            select.push("computeToPool");
        }
        traversals.push(Traversal { name, type_name: "Datacenter", path: prop, select });
    }
    if kind == ObjectKind::ResourcePool {
        // Reached through the folder traversal too: clusters sit in host folders.
        traversals[0].select.push("computeToPool");
        traversals.push(Traversal {
            name: "computeToPool",
            type_name: "ComputeResource",
            path: "resourcePool",
            select: vec!["poolToPool"],
        });
        traversals.push(Traversal {
            name: "poolToPool",
            type_name: "ResourcePool",
            path: "resourcePool",
            select: vec!["poolToPool"],
        });
    }
    FilterSpec {
        props: kind
            .collected_types()
            .iter()
            .map(|t| (t.to_string(), vec!["name".to_string(), "parent".to_string()]))
            .collect(),
        start: root.clone(),
        include_start: true,
        traversals,
    }
}

fn dc_spec_name(folder_prop: &str) -> &'static str {
    match folder_prop {
        "vmFolder" => "dcToVm",
        "hostFolder" => "dcToHost",
        "datastoreFolder" => "dcToDatastore",
        _ => "dcToNetwork",
    }
}

impl Client {
    /// Everything a lookup of `kind` can reach, with names and parents: one
    /// RetrievePropertiesEx (plus continuation pages on very large inventories).
    pub(crate) async fn entities(&self, kind: ObjectKind) -> Result<Vec<Entity>, VsphereError> {
        let objs = self.retrieve(&filter_for(kind, &self.sc.root_folder)).await?;
        Ok(objs.iter().filter_map(Entity::from_content).collect())
    }

    /// Resolve an absolute inventory path (`/dc`, `/dc/host/cluster`,
    /// `/dc/host/cluster/Resources/pool`, `/dc/datastore/ds`, `/dc/network/net`,
    /// `/dc/vm/folder/vm`) to an object of `kind`.
    pub async fn find(&self, kind: ObjectKind, path: &str) -> Result<ManagedObject, VsphereError> {
        self.op("find", async {
            normalize_path(path)?;
            let entities = self.entities(kind).await?;
            resolve(&entities, kind, path)
        })
        .await
    }

    /// A network by absolute path, or by bare name anywhere under `<datacenter>/network`
    /// (as OpenShift's failure domains name them).
    pub async fn find_network(&self, datacenter: &str, name_or_path: &str) -> Result<ManagedObject, VsphereError> {
        if name_or_path.starts_with('/') {
            return self.find(ObjectKind::Network, name_or_path).await;
        }
        self.op("find_network", async {
            let entities = self.entities(ObjectKind::Network).await?;
            resolve_network_name(&entities, datacenter, name_or_path)
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn e(t: &str, v: &str, name: &str, parent: Option<(&str, &str)>) -> Entity {
        Entity { moref: MoRef::new(t, v), name: name.into(), parent: parent.map(|(t, v)| MoRef::new(t, v)) }
    }

    /// A vcsim-like inventory, with a nested folder and a datacenter inside a folder.
    pub(crate) fn inventory() -> Vec<Entity> {
        vec![
            e("Folder", "group-d1", "Datacenters", None),
            e("Datacenter", "dc-2", "DC0", Some(("Folder", "group-d1"))),
            e("Folder", "group-v3", "vm", Some(("Datacenter", "dc-2"))),
            e("Folder", "group-h4", "host", Some(("Datacenter", "dc-2"))),
            e("Folder", "group-s5", "datastore", Some(("Datacenter", "dc-2"))),
            e("Folder", "group-n6", "network", Some(("Datacenter", "dc-2"))),
            e("ClusterComputeResource", "domain-c7", "DC0_C0", Some(("Folder", "group-h4"))),
            e("ResourcePool", "resgroup-8", "Resources", Some(("ClusterComputeResource", "domain-c7"))),
            e("ResourcePool", "resgroup-9", "child", Some(("ResourcePool", "resgroup-8"))),
            e("Datastore", "datastore-10", "LocalDS_0", Some(("Folder", "group-s5"))),
            e("Network", "network-11", "VM Network", Some(("Folder", "group-n6"))),
            e("Folder", "group-n12", "sub", Some(("Folder", "group-n6"))),
            e("DistributedVirtualPortgroup", "dvportgroup-13", "DC0_DVPG0", Some(("Folder", "group-n12"))),
            e("Folder", "group-v14", "ocp", Some(("Folder", "group-v3"))),
            e("Folder", "group-v15", "infra-1", Some(("Folder", "group-v14"))),
            e("VirtualMachine", "vm-16", "DC0_C0_RP0_VM0", Some(("Folder", "group-v3"))),
            e("VirtualMachine", "vm-17", "master-0", Some(("Folder", "group-v15"))),
            e("Folder", "group-d18", "region", Some(("Folder", "group-d1"))),
            e("Datacenter", "dc-19", "DC1", Some(("Folder", "group-d18"))),
            // Orphan whose parent was not collected: no path, never matched.
            e("VirtualMachine", "vm-20", "orphan", Some(("VirtualApp", "resgroup-v99"))),
        ]
    }

    #[test]
    fn every_kind_resolves() {
        let inv = inventory();
        let cases = [
            (ObjectKind::Datacenter, "/DC0", "dc-2"),
            (ObjectKind::Datacenter, "/region/DC1", "dc-19"),
            (ObjectKind::ComputeCluster, "/DC0/host/DC0_C0", "domain-c7"),
            (ObjectKind::ResourcePool, "/DC0/host/DC0_C0/Resources", "resgroup-8"),
            (ObjectKind::ResourcePool, "/DC0/host/DC0_C0/Resources/child/", "resgroup-9"),
            (ObjectKind::Datastore, "/DC0/datastore/LocalDS_0", "datastore-10"),
            (ObjectKind::Network, "/DC0/network/VM Network", "network-11"),
            (ObjectKind::Network, "/DC0/network/sub/DC0_DVPG0", "dvportgroup-13"),
            (ObjectKind::Folder, "/DC0/vm", "group-v3"),
            (ObjectKind::Folder, "/DC0/vm/ocp/infra-1", "group-v15"),
            (ObjectKind::VirtualMachine, "/DC0/vm/ocp/infra-1/master-0", "vm-17"),
            (ObjectKind::VirtualMachine, "/DC0/vm/DC0_C0_RP0_VM0", "vm-16"),
        ];
        for (kind, path, id) in cases {
            let m = resolve(&inv, kind, path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(m.moref.value, id, "{path}");
            assert_eq!(m.kind, kind);
            assert_eq!(m.path, normalize_path(path).unwrap());
        }
    }

    #[test]
    fn wrong_kind_or_missing_is_not_found() {
        let inv = inventory();
        assert!(matches!(resolve(&inv, ObjectKind::Folder, "/DC0/host/DC0_C0"), Err(VsphereError::NotFound { .. })));
        match resolve(&inv, ObjectKind::VirtualMachine, "/DC0/vm/nope") {
            Err(VsphereError::NotFound { path }) => assert_eq!(path, "/DC0/vm/nope"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve(&inv, ObjectKind::VirtualMachine, "/orphan"), Err(VsphereError::NotFound { .. })));
        assert!(matches!(resolve(&inv, ObjectKind::Datacenter, "DC0"), Err(VsphereError::Invalid { .. })));
        assert!(matches!(resolve(&inv, ObjectKind::Datacenter, "/DC0//x"), Err(VsphereError::Invalid { .. })));
    }

    #[test]
    fn duplicates_are_ambiguous() {
        let mut inv = inventory();
        inv.push(e("VirtualMachine", "vm-99", "master-0", Some(("Folder", "group-v15"))));
        assert!(matches!(
            resolve(&inv, ObjectKind::VirtualMachine, "/DC0/vm/ocp/infra-1/master-0"),
            Err(VsphereError::Invalid { .. })
        ));
    }

    #[test]
    fn cycles_terminate() {
        let inv = vec![e("Folder", "a", "a", Some(("Folder", "b"))), e("Folder", "b", "b", Some(("Folder", "a")))];
        assert!(paths(&inv).is_empty());
    }

    #[test]
    fn bare_network_names() {
        let inv = inventory();
        assert_eq!(resolve_network_name(&inv, "/DC0", "DC0_DVPG0").unwrap().path, "/DC0/network/sub/DC0_DVPG0");
        assert_eq!(resolve_network_name(&inv, "/DC0", "VM Network").unwrap().moref.value, "network-11");
        assert!(matches!(resolve_network_name(&inv, "/region/DC1", "VM Network"), Err(VsphereError::NotFound { .. })));
        let mut inv = inv;
        inv.push(e("Network", "network-98", "VM Network", Some(("Folder", "group-n12"))));
        assert!(matches!(resolve_network_name(&inv, "/DC0", "VM Network"), Err(VsphereError::Invalid { .. })));
    }

    #[test]
    fn filters_stay_narrow() {
        let root = MoRef::new("Folder", "group-d1");
        let f = filter_for(ObjectKind::Datacenter, &root);
        assert_eq!(f.traversals.len(), 1);
        let f = filter_for(ObjectKind::VirtualMachine, &root);
        let names: Vec<_> = f.traversals.iter().map(|t| t.name).collect();
        assert_eq!(names, ["folder", "dcToVm"]);
        let f = filter_for(ObjectKind::ResourcePool, &root);
        let names: Vec<_> = f.traversals.iter().map(|t| t.name).collect();
        assert_eq!(names, ["folder", "dcToHost", "computeToPool", "poolToPool"]);
        let f = filter_for(ObjectKind::Folder, &root);
        assert_eq!(f.traversals.len(), 5);
        assert!(f.props.iter().all(|(t, _)| t == "Folder" || t == "Datacenter"));
    }

    #[test]
    fn kinds_of_types() {
        assert_eq!(ObjectKind::of_type("DistributedVirtualPortgroup"), Some(ObjectKind::Network));
        assert_eq!(ObjectKind::of_type("ClusterComputeResource"), Some(ObjectKind::ComputeCluster));
        assert_eq!(ObjectKind::of_type("HostSystem"), None);
    }
}
