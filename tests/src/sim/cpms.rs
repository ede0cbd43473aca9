//! The control-plane machine set operator: regenerates a deleted CPMS (Inactive), reports
//! status, and when Active replaces masters whose provider spec differs from the desired
//! one, one index at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use kube::ResourceExt;
use kube::api::{DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use super::nodes::{machine_ready, ready_nodes};
use super::objects::{self as o, i64_at, is_deleting, str_at};
use super::provider::{FailureDomain, failure_domains, inject_failure_domain};
use super::runtime::{Ctl, Shared, inc, wait_seen};

const MANAGER: &str = "vsm-sim-cpms";
const TEMPLATE: &str = "/spec/template/machines_v1beta1_machine_openshift_io";

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let cpms = sh.stores.cpms.state().into_iter().find(|c| c.name_any() == o::CPMS_NAME);
    let Some(cpms) = cpms else {
        // Like the real operator: nothing to generate from without masters (and no busy
        // loop before a cluster is seeded).
        let has_masters =
            sh.stores.machines.state().iter().any(|m| {
                m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master") && !is_deleting(m.as_ref())
            });
        if !has_masters {
            return Ok(());
        }
        let sh2 = sh.clone();
        sh.spawn_keyed("cpms/regenerate".into(), Ctl::Cpms, regenerate(sh2));
        return Ok(());
    };
    if is_deleting(cpms.as_ref()) {
        return Ok(());
    }
    let infra = sh.stores.infra.state().into_iter().find(|i| i.name_any() == o::INFRA_NAME);
    let infra_data = infra.as_ref().map(|i| i.data.clone()).unwrap_or(Value::Null);
    let infra_id = str_at(&infra_data, "/status/infrastructureName").unwrap_or_default().to_string();
    let plan = Plan::new(&cpms, &infra_data, &infra_id);
    let Some(selector) = o::selector_at(&cpms.data, "/spec/selector") else { return Ok(()) };
    let masters: Vec<Arc<DynamicObject>> =
        sh.stores.machines.state().into_iter().filter(|m| o::selector_matches(&selector, m.labels())).collect();

    let replicas = i64_at(&cpms.data, "/spec/replicas").unwrap_or(3).max(0) as u32;
    let ready_nodes = ready_nodes(&sh);
    let views: Vec<View> = masters
        .iter()
        .map(|m| {
            let index = o::machine_index(&m.name_any());
            let spec = m.data.pointer("/spec/providerSpec/value");
            let updated = match (index, &plan.desired) {
                (Some(i), Ok(_)) => plan
                    .desired_for(i)
                    .ok()
                    .zip(spec)
                    .is_some_and(|(want, have)| super::provider::same_provider_spec(&want, have)),
                _ => false,
            };
            View {
                m: m.clone(),
                index,
                updated,
                ready: machine_ready(&ready_nodes, m),
                deleting: is_deleting(m.as_ref()),
            }
        })
        .collect();
    let ready = views.iter().filter(|v| v.ready).count();
    let updated = views.iter().filter(|v| v.updated && !v.deleting).count();
    let failed = views.iter().find(|v| v.updated && str_at(&v.m.data, "/status/phase") == Some("Failed"));

    let active = str_at(&cpms.data, "/spec/state") == Some("Active");
    let progressing = updated < replicas as usize || views.len() > replicas as usize;
    let degraded = match (&plan.desired, failed) {
        (Err(e), _) => Some(("UnmatchedFailureDomain", e.clone())),
        (_, Some(v)) => Some(("FailedReplacement", format!("machine {} failed", v.m.name_any()))),
        _ => None,
    };
    let conds = o::conditions(
        cpms.data.pointer("/status/conditions"),
        &[
            if ready >= replicas as usize {
                ("Available", "True", "AllReplicasAvailable", String::new())
            } else {
                ("Available", "False", "UnavailableReplicas", format!("{ready}/{replicas} replicas ready"))
            },
            match &degraded {
                Some((reason, msg)) => ("Degraded", "True", *reason, msg.clone()),
                None => ("Degraded", "False", "AsExpected", String::new()),
            },
            if !active {
                ("Progressing", "False", "Inactive", "the ControlPlaneMachineSet is Inactive".into())
            } else if progressing {
                ("Progressing", "True", "NeedsUpdateReplicas", format!("{updated}/{replicas} replicas updated"))
            } else {
                ("Progressing", "False", "AllReplicasUpdated", String::new())
            },
        ],
    );
    let status = json!({
        "replicas": views.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "unavailableReplicas": (replicas as usize).saturating_sub(ready),
        "observedGeneration": cpms.metadata.generation.unwrap_or_default(),
        "labelSelector": o::selector_string(&selector),
        "conditions": conds,
    });
    o::patch_status_if_changed(&o::cpms_api(&sh.client), &cpms, status, MANAGER).await?;

    // Inactive: report only. A bad failure domain or a failed replacement stops the rollout.
    if !active || degraded.is_some() {
        return Ok(());
    }
    let on_delete = str_at(&cpms.data, "/spec/strategy/type") == Some("OnDelete");
    match next_step(&views, replicas, on_delete) {
        Step::Wait => Ok(()),
        Step::Delete(name) => {
            o::delete_ignore_missing(&o::machines_api(&sh.client), &name, None).await?;
            wait_seen(&sh.stores.machines, "deleted master", |s| {
                s.state().iter().find(|m| m.name_any() == name).is_none_or(|m| is_deleting(m.as_ref()))
            })
            .await
        }
        Step::Create(index) => {
            let prefix = str_at(&cpms.data, "/spec/machineNamePrefix")
                .filter(|p| !p.is_empty())
                .map(String::from)
                .unwrap_or_else(|| format!("{infra_id}-master"));
            let name = format!("{prefix}-{}-{index}", o::random_suffix());
            let machine = plan.machine(&name, index)?;
            o::machines_api(&sh.client).create(&PostParams::default(), &machine).await?;
            inc(&sh.counters.machines_created);
            wait_seen(&sh.stores.machines, "new master", |s| s.state().iter().any(|m| m.name_any() == name)).await
        }
    }
}

