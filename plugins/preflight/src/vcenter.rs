//! Checks against the vCenters: a login to each (with the TLS settings of the spec), the
//! source datacenters, every target topology path, and the target user's privileges on
//! every target object (the list the OpenShift installer checks, `vsm_common::privileges`).

use vsm_common::infra;
use vsm_common::privileges::{Group, Verdict, verdict};
use vsm_sdk::VsphereError;
use vsm_sdk::prelude::*;
use vsm_sdk::spec::FailureDomain;

use crate::Findings;
use crate::topology::required_objects;

fn vs_problem(f: &mut Findings, what: String, e: &VsphereError) {
    let transient = matches!(e, VsphereError::Transient(_) | VsphereError::Timeout(_));
    let detail = match e {
        VsphereError::AuthFailed(m) => format!("login failed ({m}): check the username and password"),
        VsphereError::Tls(m) => {
            format!("its TLS certificate was refused ({m}): set spec.vcenters[].caSecret or thumbprint")
        }
        VsphereError::PermissionDenied(m) => format!("permission denied ({m})"),
        VsphereError::Transient(m) | VsphereError::Timeout(m) => format!("not answering ({m})"),
        VsphereError::Forbidden(m) => format!("not usable ({m})"),
        VsphereError::Invalid(m) | VsphereError::NotFound(m) | VsphereError::AlreadyExists(m) => m.clone(),
    };
    let text = format!("{what}: {detail}");
    if transient { f.transient(text) } else { f.problem(text) }
}

/// Log in to `server`; false (and a problem) if that fails.
fn login(cx: &Cx, server: &str, role: &str, f: &mut Findings) -> bool {
    match cx.vsphere().about(server) {
        Ok(a) => {
            f.checked(format!("{role} vCenter {server} ({} {})", a.product, a.version));
            true
        }
        Err(e) => {
            vs_problem(f, format!("{role} vCenter {server}"), &e);
            false
        }
    }
}

/// Look up one object; a problem if it is missing or the lookup fails.
fn expect(cx: &Cx, server: &str, kind: ObjectKind, path: &str, what: String, f: &mut Findings) -> Option<ObjectRef> {
    match cx.vsphere().lookup(server, kind, path) {
        Ok(Some(found)) => Some(found),
        Ok(None) => {
            f.problem(format!("{what} {path} not found in vCenter {server}"));
            None
        }
        Err(e) => {
            vs_problem(f, format!("looking up {what} {path} in vCenter {server}"), &e);
            None
        }
    }
}

/// The privileges checked on an object of this kind (a template VM has none of its own).
fn group_of(kind: ObjectKind) -> Option<Group> {
    match kind {
        ObjectKind::Datacenter => Some(Group::Datacenter),
        ObjectKind::ComputeCluster => Some(Group::Cluster),
        ObjectKind::Datastore => Some(Group::Datastore),
        ObjectKind::Network => Some(Group::Portgroup),
        ObjectKind::ResourcePool => Some(Group::ResourcePool),
        ObjectKind::Folder => Some(Group::Folder),
        ObjectKind::VirtualMachine => None,
    }
}

/// The target user's privileges on every object found, all named in one problem.
fn check_privileges(cx: &Cx, server: &str, mut objects: Vec<(Group, ObjectRef)>, f: &mut Findings) {
    objects.sort_by(|a, b| (a.0, &a.1.moref).cmp(&(b.0, &b.1.moref)));
    objects.dedup_by(|a, b| a.0 == b.0 && a.1.moref == b.1.moref);
    let refs: Vec<ObjectRef> = objects.iter().map(|(_, r)| r.clone()).collect();
    let report = match cx.vsphere().user_privileges(server, &refs) {
        Ok(r) => r,
        Err(e) => return vs_problem(f, format!("reading the target user's privileges in vCenter {server}"), &e),
    };
    let mut missing = Vec::new();
    let mut unverifiable = Vec::new();
    for ((group, obj), held) in objects.iter().zip(&report.entities) {
        match verdict(*group, &held.privileges, &report.defined) {
            Verdict::Held => {}
            Verdict::Missing(p) => missing.push(format!("{} {}: {}", group.noun(), obj.path, p.join(", "))),
            Verdict::Unverifiable => unverifiable.push(format!("{} {}", group.noun(), obj.path)),
        }
    }
    if !missing.is_empty() {
        f.problem(format!(
            "the user of target vCenter {server} lacks privileges an OpenShift cluster needs (the installer's list; grant them, with propagation where an object's children need them too): {}",
            missing.join("; ")
        ));
    }
    if !unverifiable.is_empty() {
        f.problem(format!(
            "cannot verify the privileges of target vCenter {server}'s user on {}: the vCenter defines none of those OpenShift needs there",
            unverifiable.join(", ")
        ));
    }
    if missing.is_empty() && unverifiable.is_empty() {
        f.checked(format!(
            "target vCenter {server}: its user holds the privileges OpenShift needs on {} objects",
            objects.len()
        ));
    }
}

