//! Deployments, DaemonSets, the scheduler, the kubelet and pod garbage collection, for the
//! namespaces in [`SimOptions::namespaces`](super::SimOptions::namespaces).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::{Api, Patch, PostParams};
use serde_json::{Value, json};

use super::objects::{self as o, is_deleting};
use super::runtime::{Ctl, Shared, inc, wait_seen};

const MANAGER: &str = "vsm-sim-workloads";

pub(crate) fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Running with condition Ready=True (the migration's readiness rule).
pub(crate) fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Counts toward a controller's replicas: not terminating, not finished.
pub(crate) fn pod_active(p: &Pod) -> bool {
    !is_deleting(p) && !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

fn schedulable(n: &Node) -> bool {
    node_ready(n) && !is_deleting(n) && !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

fn node_selector_matches(template: &PodTemplateSpec, n: &Node) -> bool {
    let sel = template.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    sel.into_iter().flatten().all(|(k, v)| n.labels().get(k) == Some(v))
}

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let in_scope = |ns: Option<String>| ns.is_some_and(|ns| sh.opts.namespaces.contains(&ns));
    let nodes = sh.stores.nodes.state();
    let pods: Vec<Arc<Pod>> = sh.stores.pods.state().into_iter().filter(|p| in_scope(p.namespace())).collect();
    let deployments: Vec<_> = sh.stores.deployments.state().into_iter().filter(|d| in_scope(d.namespace())).collect();
    let daemonsets: Vec<_> = sh.stores.daemonsets.state().into_iter().filter(|d| in_scope(d.namespace())).collect();

    collect_pods(&sh, &pods, &nodes, &deployments, &daemonsets).await?;
    for d in &deployments {
        sync_deployment(&sh, d, &pods, &nodes).await?;
    }
    for ds in &daemonsets {
        sync_daemonset(&sh, ds, &pods, &nodes).await?;
    }
    for p in &pods {
        kubelet(&sh, p, &nodes).await?;
    }
    Ok(())
}

/// Pod garbage collection: pods bound to a Node that is gone, and pods whose controlling
/// Deployment or DaemonSet is gone (checked against the API server, not only the cache).
async fn collect_pods(
    sh: &Shared,
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    deployments: &[Arc<Deployment>],
    daemonsets: &[Arc<DaemonSet>],
) -> Result<()> {
    let node_names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let owners: HashSet<String> =
        deployments.iter().filter_map(|d| d.uid()).chain(daemonsets.iter().filter_map(|d| d.uid())).collect();
    let node_api: Api<Node> = Api::all(sh.client.clone());
    for p in pods {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
        let bound = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let orphaned_on = bound.filter(|n| !node_names.contains(n));
        if let Some(n) = orphaned_on
            && node_api.get_opt(&n).await?.is_none()
        {
            if o::delete_ignore_missing(&api, &p.name_any(), Some(0)).await? {
                inc(&sh.counters.pods_deleted);
            }
            continue;
        }
        let owner = p.owner_references().iter().find(|r| r.controller == Some(true)).cloned();
        if let Some(r) = owner
            && (r.kind == "Deployment" || r.kind == "DaemonSet")
            && !owners.contains(&r.uid)
            && !is_deleting(p.as_ref())
        {
            let still_there = match r.kind.as_str() {
                "Deployment" => {
                    Api::<Deployment>::namespaced(sh.client.clone(), &ns).get_opt(&r.name).await?.and_then(|d| d.uid())
                }
                _ => Api::<DaemonSet>::namespaced(sh.client.clone(), &ns).get_opt(&r.name).await?.and_then(|d| d.uid()),
            };
            if still_there.as_deref() != Some(r.uid.as_str()) {
                o::delete_ignore_missing(&api, &p.name_any(), None).await?;
            }
        }
    }
    Ok(())
}

fn owned_pods<'a>(pods: &'a [Arc<Pod>], uid: &str) -> Vec<&'a Arc<Pod>> {
    pods.iter().filter(|p| p.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true))).collect()
}

pub(crate) fn template_hash(t: &PodTemplateSpec) -> String {
    o::short_hash(&serde_json::to_value(t).unwrap_or_default())
}

/// A pod from a template, bound to `node` when there is one.
fn new_pod(
    template: &PodTemplateSpec,
    generate_name: String,
    owner: Value,
    extra_labels: &[(&str, String)],
    node: Option<String>,
) -> Result<Pod> {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": serde_json::to_value(template.metadata.clone().unwrap_or_default())?,
        "spec": serde_json::to_value(template.spec.clone().unwrap_or_default())?,
    });
    pod["metadata"]["generateName"] = json!(generate_name);
    pod["metadata"]["ownerReferences"] = json!([owner]);
    for (k, v) in extra_labels {
        pod["metadata"]["labels"][*k] = json!(v);
    }
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    Ok(serde_json::from_value(pod)?)
}

