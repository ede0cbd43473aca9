//! Cleanup: remove the source vCenter(s) from the cluster's configuration: their entries
//! and failure domains from the Infrastructure, their entries from the cloud provider
//! config (and, in the INI format, the `[Workspace]` default placement moves to the
//! target), and their keys from `kube-system/vsphere-creds`.
//!
//! The source is what the host recorded when the migration started, never "the first
//! vCenter listed now" (after a first run that is the target: the Go controller's re-run
//! removed the target). The phase refuses to run while a machine still runs in a source
//! vCenter, or while a target is missing from the Infrastructure or has no credentials.
//! Rollback restores the before-images.

use vsm_common::cloud_config::{self, Workspace};
use vsm_common::{creds, infra, machines};
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
        .kube("machine.openshift.io", "machines", &["list"], Some(MACHINE_API_NAMESPACE))
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

    let mut removed = Vec::new();

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
        if edited != text {
            cm.set(&pointer, Value::String(edited));
            cx.kube().replace(&types::CONFIG_MAP, &cm)?;
            removed.push(format!("{cm_name}: the entry of {}", sources.join(", ")));
        }
    }

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
            "nothing left to remove: source vCenter(s) {} are gone from the Infrastructure, the cloud provider config and vsphere-creds",
            sources.join(", ")
        )));
    }
    let message = format!("removed source vCenter(s) {}: {}", sources.join(", "), removed.join("; "));
    cx.log().event(EventType::Normal, "SourceRemoved", &message);
    Ok(done(message))
}

export_phase!(Cleanup);

#[cfg(test)]
mod tests;
