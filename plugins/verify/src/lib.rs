//! Verify: wait (within the phase deadline; the Go controller failed on its first look)
//! until the migration's end state holds everywhere:
//! - the Infrastructure lists every target vCenter and failure domain, and no source;
//! - the cloud provider config lists every target and no source (INI: nor as
//!   `[Workspace]`); vsphere-creds has the targets' keys and none of the sources';
//! - every Machine runs in a target vCenter and is Running with a Ready Node, every Node
//!   on vSphere is Ready and belongs to such a Machine (Nodes of another platform are
//!   noted, not waited for); no MachineSet in a source wants machines; every replacement
//!   CreateWorkers planned exists in its target vCenter; the ControlPlaneMachineSet is
//!   Active in exactly the failure domains of `spec.controlPlaneMachineSetConfig`;
//! - every ClusterOperator is Available and not Degraded;
//!
//! then scales the cluster-version operator back to the replica count DisableCVO recorded
//! (never a fixed 1) and waits until it is Ready. Rollback restores the CVO's before-image
//! (scaled down again, so earlier rollbacks are not fought by it).

use std::collections::BTreeSet;

use vsm_common::machines::{self, Readiness};
use vsm_common::replacements::Replacement;
use vsm_common::shared_state::{CVO_REPLICAS, MACHINE_SET_REPLACEMENTS};
use vsm_common::{cloud_config, creds, health, infra};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{
    CLOUD_CONFIG, CLOUD_CONFIG_KEY, CLOUD_CONFIG_NAMESPACE, CPMS, CVO, CVO_NAMESPACE, INFRASTRUCTURE,
    MACHINE_API_NAMESPACE, VSPHERE_CREDS, VSPHERE_CREDS_NAMESPACE,
};

/// Phase state: set (to the summary of the checks) once the checks passed and the CVO was
/// scaled back.
const RESTORED_KEY: &str = "cvo-restored";
const POLL_MS: u64 = 15_000;
const NS: Option<&str> = Some(MACHINE_API_NAMESPACE);

pub struct Verify;

impl Phase for Verify {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "Verify",
            env!("CARGO_PKG_VERSION"),
            "Check that the cluster runs only in the target vCenters and is healthy, then restore the cluster-version operator",
        )
        .kube("config.openshift.io", "infrastructures", &["get"], None)
        .kube("config.openshift.io", "clusteroperators", &["list"], None)
        .kube("", "configmaps", &["get"], Some(CLOUD_CONFIG_NAMESPACE))
        .kube("", "secrets", &["get"], Some(VSPHERE_CREDS_NAMESPACE))
        .kube("machine.openshift.io", "machines", &["list"], NS)
        .kube("machine.openshift.io", "machinesets", &["list"], NS)
        .kube("machine.openshift.io", "controlplanemachinesets", &["get"], NS)
        .kube("", "nodes", &["list"], None)
        .kube("apps", "deployments", &["get", "patch"], Some(CVO_NAMESPACE))
        .with_rollback()
        .deadline_minutes(45)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        let restored = cx.backup().restore_all()?;
        cx.state().delete(RESTORED_KEY)?;
        Ok(done(match restored {
            0 => "nothing to undo: the cluster-version operator was not touched".to_string(),
            _ => "the cluster-version operator is scaled down again, as before Verify".to_string(),
        }))
    }
}

/// Everything that is not (yet) as the migration should leave it, and notes.
#[derive(Debug, Default)]
struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
    checked: usize,
}

impl Findings {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.problems.push(problem());
        }
    }
}