struct View {
    m: Arc<DynamicObject>,
    index: Option<u32>,
    updated: bool,
    ready: bool,
    deleting: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Wait,
    Delete(String),
    Create(u32),
}

/// RollingUpdate with a surge of one: while a replacement is not ready or an old master is
/// still going away, wait; otherwise retire the outdated master of an index whose
/// replacement is ready, or start the replacement of the lowest outdated index.
/// OnDelete only refills indexes left without a machine.
fn next_step(views: &[View], replicas: u32, on_delete: bool) -> Step {
    let failed = |v: &View| str_at(&v.m.data, "/status/phase") == Some("Failed");
    if views.iter().any(|v| v.deleting || (v.updated && !v.ready && !failed(v))) {
        return Step::Wait;
    }
    let mut by_index: BTreeMap<u32, Vec<&View>> = (0..replicas).map(|i| (i, Vec::new())).collect();
    for v in views {
        if let Some(list) = v.index.and_then(|i| by_index.get_mut(&i)) {
            list.push(v);
        }
    }
    if on_delete {
        return by_index.iter().find(|(_, l)| l.is_empty()).map(|(i, _)| Step::Create(*i)).unwrap_or(Step::Wait);
    }
    for list in by_index.values() {
        if list.iter().any(|v| v.updated && v.ready)
            && let Some(old) = list.iter().find(|v| !v.updated)
        {
            return Step::Delete(old.m.name_any());
        }
    }
    for (i, list) in &by_index {
        if !list.iter().any(|v| v.updated) {
            return Step::Create(*i);
        }
    }
    Step::Wait
}

/// The desired provider spec of each index.
struct Plan {
    template: Value,
    base: Value,
    domains: Vec<FailureDomain>,
    infra_id: String,
    /// Err when a failure domain named by the CPMS is not in the Infrastructure.
    desired: Result<(), String>,
}

impl Plan {
    fn new(cpms: &DynamicObject, infra: &Value, infra_id: &str) -> Plan {
        let template = cpms.data.pointer(TEMPLATE).cloned().unwrap_or(Value::Null);
        let base = template.pointer("/spec/providerSpec/value").cloned().unwrap_or(Value::Null);
        let names: Vec<String> = template
            .pointer("/failureDomains/vsphere")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|f| f["name"].as_str()).map(String::from).collect())
            .unwrap_or_default();
        let known = failure_domains(infra);
        let mut domains = Vec::new();
        let mut desired = Ok(());
        for n in &names {
            match known.iter().find(|f| &f.name == n) {
                Some(f) => domains.push(f.clone()),
                None => desired = Err(format!("failure domain {n} is not defined in the Infrastructure")),
            }
        }
        Plan { template, base, domains, infra_id: infra_id.to_string(), desired }
    }

    /// Round-robin over the CPMS failure domains by machine index.
    fn desired_for(&self, index: u32) -> Result<Value, String> {
        self.desired.clone()?;
        if self.domains.is_empty() {
            return Ok(self.base.clone());
        }
        let fd = &self.domains[index as usize % self.domains.len()];
        Ok(inject_failure_domain(&self.base, fd, &self.infra_id))
    }

    fn machine(&self, name: &str, index: u32) -> Result<DynamicObject> {
        let spec = self.desired_for(index).map_err(anyhow::Error::msg)?;
        let mut machine_spec = self.template.get("spec").cloned().unwrap_or_else(|| json!({}));
        machine_spec["providerSpec"] = json!({"value": spec});
        let obj = json!({
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "Machine",
            "metadata": {
                "name": name,
                "namespace": o::MACHINE_API_NS,
                "labels": self.template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
                "annotations": self.template.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
            },
            "spec": machine_spec,
        });
        Ok(serde_json::from_value(obj)?)
    }
}

