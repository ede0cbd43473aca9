//! Cleanup: remove the source vCenter(s) from the cluster's configuration: their entries
//! and failure domains from the Infrastructure, their entries from the cloud provider
//! config (and, in the INI format, the `[Workspace]` default placement moves to the
//! target), and their keys from `kube-system/vsphere-creds`.
//!
//! The CA certificates the migration was given for a source (`spec.vcenters[].caSecret`)
//! leave the cloud config's `ca-bundle.pem`, except any a target was given too (one
//! corporate CA often signs both vCenters). The Proxy's trusted CA bundle is the whole
//! cluster's trust (proxies, registries, identity providers): a source CA there stays, and
//! the result says so.
//!
//! The source is what the host recorded when the migration started, never "the first
//! vCenter listed now" (after a first run that is the target: the Go controller's re-run
//! removed the target). The phase refuses to run while a machine still runs in a source
//! vCenter, or while a target is missing from the Infrastructure or has no credentials.
//! What the installer made for the cluster in the source vCenters (its tag category and VM
//! folder) stays unless `spec.cleanup.sourceVSphereObjects` asks for its removal; either
//! way the result names it (module `source_objects`).
//!
//! Rollback restores the before-images (the host's journal: the configuration, and the
//! source's category, tags and folder if they were removed).

use vsm_common::cloud_config::{self, Workspace};
use vsm_common::shared_state::TARGET_CA_FINGERPRINTS;
use vsm_common::trust::{self, CLOUD_CA_KEY, PROXY, TRUSTED_CA_KEY};
use vsm_common::{creds, infra, machines, pem};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{
    CLOUD_CONFIG, CLOUD_CONFIG_KEY, CLOUD_CONFIG_NAMESPACE, INFRASTRUCTURE, MACHINE_API_NAMESPACE, VSPHERE_CREDS,
    VSPHERE_CREDS_NAMESPACE,
};

const POLL_MS: u64 = 30_000;

pub struct Cleanup;