fn configuration(cx: &Cx, f: &mut Findings, sources: &[String], targets: &[&str]) -> Result<usize, PhaseError> {
    let spec = cx.spec()?;
    let infra_obj = cx.kube().get_required(&types::INFRASTRUCTURE, None, INFRASTRUCTURE)?;
    let vsphere = infra::vsphere_spec(&infra_obj);
    let listed = infra::vcenter_servers(&vsphere);
    let fds = infra::failure_domains(&vsphere);
    let fd_field = |fd: &Value, k: &str| fd.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    for t in targets {
        f.check(listed.iter().any(|l| l == t), || format!("the Infrastructure does not list target vCenter {t}"));
    }
    for fd in &spec.failure_domains {
        f.check(fds.iter().any(|x| fd_field(x, "name") == fd.name && fd_field(x, "server") == fd.server), || {
            format!("the Infrastructure has no failure domain {} in vCenter {}", fd.name, fd.server)
        });
    }
    for s in sources {
        f.check(!listed.contains(s), || format!("the Infrastructure still lists source vCenter {s}"));
        let left: Vec<String> =
            fds.iter().filter(|x| &fd_field(x, "server") == s).map(|x| fd_field(x, "name")).collect();
        f.check(left.is_empty(), || {
            format!("the Infrastructure still has failure domain(s) {} in source vCenter {s}", left.join(", "))
        });
    }

    let cm = cx.kube().get(&types::CONFIG_MAP, Some(CLOUD_CONFIG_NAMESPACE), CLOUD_CONFIG)?;
    let text = cm.as_ref().and_then(|c| c.str_at(&format!("/data/{CLOUD_CONFIG_KEY}"))).unwrap_or_default().to_string();
    match cloud_config::vcenters(&text) {
        Err(e) => f.check(false, || format!("{CLOUD_CONFIG_NAMESPACE}/{CLOUD_CONFIG}: {e}")),
        Ok(in_config) => {
            for t in targets {
                f.check(in_config.iter().any(|v| &v.server == t), || {
                    format!("the cloud provider config does not list target vCenter {t}")
                });
            }
            for s in sources {
                f.check(!in_config.iter().any(|v| &v.server == s), || {
                    format!("the cloud provider config still lists source vCenter {s}")
                });
            }
            if let Some(ws) = cloud_config::workspace_server(&text) {
                f.check(!sources.contains(&ws), || {
                    format!("the cloud provider config's [Workspace] still names source vCenter {ws}")
                });
            }
        }
    }

    let secret = cx.kube().get_required(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS)?;
    let keys = creds::data(&secret);
    for t in targets {
        f.check(creds::creds(&secret, t).is_some(), || {
            format!("{VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS} has no credentials for target vCenter {t}")
        });
    }
    for s in sources {
        let left: Vec<String> =
            [creds::username_key(s), creds::password_key(s)].into_iter().filter(|k| keys.contains_key(k)).collect();
        f.check(left.is_empty(), || format!("{VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS} still has {}", left.join(", ")));
    }
    Ok(listed.len())
}

/// Whether a Node may be a vSphere VM. One whose providerID names another platform (a
/// bare-metal or cloud node of a mixed cluster) runs in no vCenter: the migration neither
/// moves it nor waits for it. A Node without a providerID yet (the cloud controller manager
/// sets it) may be a VM the migration must account for.
fn on_vsphere(node: &Object) -> bool {
    node.str_at("/spec/providerID").is_none_or(|id| id.is_empty() || id.starts_with("vsphere://"))
}

