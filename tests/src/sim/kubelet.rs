//! Kubelets, for the machines the real machine-api makes: the guest of a powered-on VM that
//! boots an OpenShift machine (the actuator gave it a hostname and an ignition config)
//! registers a Node after `machine_boot`, named by its hostname, with provider ID
//! `vsphere://<BIOS UUID>`, the role labels of the machine config pool its ignition config
//! points at, the `topology.kubernetes.io/region` and `/zone` of the Infrastructure failure
//! domain whose server and compute cluster hold the VM (the cloud controller manager's part;
//! none when no domain does), Ready; VMware Tools reports the guest's address. Once started, a kubelet
//! registers its Node again if it is deleted, but does not undo conditions set by others (a
//! test's NotReady stays until the VM is powered off and on). A VM powered off turns its
//! Node's conditions Unknown (the kubelet stops posting). And the cloud node lifecycle
//! controller's part: a Node whose VM is gone from every vCenter is deleted.
//!
//! The VMs are seen through each launcher's control API (what the guest itself knows), not
//! through a cluster credential: a rotated password does not stop a kubelet.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PostParams};
use serde_json::json;

use super::nodes::{node_manifest, node_status, node_unreachable_conditions, topology_labels};
use super::objects::{self as o};
use super::provider::failure_domains;
use super::runtime::{Ctl, Shared, inc};
use super::vsphere::VCenter;
use super::workloads::node_ready;
use crate::vcsim::GuestVm;

const MANAGER: &str = "vsm-sim-kubelet";
/// vSphere has no watch here: the VMs are listed this often.
pub(crate) const POLL: Duration = Duration::from_millis(500);
const PROVIDER_PREFIX: &str = "vsphere://";

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    // Every vCenter listed, or no Node is judged orphaned this pass.
    let mut vms: Vec<(VCenter, GuestVm)> = Vec::new();
    let mut complete = true;
    for vc in &sh.vcenters.list {
        match sh.vcenters.guest_vms(vc).await {
            Ok(list) => vms.extend(list.into_iter().map(|vm| (vc.clone(), vm))),
            Err(e) => {
                complete = false;
                sh.record_error(&format!("listing the VMs of {}", vc.host), &e);
            }
        }
    }
    let nodes = sh.stores.nodes.state();
    let by_provider = |uuid: &str| {
        let id = format!("{PROVIDER_PREFIX}{uuid}");
        nodes.iter().find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(id.as_str())).cloned()
    };
    for (vc, vm) in &vms {
        let node = by_provider(&vm.uuid);
        match vm.power_state.as_str() {
            "poweredOn" => {
                let boots = node.is_some() || vm.hostname.is_some() || !vm.user_data.is_empty();
                // A started kubelet registers its Node again if it is deleted, and does not
                // undo a condition someone else set (a test's NotReady stays).
                let started = sh.kubelets.lock().unwrap_or_else(|e| e.into_inner()).contains(&vm.uuid);
                let registered = node.as_ref().is_some_and(|n| !o::is_deleting(n.as_ref()));
                let seeded_ready = node.as_ref().is_some_and(|n| node_ready(n));
                if seeded_ready {
                    // A Node already Ready (the seed's, or from before a simulator restart).
                    sh.kubelets.lock().unwrap_or_else(|e| e.into_inner()).insert(vm.uuid.clone());
                } else if boots && !(started && registered) {
                    let (sh2, vc, vm) = (sh.clone(), vc.clone(), vm.clone());
                    sh.spawn_keyed(
                        format!("kubelet/{}", vm.uuid),
                        Ctl::Kubelet,
                        async move { boot(&sh2, &vc, &vm).await },
                    );
                }
            }
            _ => {
                sh.kubelets.lock().unwrap_or_else(|e| e.into_inner()).remove(&vm.uuid);
                if let Some(n) = node.filter(|n| node_ready(n)) {
                    let status = json!({"status": {"conditions": node_unreachable_conditions()}});
                    let api: Api<Node> = Api::all(sh.client.clone());
                    api.patch_status(&n.name_any(), &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
                }
            }
        }
    }
    if complete {
        let uuids: HashSet<&str> = vms.iter().map(|(_, vm)| vm.uuid.as_str()).collect();
        let api: Api<Node> = Api::all(sh.client.clone());
        for n in nodes.iter().filter(|n| !o::is_deleting(n.as_ref())) {
            let Some(uuid) = n.spec.as_ref().and_then(|s| s.provider_id.as_deref()?.strip_prefix(PROVIDER_PREFIX))
            else {
                continue;
            };
            if !uuids.contains(uuid) && o::delete_ignore_missing(&api, &n.name_any(), None).await? {
                inc(&sh.counters.nodes_deleted);
            }
        }
    }
    Ok(())
}

/// The machine config pool an ignition config is served from (`.../config/<pool>`).
pub(crate) fn role_of(user_data: &str) -> Option<String> {
    let rest = &user_data[user_data.find("/config/")? + "/config/".len()..];
    let role: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    (!role.is_empty()).then_some(role)
}

/// After `machine_boot`: the guest's address, then the Node, Ready.
async fn boot(sh: &Shared, vc: &VCenter, vm: &GuestVm) -> Result<()> {
    sh.delay(sh.opts.machine_boot).await;
    let name = vm.hostname.clone().unwrap_or_else(|| vm.name.clone());
    let ip = o::ip_for("10.0", &name);
    sh.vcenters.set_guest_ip(vc, &vm.uuid, &ip).await.with_context(|| format!("VM {} reports its address", vm.name))?;
    let api: Api<Node> = Api::all(sh.client.clone());
    let provider_id = format!("{PROVIDER_PREFIX}{}", vm.uuid);
    match api.get_opt(&name).await? {
        // Another machine's Node by that name: this kubelet would fail to register.
        Some(n) if n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) != Some(provider_id.as_str()) => {
            anyhow::bail!("Node {name} exists with another provider ID; VM {} cannot register", vm.name)
        }
        Some(_) => {}
        None => {
            let role = role_of(&vm.user_data).unwrap_or_else(|| "worker".into());
            let labels = vm_topology(sh, vc, vm);
            let node: Node = serde_json::from_value(node_manifest(&name, &role, &labels, &provider_id))?;
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => inc(&sh.counters.nodes_created),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let status = json!({"status": node_status(&name, &ip)});
    api.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    sh.kubelets.lock().unwrap_or_else(|e| e.into_inner()).insert(vm.uuid.clone());
    Ok(())
}

/// The topology labels of a Node for `vm` ([`topology_labels`]), from the Infrastructure's
/// failure domains as they are when the kubelet registers.
fn vm_topology(sh: &Shared, vc: &VCenter, vm: &GuestVm) -> BTreeMap<String, String> {
    let Some(cluster) = vm.compute_cluster.as_deref() else {
        return BTreeMap::new();
    };
    let infra = sh.stores.infra.state().into_iter().find(|i| i.metadata.name.as_deref() == Some(o::INFRA_NAME));
    let domains = infra.map(|i| failure_domains(&i.data)).unwrap_or_default();
    topology_labels(&domains, &vc.host, cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_the_pool_the_ignition_config_points_at() {
        let pointer = r#"{"ignition":{"config":{"merge":[{"source":"https://api-int.x.example.com:22623/config/master"}]},"version":"3.2.0"}}"#;
        assert_eq!(role_of(pointer).as_deref(), Some("master"));
        assert_eq!(role_of("https://h:22623/config/worker\"").as_deref(), Some("worker"));
        assert_eq!(role_of("{}"), None);
    }
}
