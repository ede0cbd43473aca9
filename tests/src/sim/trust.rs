//! The cluster's trust and configuration copies, as three OpenShift operators keep them
//! (read in their sources; docs/ARCHITECTURE.md "How the cluster trusts a vCenter"):
//!
//! - the cluster-network-operator's trusted CA injection: the Proxy `cluster`'s
//!   `spec.trustedCA` ConfigMap in `openshift-config` (key `ca-bundle.crt`) followed by the
//!   system CAs becomes `openshift-config-managed/trusted-ca-bundle`, copied into every
//!   ConfigMap labelled `config.openshift.io/inject-trusted-cabundle=true` (the system CAs
//!   alone when the Proxy names none);
//! - the cluster-cloud-controller-manager-operator's `ccm-trusted-ca`: the cloud config's
//!   `ca-bundle.pem`, the Proxy's bundle and the system CAs;
//! - the cluster-config-operator's copy of the cloud config,
//!   `openshift-config-managed/kube-cloud-config` (key `cloud.conf`, with `ca-bundle.pem`).
//!
//! The system CAs are the environment's CA ([`TestEnv::system_trust_pem`](crate::TestEnv::system_trust_pem)).
//! Concatenated as the operators do, without removing repeats. Pods that mount these
//! ConfigMaps read them when they start: the machine controller is restarted with
//! `mao-trusted-ca` when its pod is replaced ([`sync_machine_controller`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

use super::objects::{self as o, str_at};
use super::runtime::{Shared, inc};
use super::workloads::{pod_active, pod_ready};

pub const INJECT_LABEL: &str = "config.openshift.io/inject-trusted-cabundle";
pub const TRUSTED_CA_KEY: &str = "ca-bundle.crt";
pub const MANAGED_NS: &str = "openshift-config-managed";
pub const TRUSTED_CA_BUNDLE: &str = "trusted-ca-bundle";
pub const MAO_TRUSTED_CA: &str = "mao-trusted-ca";
pub const CCM_TRUSTED_CA: &str = "ccm-trusted-ca";
pub const KUBE_CLOUD_CONFIG: &str = "kube-cloud-config";
/// The ConfigMaps operators' manifests create labelled for injection, by namespace.
pub const INJECTED: &[(&str, &str)] = &[
    (o::MACHINE_API_NS, MAO_TRUSTED_CA),
    (o::CSI_NS, "vmware-vsphere-csi-driver-trusted-ca-bundle"),
    (o::CSI_NS, "vsphere-csi-driver-operator-trusted-ca-bundle"),
];

fn data<'a>(cm: Option<&'a ConfigMap>, key: &str) -> Option<&'a str> {
    cm?.data.as_ref()?.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

fn join(parts: &[Option<&str>]) -> String {
    let mut out = String::new();
    for p in parts.iter().flatten() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(p);
    }
    out
}