async fn sync_deployment(sh: &Shared, d: &Deployment, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> Result<()> {
    if is_deleting(d) {
        return Ok(());
    }
    let (ns, name, uid) = (d.namespace().unwrap_or_default(), d.name_any(), d.uid().unwrap_or_default());
    let Some(spec) = d.spec.as_ref() else { return Ok(()) };
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let owned = owned_pods(pods, &uid);
    let active: Vec<&Arc<Pod>> = owned.iter().copied().filter(|p| pod_active(p)).collect();
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);

    if active.len() < want {
        let hash = template_hash(&spec.template);
        let mut load: HashMap<String, usize> = HashMap::new();
        for p in &active {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                *load.entry(n).or_default() += 1;
            }
        }
        let mut created = Vec::new();
        for _ in active.len()..want {
            let node = pick_node(nodes, &spec.template, &load);
            if let Some(n) = &node {
                *load.entry(n.clone()).or_default() += 1;
            }
            let owner = o::controller_ref("apps/v1", "Deployment", &name, &uid);
            let pod = new_pod(
                &spec.template,
                format!("{name}-{hash}-"),
                owner,
                &[("pod-template-hash", hash.clone())],
                node,
            )?;
            created.push(api.create(&PostParams::default(), &pod).await?.name_any());
            inc(&sh.counters.pods_created);
        }
        wait_seen(&sh.stores.pods, "new pods", |s| {
            created.iter().all(|n| s.state().iter().any(|p| &p.name_any() == n))
        })
        .await?;
    } else if active.len() > want {
        let mut victims = active.clone();
        // Not-ready pods first, then the newest.
        victims.sort_by_key(|p| (pod_ready(p), std::cmp::Reverse(p.creation_timestamp().map(|t| t.0))));
        let doomed: Vec<String> = victims.iter().take(active.len() - want).map(|p| p.name_any()).collect();
        for n in &doomed {
            o::delete_ignore_missing(&api, n, None).await?;
        }
        wait_seen(&sh.stores.pods, "deleted pods", |s| {
            doomed.iter().all(|n| s.state().iter().find(|p| &p.name_any() == n).is_none_or(|p| is_deleting(p.as_ref())))
        })
        .await?;
    }

    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let current = serde_json::to_value(&d.status)?;
    let conds = o::conditions(
        current.get("conditions"),
        &[
            if ready >= want {
                ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
            } else {
                (
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                )
            },
            (
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{name}\" has successfully progressed."),
            ),
        ],
    );
    let status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or_default(),
        "replicas": active.len(),
        "updatedReplicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": want.saturating_sub(ready),
        "conditions": conds,
    });
    if !o::covers(&current, &status) {
        let api: Api<Deployment> = Api::namespaced(sh.client.clone(), &ns);
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }
    Ok(())
}

/// The scheduler: a Ready, schedulable Node matching the node selector, least loaded first.
fn pick_node(nodes: &[Arc<Node>], template: &PodTemplateSpec, load: &HashMap<String, usize>) -> Option<String> {
    nodes
        .iter()
        .filter(|n| schedulable(n) && node_selector_matches(template, n))
        .map(|n| n.name_any())
        .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()))
}

async fn sync_daemonset(sh: &Shared, ds: &DaemonSet, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> Result<()> {
    if is_deleting(ds) {
        return Ok(());
    }
    let (ns, name, uid) = (ds.namespace().unwrap_or_default(), ds.name_any(), ds.uid().unwrap_or_default());
    let Some(spec) = ds.spec.as_ref() else { return Ok(()) };
    let targets: Vec<String> = nodes
        .iter()
        .filter(|n| !is_deleting(n.as_ref()) && node_selector_matches(&spec.template, n))
        .map(|n| n.name_any())
        .collect();
    let owned = owned_pods(pods, &uid);
    let mut per_node: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in &owned {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        per_node.entry(node).or_default().push(p);
    }
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
    let mut created = Vec::new();
    let mut doomed = Vec::new();
    for node in &targets {
        let here = per_node.get(node).cloned().unwrap_or_default();
        let active: Vec<_> = here.iter().filter(|p| pod_active(p)).collect();
        // A terminating pod is let go before its replacement starts on the same node.
        if here.is_empty() {
            let owner = o::controller_ref("apps/v1", "DaemonSet", &name, &uid);
            let pod = new_pod(&spec.template, format!("{name}-"), owner, &[], Some(node.clone()))?;
            created.push(api.create(&PostParams::default(), &pod).await?.name_any());
            inc(&sh.counters.pods_created);
        }
        doomed.extend(active.iter().skip(1).map(|p| p.name_any()));
    }
    for (node, here) in &per_node {
        if !targets.contains(node) {
            doomed.extend(here.iter().filter(|p| pod_active(p)).map(|p| p.name_any()));
        }
    }
    for n in &doomed {
        o::delete_ignore_missing(&api, n, None).await?;
    }
    if !created.is_empty() || !doomed.is_empty() {
        wait_seen(&sh.stores.pods, "daemon pods", |s| {
            let state = s.state();
            created.iter().all(|n| state.iter().any(|p| &p.name_any() == n))
                && doomed
                    .iter()
                    .all(|n| state.iter().find(|p| &p.name_any() == n).is_none_or(|p| is_deleting(p.as_ref())))
        })
        .await?;
    }

    let on_targets: Vec<&&Arc<Pod>> = owned
        .iter()
        .filter(|p| {
            pod_active(p) && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| targets.contains(n))
        })
        .collect();
    let scheduled: HashSet<String> =
        on_targets.iter().filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())).collect();
    let ready = on_targets.iter().filter(|p| pod_ready(p)).count();
    let status = json!({
        "observedGeneration": ds.metadata.generation.unwrap_or_default(),
        "desiredNumberScheduled": targets.len(),
        "currentNumberScheduled": scheduled.len(),
        "updatedNumberScheduled": scheduled.len(),
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": targets.len().saturating_sub(ready),
    });
    let current = serde_json::to_value(&ds.status)?;
    if !o::covers(&current, &status) {
        let api: Api<DaemonSet> = Api::namespaced(sh.client.clone(), &ns);
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }
    Ok(())
}