impl Phase for Cleanup {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "Cleanup",
            env!("CARGO_PKG_VERSION"),
            "Remove the source vCenter from the Infrastructure, the cloud provider config and vsphere-creds",
        )
        .kube("config.openshift.io", "infrastructures", &["get", "update"], None)
        .kube("", "configmaps", &["get", "update"], Some(CLOUD_CONFIG_NAMESPACE))
        .kube("", "secrets", &["get", "update"], Some(VSPHERE_CREDS_NAMESPACE))
        // The vCenters' CA Secrets may be in any namespace the spec names.
        .kube("", "secrets", &["get"], None)
        .kube("config.openshift.io", "proxies", &["get"], None)
        .kube("machine.openshift.io", "machines", &["list"], Some(MACHINE_API_NAMESPACE))
        // The installer's category and folder in the source (spec.cleanup.sourceVSphereObjects).
        .vsphere(VsphereCapability::ReadInventory)
        .vsphere(VsphereCapability::ManageTags)
        .vsphere(VsphereCapability::ManageFolders)
        .with_rollback()
        .deadline_minutes(15)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let sources: Vec<&str> = cx.source_servers().iter().map(String::as_str).collect();
    if sources.is_empty() {
        return Err(PhaseError::invalid(
            "no source vCenter was recorded when the migration started: refusing to guess which one to remove",
        ));
    }
    let targets = spec.target_servers();
    if let Some(both) = sources.iter().find(|s| targets.contains(s)) {
        return Err(PhaseError::invalid(format!(
            "vCenter {both} is recorded as a source and named by spec.failureDomains as a target: refusing to remove it"
        )));
    }

    let mut infra_obj = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let infra_id = infra::infra_id(&infra_obj)?.to_string();
    let vsphere = infra::vsphere_spec(&infra_obj);
    let listed = infra::vcenter_servers(&vsphere);
    let missing: Vec<&str> = targets.iter().copied().filter(|t| !listed.iter().any(|l| l == t)).collect();
    if !missing.is_empty() {
        return Err(PhaseError::invalid(format!(
            "the Infrastructure does not list target vCenter(s) {}: refusing to remove the source (UpdateInfrastructure must have run)",
            missing.join(", ")
        )));
    }
    let mut secret = cx.kube().get_required(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS)?;
    let no_creds: Vec<&str> = targets.iter().copied().filter(|t| creds::creds(&secret, t).is_none()).collect();
    if !no_creds.is_empty() {
        return Err(PhaseError::invalid(format!(
            "{VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS} has no credentials for target vCenter(s) {}: refusing to remove the source's",
            no_creds.join(", ")
        )));
    }

    let machines = cx.kube().list(&types::MACHINE, Some(MACHINE_API_NAMESPACE), None)?;
    let on_source: Vec<String> = machines
        .iter()
        .filter(|m| sources.contains(&machines::machine_server(m)))
        .map(|m| {
            format!("{} ({}{})", m.name(), machines::machine_server(m), if m.is_deleting() { ", deleting" } else { "" })
        })
        .collect();
    if !on_source.is_empty() {
        return Ok(wait(
            POLL_MS,
            0,
            format!(
                "{} machine(s) still run in the source vCenter, which cannot be removed before they are gone: {}",
                on_source.len(),
                machines::list_some(&on_source, 3)
            ),
        ));
    }

    // The installer's objects in the source vCenters: recorded before the Infrastructure
    // loses the source failure domains, removed (if asked) while the source's credentials
    // are still in vsphere-creds.
    let objects = source_objects::recorded(cx, &vsphere, &sources, &infra_id)?;
    let mut removed = Vec::new();
    let mut notes = String::new();
    if spec.cleanup.source_vsphere_objects {
        let (gone, stayed) = source_objects::remove(cx, &objects)?;
        if !gone.is_empty() {
            removed.push(format!("source vSphere objects: {}", gone.join("; ")));
        }
        if !stayed.is_empty() {
            notes.push_str(&format!("; left in the source: {}", stayed.join("; ")));
        }
    } else {
        let present = source_objects::present(cx, &objects);
        if !present.is_empty() {
            notes.push_str(&format!(
                "; left in the source (spec.cleanup.sourceVSphereObjects removes them): {}",
                present.join("; ")
            ));
        }
    }

    let source_only = source_only_cas(cx, &sources, &targets)?;

    // Infrastructure: the source vCenters and their failure domains.
    let removal = infra::remove_servers(&vsphere, &sources)?;
    if removal.changed() {
        infra_obj.set(infra::VSPHERE_SPEC, removal.vsphere.clone());
        cx.kube().replace(&types::INFRASTRUCTURE, &infra_obj)?;
        let mut what = format!("Infrastructure: vCenter {}", removal.removed_vcenters.join(", "));
        if !removal.removed_failure_domains.is_empty() {
            what.push_str(&format!(" and failure domain(s) {}", removal.removed_failure_domains.join(", ")));
        }
        removed.push(what);
    }

    // The cloud provider config.
    let cm_name = format!("{CLOUD_CONFIG_NAMESPACE}/{CLOUD_CONFIG}");
    if let Some(mut cm) = cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)? {
        let pointer = format!("/data/{CLOUD_CONFIG_KEY}");
        let text = cm.str_at(&pointer).unwrap_or_default().to_string();
        let mut edited = text.clone();
        for s in &sources {
            edited =
                cloud_config::remove_vcenter(&edited, s).context(format!("removing vCenter {s} from {cm_name}"))?;
        }
        if let Some(ws) = cloud_config::workspace_server(&edited).filter(|w| sources.contains(&w.as_str())) {
            let fd = spec.default_domain().ok_or_else(|| {
                PhaseError::invalid(
                    "neither spec.machineSetConfig.failureDomain nor spec.controlPlaneMachineSetConfig names one of spec.failureDomains",
                )
            })?;
            let place = Workspace {
                server: fd.server.clone(),
                datacenter: fd.topology.datacenter.clone(),
                default_datastore: fd.topology.datastore.rsplit('/').next().unwrap_or_default().to_string(),
                folder: fd.topology.folder_or_default(&infra_id),
                resource_pool: machines::resource_pool(fd),
            };
            edited =
                cloud_config::set_workspace(&edited, &place).context(format!("updating [Workspace] of {cm_name}"))?;
            removed.push(format!("{cm_name} [Workspace] moved from {ws} to {}", fd.server));
        }
        let mut write = false;
        if edited != text {
            cm.set(&pointer, Value::String(edited));
            removed.push(format!("{cm_name}: the entry of {}", sources.join(", ")));
            write = true;
        }
        let bundle_pointer = format!("/data/{CLOUD_CA_KEY}");
        if let Some(bundle) = cm.str_at(&bundle_pointer).map(str::to_string)
            && !source_only.is_empty()
        {
            let (left, gone) = pem::remove(&bundle, &source_only)
                .map_err(|e| PhaseError::invalid(format!("{cm_name} key {CLOUD_CA_KEY} {e}: refusing to edit it")))?;
            if !gone.is_empty() {
                cm.set(&bundle_pointer, Value::String(left));
                let short: Vec<&str> = gone.iter().map(|f| pem::short(f)).collect();
                removed.push(format!("{cm_name} {CLOUD_CA_KEY}: source CA(s) {}", short.join(", ")));
                write = true;
            }
        }
        if write {
            cx.kube().replace(&types::CONFIG_MAP, &cm)?;
        }
    }
    let kept = source_cas_in_proxy_bundle(cx, &source_only)? + &notes;

    // Credentials.
    let mut data = creds::data(&secret);
    let keys: Vec<String> = sources.iter().flat_map(|s| creds::remove(&mut data, s)).collect();
    if !keys.is_empty() {
        secret.set("/data", Value::Object(data));
        cx.kube().replace(&types::SECRET, &secret)?;
        removed.push(format!("{VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS}: {}", keys.join(", ")));
    }

    if removed.is_empty() {
        return Ok(done(format!(
            "nothing left to remove: source vCenter(s) {} are gone from the Infrastructure, the cloud provider config and vsphere-creds{kept}",
            sources.join(", ")
        )));
    }
    let message = format!("removed source vCenter(s) {}: {}{kept}", sources.join(", "), removed.join("; "));
    cx.log().event(EventType::Normal, "SourceRemoved", &message);
    Ok(done(message))
}