/// Makes `ns/name` hold `data` (created when absent, with `labels`); whether it wrote.
async fn ensure(
    client: &kube::Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    data: BTreeMap<String, String>,
) -> Result<bool> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await.with_context(|| format!("reading {ns}/{name}"))? {
        Some(cm) if cm.data.as_ref() == Some(&data) => Ok(false),
        Some(cm) => {
            let cm = ConfigMap { data: Some(data), ..cm };
            api.replace(name, &PostParams::default(), &cm).await.with_context(|| format!("updating {ns}/{name}"))?;
            Ok(true)
        }
        None => {
            let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
            let cm: ConfigMap = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": data}))?;
            api.create(&PostParams::default(), &cm).await.with_context(|| format!("creating {ns}/{name}"))?;
            Ok(true)
        }
    }
}

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let client = &sh.client;
    let config_maps = sh.stores.config_maps.state();
    let find = |ns: &str, name: &str| {
        config_maps.iter().find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == name).map(|c| c.as_ref())
    };
    // The Proxy (absent where its CRD is not installed: no trusted CA then).
    let proxies: Api<DynamicObject> = Api::all_with(client.clone(), &o::proxy());
    let proxy = proxies.get_opt("cluster").await.ok().flatten();
    let trusted = proxy.as_ref().and_then(|p| str_at(&p.data, "/spec/trustedCA/name")).filter(|n| !n.is_empty());
    let proxy_bundle = trusted.and_then(|n| data(find(o::CLOUD_CONFIG_NS, n), TRUSTED_CA_KEY));
    let system = Some(sh.system_trust.as_str());
    let mut wrote: u64 = 0;

    // The cluster-network-operator.
    let bundle = join(&[proxy_bundle, system]);
    let one = |b: &str| BTreeMap::from([(TRUSTED_CA_KEY.to_string(), b.to_string())]);
    wrote += ensure(client, MANAGED_NS, TRUSTED_CA_BUNDLE, &[], one(&bundle)).await? as u64;
    for cm in config_maps.iter().filter(|c| c.labels().get(INJECT_LABEL).is_some_and(|v| v == "true")) {
        let ns = cm.namespace().unwrap_or_default();
        wrote += ensure(client, &ns, &cm.name_any(), &[], one(&bundle)).await? as u64;
    }

    // The cloud controller manager operator, and the cluster-config-operator's copy.
    let cloud = find(o::CLOUD_CONFIG_NS, o::CLOUD_CONFIG_NAME);
    let cloud_ca = data(cloud, "ca-bundle.pem");
    let ccm = join(&[cloud_ca, proxy_bundle, system]);
    wrote += ensure(client, o::CCM_NS, CCM_TRUSTED_CA, &[], one(&ccm)).await? as u64;
    if let Some(config) = data(cloud, o::CLOUD_CONFIG_KEY) {
        let mut copy = BTreeMap::from([("cloud.conf".to_string(), config.to_string())]);
        if let Some(ca) = cloud_ca {
            copy.insert("ca-bundle.pem".into(), ca.to_string());
        }
        wrote += ensure(client, MANAGED_NS, KUBE_CLOUD_CONFIG, &[], copy).await? as u64;
    }
    sh.counters.trust_copies.fetch_add(wrote, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The kubelet's part for the real machine controller: when the `machine-api-controllers`
/// pod it "runs in" is replaced by a Ready one, the process restarts with the trust store
/// that pod mounts (`mao-trusted-ca`, or the image's system CAs while that is empty).
pub(crate) async fn sync_machine_controller(sh: Arc<Shared>) -> Result<()> {
    let Some(mapi) = sh.machine_api.as_ref() else { return Ok(()) };
    let pods = sh.stores.pods.state();
    let running: Option<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(o::MACHINE_API_NS))
        .filter(|p| p.labels().get("api").is_some_and(|v| v == "clusterapi"))
        .filter(|p| pod_active(p) && pod_ready(p))
        .max_by_key(|p| p.creation_timestamp())
        .cloned();
    let Some(pod) = running else { return Ok(()) };
    let uid = pod.uid().unwrap_or_default();
    {
        let mut current = sh.machine_controller_pod.lock().expect("pod lock");
        match current.as_deref() {
            // First sight: the process started with the environment, as this pod did.
            None => {
                *current = Some(uid);
                return Ok(());
            }
            Some(u) if u == uid => return Ok(()),
            Some(_) => {}
        }
    }
    let config_maps = sh.stores.config_maps.state();
    let mounted = config_maps
        .iter()
        .find(|c| c.namespace().as_deref() == Some(o::MACHINE_API_NS) && c.name_any() == MAO_TRUSTED_CA)
        .map(|c| c.as_ref());
    let trust = data(mounted, TRUSTED_CA_KEY).unwrap_or(&sh.system_trust).to_string();
    let mapi = mapi.clone();
    let why = format!("pod {} replaced its machine-api-controllers pod", pod.name_any());
    tokio::task::spawn_blocking(move || mapi.restart_machine_controller(&trust, &why)).await??;
    *sh.machine_controller_pod.lock().expect("pod lock") = Some(uid);
    inc(&sh.counters.machine_controller_restarts);
    Ok(())
}
