//! The simulator's own model of machine-api, for environments without the real one
//! ([`TestEnvOptions::machine_api`](crate::TestEnvOptions::machine_api) off): Machines become
//! VMs and Nodes, MachineSets keep their replica count.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use serde_json::json;
use vsm_vsphere::VsphereError;

use super::nodes::{machine_node_manifest, machine_ready, node_status, ready_nodes};
use super::objects::{self as o, i64_at, is_deleting, nonempty_at, str_at};
use super::runtime::{Ctl, Shared, inc, wait_seen};
use super::vsphere::cluster_credentials;

const MANAGER: &str = "vsm-sim-machine-api";
/// A drain gives up waiting for evicted pods after this and removes them (as `--force`).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let machines = sh.stores.machines.state();
    let sets = sh.stores.machine_sets.state();
    let ready = ready_nodes(&sh);
    for ms in &sets {
        sync_machine_set(&sh, ms, &machines, &ready).await.with_context(|| format!("MachineSet {}", ms.name_any()))?;
    }
    for m in &machines {
        if needs_work(m) {
            let name = m.name_any();
            let sh2 = sh.clone();
            sh.spawn_keyed(
                format!("machine/{name}"),
                Ctl::MachineApi,
                async move { reconcile_machine(sh2, name).await },
            );
        }
    }
    Ok(())
}

fn has_finalizer(m: &DynamicObject) -> bool {
    m.finalizers().iter().any(|f| f == o::MACHINE_FINALIZER)
}

fn phase(m: &DynamicObject) -> &str {
    str_at(&m.data, "/status/phase").unwrap_or_default()
}

fn node_ref(m: &DynamicObject) -> Option<&str> {
    nonempty_at(&m.data, "/status/nodeRef/name")
}

fn needs_work(m: &DynamicObject) -> bool {
    if is_deleting(m) {
        return has_finalizer(m);
    }
    if !has_finalizer(m) {
        return true;
    }
    match phase(m) {
        "Failed" => false,
        "Running" => node_ref(m).is_none(),
        _ => true,
    }
}

async fn sync_machine_set(
    sh: &Shared,
    ms: &DynamicObject,
    machines: &[Arc<DynamicObject>],
    ready_nodes: &HashSet<String>,
) -> Result<()> {
    if is_deleting(ms) {
        return Ok(());
    }
    let Some(selector) = o::selector_at(&ms.data, "/spec/selector") else { return Ok(()) };
    let uid = ms.uid().unwrap_or_default();
    let owned: Vec<&Arc<DynamicObject>> = machines
        .iter()
        .filter(|m| {
            o::selector_matches(&selector, m.labels())
                && o::controller_uid(m.as_ref(), "MachineSet").is_none_or(|u| u == uid)
        })
        .collect();
    let active: Vec<&Arc<DynamicObject>> = owned.iter().copied().filter(|m| !is_deleting(m.as_ref())).collect();
    let want = i64_at(&ms.data, "/spec/replicas").unwrap_or(1).max(0) as usize;
    let api = o::machines_api(&sh.client);

    if active.len() < want {
        let mut created = Vec::new();
        for _ in active.len()..want {
            let m = new_machine(ms, &uid)?;
            let made = api.create(&PostParams::default(), &m).await?;
            inc(&sh.counters.machines_created);
            created.push(made.name_any());
        }
        wait_seen(&sh.stores.machines, "new machines", |s| {
            created.iter().all(|n| s.state().iter().any(|m| &m.name_any() == n))
        })
        .await?;
    } else if active.len() > want {
        let mut victims = active.clone();
        // Marked machines first, then the ones not running, then the newest.
        victims.sort_by_key(|m| {
            let marked = m.annotations().contains_key("machine.openshift.io/delete-machine");
            let running = phase(m) == "Running";
            (!marked, running, std::cmp::Reverse(m.creation_timestamp().map(|t| t.0)), std::cmp::Reverse(m.name_any()))
        });
        let doomed: Vec<String> = victims.iter().take(active.len() - want).map(|m| m.name_any()).collect();
        for n in &doomed {
            o::delete_ignore_missing(&api, n, None).await?;
        }
        wait_seen(&sh.stores.machines, "deleted machines", |s| {
            doomed.iter().all(|n| s.state().iter().find(|m| &m.name_any() == n).is_none_or(|m| is_deleting(m.as_ref())))
        })
        .await?;
    }

    let template_labels: BTreeMap<String, String> = ms
        .data
        .pointer("/spec/template/metadata/labels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let labelled = active.iter().filter(|m| template_labels.iter().all(|(k, v)| m.labels().get(k) == Some(v))).count();
    let ready = active.iter().filter(|m| machine_ready(ready_nodes, m)).count();
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": labelled,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": ms.metadata.generation.unwrap_or_default(),
        "labelSelector": o::selector_string(&selector),
    });
    o::patch_status_if_changed(&o::machine_sets_api(&sh.client), ms, status, MANAGER).await?;
    Ok(())
}