fn machines_and_nodes(
    cx: &Cx,
    f: &mut Findings,
    sources: &[String],
    targets: &[&str],
) -> Result<(usize, usize), PhaseError> {
    let spec = cx.spec()?;
    let all = cx.kube().list(&types::MACHINE, NS, None)?;
    let (nodes, elsewhere_nodes): (Vec<Object>, Vec<Object>) =
        cx.kube().list(&types::NODE, None, None)?.into_iter().partition(on_vsphere);
    let elsewhere: Vec<String> = all
        .iter()
        .filter(|m| !targets.contains(&machines::machine_server(m)))
        .map(|m| format!("{} ({:?})", m.name(), machines::machine_server(m)))
        .collect();
    f.check(elsewhere.is_empty(), || {
        format!("machine(s) outside the target vCenters: {}", machines::list_some(&elsewhere, 3))
    });
    let r = Readiness::of(&all, &nodes);
    f.check(r.failed.is_empty(), || format!("failed machine(s): {}", machines::list_some(&r.failed, 3)));
    f.check(r.waiting.is_empty(), || format!("machine(s) not ready: {}", machines::list_some(&r.waiting, 3)));

    let owned: BTreeSet<&str> = all.iter().filter_map(machines::node_ref).collect();
    let orphans: Vec<String> =
        nodes.iter().filter(|n| !owned.contains(n.name())).map(|n| n.name().to_string()).collect();
    f.check(orphans.is_empty(), || {
        format!("node(s) without a machine in a target vCenter: {}", machines::list_some(&orphans, 3))
    });
    let unready = health::nodes(&nodes);
    f.check(unready.is_healthy(), || unready.summary(3));
    if !elsewhere_nodes.is_empty() {
        let names: Vec<String> = elsewhere_nodes.iter().map(|n| n.name().to_string()).collect();
        f.notes.push(format!(
            "{} node(s) on another platform left as they are: {}",
            names.len(),
            machines::list_some(&names, 3)
        ));
    }

    let sets = cx.kube().list(&types::MACHINE_SET, NS, None)?;
    for s in sets.iter().filter(|s| sources.iter().any(|src| src == machines::machine_set_server(s))) {
        let n = s.i64_at("/spec/replicas").unwrap_or(1);
        f.check(n == 0, || format!("MachineSet {} in a source vCenter still wants {n} machine(s)", s.name()));
        if n == 0 {
            f.notes.push(format!(
                "MachineSet {} (source vCenter, 0 replicas) is kept for a rollback; delete it when satisfied",
                s.name()
            ));
        }
    }

    // Every replacement CreateWorkers planned exists in its target failure domain's vCenter.
    let plan: Vec<Replacement> = cx.shared().get_json(MACHINE_SET_REPLACEMENTS)?.unwrap_or_default();
    for r in &plan {
        match sets.iter().find(|s| s.name() == r.name) {
            None => {
                f.check(false, || format!("MachineSet {} (the replacement of {}) does not exist", r.name, r.source))
            }
            Some(s) => {
                let server = machines::machine_set_server(s);
                f.check(server == r.server, || {
                    format!(
                        "MachineSet {} (the replacement of {}) puts machines in {server:?}, not {}",
                        r.name, r.source, r.server
                    )
                });
            }
        }
    }
    if !plan.is_empty() {
        let per_domain: Vec<String> =
            plan.iter().map(|r| format!("{}→{} ({})", r.source, r.name, r.failure_domain)).collect();
        f.notes.push(format!("{} MachineSet(s) replaced: {}", plan.len(), machines::list_some(&per_domain, 6)));
    }

    match cx.kube().get(&types::CONTROL_PLANE_MACHINE_SET, NS, CPMS)? {
        None => f.check(false, || format!("ControlPlaneMachineSet {MACHINE_API_NAMESPACE}/{CPMS} does not exist")),
        Some(cpms) => {
            let state = cpms.str_at("/spec/state").unwrap_or("Inactive").to_string();
            f.check(state == "Active", || format!("the ControlPlaneMachineSet is {state}, not Active"));
            let names: Vec<String> = cpms
                .array_at(&format!("{}/failureDomains/vsphere", machines::CPMS_TEMPLATE))
                .iter()
                .filter_map(|d| d.get("name").and_then(Value::as_str).map(String::from))
                .collect();
            let foreign: Vec<&String> = names.iter().filter(|n| spec.failure_domain(n).is_none()).collect();
            f.check(foreign.is_empty(), || {
                format!(
                    "the ControlPlaneMachineSet uses failure domain(s) {foreign:?} that are not the migration's targets"
                )
            });
            let wanted: BTreeSet<&str> = spec.control_plane_machine_set_config.domains().into_iter().collect();
            let has: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            f.check(foreign.is_empty() && has == wanted, || {
                format!(
                    "the ControlPlaneMachineSet's failure domains are {has:?}, not spec.controlPlaneMachineSetConfig's {wanted:?}"
                )
            });
        }
    }
    Ok((all.len(), nodes.len()))
}

