//! ClusterOperator health. Four operators follow rules (see the module docs of `sim`);
//! the others keep whatever status they were seeded with.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::json;

use super::cloud_config;
use super::objects::{self as o, str_at};
use super::provider::{failure_domains, vcenter_servers};
use super::runtime::{Ctl, Shared, inc};
use super::vsphere::credentials_in;
use super::workloads::{pod_active, pod_ready};

const MANAGER: &str = "vsm-sim-operators";

/// The operators whose health the simulator computes.
pub const RULED: &[&str] = &["cloud-controller-manager", "storage", "machine-api", "machine-config"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    reason: &'static str,
    message: String,
    /// Also Available=False (not only Degraded).
    unavailable: bool,
    /// Pods are being replaced: Progressing=True.
    progressing: bool,
}

fn problem(reason: &'static str, message: String) -> Problem {
    Problem { reason, message, unavailable: false, progressing: false }
}

/// Health of the pods of a Deployment or DaemonSet: a problem while not every wanted pod
/// is Ready or an old pod is still terminating; unavailable when none is Ready.
fn pod_group(sh: &Shared, ns: &str, kind: &str, name: &str, what: &str) -> Option<Problem> {
    let (uid, want) = match kind {
        "Deployment" => {
            let d = sh
                .stores
                .deployments
                .state()
                .into_iter()
                .find(|d| d.namespace().as_deref() == Some(ns) && d.name_any() == name)?;
            (d.uid()?, d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize)
        }
        _ => {
            let ds = sh
                .stores
                .daemonsets
                .state()
                .into_iter()
                .find(|d| d.namespace().as_deref() == Some(ns) && d.name_any() == name)?;
            let want = ds.status.as_ref().map(|s| s.desired_number_scheduled).unwrap_or(0).max(0) as usize;
            (ds.uid()?, want)
        }
    };
    let pods: Vec<_> = sh
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect();
    let ready = pods.iter().filter(|p| pod_active(p) && pod_ready(p)).count();
    let leaving = pods.iter().filter(|p| !pod_active(p)).count();
    if ready >= want && leaving == 0 {
        return None;
    }
    Some(Problem {
        reason: "PodsNotReady",
        message: format!(
            "{what}: {ready}/{want} pods ready{}",
            if leaving > 0 { format!(", {leaving} terminating") } else { String::new() }
        ),
        unavailable: ready == 0 && want > 0,
        progressing: true,
    })
}