/// Fingerprints of the CA certificates given for a source and for no target.
fn source_only_cas(cx: &Cx, sources: &[&str], targets: &[&str]) -> Result<Vec<String>, PhaseError> {
    let mut keep: Vec<String> = cx.shared().get_json(TARGET_CA_FINGERPRINTS)?.unwrap_or_default();
    for t in targets {
        keep.extend(trust::vcenter_ca(cx, t)?.into_iter().map(|c| c.fingerprint));
    }
    let mut only = Vec::new();
    for s in sources {
        for c in trust::vcenter_ca(cx, s)? {
            if !keep.contains(&c.fingerprint) && !only.contains(&c.fingerprint) {
                only.push(c.fingerprint);
            }
        }
    }
    Ok(only)
}

/// A note naming the source CAs the Proxy's trusted CA bundle still holds ("" for none).
fn source_cas_in_proxy_bundle(cx: &Cx, source_only: &[String]) -> Result<String, PhaseError> {
    if source_only.is_empty() {
        return Ok(String::new());
    }
    let Some(proxy) = cx.kube().get(&types::PROXY, None, PROXY)? else { return Ok(String::new()) };
    let Some(name) = trust::proxy_trusted_ca(&proxy) else { return Ok(String::new()) };
    let Some(cm) = cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), name)? else {
        return Ok(String::new());
    };
    let held = pem::certificates(cm.str_at(&format!("/data/{TRUSTED_CA_KEY}")).unwrap_or_default()).unwrap_or_default();
    let kept: Vec<&str> =
        held.iter().filter(|c| source_only.contains(&c.fingerprint)).map(|c| pem::short(&c.fingerprint)).collect();
    Ok(match kept.is_empty() {
        true => String::new(),
        false => format!(
            "; left in {} (the whole cluster's trust, the administrator's to change): source CA(s) {}",
            trust::describe(name),
            kept.join(", ")
        ),
    })
}

export_phase!(Cleanup);

mod source_objects;

#[cfg(test)]
mod tests;
