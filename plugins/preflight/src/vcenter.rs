//! Checks against the vCenters: a login to each (with the TLS settings of the spec), the
//! source datacenters, every target topology path.

use vsm_common::infra;
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
fn expect(cx: &Cx, server: &str, kind: ObjectKind, path: &str, what: String, f: &mut Findings) -> bool {
    match cx.vsphere().lookup(server, kind, path) {
        Ok(Some(_)) => true,
        Ok(None) => {
            f.problem(format!("{what} {path} not found in vCenter {server}"));
            false
        }
        Err(e) => {
            vs_problem(f, format!("looking up {what} {path} in vCenter {server}"), &e);
            false
        }
    }
}

/// `vcenters[server].datacenters` of the Infrastructure.
fn datacenters_of(vsphere: &Value, server: &str) -> Vec<String> {
    vsphere
        .get("vcenters")
        .and_then(Value::as_array)
        .and_then(|v| v.iter().find(|v| v.get("server").and_then(Value::as_str) == Some(server)))
        .and_then(|v| v.get("datacenters"))
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
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
        for dc in datacenters_of(&vsphere, source) {
            expect(cx, source, ObjectKind::Datacenter, &format!("/{dc}"), "source datacenter".into(), f);
        }
        check_source_failure_domains(cx, &vsphere, source, f);
    }
    for server in spec.target_servers() {
        if !login(cx, server, "target", f) {
            continue;
        }
        let mut objects = 0;
        for fd in spec.failure_domains.iter().filter(|fd| fd.server == server) {
            for (kind, path, what) in required_objects(fd) {
                objects +=
                    usize::from(expect(cx, server, kind, &path, format!("failure domain {}: {what}", fd.name), f));
            }
            let Some(id) = infra_id else { continue };
            let folder = fd.topology.folder_or_default(id);
            match cx.vsphere().lookup(server, ObjectKind::Folder, folder.trim_end_matches('/')) {
                Ok(Some(_)) => objects += 1,
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
    }
}