/// Problems per ruled operator, from the caches.
pub(crate) fn evaluate(sh: &Shared) -> BTreeMap<&'static str, Vec<Problem>> {
    let infra = sh.stores.infra.state().into_iter().find(|i| i.name_any() == o::INFRA_NAME);
    let infra = infra.map(|i| i.data.clone()).unwrap_or_default();
    let servers = vcenter_servers(&infra);
    let fds = failure_domains(&infra);
    let secret = sh.stores.creds.state().into_iter().next();
    let config = sh.stores.cloud_config.state().into_iter().next();

    let mut creds = Vec::new();
    for s in &servers {
        let vc = sh.vcenters.by_host(s);
        match secret.as_ref().and_then(|sec| credentials_in(sec, s)) {
            None => creds.push(problem(
                "VSphereCredentialsMissing",
                format!("vCenter {s} has no {s}.username/{s}.password in kube-system/vsphere-creds"),
            )),
            Some(c)
                if vc.is_some_and(|vc| {
                    c.username != vc.username || c.password.expose() != *vc.password.lock().expect("password lock")
                }) =>
            {
                creds.push(problem(
                    "VSphereLoginFailed",
                    format!("vCenter {s} rejects the credentials in vsphere-creds"),
                ))
            }
            Some(_) => {}
        }
    }
    let mut config_problems = Vec::new();
    let mut workspace = Vec::new();
    let text = config.as_ref().and_then(|c| c.data.as_ref()?.get(o::CLOUD_CONFIG_KEY).cloned());
    match text.as_deref().map(cloud_config::parse) {
        None => config_problems.push(problem(
            "VSphereCloudConfigMissing",
            "openshift-config/cloud-provider-config has no key config".into(),
        )),
        Some(Err(e)) => config_problems.push(problem("VSphereCloudConfigInvalid", format!("{e:#}"))),
        Some(Ok(parsed)) => {
            for s in &servers {
                match (parsed.vcenter(s), sh.vcenters.by_host(s)) {
                    (None, _) => config_problems.push(problem(
                        "VSphereCloudConfigIncomplete",
                        format!("vCenter {s} is not in openshift-config/cloud-provider-config"),
                    )),
                    (Some(_), None) => config_problems.push(problem(
                        "VSphereConnectionFailed",
                        format!("cannot connect to vCenter {s}: no such vCenter in this environment"),
                    )),
                    (Some(entry), Some(vc)) if entry.port != vc.port => config_problems.push(problem(
                        "VSphereConnectionFailed",
                        format!(
                            "cannot connect to vCenter {s}:{} (the cloud config's port); it listens on {}",
                            entry.port, vc.port
                        ),
                    )),
                    _ => {}
                }
            }
            for fd in &fds {
                if !servers.contains(&fd.server) {
                    config_problems.push(problem(
                        "VSphereFailureDomainInvalid",
                        format!("failure domain {} names vCenter {}, which is not in vcenters", fd.name, fd.server),
                    ));
                } else if let Some(vc) = parsed.vcenter(&fd.server)
                    && !vc.datacenters.contains(&fd.datacenter)
                {
                    config_problems.push(problem(
                        "VSphereCloudConfigIncomplete",
                        format!(
                            "datacenter {} of failure domain {} is not listed for vCenter {} in the cloud config",
                            fd.datacenter, fd.name, fd.server
                        ),
                    ));
                }
            }
            if let Some(ws) = parsed.workspace_server.filter(|ws| !servers.contains(ws)) {
                workspace.push(problem(
                    "VSphereWorkspaceInvalid",
                    format!("the cloud config [Workspace] names vCenter {ws}, which is not in the Infrastructure"),
                ));
            }
        }
    }

    let mut out: BTreeMap<&'static str, Vec<Problem>> = BTreeMap::new();
    let ccm = out.entry("cloud-controller-manager").or_default();
    ccm.extend(pod_group(
        sh,
        o::CCM_NS,
        "Deployment",
        "vsphere-cloud-controller-manager",
        "vsphere-cloud-controller-manager",
    ));
    ccm.extend(creds.iter().cloned());
    ccm.extend(config_problems.iter().cloned());

    let storage = out.entry("storage").or_default();
    storage.extend(pod_group(
        sh,
        o::CSI_NS,
        "Deployment",
        "vmware-vsphere-csi-driver-controller",
        "vSphere CSI driver controller",
    ));
    storage.extend(pod_group(sh, o::CSI_NS, "DaemonSet", "vmware-vsphere-csi-driver-node", "vSphere CSI driver node"));
    storage.extend(creds.iter().cloned());
    storage.extend(config_problems.iter().cloned());
    storage.extend(workspace);

    let mapi = out.entry("machine-api").or_default();
    mapi.extend(pod_group(sh, o::MACHINE_API_NS, "Deployment", "machine-api-controllers", "machine-api-controllers"));
    mapi.extend(creds);

    let mco = out.entry("machine-config").or_default();
    if servers.len() > 1 {
        mco.push(problem(
            "MultipleVCenters",
            format!("the Infrastructure lists {} vCenters; machine configs are rendered for one", servers.len()),
        ));
    }
    out
}