/// Scale the CVO back to the remembered count (again whenever it differs) and wait until
/// it is Ready. `notes` (the checks' summary) is kept with the mark that the checks passed,
/// so later calls only watch the CVO and still report it.
fn restore_cvo(cx: &Cx, notes: &str) -> Step {
    let what = format!("the cluster-version operator (Deployment {CVO_NAMESPACE}/{CVO})");
    let cvo = cx.kube().get_required(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO)?;
    let current = cvo.i64_at("/spec/replicas").unwrap_or(1);
    let want = match cx.shared().get_json::<i64>(CVO_REPLICAS)? {
        Some(n) if n >= 0 => n,
        Some(n) => {
            return Err(PhaseError::invalid(format!("migration state {CVO_REPLICAS} holds {n}, not a replica count")));
        }
        None if current > 0 => current,
        None => {
            return Err(PhaseError::invalid(format!(
                "{what} is at 0 replicas and DisableCVO recorded no original count (migration state {CVO_REPLICAS}): scale it back by hand"
            )));
        }
    };
    if current != want {
        cx.kube().merge_patch(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO, &json!({"spec": {"replicas": want}}))?;
        cx.log().event(EventType::Normal, "CVORestored", &format!("scaled {what} back to {want} replica(s)"));
    }
    let notes = match cx.state().get(RESTORED_KEY) {
        Some(recorded) => recorded,
        None => {
            cx.state().set(RESTORED_KEY, notes)?;
            notes.to_string()
        }
    };
    if cx.dry_run() {
        return Ok(done(format!("would scale {what} back to {want} replica(s)")));
    }
    let cvo = cx.kube().get_required(&types::DEPLOYMENT, Some(CVO_NAMESPACE), CVO)?;
    let status = |k: &str| cvo.i64_at(&format!("/status/{k}")).unwrap_or(0);
    let ready = cvo.i64_at("/status/observedGeneration").unwrap_or(0) >= cvo.generation()
        && status("replicas") == want
        && status("updatedReplicas") == want
        && status("readyReplicas") == want
        && status("availableReplicas") == want
        && status("unavailableReplicas") == 0;
    if !ready {
        return Ok(wait(
            5_000,
            90,
            format!(
                "migration verified; waiting for {what} to be Ready at {want} replica(s): {} ready, {} available, {} updated",
                status("readyReplicas"),
                status("availableReplicas"),
                status("updatedReplicas")
            ),
        ));
    }
    Ok(done(format!("migration verified{notes}; {what} is back at {want} replica(s) and Ready")))
}

fn execute(cx: &Cx) -> Step {
    let spec = cx.spec()?;
    let sources = cx.source_servers().to_vec();
    let targets = spec.target_servers();
    if cx.state().get(RESTORED_KEY).is_some() {
        return restore_cvo(cx, "");
    }
    let mut f = Findings::default();
    let vcenters = configuration(cx, &mut f, &sources, &targets)?;
    let (machine_count, node_count) = machines_and_nodes(cx, &mut f, &sources, &targets)?;
    let tolerated = if vcenters > 1 { spec.health.tolerated_operators.clone() } else { Vec::new() };
    let operators = cx.kube().list(&types::CLUSTER_OPERATOR, None, None)?;
    let ops = health::operators(&operators, &tolerated);
    f.check(ops.is_healthy(), || ops.summary(4));

    if !f.problems.is_empty() {
        return Ok(wait(
            POLL_MS,
            percent(f.checked - f.problems.len(), f.checked),
            format!(
                "verifying the migration ({} problem(s)): {}",
                f.problems.len(),
                f.problems.iter().take(4).cloned().collect::<Vec<_>>().join("; ")
            ),
        ));
    }
    let mut notes = format!(
        ": {machine_count} machines and {node_count} nodes in {}, no trace of {} left, {} ClusterOperators healthy",
        targets.join(", "),
        sources.join(", "),
        operators.len()
    );
    if !f.notes.is_empty() {
        notes.push_str(&format!(" ({})", f.notes.join("; ")));
    }
    restore_cvo(cx, &notes)
}

export_phase!(Verify);
