//! What the installer made for the cluster in a source vCenter, and its removal when
//! `spec.cleanup.sourceVSphereObjects` asks for it.
//!
//! 1. The leftovers, per source vCenter: the tag category `openshift-<infraID>` (with the
//!    tag `<infraID>` the installer and the machine actuator attach to the cluster's VMs),
//!    and the cluster's VM folder `/<datacenter>/vm/<infraID>` of each source failure
//!    domain (and, in a legacy install without failure domains, of each datacenter the
//!    Infrastructure lists for the vCenter). A failure domain whose folder is another one
//!    (chosen by whoever installed the cluster, possibly shared) is listed as kept. They
//!    are read from the Infrastructure once and recorded in the phase's state, because
//!    Cleanup then removes the source failure domains from it: a re-run after a crash
//!    removes exactly what the first call found.
//! 2. Off (the default): nothing is removed; the result lists the leftovers that exist
//!    (each looked up read-only; if the source vCenter cannot be asked, as recorded, with
//!    the reason).
//! 3. On: the category goes, with its tags (the host journals the category, its tags and
//!    what each was attached to, so a rollback creates them again under the same names and
//!    re-attaches them to the objects that still exist), then each folder if it is empty
//!    (vCenter refuses a folder with anything in it; that folder stays and the result says
//!    what is in it). Nothing else is touched: no VM, no template, no datastore file.
//!    A source vCenter that cannot be reached fails the phase (retried until its
//!    deadline): the user asked for a removal that cannot be verified.

use serde::{Deserialize, Serialize};
use vsm_common::infra;
use vsm_sdk::VsphereError;
use vsm_sdk::prelude::*;
use vsm_sdk::spec::FailureDomain;

/// Phase state: the leftovers found before the Infrastructure was edited.
const RECORDED: &str = "source-vsphere-objects";

/// One source vCenter's leftovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    pub server: String,
    pub category: String,
    /// The cluster's own VM folders (`/<dc>/vm/<infraID>`).
    pub folders: Vec<String>,
    /// Folders of source failure domains that are not the cluster's own: never removed.
    pub kept_folders: Vec<String>,
}

/// The leftovers the Infrastructure describes (pure).
pub fn leftovers(vsphere: &Value, sources: &[&str], infra_id: &str) -> Vec<Leftovers> {
    let fds: Vec<FailureDomain> =
        infra::failure_domains(vsphere).iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    sources
        .iter()
        .map(|&server| {
            let mut folders: Vec<String> = Vec::new();
            let mut kept_folders: Vec<String> = Vec::new();
            let own = |dc: &str| format!("/{dc}/vm/{infra_id}");
            for fd in fds.iter().filter(|fd| fd.server == server) {
                let folder = fd.topology.folder_or_default(infra_id);
                let list = if folder.trim_end_matches('/') == own(&fd.topology.datacenter) {
                    &mut folders
                } else {
                    &mut kept_folders
                };
                let folder = folder.trim_end_matches('/').to_string();
                if !list.contains(&folder) {
                    list.push(folder);
                }
            }
            if infra::failure_domains(vsphere).is_empty() {
                for dc in infra::vcenter_datacenters(vsphere, server) {
                    if !folders.contains(&own(&dc)) {
                        folders.push(own(&dc));
                    }
                }
            }
            Leftovers { server: server.to_string(), category: format!("openshift-{infra_id}"), folders, kept_folders }
        })
        .collect()
}

/// The recorded leftovers, recording them first from the Infrastructure if this is the
/// first call.
pub fn recorded(cx: &Cx, vsphere: &Value, sources: &[&str], infra_id: &str) -> Result<Vec<Leftovers>, PhaseError> {
    if let Some(found) = cx.state().get_json(RECORDED)? {
        return Ok(found);
    }
    let found = leftovers(vsphere, sources, infra_id);
    cx.state().put(RECORDED, &found)?;
    Ok(found)
}

