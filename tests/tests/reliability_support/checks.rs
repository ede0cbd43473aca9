//! What must hold after a migration: the final state (normalised, so runs on different
//! environments compare equal), no duplicated MachineSets, machines, VMs, tags or folders,
//! backups consistent between status and Secrets, and no secret anywhere it may be read.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vsm_api::{Direction, PhaseResult, VSphereMigration};
use vsm_testenv::TestEnv;
use vsm_testenv::harness::NAMESPACE;
use vsm_testenv::sim::objects as o;
use vsm_testenv::vcsim::{source, target};
use vsm_vsphere::{ClientOptions, Credentials, ObjectKind, ServerSpec, SessionPool, TlsPolicy};

use super::Lab;

pub fn machines(env: &TestEnv) -> Api<DynamicObject> {
    env.dynamic("machine.openshift.io", "v1beta1", "Machine", "machines", Some(o::MACHINE_API_NS))
}

pub fn machinesets(env: &TestEnv) -> Api<DynamicObject> {
    env.dynamic("machine.openshift.io", "v1beta1", "MachineSet", "machinesets", Some(o::MACHINE_API_NS))
}

fn server_of(m: &DynamicObject, template: bool) -> String {
    let ptr = if template {
        "/spec/template/spec/providerSpec/value/workspace/server"
    } else {
        "/spec/providerSpec/value/workspace/server"
    };
    m.data.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Replace what differs between two environments (ports) with placeholders.
fn normalise(lab: &Lab, text: &str) -> String {
    let (src, dst) = (lab.env.source().port().to_string(), lab.env.target().port().to_string());
    text.replace(&dst, "<target-port>").replace(&src, "<source-port>")
}

/// The same over a JSON value: inside strings, and a port given as a number.
fn normalise_value(lab: &Lab, v: &Value) -> Value {
    let port = |p: u16| Value::from(p);
    match v {
        Value::String(s) => Value::String(normalise(lab, s)),
        n @ Value::Number(_) if *n == port(lab.env.target().port()) => Value::from("<target-port>"),
        n @ Value::Number(_) if *n == port(lab.env.source().port()) => Value::from("<source-port>"),
        Value::Array(items) => Value::Array(items.iter().map(|i| normalise_value(lab, i)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, i)| (k.clone(), normalise_value(lab, i))).collect()),
        other => other.clone(),
    }
}

/// A session on one of the lab's vCenters, as an administrator.
pub async fn vcenter(lab: &Lab, target_side: bool) -> Result<(SessionPool, std::sync::Arc<vsm_vsphere::Client>)> {
    let vc = if target_side { lab.env.target() } else { lab.env.source() };
    let pool = SessionPool::new(ClientOptions::default());
    // The target's password may have been rotated: the simulator holds the current one.
    let password = if target_side { lab.current_target_password() } else { vc.password.clone() };
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(vc.username.clone(), password),
        tls: TlsPolicy { ca_bundle_pem: Some(lab.env.ca_pem().to_string()), ..Default::default() },
    };
    let client = pool.client(&spec).await?;
    Ok((pool, client))
}

impl Lab {
    /// The target vCenter's password now (after any rotation by the test).
    pub fn current_target_password(&self) -> String {
        self.target_password.lock().unwrap().clone()
    }
}