/// The source's failure domains as the Infrastructure describes them: what is missing is
/// worth knowing (a rollback scales the source machine sets back up there), not blocking.
fn check_source_failure_domains(cx: &Cx, vsphere: &Value, source: &str, f: &mut Findings) {
    let fds =
        infra::failure_domains(vsphere).iter().filter(|fd| fd.get("server").and_then(Value::as_str) == Some(source));
    let mut found = 0;
    for raw in fds {
        let Ok(fd) = serde_json::from_value::<FailureDomain>(raw.clone()) else {
            f.note(format!("source failure domain {} could not be read", raw["name"]));
            continue;
        };
        for (kind, path, what) in required_objects(&fd).into_iter().filter(|(k, _, _)| *k != ObjectKind::Datacenter) {
            match cx.vsphere().lookup(source, kind, &path) {
                Ok(Some(_)) => found += 1,
                Ok(None) => f.note(format!(
                    "source failure domain {}: {what} {path} not found in vCenter {source} (a rollback that scales the source machines back up needs it)",
                    fd.name
                )),
                Err(e) => vs_problem(f, format!("looking up {what} {path} in vCenter {source}"), &e),
            }
        }
    }
    if found > 0 {
        f.checked(format!("{found} source topology objects found in vCenter {source}"));
    }
}

pub fn check_vcenters(cx: &Cx, spec: &MigrationSpec, infra: Option<&Object>, infra_id: Option<&str>, f: &mut Findings) {
    let vsphere = infra.map(infra::vsphere_spec).unwrap_or_default();
    for source in cx.source_servers() {
        if !login(cx, source, "source", f) {
            continue;
        }
        for dc in infra::vcenter_datacenters(&vsphere, source) {
            expect(cx, source, ObjectKind::Datacenter, &format!("/{dc}"), "source datacenter".into(), f);
        }
        check_source_failure_domains(cx, &vsphere, source, f);
    }
    for server in spec.target_servers() {
        if !login(cx, server, "target", f) {
            continue;
        }
        let mut objects = 0;
        let mut privileged = Vec::new();
        if let Some(root) = expect(cx, server, ObjectKind::Folder, "/", "the root folder".into(), f) {
            privileged.push((Group::VCenter, root));
        }
        for fd in spec.failure_domains.iter().filter(|fd| fd.server == server) {
            for (kind, path, what) in required_objects(fd) {
                let Some(found) = expect(cx, server, kind, &path, format!("failure domain {}: {what}", fd.name), f)
                else {
                    continue;
                };
                objects += 1;
                if let Some(group) = group_of(kind) {
                    privileged.push((group, found));
                }
            }
            let Some(id) = infra_id else { continue };
            let folder = fd.topology.folder_or_default(id);
            match cx.vsphere().lookup(server, ObjectKind::Folder, folder.trim_end_matches('/')) {
                Ok(Some(found)) => {
                    objects += 1;
                    privileged.push((Group::Folder, found));
                }
                Ok(None) => {
                    let root = format!("/{}/vm", fd.topology.datacenter);
                    if matches!(cx.vsphere().lookup(server, ObjectKind::Folder, &root), Ok(Some(_))) {
                        f.note(format!(
                            "VM folder {folder} does not exist yet in vCenter {server}; CreateFolder will create it"
                        ));
                    } else {
                        f.problem(format!(
                            "failure domain {}: VM folder {folder} cannot be created: {root} not found in vCenter {server}",
                            fd.name
                        ));
                    }
                }
                Err(e) => vs_problem(f, format!("looking up VM folder {folder} in vCenter {server}"), &e),
            }
        }
        f.checked(format!("{objects} topology objects found in vCenter {server}"));
        check_privileges(cx, server, privileged, f);
    }
}