/// The conditions an operator with these problems reports.
fn desired_conditions(co: &DynamicObject, problems: &[Problem]) -> serde_json::Value {
    let reason = |ps: &[&Problem]| ps.iter().map(|p| p.reason).collect::<Vec<_>>().join("::");
    let message =
        |ps: &[&Problem]| ps.iter().map(|p| format!("{}: {}", p.reason, p.message)).collect::<Vec<_>>().join("\n");
    let all: Vec<&Problem> = problems.iter().collect();
    let unavailable: Vec<&Problem> = problems.iter().filter(|p| p.unavailable).collect();
    let progressing: Vec<&Problem> = problems.iter().filter(|p| p.progressing).collect();
    let name = co.name_any();
    o::conditions(
        co.data.pointer("/status/conditions"),
        &[
            if unavailable.is_empty() {
                ("Available", "True", "AsExpected", format!("{name} is available"))
            } else {
                ("Available", "False", "NoReadyPods", message(&unavailable))
            },
            if progressing.is_empty() {
                ("Progressing", "False", "AsExpected", String::new())
            } else {
                ("Progressing", "True", "PodsRestarting", message(&progressing))
            },
            if all.is_empty() {
                ("Degraded", "False", "AsExpected", String::new())
            } else {
                ("Degraded", "True", "Problems", String::new())
            },
            ("Upgradeable", "True", "AsExpected", String::new()),
        ],
    )
    .as_array()
    .cloned()
    .map(|mut conds| {
        // Reason and message of Degraded name every problem.
        if !all.is_empty() {
            conds[2]["reason"] = json!(reason(&all));
            conds[2]["message"] = json!(message(&all));
        }
        serde_json::Value::Array(conds)
    })
    .unwrap_or_default()
}

fn healthy(co: &DynamicObject) -> bool {
    let c = co.data.pointer("/status/conditions");
    o::condition_status(c, "Available") == Some("True") && o::condition_status(c, "Degraded") != Some("True")
}

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let problems = evaluate(&sh);
    for name in RULED {
        let Some(co) = sh.stores.operators.state().into_iter().find(|c| c.name_any() == *name) else { continue };
        let want = &problems[name];
        let conds = desired_conditions(&co, want);
        if o::covers(&co.data["status"], &json!({"conditions": conds})) {
            continue;
        }
        if !want.is_empty() && !healthy(&co) {
            // Already unhealthy: a changed message or availability is written at once.
            write(&sh, &co, conds).await?;
            continue;
        }
        let sh2 = sh.clone();
        sh.spawn_keyed(format!("operator/{name}"), Ctl::Operators, transition(sh2, name));
    }
    Ok(())
}

/// Turn Degraded after `operator_degrade` or recover after `operator_recover`, if the
/// rules still say so then.
async fn transition(sh: Arc<Shared>, name: &'static str) -> Result<()> {
    let unhealthy = !evaluate(&sh)[name].is_empty();
    sh.delay(if unhealthy { sh.opts.operator_degrade } else { sh.opts.operator_recover }).await;
    let problems = evaluate(&sh);
    let want = &problems[name];
    if want.is_empty() == unhealthy {
        return Ok(()); // changed again while waiting; the controller looks anew
    }
    let api = o::operators_api(&sh.client);
    let Some(co) = api.get_opt(name).await? else { return Ok(()) };
    write(&sh, &co, desired_conditions(&co, want)).await
}

async fn write(sh: &Shared, co: &DynamicObject, conds: serde_json::Value) -> Result<()> {
    let api = o::operators_api(&sh.client);
    if o::patch_status_if_changed(&api, co, json!({"conditions": conds}), MANAGER).await? {
        inc(&sh.counters.operator_transitions);
    }
    Ok(())
}

/// Conditions of a healthy operator (used by the seeder).
pub(crate) fn healthy_conditions(name: &str) -> serde_json::Value {
    let now = o::now();
    json!([
        {"type": "Available", "status": "True", "reason": "AsExpected", "message": format!("{name} is available"), "lastTransitionTime": now},
        {"type": "Progressing", "status": "False", "reason": "AsExpected", "message": "", "lastTransitionTime": now},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "lastTransitionTime": now},
        {"type": "Upgradeable", "status": "True", "reason": "AsExpected", "message": "", "lastTransitionTime": now},
    ])
}

/// `status` of a ClusterOperator is free-form for the rules' purposes; this reads the
/// Degraded message (tests and diagnostics).
pub fn degraded_message(co: &DynamicObject) -> Option<&str> {
    co.data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Degraded" && c["status"] == "True")
        .and_then(|c| str_at(c, "/message"))
}
