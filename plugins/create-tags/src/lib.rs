//! CreateTags: the vSphere tags OpenShift uses to find a failure domain's region and zone,
//! in the target vCenter(s): categories `openshift-region` and `openshift-zone` (SINGLE
//! cardinality, associable to datacenters and compute clusters), a tag per region and
//! zone, the region tag attached to the failure domain's datacenter and the zone tag to
//! its compute cluster.
//!
//! And the cluster's own tag, as the installer makes it in the vCenter it installs to:
//! category `openshift-<infraID>` with the tag `<infraID>`. The vSphere machine actuator
//! attaches that tag to every VM it creates, and silently skips it when the vCenter has
//! none (so machines created in the target would carry no tag, and the installer's cluster
//! destroy, which finds the cluster's VMs by it, would leave them behind).
//!
//! Everything is checked before anything is created: a datacenter or cluster that already
//! carries another tag of one of these categories cannot take a second one (SINGLE), so
//! that is a failure naming the object and both tags (the Go controller let vCenter
//! refuse it half-way), as are two failure domains giving one object different tags.
//!
//! Rollback removes exactly what this phase created or attached (the host journals each
//! creation and attachment): pre-existing categories, tags and attachments stay.

use std::collections::BTreeMap;

use vsm_common::infra;
use vsm_sdk::prelude::*;
use vsm_sdk::spec::FailureDomain;
use vsm_sdk::types::names::INFRASTRUCTURE;
use vsm_sdk::{Cardinality, CategorySpec, TagInfo};

pub const REGION_CATEGORY: &str = "openshift-region";
pub const ZONE_CATEGORY: &str = "openshift-zone";
/// vSphere types the categories' tags may be attached to.
pub const ASSOCIABLE_TYPES: [&str; 2] = ["Datacenter", "ClusterComputeResource"];
/// What the installer's cluster tag may be attached to.
pub const CLUSTER_TAG_ASSOCIABLE_TYPES: [&str; 5] =
    ["VirtualMachine", "ResourcePool", "Folder", "Datastore", "StoragePod"];
/// The installer's description of its category and tag.
pub const CLUSTER_TAG_DESCRIPTION: &str = "Added by openshift-install do not remove";

/// The installer's category for the cluster `infra_id` (the machine actuator's
/// `tagToCategoryName`).
pub fn cluster_category(infra_id: &str) -> String {
    format!("openshift-{infra_id}")
}