/// What the operator does when the CPMS is gone: after a while, a new one in state
/// Inactive, built from the current masters (provider spec of the first, failure domains
/// of the Infrastructure that hold them).
async fn regenerate(sh: Arc<Shared>) -> Result<()> {
    sh.delay(sh.opts.cpms_regenerate).await;
    let api = o::cpms_api(&sh.client);
    if api.get_opt(o::CPMS_NAME).await?.is_some() {
        return Ok(());
    }
    let lp = ListParams::default().labels(&format!("{}=master,{}=master", o::LABEL_ROLE, o::LABEL_TYPE));
    let mut masters: Vec<DynamicObject> =
        o::machines_api(&sh.client).list(&lp).await?.items.into_iter().filter(|m| !is_deleting(m)).collect();
    masters.sort_by_key(|m| m.name_any());
    let Some(first) = masters.first() else { return Ok(()) };
    let infra = o::infra_api(&sh.client).get_opt(o::INFRA_NAME).await?.map(|i| i.data).unwrap_or(Value::Null);
    let infra_id = str_at(&infra, "/status/infrastructureName").unwrap_or_default().to_string();
    let spec = first.data.pointer("/spec/providerSpec/value").cloned().context("master without a provider spec")?;
    let used: Vec<Value> = failure_domains(&infra)
        .into_iter()
        .filter(|fd| masters.iter().any(|m| m.data.pointer("/spec/providerSpec/value").is_some_and(|s| fd.contains(s))))
        .map(|fd| json!({"name": fd.name}))
        .collect();
    let mut template = json!({
        "metadata": {"labels": {
            o::LABEL_CLUSTER: first.labels().get(o::LABEL_CLUSTER).cloned().unwrap_or(infra_id),
            o::LABEL_ROLE: "master",
            o::LABEL_TYPE: "master",
        }},
        "spec": {"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": spec}},
    });
    if !used.is_empty() {
        template["failureDomains"] = json!({"platform": "VSphere", "vsphere": used});
    }
    let replicas = if masters.len() == 5 { 5 } else { 3 };
    let obj = json!({
        "apiVersion": "machine.openshift.io/v1",
        "kind": "ControlPlaneMachineSet",
        "metadata": {"name": o::CPMS_NAME, "namespace": o::MACHINE_API_NS},
        "spec": {
            "replicas": replicas,
            "state": "Inactive",
            "strategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {o::LABEL_ROLE: "master", o::LABEL_TYPE: "master"}},
            "template": {"machineType": "machines_v1beta1_machine_openshift_io", "machines_v1beta1_machine_openshift_io": template},
        },
    });
    match api.create(&PostParams::default(), &serde_json::from_value(obj)?).await {
        Ok(_) => inc(&sh.counters.cpms_regenerated),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, updated: bool, ready: bool, deleting: bool) -> View {
        let m: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": name}, "status": {"phase": if ready { "Running" } else { "Provisioning" }}
        }))
        .unwrap();
        View { index: o::machine_index(name), m: Arc::new(m), updated, ready, deleting }
    }

    #[test]
    fn rolling_update_one_index_at_a_time() {
        let old = |i: u32| view(&format!("x-master-{i}"), false, true, false);
        let mut views = vec![old(0), old(1), old(2)];
        assert_eq!(next_step(&views, 3, false), Step::Create(0));
        views.push(view("x-master-abcde-0", true, false, false));
        assert_eq!(next_step(&views, 3, false), Step::Wait, "replacement not ready yet");
        views[3].ready = true;
        assert_eq!(next_step(&views, 3, false), Step::Delete("x-master-0".into()));
        views[0].deleting = true;
        assert_eq!(next_step(&views, 3, false), Step::Wait, "old master still going away");
        views.remove(0);
        assert_eq!(next_step(&views, 3, false), Step::Create(1));
        let done = vec![
            view("x-master-a-0", true, true, false),
            view("x-master-b-1", true, true, false),
            view("x-master-c-2", true, true, false),
        ];
        assert_eq!(next_step(&done, 3, false), Step::Wait);
    }

    #[test]
    fn on_delete_refills_empty_indexes_only() {
        let views = vec![view("x-master-0", false, true, false), view("x-master-2", false, true, false)];
        assert_eq!(next_step(&views, 3, true), Step::Create(1));
        let full = vec![
            view("x-master-0", false, true, false),
            view("x-master-1", false, true, false),
            view("x-master-2", false, true, false),
        ];
        assert_eq!(next_step(&full, 3, true), Step::Wait);
    }
}