fn new_machine(ms: &DynamicObject, uid: &str) -> Result<DynamicObject> {
    let t = ms.data.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    let obj = json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": {
            "generateName": format!("{}-", ms.name_any()),
            "namespace": o::MACHINE_API_NS,
            "labels": t.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": t.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
            "ownerReferences": [o::controller_ref("machine.openshift.io/v1beta1", "MachineSet", &ms.name_any(), uid)],
        },
        "spec": t.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    Ok(serde_json::from_value(obj)?)
}

/// One Machine, from wherever it is to where it should be.
async fn reconcile_machine(sh: Arc<Shared>, name: String) -> Result<()> {
    let api = o::machines_api(&sh.client);
    let Some(m) = api.get_opt(&name).await? else { return Ok(()) };
    if is_deleting(&m) {
        return if has_finalizer(&m) { delete_machine(&sh, &m).await } else { Ok(()) };
    }
    let m = if has_finalizer(&m) {
        m
    } else {
        let mut finalizers = m.finalizers().to_vec();
        finalizers.push(o::MACHINE_FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": m.resource_version()}});
        api.patch(&name, &o::merge_params(MANAGER), &Patch::Merge(patch)).await?
    };
    match phase(&m) {
        "Failed" => Ok(()),
        "Running" if node_ref(&m).is_some() => Ok(()),
        _ => provision(&sh, &m).await,
    }
}

/// A configuration error the real actuator would also refuse: the Machine goes Failed.
async fn fail(sh: &Shared, m: &DynamicObject, message: String) -> Result<()> {
    let status = json!({"phase": "Failed", "errorReason": "InvalidConfiguration", "errorMessage": message,
                        "lastUpdated": o::now()});
    o::machines_api(&sh.client)
        .patch_status(&m.name_any(), &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status})))
        .await?;
    inc(&sh.counters.machines_failed);
    Ok(())
}

/// A problem that may go away (missing credentials, vCenter hiccup): recorded in the
/// provider status as the vSphere actuator does, then retried.
async fn creation_problem(sh: &Shared, m: &DynamicObject, message: String) -> anyhow::Error {
    if str_at(&m.data, "/status/providerStatus/conditions/0/message") == Some(message.as_str()) {
        return anyhow!("machine {}: {message}", m.name_any());
    }
    let status = json!({"providerStatus": {"conditions": [{
        "type": "MachineCreation", "status": "False", "reason": "MachineCreationFailed",
        "message": message, "lastTransitionTime": o::now()}]}});
    let _ = o::patch_status_if_changed(&o::machines_api(&sh.client), m, status, MANAGER).await;
    anyhow!("machine {}: {message}", m.name_any())
}

struct Placement {
    server: String,
    datacenter: String,
    folder: String,
    datastore: Option<String>,
    pool: Option<String>,
    template: String,
}

