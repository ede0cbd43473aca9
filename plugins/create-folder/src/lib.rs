//! CreateFolder: the VM folder each target failure domain puts machines in:
//! `topology.folder` when the spec gives one (nested paths created level by level), else
//! `/<datacenter>/vm/<infraID>` (the Go controller always made `<infraID>` and ignored
//! `topology.folder`).
//!
//! Before creating a folder the phase records (in its state) the first level it is about
//! to create, so a rollback removes exactly the levels this migration made, deepest first,
//! and each only if it is empty: a folder that holds VMs or other folders is kept and
//! reported, never deleted, and the rollback carries on.

use serde::{Deserialize, Serialize};
use vsm_common::infra;
use vsm_sdk::VsphereError;
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::INFRASTRUCTURE;

/// Phase-scope state key: the folders this phase created ([`Created`] list).
pub const CREATED_KEY: &str = "created";

pub struct CreateFolder;

impl Phase for CreateFolder {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "CreateFolder",
            env!("CARGO_PKG_VERSION"),
            "Create the VM folder of each target failure domain in the target vCenter",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .vsphere(VsphereCapability::ReadInventory)
        .vsphere(VsphereCapability::ManageFolders)
        .with_rollback()
        .deadline_minutes(10)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        rollback(cx)
    }
}

/// A folder this phase created: every level from `from` down to `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub server: String,
    pub path: String,
    pub from: String,
}

/// One folder to ensure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub server: String,
    pub datacenter: String,
    pub path: String,
    pub failure_domains: Vec<String>,
}

/// The VM-folder levels of `path` below `/<dc>/vm`, shallowest first:
/// `/dc/vm/a/b` → [`/dc/vm/a`, `/dc/vm/a/b`].
pub fn levels(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (4..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// The folders the failure domains need, one per (server, path), or every failure domain
/// whose folder is not inside its own datacenter's VM folder.
pub fn wanted(spec: &MigrationSpec, infra_id: &str) -> Result<Vec<Wanted>, Vec<String>> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut problems = Vec::new();
    for fd in &spec.failure_domains {
        let dc = &fd.topology.datacenter;
        let path = fd.topology.folder_or_default(infra_id).trim_end_matches('/').to_string();
        let root = format!("/{dc}/vm/");
        let inside =
            path.strip_prefix(&root).is_some_and(|rest| !rest.is_empty() && rest.split('/').all(|p| !p.is_empty()));
        if !inside {
            problems.push(format!(
                "failure domain {}: topology.folder {path:?} is not a folder inside datacenter {dc}'s VM folder ({root}<name>)",
                fd.name
            ));
            continue;
        }
        match out.iter_mut().find(|w| w.server == fd.server && w.path == path) {
            Some(w) => w.failure_domains.push(fd.name.clone()),
            None => out.push(Wanted {
                server: fd.server.clone(),
                datacenter: dc.clone(),
                path,
                failure_domains: vec![fd.name.clone()],
            }),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

fn load(cx: &Cx) -> Result<Vec<Created>, PhaseError> {
    Ok(cx.state().get_json(CREATED_KEY)?.unwrap_or_default())
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let infra = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let infra_id = infra::infra_id(&infra)?;
    let folders = wanted(spec, infra_id).map_err(|p| PhaseError::invalid(p.join("; ")))?;
    let mut created = load(cx)?;
    let mut report = Vec::new();
    for (i, w) in folders.iter().enumerate() {
        cx.log().progress(percent(i, folders.len()), &format!("folder {} in vCenter {}", w.path, w.server));
        let vs = cx.vsphere();
        let at = |e: VsphereError| PhaseError::from(e).context(format!("vCenter {}", w.server));
        if vs.lookup(&w.server, ObjectKind::Folder, &w.path).map_err(at)?.is_some() {
            report.push(format!("{} existed", w.path));
            continue;
        }
        let vm_root = format!("/{}/vm", w.datacenter);
        if vs.lookup(&w.server, ObjectKind::Folder, &vm_root).map_err(at)?.is_none() {
            return Err(PhaseError::invalid(format!(
                "datacenter {} (its VM folder {vm_root}) not found in vCenter {} (failure domain {})",
                w.datacenter,
                w.server,
                w.failure_domains.join(", ")
            )));
        }
        let mut from = None;
        for level in levels(&w.path) {
            if vs.lookup(&w.server, ObjectKind::Folder, &level).map_err(at)?.is_none() {
                from = Some(level);
                break;
            }
        }
        let from = from.unwrap_or_else(|| w.path.clone());
        // Recorded before the folder is made; an earlier record (from an interrupted run)
        // knows better which levels this migration made.
        if !created.iter().any(|c| c.server == w.server && c.path == w.path) {
            created.push(Created { server: w.server.clone(), path: w.path.clone(), from: from.clone() });
            cx.state().put(CREATED_KEY, &created)?;
        }
        vs.create_folder(&w.server, &w.path).map_err(at)?;
        cx.info(format!("created VM folder {} in vCenter {} (levels from {from})", w.path, w.server));
        report.push(format!("{} {}", w.path, if cx.dry_run() { "to be created" } else { "created" }));
    }
    let state = if cx.dry_run() { "planned" } else { "ready" };
    let servers: Vec<&str> = spec.target_servers();
    Ok(done(format!("VM folders {state} in vCenter {}: {}", servers.join(", "), report.join(", "))))
}

fn rollback(cx: &Cx) -> Step {
    let created = load(cx)?;
    if created.is_empty() {
        return Ok(done("nothing to undo: this phase created no folder"));
    }
    let (mut removed, mut kept, mut remaining) = (Vec::new(), Vec::new(), Vec::new());
    for c in created.iter().rev() {
        let mut stopped = false;
        for level in levels(&c.path).into_iter().rev() {
            match cx.vsphere().delete_folder(&c.server, &level) {
                Ok(true) => removed.push(level.clone()),
                Ok(false) => {}
                // The contract's answer for a folder that is not empty: keep it.
                Err(VsphereError::Invalid(why)) => {
                    kept.push(format!("{level} in vCenter {} ({why})", c.server));
                    stopped = true;
                    break;
                }
                Err(e) => {
                    return Err(
                        PhaseError::from(e).context(format!("removing folder {level} from vCenter {}", c.server))
                    );
                }
            }
            if level == c.from {
                break;
            }
        }
        if stopped {
            remaining.push(c.clone());
        }
    }
    remaining.reverse();
    cx.state().put(CREATED_KEY, &remaining)?;
    let mut msg = if removed.is_empty() {
        "removed no folder".to_string()
    } else {
        format!("removed the folder(s) this migration created: {}", removed.join(", "))
    };
    if !kept.is_empty() {
        let kept = format!("kept {} because it is not empty; remove it by hand once it is", kept.join("; "));
        cx.log().event(EventType::Warning, "FolderKept", &kept);
        msg.push_str("; ");
        msg.push_str(&kept);
    }
    Ok(done(msg))
}

export_phase!(CreateFolder);

#[cfg(test)]
mod tests;