/// The kubelet (and the scheduler for pods created unbound): a bound pod starts after
/// `pod_start` once its Node is Ready; a terminating pod turns not-ready at once and is gone
/// after `pod_stop`.
async fn kubelet(sh: &Arc<Shared>, p: &Pod, nodes: &[Arc<Node>]) -> Result<()> {
    let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
    let key = format!("pod/{ns}/{name}");
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    if is_deleting(p) {
        let (sh2, uid) = (sh.clone(), p.uid().unwrap_or_default());
        sh.spawn_keyed(key, Ctl::Workloads, async move { stop_pod(sh2, ns, name, uid).await });
        return Ok(());
    }
    if !pod_active(p) || pod_ready(p) {
        return Ok(());
    }
    let Some(node) = node else {
        let template = PodTemplateSpec { metadata: None, spec: p.spec.clone() };
        if let Some(target) = pick_node(nodes, &template, &HashMap::new()) {
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                 "target": {"kind": "Node", "name": target}});
            let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
            let _: Value = api.create_subresource("binding", &name, &PostParams::default(), &binding).await?;
        }
        return Ok(());
    };
    if !nodes.iter().any(|n| n.name_any() == node && node_ready(n)) {
        return Ok(());
    }
    let sh2 = sh.clone();
    sh.spawn_keyed(key, Ctl::Workloads, async move { start_pod(sh2, ns, name, node).await });
    Ok(())
}

async fn start_pod(sh: Arc<Shared>, ns: String, name: String, node: String) -> Result<()> {
    sh.delay(sh.opts.pod_start).await;
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
    let Some(p) = api.get_opt(&name).await? else { return Ok(()) };
    if !pod_active(&p) || pod_ready(&p) {
        return Ok(());
    }
    let host_ip = Api::<Node>::all(sh.client.clone())
        .get_opt(&node)
        .await?
        .filter(node_ready)
        .and_then(|n| n.status?.addresses?.into_iter().find(|a| a.type_ == "InternalIP").map(|a| a.address));
    // Not an Ok: the controller would start this task again at once.
    let Some(host_ip) = host_ip else { anyhow::bail!("node {node} of pod {ns}/{name} is not Ready or has no address") };
    let status = json!({"status": running_status(&p, &host_ip)});
    api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    Ok(())
}

async fn stop_pod(sh: Arc<Shared>, ns: String, name: String, uid: String) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
    let Some(p) = api.get_opt(&name).await? else { return Ok(()) };
    if p.uid().as_deref() != Some(uid.as_str()) {
        return Ok(());
    }
    if pod_ready(&p) {
        let now = o::now();
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "PodTerminating", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "PodTerminating", "lastTransitionTime": now}]}});
        // Strategic merge: conditions merge by type.
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Strategic(status)).await?;
    }
    sh.delay(sh.opts.pod_stop).await;
    let dp = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => inc(&sh.counters.pods_deleted),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The status the kubelet reports for a started pod.
pub(crate) fn running_status(p: &Pod, host_ip: &str) -> Value {
    let now = o::now();
    let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
    let containers: Vec<Value> = p
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({"name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "", "ready": true,
                   "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    json!({
        "phase": "Running",
        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        "containerStatuses": containers,
        "hostIP": host_ip,
        "podIP": o::ip_for("10.128", &format!("{ns}/{name}")),
        "startTime": now,
    })
}