fn placement(m: &DynamicObject) -> Result<Placement, String> {
    let ps = m.data.pointer("/spec/providerSpec/value").ok_or("spec.providerSpec.value is missing")?;
    let get = |p: &str| nonempty_at(ps, p).map(String::from);
    let server = get("/workspace/server").ok_or("providerSpec.workspace.server is empty")?;
    let datacenter = get("/workspace/datacenter").ok_or("providerSpec.workspace.datacenter is empty")?;
    let folder = get("/workspace/folder").unwrap_or_else(|| format!("/{datacenter}/vm"));
    let template = get("/template").ok_or("providerSpec.template is empty")?;
    // A bare template name is looked up in the datacenter's VM folder.
    let template = if template.starts_with('/') { template } else { format!("/{datacenter}/vm/{template}") };
    Ok(Placement {
        server,
        datacenter,
        folder,
        datastore: get("/workspace/datastore"),
        pool: get("/workspace/resourcePool"),
        template,
    })
}

async fn provision(sh: &Arc<Shared>, m: &DynamicObject) -> Result<()> {
    let name = m.name_any();
    let api = o::machines_api(&sh.client);
    let p = match placement(m) {
        Ok(p) => p,
        Err(msg) => return fail(sh, m, msg.to_string()).await,
    };
    let Some(vc) = sh.vcenters.by_host(&p.server).cloned() else {
        let msg = format!(
            "vCenter {:?} (providerSpec.workspace.server) is not a vCenter of this environment (known: {})",
            p.server,
            sh.vcenters.hosts().join(", ")
        );
        return fail(sh, m, msg).await;
    };
    if phase(m).is_empty() {
        let status = json!({"status": {"phase": "Provisioning", "lastUpdated": o::now()}});
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    }
    let Some(creds) = cluster_credentials(&sh.client, &p.server).await? else {
        let msg = format!("no credentials for vCenter {} in kube-system/vsphere-creds", p.server);
        return Err(creation_problem(sh, m, msg).await);
    };
    let client = match sh.vcenters.client(&vc, creds).await {
        Ok(c) => c,
        Err(e) => return Err(creation_problem(sh, m, format!("vCenter {}: {e}", p.server)).await),
    };
    let vm_path = format!("{}/{name}", p.folder.trim_end_matches('/'));
    let vm = match client.vm(&vm_path).await {
        Ok(vm) => vm,
        Err(VsphereError::NotFound { .. }) => {
            sh.delay(sh.opts.machine_provision).await;
            let _permit = sh.vcenters.permits.acquire().await?;
            // Checked one by one so the error names what is missing, as the actuator's does.
            if let Err(e) = client.vm(&p.template).await {
                return match e {
                    VsphereError::NotFound { .. } => {
                        fail(sh, m, format!("template {} not found in datacenter {}", p.template, p.datacenter)).await
                    }
                    e => Err(e.into()),
                };
            }
            let cloned =
                client.clone_vm(&p.template, &p.folder, &name, p.pool.as_deref(), p.datastore.as_deref(), true).await;
            match cloned {
                Ok(vm) => {
                    inc(&sh.counters.vms_cloned);
                    vm
                }
                Err(VsphereError::NotFound { path }) => {
                    return fail(sh, m, format!("cannot clone {}: {path} not found", p.template)).await;
                }
                Err(VsphereError::Invalid { message }) => {
                    return fail(sh, m, format!("cannot clone {}: {message}", p.template)).await;
                }
                // Made by an earlier attempt that did not see its answer.
                Err(VsphereError::AlreadyExists { .. }) => client.vm(&vm_path).await?,
                Err(e) => return Err(creation_problem(sh, m, format!("cloning {vm_path}: {e}")).await),
            }
        }
        Err(e) => return Err(creation_problem(sh, m, format!("looking up {vm_path}: {e}")).await),
    };

    let provider_id = format!("vsphere://{}", vm.uuid);
    let ip = o::ip_for("10.0", &name);
    if str_at(&m.data, "/spec/providerID") != Some(provider_id.as_str()) {
        let patch = json!({"spec": {"providerID": provider_id}});
        api.patch(&name, &o::merge_params(MANAGER), &Patch::Merge(patch)).await?;
    }
    if phase(m) != "Provisioned" {
        let status = json!({"status": {
            "phase": "Provisioned",
            "lastUpdated": o::now(),
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "InternalDNS", "address": name}],
            "providerStatus": {"instanceId": vm.uuid, "instanceState": "poweredOn", "conditions": [{
                "type": "MachineCreation", "status": "True", "reason": "MachineCreationSucceeded",
                "message": "Machine successfully created", "lastTransitionTime": o::now()}]},
        }});
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    }
    sh.delay(sh.opts.machine_boot).await;
    let node = ensure_node(sh, m, &provider_id, &ip).await?;
    let status = json!({"status": {"phase": "Running", "lastUpdated": o::now(),
        "nodeRef": {"kind": "Node", "name": node.name_any(), "uid": node.uid()}}});
    api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    Ok(())
}