/// Remove the leftovers; what was removed and what stayed, one line per vCenter.
pub fn remove(cx: &Cx, all: &[Leftovers]) -> Result<(Vec<String>, Vec<String>), PhaseError> {
    let (mut removed, mut stayed) = (Vec::new(), Vec::new());
    for l in all {
        let server = l.server.as_str();
        let mut gone = Vec::new();
        let mut kept: Vec<String> =
            l.kept_folders.iter().map(|f| format!("folder {f} (not the cluster's own)")).collect();
        if let Some(category) = cx.vsphere().find_category(server, &l.category)? {
            let tags: Vec<String> = cx.vsphere().tags(server, &category.id)?.into_iter().map(|t| t.name).collect();
            cx.vsphere().delete_category(server, &category.id)?;
            gone.push(match tags.is_empty() {
                true => format!("tag category {}", l.category),
                false => format!("tag category {} with tag(s) {}", l.category, tags.join(", ")),
            });
        }
        for folder in &l.folders {
            match cx.vsphere().delete_folder(server, folder) {
                Ok(true) => gone.push(format!("folder {folder}")),
                Ok(false) => {}
                Err(VsphereError::Invalid(why)) => kept.push(format!("folder {folder} ({why})")),
                Err(e) => return Err(e.into()),
            }
        }
        if !gone.is_empty() {
            removed.push(format!("vCenter {server}: {}", gone.join(", ")));
        }
        if !kept.is_empty() {
            stayed.push(format!("vCenter {server}: {}", kept.join(", ")));
        }
    }
    Ok((removed, stayed))
}

/// The leftovers that exist, without changing anything, one line per vCenter.
pub fn present(cx: &Cx, all: &[Leftovers]) -> Vec<String> {
    let mut out = Vec::new();
    for l in all {
        let server = l.server.as_str();
        let found = || -> Result<Vec<String>, VsphereError> {
            let mut found = Vec::new();
            if cx.vsphere().find_category(server, &l.category)?.is_some() {
                found.push(format!("tag category {}", l.category));
            }
            for f in l.folders.iter().chain(&l.kept_folders) {
                if cx.vsphere().lookup(server, ObjectKind::Folder, f)?.is_some() {
                    found.push(format!("folder {f}"));
                }
            }
            Ok(found)
        };
        match found() {
            Ok(found) if found.is_empty() => {}
            Ok(found) => out.push(format!("vCenter {server}: {}", found.join(", "))),
            Err(e) => {
                let all: Vec<String> = std::iter::once(format!("tag category {}", l.category))
                    .chain(l.folders.iter().chain(&l.kept_folders).map(|f| format!("folder {f}")))
                    .collect();
                out.push(format!("vCenter {server} (not checked: {e:?}): {}", all.join(", ")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fd(name: &str, server: &str, dc: &str, folder: Option<&str>) -> Value {
        let mut t = json!({"datacenter": dc, "computeCluster": format!("/{dc}/host/c"),
                           "datastore": format!("/{dc}/datastore/ds"), "networks": ["n"]});
        if let Some(f) = folder {
            t["folder"] = json!(f);
        }
        json!({"name": name, "region": "r", "zone": name, "server": server, "topology": t})
    }

    #[test]
    fn the_clusters_own_folders_and_category_per_source() {
        let vsphere = json!({"vcenters": [{"server": "src", "datacenters": ["dc"]}, {"server": "dst", "datacenters": ["d2"]}],
            "failureDomains": [fd("a", "src", "dc", Some("/dc/vm/id-1")), fd("b", "src", "dc", None),
                               fd("c", "src", "dc", Some("/dc/vm/shared/")), fd("t", "dst", "d2", None)]});
        assert_eq!(
            leftovers(&vsphere, &["src"], "id-1"),
            vec![Leftovers {
                server: "src".into(),
                category: "openshift-id-1".into(),
                folders: vec!["/dc/vm/id-1".into()],
                kept_folders: vec!["/dc/vm/shared".into()],
            }]
        );
    }

    #[test]
    fn a_legacy_install_has_the_folder_of_each_listed_datacenter() {
        let vsphere = json!({"vcenters": [{"server": "src", "datacenters": ["dc", "dc2"]}]});
        let found = leftovers(&vsphere, &["src"], "id");
        assert_eq!(found[0].folders, vec!["/dc/vm/id", "/dc2/vm/id"]);
        assert!(found[0].kept_folders.is_empty());
    }
}