fn cluster_category_spec(infra_id: &str) -> CategorySpec {
    CategorySpec {
        name: cluster_category(infra_id),
        description: CLUSTER_TAG_DESCRIPTION.to_string(),
        cardinality: Cardinality::Single,
        associable_types: CLUSTER_TAG_ASSOCIABLE_TYPES.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct CreateTags;

impl Phase for CreateTags {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "CreateTags",
            env!("CARGO_PKG_VERSION"),
            "Create the openshift-region/openshift-zone tags in the target vCenter and attach them to each failure domain's datacenter and cluster, and the cluster's own tag",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .vsphere(VsphereCapability::ReadInventory)
        .vsphere(VsphereCapability::ManageTags)
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

/// Which tag one object must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub server: String,
    /// Inventory path of the datacenter or compute cluster.
    pub path: String,
    pub kind: ObjectKind,
    pub category: &'static str,
    pub tag: String,
    /// The failure domains asking for it.
    pub failure_domains: Vec<String>,
}

fn what(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Datacenter { "datacenter" } else { "compute cluster" }
}

/// The tags each datacenter and compute cluster must carry, one entry per object, or
/// every object two failure domains tag differently.
pub fn assignments(fds: &[FailureDomain]) -> Result<Vec<Assignment>, Vec<String>> {
    let mut out: Vec<Assignment> = Vec::new();
    let mut problems = Vec::new();
    for fd in fds {
        let wanted = [
            (ObjectKind::Datacenter, format!("/{}", fd.topology.datacenter), REGION_CATEGORY, &fd.region),
            (ObjectKind::ComputeCluster, fd.topology.compute_cluster.clone(), ZONE_CATEGORY, &fd.zone),
        ];
        for (kind, path, category, tag) in wanted {
            match out.iter_mut().find(|a| a.server == fd.server && a.path == path) {
                Some(a) if a.tag != *tag => problems.push(format!(
                    "failure domains {} and {} put {} {path} in vCenter {} in different {category} tags ({} and {tag}); \
                     a {category} tag is single-valued per object",
                    a.failure_domains.join(", "),
                    fd.name,
                    what(kind),
                    fd.server,
                    a.tag
                )),
                Some(a) => a.failure_domains.push(fd.name.clone()),
                None => out.push(Assignment {
                    server: fd.server.clone(),
                    path,
                    kind,
                    category,
                    tag: tag.clone(),
                    failure_domains: vec![fd.name.clone()],
                }),
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Another tag of the assignment's category already on the object.
pub fn conflict(a: &Assignment, attached: &[TagInfo]) -> Option<String> {
    let other = attached.iter().find(|t| t.category_name == a.category && t.name != a.tag)?;
    if other.cardinality == Cardinality::Multiple {
        return None;
    }
    Some(format!(
        "{} {} in vCenter {} already carries tag {:?} of the single-cardinality category {}, so it cannot also carry {:?} \
         (failure domain {}): detach {:?} from it, or set the failure domain's {} to {:?}",
        what(a.kind),
        a.path,
        a.server,
        other.name,
        a.category,
        a.tag,
        a.failure_domains.join(", "),
        other.name,
        if a.category == REGION_CATEGORY { "region" } else { "zone" },
        other.name
    ))
}

fn category_spec(name: &str) -> CategorySpec {
    let what = if name == REGION_CATEGORY { "region" } else { "zone" };
    CategorySpec {
        name: name.to_string(),
        description: format!("OpenShift {what} of vSphere failure domains"),
        cardinality: Cardinality::Single,
        associable_types: ASSOCIABLE_TYPES.iter().map(|s| s.to_string()).collect(),
    }
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let wanted = assignments(&spec.failure_domains).map_err(|p| PhaseError::invalid(p.join("; ")))?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let infra_id = infra::infra_id(&infra)?.to_string();

    // Look first, change nothing until every object is known to accept its tag.
    let mut targets: Vec<(Assignment, ObjectRef, bool)> = Vec::new();
    let mut problems = Vec::new();
    for a in wanted {
        let found = cx.vsphere().lookup(&a.server, a.kind, &a.path).context(format!("vCenter {}", a.server))?;
        let Some(object) = found else {
            problems.push(format!(
                "{} {} not found in vCenter {} (failure domain {})",
                what(a.kind),
                a.path,
                a.server,
                a.failure_domains.join(", ")
            ));
            continue;
        };
        let attached = cx.vsphere().attached_tags(&a.server, &object).context(format!("vCenter {}", a.server))?;
        if let Some(c) = conflict(&a, &attached) {
            problems.push(c);
            continue;
        }
        let has = attached.iter().any(|t| t.category_name == a.category && t.name == a.tag);
        targets.push((a, object, has));
    }
    if !problems.is_empty() {
        return Err(PhaseError::invalid(problems.join("; ")));
    }

    let mut categories: BTreeMap<(String, &str), String> = BTreeMap::new();
    let mut tags: BTreeMap<(String, &str, String), String> = BTreeMap::new();
    let mut attached = 0;
    for (i, (a, object, has)) in targets.iter().enumerate() {
        cx.log().progress(percent(i, targets.len()), &format!("tagging {} {}", what(a.kind), a.path));
        let category = match categories.get(&(a.server.clone(), a.category)) {
            Some(id) => id.clone(),
            None => {
                let made = cx.vsphere().ensure_category(&a.server, &category_spec(a.category))?;
                if made.created {
                    cx.info(format!("created tag category {} in vCenter {}", a.category, a.server));
                }
                categories.insert((a.server.clone(), a.category), made.id.clone());
                made.id
            }
        };
        let key = (a.server.clone(), a.category, a.tag.clone());
        let tag = match tags.get(&key) {
            Some(id) => id.clone(),
            None => {
                let what = if a.category == REGION_CATEGORY { "region" } else { "zone" };
                let made =
                    cx.vsphere().ensure_tag(&a.server, &category, &a.tag, &format!("OpenShift {what} {}", a.tag))?;
                tags.insert(key, made.id.clone());
                made.id
            }
        };
        if !has {
            cx.vsphere().attach_tag(&a.server, &tag, object)?;
            attached += 1;
            cx.info(format!(
                "attached {} tag {} to {} {} in vCenter {}",
                a.category,
                a.tag,
                what(a.kind),
                a.path,
                a.server
            ));
        }
    }
    // The cluster's tag, for the machine actuator to attach to the VMs it creates.
    let servers = spec.target_servers();
    for server in &servers {
        let category = cx.vsphere().ensure_category(server, &cluster_category_spec(&infra_id))?;
        if category.created {
            cx.info(format!("created tag category {} in vCenter {server}", cluster_category(&infra_id)));
        }
        let tag = cx.vsphere().ensure_tag(server, &category.id, &infra_id, CLUSTER_TAG_DESCRIPTION)?;
        if tag.created {
            cx.info(format!("created the cluster's tag {infra_id} in vCenter {server}"));
        }
    }
    let summary: Vec<String> = targets
        .iter()
        .map(|(a, _, _)| format!("{} {} in vCenter {} has {} {}", what(a.kind), a.path, a.server, a.category, a.tag))
        .collect();
    let verb = if cx.dry_run() { "would tag" } else { "tagged" };
    Ok(done(format!(
        "{verb} {} object(s) ({attached} attachment(s) new): {}; the cluster's tag {infra_id} (category {}) is in vCenter(s) {}",
        targets.len(),
        summary.join("; "),
        cluster_category(&infra_id),
        servers.join(", ")
    )))
}

export_phase!(CreateTags);

#[cfg(test)]
mod tests;