async fn ensure_node(sh: &Shared, m: &DynamicObject, provider_id: &str, ip: &str) -> Result<Node> {
    let name = m.name_any();
    let api: Api<Node> = Api::all(sh.client.clone());
    let node: Node = serde_json::from_value(machine_node_manifest(m, provider_id))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => inc(&sh.counters.nodes_created),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let status = json!({"status": node_status(&name, ip)});
    Ok(api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?)
}

/// Drain the Node, destroy the VM, delete the Node, release the Machine.
async fn delete_machine(sh: &Arc<Shared>, m: &DynamicObject) -> Result<()> {
    let name = m.name_any();
    let api = o::machines_api(&sh.client);
    if phase(m) != "Deleting" {
        let status = json!({"status": {"phase": "Deleting", "lastUpdated": o::now()}});
        api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    }
    let node_name = node_ref(m).unwrap_or(&name).to_string();
    let nodes: Api<Node> = Api::all(sh.client.clone());
    if nodes.get_opt(&node_name).await?.is_some() {
        drain(sh, &node_name).await?;
    }
    sh.delay(sh.opts.machine_delete).await;

    if let Ok(p) = placement(m)
        && let Some(vc) = sh.vcenters.by_host(&p.server).cloned()
    {
        let vm_path = format!("{}/{name}", p.folder.trim_end_matches('/'));
        // Without credentials the VM cannot be removed: the Machine stays in Deleting, as
        // it would on a real cluster.
        let creds = cluster_credentials(&sh.client, &p.server)
            .await?
            .with_context(|| format!("deleting {name}: no credentials for vCenter {} in vsphere-creds", p.server))?;
        let client = sh.vcenters.client(&vc, creds).await?;
        let _permit = sh.vcenters.permits.acquire().await?;
        if client.destroy_vm(&vm_path).await? {
            inc(&sh.counters.vms_destroyed);
        }
    }
    if o::delete_ignore_missing(&nodes, &node_name, None).await? {
        inc(&sh.counters.nodes_deleted);
    }
    let current = api.get_opt(&name).await?.context("machine vanished while being deleted")?;
    let rest: Vec<String> = current.finalizers().iter().filter(|f| *f != o::MACHINE_FINALIZER).cloned().collect();
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": current.resource_version()}});
    api.patch(&name, &o::merge_params(MANAGER), &Patch::Merge(patch)).await?;
    inc(&sh.counters.machines_deleted);
    Ok(())
}

/// Cordon, evict every pod that is not a DaemonSet's, and wait for them to be gone.
async fn drain(sh: &Shared, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(sh.client.clone());
    nodes.patch(node, &o::merge_params(MANAGER), &Patch::Merge(json!({"spec": {"unschedulable": true}}))).await?;
    let pods: Api<Pod> = Api::all(sh.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let evictable = |p: &Pod| !p.owner_references().iter().any(|r| r.kind == "DaemonSet");
    for p in pods.list(&lp).await?.items.iter().filter(|p| evictable(p) && !is_deleting(*p)) {
        let ns_api: Api<Pod> = Api::namespaced(sh.client.clone(), &p.namespace().unwrap_or_default());
        o::delete_ignore_missing(&ns_api, &p.name_any(), None).await?;
    }
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    loop {
        let left: Vec<Pod> = pods.list(&lp).await?.items.into_iter().filter(evictable).collect();
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            for p in left {
                let ns_api: Api<Pod> = Api::namespaced(sh.client.clone(), &p.namespace().unwrap_or_default());
                o::delete_ignore_missing(&ns_api, &p.name_any(), Some(0)).await?;
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