/// Standard base64 (a secret may leak encoded, e.g. in a dumped Secret).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// VM names (not templates) in the cluster's folder of one vCenter.
pub async fn vm_names(lab: &Lab, target_side: bool) -> Result<Vec<String>> {
    let dc = if target_side { target::DATACENTER } else { source::DATACENTER };
    let (pool, client) = vcenter(lab, target_side).await?;
    let names = match client.list_vms(&format!("/{dc}/vm/{}", lab.seeded.infra_id)).await {
        Ok(vms) => vms.into_iter().filter(|v| !v.template).map(|v| v.name).collect(),
        Err(vsm_vsphere::VsphereError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    pool.shutdown().await;
    Ok(names)
}

/// Tags attached to the target datacenter and compute cluster: `category/tag` names.
pub async fn target_tags(lab: &Lab) -> Result<BTreeMap<String, Vec<String>>> {
    let (pool, client) = vcenter(lab, true).await?;
    let mut out = BTreeMap::new();
    for (kind, path) in [
        (ObjectKind::Datacenter, format!("/{}", target::DATACENTER)),
        (ObjectKind::ComputeCluster, target::CLUSTER_PATH.to_string()),
    ] {
        let obj = client.find(kind, &path).await?;
        let mut tags: Vec<String> = client
            .list_attached_tags(&obj)
            .await?
            .into_iter()
            .map(|t| format!("{}/{}", t.category_name, t.name))
            .collect();
        tags.sort();
        out.insert(path, tags);
    }
    pool.shutdown().await;
    Ok(out)
}

/// The final state of the cluster and vCenters, normalised so two environments compare.
pub async fn final_state(lab: &Lab, name: &str) -> Result<BTreeMap<String, Value>> {
    let env = &lab.env;
    let mut s = BTreeMap::new();
    let m: VSphereMigration = lab.get(name).await?;
    let status = m.status.clone().unwrap_or_default();
    s.insert("migration.phase".into(), json!(status.phase));
    let executed: Vec<&str> = status
        .history
        .iter()
        .filter(|h| h.direction == Direction::Execute && h.result == PhaseResult::Succeeded)
        .map(|h| h.phase.as_str())
        .collect();
    s.insert("migration.executed".into(), json!(executed));
    let infra =
        env.dynamic("config.openshift.io", "v1", "Infrastructure", "infrastructures", None).get("cluster").await?;
    s.insert("infrastructure.vsphere".into(), normalise_value(lab, &infra.data["spec"]["platformSpec"]["vsphere"]));
    let cm: ConfigMap = Api::namespaced(env.client(), o::CLOUD_CONFIG_NS).get(o::CLOUD_CONFIG_NAME).await?;
    let config = cm.data.unwrap_or_default().get(o::CLOUD_CONFIG_KEY).cloned().unwrap_or_default();
    s.insert("cloud-provider-config".into(), json!(normalise(lab, &config)));
    let creds: Secret = Api::namespaced(env.client(), o::CREDS_NS).get(o::CREDS_NAME).await?;
    let keys: Vec<String> = creds.data.unwrap_or_default().into_keys().collect();
    s.insert("vsphere-creds.keys".into(), json!(keys));
    let sets = machinesets(env).list(&ListParams::default()).await?;
    let sets: BTreeMap<String, Value> = sets
        .items
        .iter()
        .map(|m| {
            (
                m.metadata.name.clone().unwrap_or_default(),
                json!({"replicas": m.data["spec"]["replicas"], "server": server_of(m, true)}),
            )
        })
        .collect();
    s.insert("machinesets".into(), json!(sets));
    let mut placement: BTreeMap<String, u32> = BTreeMap::new();
    for m in machines(env).list(&ListParams::default()).await?.items {
        let role = m.metadata.labels.as_ref().and_then(|l| l.get(o::LABEL_ROLE).cloned()).unwrap_or_default();
        let phase = m.data.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_string();
        *placement.entry(format!("{role} on {} {phase}", server_of(&m, false))).or_default() += 1;
    }
    s.insert("machines".into(), json!(placement));
    let cpms = env
        .dynamic(
            "machine.openshift.io",
            "v1",
            "ControlPlaneMachineSet",
            "controlplanemachinesets",
            Some(o::MACHINE_API_NS),
        )
        .get(o::CPMS_NAME)
        .await?;
    s.insert("cpms.state".into(), cpms.data["spec"]["state"].clone());
    s.insert(
        "cpms.failureDomains".into(),
        normalise_value(lab, &cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]),
    );
    let cvo: Deployment = Api::namespaced(env.client(), o::CVO_NS).get(o::CVO_NAME).await?;
    s.insert("cvo.replicas".into(), json!(cvo.spec.and_then(|sp| sp.replicas)));
    s.insert("vms.source".into(), json!(vm_names(lab, false).await?.len()));
    s.insert("vms.target".into(), json!(vm_names(lab, true).await?.len()));
    s.insert("tags.target".into(), json!(target_tags(lab).await?));
    Ok(s)
}

/// Nothing was created twice: one new worker MachineSet on the target, exactly the wanted
/// machines there and none left on the source, one VM per machine (unique names), one
/// region and one zone tag, the cluster's VM folder once.
pub async fn no_duplicates(lab: &Lab, replicas: usize) -> Result<()> {
    let env = &lab.env;
    let dst = env.target().host();
    let sets = machinesets(env).list(&ListParams::default()).await?.items;
    let on_target: Vec<String> =
        sets.iter().filter(|m| server_of(m, true) == dst).filter_map(|m| m.metadata.name.clone()).collect();
    ensure!(on_target.len() == 1, "exactly one worker MachineSet on the target, found {on_target:?}");
    let all = machines(env).list(&ListParams::default()).await?.items;
    let live: Vec<&DynamicObject> = all.iter().filter(|m| m.metadata.deletion_timestamp.is_none()).collect();
    let count = |role: &str, server: &str| {
        live.iter()
            .filter(|m| m.metadata.labels.as_ref().and_then(|l| l.get(o::LABEL_ROLE)).is_some_and(|r| r == role))
            .filter(|m| server_of(m, false) == server)
            .count()
    };
    ensure!(count("master", &dst) == 3, "3 masters on the target, found {}", count("master", &dst));
    ensure!(count("worker", &dst) == replicas, "{replicas} workers on the target, found {}", count("worker", &dst));
    ensure!(live.iter().all(|m| server_of(m, false) == dst), "machines left off the target");
    let vms = vm_names(lab, true).await?;
    let unique: BTreeSet<&String> = vms.iter().collect();
    ensure!(unique.len() == vms.len(), "duplicated VM names on the target: {vms:?}");
    let names: BTreeSet<String> = live.iter().filter_map(|m| m.metadata.name.clone()).collect();
    let vm_set: BTreeSet<String> = vms.iter().cloned().collect();
    ensure!(vm_set == names, "one VM per machine on the target: VMs {vm_set:?}, machines {names:?}");
    ensure!(vm_names(lab, false).await?.is_empty(), "VMs left on the source");
    let tags = target_tags(lab).await?;
    for (path, want) in [
        (format!("/{}", target::DATACENTER), "openshift-region/"),
        (target::CLUSTER_PATH.to_string(), "openshift-zone/"),
    ] {
        let got: Vec<&String> =
            tags.get(&path).map(|t| t.iter().filter(|x| x.starts_with(want)).collect()).unwrap_or_default();
        ensure!(got.len() == 1, "exactly one {want} tag on {path}: {tags:?}");
    }
    let (pool, client) = vcenter(lab, true).await?;
    let folder = format!("/{}/vm/{}", target::DATACENTER, lab.seeded.infra_id);
    client.find(ObjectKind::Folder, &folder).await.with_context(|| format!("the folder {folder}"))?;
    pool.shutdown().await;
    Ok(())
}

/// status.backups and the backup Secrets agree: every Secret the operator holds for the
/// migration is listed, every entry has its Secret, with the same checksum and size, and
/// the content matches the checksum. Returns how many there are.
pub async fn backups_consistent(lab: &Lab, name: &str) -> Result<usize> {
    let m = lab.get(name).await?;
    let uid = m.metadata.uid.clone().context("uid")?;
    let status = m.status.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(lab.env.client(), NAMESPACE);
    let held = secrets
        .list(&ListParams::default().labels(&format!("migration.openshift.io/migration-uid={uid}")))
        .await?
        .items;
    let held_names: BTreeSet<String> = held.iter().filter_map(|s| s.metadata.name.clone()).collect();
    let listed: BTreeSet<String> = status.backups.iter().map(|b| b.name.clone()).collect();
    let unlisted: Vec<&String> = held_names.difference(&listed).collect();
    let missing: Vec<&String> = listed.difference(&held_names).collect();
    if !unlisted.is_empty() || !missing.is_empty() {
        let subject = |n: &String| {
            held.iter()
                .find(|s| s.metadata.name.as_ref() == Some(n))
                .and_then(|s| s.metadata.annotations.as_ref())
                .and_then(|a| a.get("migration.openshift.io/subject").cloned())
                .unwrap_or_default()
        };
        bail!(
            "backups inconsistent: Secrets not in status.backups: {:?}; status.backups without a Secret: {missing:?}",
            unlisted.iter().map(|n| format!("{n} ({})", subject(n))).collect::<Vec<_>>()
        );
    }
    for b in &status.backups {
        let s = held.iter().find(|s| s.metadata.name.as_ref() == Some(&b.name)).expect("checked above");
        let bytes = s.data.as_ref().and_then(|d| d.get("entry.json")).map(|b| b.0.clone()).unwrap_or_default();
        let sha = hex::encode(Sha256::digest(&bytes));
        ensure!(sha == b.sha256, "backup {} ({}) content does not match status sha256", b.name, b.subject);
        ensure!(bytes.len() as u64 == b.size, "backup {} size differs from status", b.name);
    }
    Ok(status.backups.len())
}

/// What the secret scan looked at.
#[derive(Debug, Default)]
pub struct Scan {
    pub secrets: usize,
    pub session_ids: usize,
    pub bytes: usize,
    pub sources: usize,
}

/// No password, token or vCenter session id in the migrations' status, the Events, the
/// phases' state ConfigMaps, or any operator log (debug level, phase logs included).
pub async fn no_secrets_leaked(lab: &Lab, names: &[&str]) -> Result<Scan> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for name in names {
        if let Ok(m) = lab.get(name).await {
            texts.push((format!("migration {name}"), serde_json::to_string(&m)?));
        }
        let maps: Api<ConfigMap> = Api::namespaced(lab.env.client(), NAMESPACE);
        if let Ok(Some(cm)) = maps.get_opt(&format!("{name}-state")).await {
            texts.push((format!("state ConfigMap of {name}"), serde_json::to_string(&cm)?));
        }
    }
    for ns in [NAMESPACE, "default", o::MACHINE_API_NS, o::CREDS_NS, o::CLOUD_CONFIG_NS, o::CVO_NS] {
        let events: Api<Event> = Api::namespaced(lab.env.client(), ns);
        let list = events.list(&ListParams::default()).await?;
        texts.push((format!("Events in {ns}"), serde_json::to_string(&list.items)?));
    }
    let logs = lab.logs.lock().unwrap().clone();
    for log in &logs {
        texts.push((format!("operator log {}", log.display()), std::fs::read_to_string(log).unwrap_or_default()));
    }
    let secrets = lab.secrets.lock().unwrap().clone();
    let passwords = [lab.env.source().password.clone(), lab.env.target().password.clone()];
    let mut found = Vec::new();
    for secret in &secrets {
        let encoded = base64(secret.as_bytes());
        for (what, text) in &texts {
            if text.contains(secret.as_str()) || text.contains(&encoded) {
                let kind = if passwords.contains(secret) { "a password" } else { "a session id or token" };
                found.push(format!("{kind} ({} characters) in {what}", secret.len()));
            }
        }
    }
    ensure!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    let session_ids = lab.sessions.lock().unwrap().len();
    Ok(Scan {
        secrets: secrets.len(),
        session_ids,
        bytes: texts.iter().map(|(_, t)| t.len()).sum(),
        sources: texts.len(),
    })
}
