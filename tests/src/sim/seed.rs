//! Seeding: an OpenShift-on-vSphere cluster that runs in the source vCenter, consistent
//! between the API server and the vcsim inventory.
//!
//! Seeding creates what is missing and never overwrites: a second run changes nothing, and
//! a run interrupted half-way is completed by the next one. Members of a group (Machines
//! of a MachineSet, the masters, pods of a Deployment or DaemonSet) get deterministic names
//! and are created only while the group has fewer members than it wants, so a cluster the
//! simulator has since changed (masters replaced, MachineSets scaled) is left as it is.
//!
//! Seed a new or incomplete cluster with the simulator stopped: its controllers would act
//! on a half-made cluster (a CPMS seen missing is regenerated). The real machine-api
//! ([`TestEnvOptions::machine_api`](crate::TestEnvOptions::machine_api)) always runs, so
//! MachineSets are made after their Machines (a MachineSet seen before its Machines gets
//! Machines of its own) and adopt them. Re-seeding a complete cluster while it runs is
//! harmless: nothing is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vsm_vsphere::{Client, ClientOptions, Credentials, ServerSpec, SessionPool, TlsPolicy, VsphereError};

use super::cloud_config::{self, CloudConfigInput};
use super::cluster_operators::CLUSTER_OPERATORS;
use super::nodes::{machine_node_manifest, node_status};
use super::objects::{self as o, name_suffix};
use super::operators::healthy_conditions;
use super::options::SeedOptions;
use super::provider::{self, FailureDomain, MASTER, WORKER};
use super::workloads::{pod_active, running_status, template_hash};
use crate::TestEnv;
use crate::vcsim::{TemplateSpec, Vcsim, source, target};

const MANAGER: &str = "vsm-sim-seed";
pub const SOURCE_FAILURE_DOMAIN: &str = "source-fd";
pub const TARGET_FAILURE_DOMAIN: &str = "target-fd";
/// The templates' disk: no larger than any machine's `diskGiB` (the actuator cannot shrink it).
const TEMPLATE_DISK_GIB: u32 = 16;

/// One vCenter of the environment, as the seeded cluster names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededVCenter {
    /// The address OpenShift stores as `server` (no port).
    pub host: String,
    pub port: u16,
    /// `host:port`, for clients.
    pub server: String,
    pub datacenter: String,
    /// The template VM (`/<dc>/vm/<template>`), present in both vCenters.
    pub template: String,
    /// `/<dc>/vm/<infraID>`: exists in the source only (a migration creates the target's).
    pub folder: String,
}

/// What [`seed`] made.
#[derive(Clone, Debug)]
pub struct SeededCluster {
    pub infra_id: String,
    pub source: SeededVCenter,
    pub target: SeededVCenter,
    /// The Infrastructure's failure domain for the source (None with `legacy_no_failure_domains`).
    pub source_failure_domain: Option<FailureDomain>,
    /// Control-plane Machines `<infraID>-master-0..2` (or the masters found, when they had
    /// been replaced since an earlier seed).
    pub masters: Vec<String>,
    /// Worker MachineSets `<infraID>-worker-N`.
    pub worker_machinesets: Vec<String>,
    /// Worker Machines (all worker MachineSets).
    pub workers: Vec<String>,
    /// `<infraID>-infra-0`, when asked for.
    pub infra_machineset: Option<String>,
    pub infra_machines: Vec<String>,
    /// One Node per Machine, named like it.
    pub nodes: Vec<String>,
    pub options: SeedOptions,
}

impl SeededCluster {
    /// A failure domain in the target vCenter (for the Infrastructure or a migration spec).
    pub fn target_failure_domain(&self, name: &str) -> FailureDomain {
        FailureDomain {
            name: name.into(),
            region: "dst-region".into(),
            zone: "dst-zone-a".into(),
            server: self.target.host.clone(),
            datacenter: self.target.datacenter.clone(),
            compute_cluster: target::CLUSTER_PATH.into(),
            datastore: target::DATASTORE_PATH.into(),
            networks: vec![target::NETWORK.into()],
            resource_pool: target::RESOURCE_POOL_PATH.into(),
            folder: self.target.folder.clone(),
            template: self.target.template.clone(),
        }
    }

    /// `{server, port, datacenters}` of the target, as `Infrastructure` lists vCenters.
    pub fn target_vcenter_json(&self) -> Value {
        json!({"server": self.target.host, "port": self.target.port, "datacenters": [self.target.datacenter]})
    }

    /// Every Machine the seed made.
    pub fn machines(&self) -> Vec<String> {
        self.masters.iter().chain(&self.workers).chain(&self.infra_machines).cloned().collect()
    }
}

fn source_fd(src: &Vcsim, infra_id: &str, template: &str) -> FailureDomain {
    FailureDomain {
        name: SOURCE_FAILURE_DOMAIN.into(),
        region: "src-region".into(),
        zone: "src-zone-a".into(),
        server: src.host(),
        datacenter: source::DATACENTER.into(),
        compute_cluster: source::CLUSTER_PATH.into(),
        datastore: source::DATASTORE_PATH.into(),
        networks: vec![source::NETWORK.into()],
        resource_pool: source::RESOURCE_POOL_PATH.into(),
        folder: format!("{}/{infra_id}", source::VM_FOLDER_PATH),
        template: format!("{}/{template}", source::VM_FOLDER_PATH),
    }
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    /// MachineSet name, for workers and infra machines.
    set: Option<String>,
    labels: BTreeMap<String, String>,
    spec: Value,
}

struct Group {
    /// MachineSet name; None for the masters.
    set: Option<String>,
    want: usize,
    members: Vec<Member>,
}

/// Seed (or complete) the cluster. See the module docs for what is made.
pub async fn seed(env: &TestEnv, opts: &SeedOptions) -> Result<SeededCluster> {
    anyhow::ensure!(opts.worker_machinesets >= 1, "at least one worker MachineSet");
    let client = env.client();
    let (src, dst) = (env.source(), env.target());
    let id = opts.infra_id.as_str();
    let fd = source_fd(src, id, &opts.template_name);
    let conc = opts.concurrency.max(1);

    // The API server builds a CRD's handler and field-manager schema on the first write
    // (seconds for these schemas): warm them all at once with dry-run creates.
    let warm = [
        (o::infrastructure(), false),
        (o::cluster_operator(), false),
        (o::cluster_version(), false),
        (o::machine(), true),
        (o::machine_set(), true),
        (o::cpms(), true),
    ]
    .map(|(ar, namespaced)| {
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj = DynamicObject::new("vsm-sim-warm-up", &ar);
        obj.data = json!({"spec": {}});
        async move {
            // Refusals are fine: the point is the first pass through the write path.
            let _ = api.create(&PostParams { dry_run: true, ..Default::default() }, &obj).await;
        }
    });
    let (_, namespaces) = tokio::join!(futures::future::join_all(warm), ensure_namespaces(&client));
    namespaces?;

    // The plan: masters and one group per MachineSet.
    let master_spec = provider::provider_spec(&fd, id, MASTER);
    let master_labels = |role: &str| -> BTreeMap<String, String> {
        [(o::LABEL_CLUSTER, id), (o::LABEL_ROLE, role), (o::LABEL_TYPE, role)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut groups = vec![Group {
        set: None,
        want: 3,
        members: (0..3)
            .map(|i| Member {
                name: format!("{id}-master-{i}"),
                set: None,
                labels: master_labels("master"),
                spec: json!({"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": master_spec}}),
            })
            .collect(),
    }];
    let mut sets: Vec<(String, u32, Value)> = Vec::new();
    for k in 0..opts.worker_machinesets {
        let count = opts.workers / opts.worker_machinesets + u32::from(k < opts.workers % opts.worker_machinesets);
        let mut spec = provider::provider_spec(&fd, id, WORKER);
        if k == 0 && opts.static_ip_workers {
            let dev = &mut spec["network"]["devices"][0];
            dev["gateway"] = json!("192.168.10.1");
            dev["nameservers"] = json!(["192.168.10.53", "192.168.10.54"]);
            dev["addressesFromPools"] = json!([{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": format!("{id}-worker-pool")}]);
        }
        sets.push((format!("{id}-worker-{k}"), count, json!({"metadata": {}, "providerSpec": {"value": spec}})));
    }
    let infra_set = opts.infra_machines.map(|n| {
        let spec = provider::provider_spec(&fd, id, WORKER);
        let node_labels = json!({"labels": {"node-role.kubernetes.io/infra": ""}});
        (format!("{id}-infra-0"), n, json!({"metadata": node_labels, "providerSpec": {"value": spec}}))
    });
    sets.extend(infra_set.clone());

    // MachineSets last: a MachineSet the real machine-api sees before its Machines gets
    // Machines of its own (and removes the surplus after). An existing MachineSet's replica
    // count is what its group wants; the owner references of new Machines are set once
    // their MachineSet exists (as the MachineSet controller adopts orphans).
    let ms_api = o::machine_sets_api(&client);
    let mut set_uids = HashMap::new();
    let mut set_objects = Vec::new();
    for (name, count, spec) in &sets {
        let role = if name.contains("-infra-") { "infra" } else { "worker" };
        let mut labels = master_labels(role);
        labels.insert(o::LABEL_MACHINESET.into(), name.clone());
        let obj = json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
            "metadata": {"name": name, "namespace": o::MACHINE_API_NS,
                         "labels": {o::LABEL_CLUSTER: id},
                         "annotations": {"machine.openshift.io/memoryMb": "16384", "machine.openshift.io/vCPU": "4"}},
            "spec": {
                "replicas": count,
                "selector": {"matchLabels": {o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: name}},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        });
        let existing = ms_api.get_opt(name).await?;
        let want =
            existing.as_ref().and_then(|ms| o::i64_at(&ms.data, "/spec/replicas")).unwrap_or(*count as i64).max(0)
                as usize;
        if let Some(uid) = existing.as_ref().and_then(|ms| ms.uid()) {
            set_uids.insert(name.clone(), uid);
        }
        set_objects.push(obj);
        groups.push(Group {
            set: Some(name.clone()),
            want,
            members: (0..want.max(*count as usize))
                .map(|i| Member {
                    name: format!("{name}-{}", name_suffix(&format!("{name}/{i}"))),
                    set: Some(name.clone()),
                    labels: labels.clone(),
                    spec: spec.clone(),
                })
                .collect(),
        });
    }

    // Which members to make: only what incomplete groups lack.
    let m_api = o::machines_api(&client);
    let machines: HashMap<String, DynamicObject> =
        m_api.list(&ListParams::default()).await?.items.into_iter().map(|m| (m.name_any(), m)).collect();
    let mut todo: Vec<Member> = Vec::new();
    let mut kept: Vec<Member> = Vec::new();
    for g in &groups {
        let in_group = |m: &DynamicObject| match &g.set {
            None => m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some("master"),
            Some(s) => m.labels().get(o::LABEL_MACHINESET) == Some(s),
        };
        let present = machines.values().filter(|m| in_group(m) && !o::is_deleting(*m)).count();
        let mut missing = g.want.saturating_sub(present);
        for m in &g.members {
            if machines.contains_key(&m.name) {
                kept.push(m.clone());
            } else if missing > 0 {
                missing -= 1;
                todo.push(m.clone());
            }
        }
    }

    // vSphere: templates in both vCenters, the folder, a VM per new Machine.
    let pool = SessionPool::new(ClientOptions::default());
    let result = async {
        let sc = login(&pool, env, src).await?;
        let tc = login(&pool, env, dst).await?;
        let src_template = ensure_template(
            &sc,
            src,
            &TemplateSpec {
                folder: source::VM_FOLDER_PATH,
                name: &opts.template_name,
                pool: source::RESOURCE_POOL_PATH,
                datastore: source::DATASTORE_PATH,
                disk_gib: TEMPLATE_DISK_GIB,
            },
        )
        .await?;
        let dst_template = ensure_template(
            &tc,
            dst,
            &TemplateSpec {
                folder: target::VM_FOLDER_PATH,
                name: &opts.template_name,
                pool: target::RESOURCE_POOL_PATH,
                datastore: target::DATASTORE_PATH,
                disk_gib: TEMPLATE_DISK_GIB,
            },
        )
        .await?;
        sc.create_folder(&fd.folder).await?;
        let existing: HashMap<String, String> =
            sc.list_vms(&fd.folder).await?.into_iter().map(|v| (v.name, v.uuid)).collect();
        let made: Vec<(String, String)> =
            futures::stream::iter(todo.iter().filter(|m| !existing.contains_key(&m.name)))
                .map(|m| {
                    let (sc, fd, t) = (&sc, &fd, &src_template);
                    async move {
                        let vm = match sc
                            .clone_vm(t, &fd.folder, &m.name, Some(&fd.resource_pool), Some(&fd.datastore), true)
                            .await
                        {
                            Err(VsphereError::AlreadyExists { .. }) => {
                                sc.vm(&format!("{}/{}", fd.folder, m.name)).await?
                            }
                            other => other?,
                        };
                        // The installer's VMs have a card on the machine network.
                        src.add_network_card(&vm.uuid, source::NETWORK).await?;
                        anyhow::Ok((m.name.clone(), vm.uuid))
                    }
                })
                .buffer_unordered(conc)
                .try_collect()
                .await?;
        let mut uuids = existing;
        uuids.extend(made);
        anyhow::Ok((uuids, src_template, dst_template))
    }
    .await;
    pool.shutdown().await;
    let (uuids, src_template, dst_template) = result?;

    seed_config(&client, env, opts, &fd).await?;

    // Nodes, then Machines (a Running Machine points at its Node).
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes: HashMap<String, Node> =
        nodes_api.list(&ListParams::default()).await?.items.into_iter().map(|n| (n.name_any(), n)).collect();
    let members: Vec<&Member> = todo.iter().chain(&kept).collect();
    futures::stream::iter(members.iter())
        .map(|m| {
            let (client, machines, nodes, uuids, set_uids) = (&client, &machines, &nodes, &uuids, &set_uids);
            async move {
                let existing = machines.get(&m.name);
                let provider_id = existing
                    .and_then(|e| o::nonempty_at(&e.data, "/spec/providerID").map(String::from))
                    .or_else(|| uuids.get(&m.name).map(|u| format!("vsphere://{u}")))
                    .with_context(|| format!("no VM for machine {}", m.name))?;
                seed_member(client, m, existing, nodes.get(&m.name), &provider_id, set_uids).await
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<()>>()
        .await?;

    // The MachineSets, and the Machines of the new ones adopted.
    let had_set: HashSet<String> = set_uids.keys().cloned().collect();
    for obj in set_objects {
        let (ms, _) = ensure::<DynamicObject>(&ms_api, None, obj, None).await?;
        set_uids.insert(ms.name_any(), ms.uid().unwrap_or_default());
    }
    for m in members.iter().filter(|m| m.set.as_ref().is_some_and(|s| !had_set.contains(s))) {
        let set = m.set.as_deref().unwrap_or_default();
        let current = m_api.get(&m.name).await?;
        if o::controller_uid(&current, "MachineSet").is_none() {
            let uid = set_uids.get(set).context("MachineSet uid")?;
            let owner = o::controller_ref("machine.openshift.io/v1beta1", "MachineSet", set, uid);
            let patch = json!({"metadata": {"ownerReferences": [owner]}});
            m_api.patch(&m.name, &o::merge_params(MANAGER), &Patch::Merge(patch)).await?;
        }
    }

    // MachineSet status, as machine-api would report it for the Machines now there.
    let now_there: Vec<DynamicObject> = m_api.list(&ListParams::default()).await?.items;
    for (name, _, _) in &sets {
        let ms = ms_api.get(name).await?;
        if ms.data.pointer("/status/observedGeneration").is_some() {
            continue;
        }
        let members = now_there
            .iter()
            .filter(|m| m.labels().get(o::LABEL_MACHINESET) == Some(name) && !o::is_deleting(*m))
            .count();
        let status = json!({"replicas": members, "fullyLabeledReplicas": members, "readyReplicas": members,
                            "availableReplicas": members, "observedGeneration": ms.metadata.generation,
                            "labelSelector": format!("{}={id},{}={name}", o::LABEL_CLUSTER, o::LABEL_MACHINESET)});
        ms_api.patch_status(name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }

    seed_cpms(&client, opts, &master_spec, &fd).await?;
    seed_workloads(&client, conc).await?;

    // Report what is there now.
    let all: Vec<DynamicObject> = m_api.list(&ListParams::default()).await?.items;
    let names = |pred: &dyn Fn(&DynamicObject) -> bool| {
        let mut v: Vec<String> = all.iter().filter(|m| pred(m) && !o::is_deleting(*m)).map(|m| m.name_any()).collect();
        v.sort();
        v
    };
    let role = |m: &DynamicObject, r: &str| m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some(r);
    let worker_sets: Vec<String> = sets.iter().map(|s| s.0.clone()).filter(|n| !n.contains("-infra-")).collect();
    let in_sets =
        |m: &DynamicObject, sets: &[String]| m.labels().get(o::LABEL_MACHINESET).is_some_and(|s| sets.contains(s));
    let infra_name = infra_set.map(|s| s.0);
    let infra_names: Vec<String> = infra_name.iter().cloned().collect();
    let masters = names(&|m| role(m, "master"));
    let workers = names(&|m| in_sets(m, &worker_sets));
    let infra_machines = names(&|m| in_sets(m, &infra_names));
    let mut node_names: Vec<String> = masters.iter().chain(&workers).chain(&infra_machines).cloned().collect();
    node_names.sort();
    let vc = |v: &Vcsim, dc: &str, template: String, vm_folder: &str| SeededVCenter {
        host: v.host(),
        port: v.port(),
        server: v.server(),
        datacenter: dc.into(),
        template,
        folder: format!("{vm_folder}/{id}"),
    };
    Ok(SeededCluster {
        infra_id: id.to_string(),
        source: vc(src, source::DATACENTER, src_template, source::VM_FOLDER_PATH),
        target: vc(dst, target::DATACENTER, dst_template, target::VM_FOLDER_PATH),
        source_failure_domain: (!opts.legacy_no_failure_domains).then_some(fd),
        masters,
        worker_machinesets: worker_sets,
        workers,
        infra_machineset: infra_name,
        infra_machines,
        nodes: node_names,
        options: opts.clone(),
    })
}

/// Says, from an object's current status, whether the seeded one must still be written.
type NeedsStatus = dyn Fn(&Value) -> bool + Sync;

/// Create `obj` unless it exists (`known`: what a list found; None = look it up), then
/// write `status` if `needs_status(current status)` says it was never written.
async fn ensure<K>(
    api: &Api<K>,
    known: Option<Option<&K>>,
    obj: Value,
    status: Option<(Value, &NeedsStatus)>,
) -> Result<(K, bool)>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj["metadata"]["name"].as_str().context("object without a name")?.to_string();
    let existing = match known {
        Some(k) => k.cloned(),
        None => api.get_opt(&name).await?,
    };
    let (current, created) = match existing {
        Some(e) => (e, false),
        None => {
            let want: K = serde_json::from_value(obj)?;
            match api.create(&PostParams::default(), &want).await {
                Ok(made) => (made, true),
                Err(kube::Error::Api(s)) if s.code == 409 => (api.get(&name).await?, false),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {name}"))),
            }
        }
    };
    if let Some((status, needs)) = status {
        let have = serde_json::to_value(&current)?.get("status").cloned().unwrap_or(Value::Null);
        if needs(&have) {
            let pp = o::merge_params(MANAGER);
            let done = api.patch_status(&name, &pp, &Patch::Merge(json!({"status": status}))).await?;
            return Ok((done, created));
        }
    }
    Ok((current, created))
}

fn missing(pointer: &'static str) -> impl Fn(&Value) -> bool + Sync {
    move |s: &Value| s.pointer(pointer).is_none_or(Value::is_null)
}

async fn ensure_namespaces(client: &kube::Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in super::WORKLOAD_NAMESPACES.iter().chain(&[o::CLOUD_CONFIG_NS]) {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        o::create_if_absent(&api, &obj).await?;
    }
    Ok(())
}

async fn login(pool: &SessionPool, env: &TestEnv, vc: &Vcsim) -> Result<std::sync::Arc<Client>> {
    let tls = TlsPolicy { ca_bundle_pem: Some(env.ca_pem().to_string()), ..Default::default() };
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
        tls,
    };
    pool.client(&spec).await.with_context(|| format!("logging in to vCenter {}", vc.name))
}

/// A template VM at `<folder>/<name>` the real machine actuator can clone (made by the
/// launcher: [`Vcsim::ensure_template`]); a VM already there is kept, made a template.
async fn ensure_template(c: &Client, vc: &Vcsim, spec: &TemplateSpec<'_>) -> Result<String> {
    vc.ensure_template(spec).await.with_context(|| format!("the template in vCenter {}", vc.name))?;
    let path = format!("{}/{}", spec.folder, spec.name);
    if !c.vm(&path).await?.template {
        c.mark_as_template(&path).await?;
    }
    Ok(path)
}

/// `<role>-user-data` as the installer writes it: an ignition pointer config to the
/// machine config server's pool `<role>` (what the simulated kubelets read their role from).
fn user_data_secret(infra_id: &str, role: &str) -> Value {
    let ignition = json!({
        "ignition": {
            "config": {"merge": [{"source": format!("https://api-int.{infra_id}.example.com:22623/config/{role}")}]},
            "security": {"tls": {"certificateAuthorities": [{"source": "data:text/plain;charset=utf-8;base64,"}]}},
            "version": "3.2.0",
        },
    });
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{role}-user-data"), "namespace": o::MACHINE_API_NS},
        "type": "Opaque",
        "stringData": {"userData": ignition.to_string(), "disableTemplating": "true"},
    })
}

/// Infrastructure, credentials, cloud config, ClusterVersion and ClusterOperators.
async fn seed_config(client: &kube::Client, env: &TestEnv, opts: &SeedOptions, fd: &FailureDomain) -> Result<()> {
    let src = env.source();
    let id = opts.infra_id.as_str();
    let mut vsphere = json!({
        "vcenters": [{"server": src.host(), "port": src.port(), "datacenters": [source::DATACENTER]}],
        "apiServerInternalIPs": ["10.0.0.5"],
        "ingressIPs": ["10.0.0.6"],
        "machineNetworks": ["10.0.0.0/16"],
        "nodeNetworking": {"external": {"networkSubnetCidr": ["10.0.0.0/16"]}, "internal": {"networkSubnetCidr": ["10.0.0.0/16"]}},
    });
    if !opts.legacy_no_failure_domains {
        vsphere["failureDomains"] = json!([fd.to_json()]);
    }
    let infra = json!({
        "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
        "metadata": {"name": o::INFRA_NAME},
        "spec": {"cloudConfig": {"name": o::CLOUD_CONFIG_NAME, "key": o::CLOUD_CONFIG_KEY},
                 "platformSpec": {"type": "VSphere", "vsphere": vsphere}},
    });
    let infra_status = json!({
        "infrastructureName": id,
        "platform": "VSphere",
        "platformStatus": {"type": "VSphere", "vsphere": {
            "apiServerInternalIP": "10.0.0.5", "apiServerInternalIPs": ["10.0.0.5"],
            "ingressIP": "10.0.0.6", "ingressIPs": ["10.0.0.6"], "machineNetworks": ["10.0.0.0/16"]}},
        "apiServerURL": format!("https://api.{id}.example.com:6443"),
        "apiServerInternalURI": format!("https://api-int.{id}.example.com:6443"),
        "etcdDiscoveryDomain": "",
        "controlPlaneTopology": "HighlyAvailable",
        "infrastructureTopology": "HighlyAvailable",
        "cpuPartitioning": "None",
    });
    // The test environment's machine-api starts against a bare Infrastructure (platform type
    // and name only, `machine_api::ensure_cluster_config`): complete it rather than keep it.
    let infra_api = o::infra_api(client);
    if let Some(bare) = infra_api.get_opt(o::INFRA_NAME).await?
        && bare.data.pointer("/spec/platformSpec/vsphere").is_none()
    {
        let pp = o::merge_params(MANAGER);
        infra_api.patch(o::INFRA_NAME, &pp, &Patch::Merge(json!({"spec": infra["spec"]}))).await?;
        infra_api.patch_status(o::INFRA_NAME, &pp, &Patch::Merge(json!({"status": infra_status}))).await?;
    }
    let check = missing("/infrastructureName");
    ensure::<DynamicObject>(&infra_api, None, infra, Some((infra_status, &check))).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    let creds = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": o::CREDS_NAME, "namespace": o::CREDS_NS,
                     "annotations": {"cloudcredential.openshift.io/mode": "passthrough"}},
        "type": "Opaque",
        "stringData": {format!("{}.username", src.host()): src.username, format!("{}.password", src.host()): src.password},
    });
    ensure::<Secret>(&secrets, None, creds, None).await?;
    // The cloud credential operator's copy for machine-api, and the installer's user data.
    super::credentials::sync_copy(client).await?;
    let user_data: Api<Secret> = Api::namespaced(client.clone(), o::MACHINE_API_NS);
    for role in ["master", "worker"] {
        ensure::<Secret>(&user_data, None, user_data_secret(id, role), None).await?;
    }

    let text = cloud_config::render(
        opts.cloud_config,
        &CloudConfigInput {
            server: &src.host(),
            port: src.port(),
            datacenter: source::DATACENTER,
            datastore: source::DATASTORE_PATH,
            folder: &fd.folder,
            resource_pool: source::RESOURCE_POOL_PATH,
        },
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), o::CLOUD_CONFIG_NS);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": o::CLOUD_CONFIG_NAME, "namespace": o::CLOUD_CONFIG_NS},
                    "data": {o::CLOUD_CONFIG_KEY: text}});
    ensure::<ConfigMap>(&cms, None, cm, None).await?;

    let version = &opts.openshift_version;
    let image = format!("quay.io/openshift-release-dev/ocp-release@sha256:{}", hex::encode([0x5e; 32]));
    let cluster_id = {
        let h = hex::encode(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(id.as_bytes())));
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    };
    let now = o::now();
    let cv = json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"},
                    "spec": {"clusterID": cluster_id, "channel": "stable-4.18"}});
    let cond = |t: &str, s: &str, msg: &str| json!({"type": t, "status": s, "lastTransitionTime": now, "message": msg, "reason": ""});
    let cv_status = json!({
        "desired": {"version": version, "image": image},
        "availableUpdates": [],
        "observedGeneration": 1,
        "versionHash": name_suffix(version),
        "history": [{"state": "Completed", "version": version, "image": image, "verified": false,
                     "startedTime": now, "completionTime": now}],
        "conditions": [
            cond("Available", "True", &format!("Done applying {version}")),
            cond("Failing", "False", ""),
            cond("Progressing", "False", &format!("Cluster version is {version}")),
            cond("RetrievedUpdates", "False", "no upstream configured"),
        ],
    });
    let cv_api: Api<DynamicObject> = Api::all_with(client.clone(), &o::cluster_version());
    let check = missing("/desired");
    ensure::<DynamicObject>(&cv_api, None, cv, Some((cv_status, &check))).await?;

    let co_api = o::operators_api(client);
    futures::stream::iter(CLUSTER_OPERATORS)
        .map(|name| {
            let co_api = &co_api;
            async move {
                let obj = json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator",
                                 "metadata": {"name": name}, "spec": {}});
                let status = json!({
                    "conditions": healthy_conditions(name),
                    "versions": [{"name": "operator", "version": version}],
                    "relatedObjects": [{"group": "", "resource": "namespaces", "name": format!("openshift-{name}")}],
                });
                let check = missing("/conditions");
                ensure::<DynamicObject>(co_api, None, obj, Some((status, &check))).await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// A Node and a Machine (Running, with its Node) for one member.
async fn seed_member(
    client: &kube::Client,
    m: &Member,
    existing: Option<&DynamicObject>,
    node: Option<&Node>,
    provider_id: &str,
    set_uids: &HashMap<String, String>,
) -> Result<()> {
    let mut metadata = json!({"name": m.name, "namespace": o::MACHINE_API_NS, "labels": m.labels,
                              "finalizers": [o::MACHINE_FINALIZER]});
    if let Some((set, uid)) = m.set.as_ref().and_then(|set| Some((set, set_uids.get(set)?))) {
        metadata["ownerReferences"] =
            json!([o::controller_ref("machine.openshift.io/v1beta1", "MachineSet", set, uid)]);
    }
    let mut spec = m.spec.clone();
    spec["providerID"] = json!(provider_id);
    let machine =
        json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine", "metadata": metadata, "spec": spec});
    let as_obj: DynamicObject = serde_json::from_value(machine.clone())?;

    let ip = o::ip_for("10.0", &m.name);
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |s: &Value| {
        !s.pointer("/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    };
    let (node, _) = ensure::<Node>(
        &nodes,
        Some(node),
        machine_node_manifest(&as_obj, provider_id),
        Some((node_status(&m.name, &ip), &ready)),
    )
    .await?;

    let uuid = provider_id.trim_start_matches("vsphere://");
    let status = json!({
        "phase": "Running",
        "lastUpdated": o::now(),
        "nodeRef": {"kind": "Node", "name": node.name_any(), "uid": node.uid()},
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "InternalDNS", "address": m.name}],
        "providerStatus": {"instanceId": uuid, "instanceState": "poweredOn", "conditions": [{
            "type": "MachineCreation", "status": "True", "reason": "MachineCreationSucceeded",
            "message": "Machine successfully created", "lastTransitionTime": o::now()}]},
    });
    let check = missing("/phase");
    ensure::<DynamicObject>(&o::machines_api(client), Some(existing), machine, Some((status, &check))).await?;
    Ok(())
}

async fn seed_cpms(client: &kube::Client, opts: &SeedOptions, master_spec: &Value, fd: &FailureDomain) -> Result<()> {
    let id = &opts.infra_id;
    let mut template = json!({
        "metadata": {"labels": {o::LABEL_CLUSTER: id, o::LABEL_ROLE: "master", o::LABEL_TYPE: "master"}},
        "spec": {"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": master_spec}},
    });
    if !opts.legacy_no_failure_domains {
        template["failureDomains"] = json!({"platform": "VSphere", "vsphere": [{"name": fd.name}]});
    }
    let obj = json!({
        "apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
        "metadata": {"name": o::CPMS_NAME, "namespace": o::MACHINE_API_NS},
        "spec": {
            "replicas": 3,
            "state": "Active",
            "strategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {o::LABEL_ROLE: "master", o::LABEL_TYPE: "master"}},
            "template": {"machineType": "machines_v1beta1_machine_openshift_io", "machines_v1beta1_machine_openshift_io": template},
        },
    });
    let now = o::now();
    let cond = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "reason": r, "message": "", "lastTransitionTime": now});
    let status = json!({
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "unavailableReplicas": 0, "observedGeneration": 1,
        "labelSelector": format!("{}=master,{}=master", o::LABEL_ROLE, o::LABEL_TYPE),
        "conditions": [cond("Available", "True", "AllReplicasAvailable"), cond("Degraded", "False", "AsExpected"),
                       cond("Progressing", "False", "AllReplicasUpdated")],
    });
    let check = missing("/observedGeneration");
    ensure::<DynamicObject>(&o::cpms_api(client), None, obj, Some((status, &check))).await?;
    Ok(())
}

/// A Deployment or DaemonSet of the cluster: namespace, name, pod labels, replicas (None:
/// a DaemonSet on every Node), on masters only.
struct Workload {
    ns: &'static str,
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    replicas: Option<u32>,
    masters_only: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        ns: o::CVO_NS,
        name: o::CVO_NAME,
        labels: &[("k8s-app", "cluster-version-operator")],
        replicas: Some(1),
        masters_only: true,
    },
    Workload {
        ns: o::MCO_NS,
        name: "machine-config-operator",
        labels: &[("k8s-app", "machine-config-operator")],
        replicas: Some(1),
        masters_only: true,
    },
    Workload {
        ns: o::CCM_NS,
        name: "vsphere-cloud-controller-manager",
        labels: &[
            ("k8s-app", "vsphere-cloud-controller-manager"),
            ("infrastructure.openshift.io/cloud-controller-manager", "VSphere"),
        ],
        replicas: Some(2),
        masters_only: true,
    },
    Workload {
        ns: o::MACHINE_API_NS,
        name: "machine-api-controllers",
        labels: &[("api", "clusterapi"), ("k8s-app", "controller")],
        replicas: Some(1),
        masters_only: true,
    },
    Workload {
        ns: o::CSI_NS,
        name: "vmware-vsphere-csi-driver-controller",
        labels: &[("app", "vmware-vsphere-csi-driver-controller")],
        replicas: Some(2),
        masters_only: true,
    },
    Workload {
        ns: o::CSI_NS,
        name: "vmware-vsphere-csi-driver-node",
        labels: &[("app", "vmware-vsphere-csi-driver-node")],
        replicas: None,
        masters_only: false,
    },
];

fn workload_manifest(w: &Workload) -> Value {
    let labels: BTreeMap<&str, &str> = w.labels.iter().copied().collect();
    let mut pod_spec = json!({"containers": [{"name": w.name, "image": format!("quay.io/openshift-release-dev/ocp-v4.0-art-dev:{}", w.name)}]});
    if w.masters_only {
        pod_spec["nodeSelector"] = json!({"node-role.kubernetes.io/master": ""});
    }
    let mut spec =
        json!({"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}});
    let kind = match w.replicas {
        Some(r) => {
            spec["replicas"] = json!(r);
            "Deployment"
        }
        None => "DaemonSet",
    };
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": w.name, "namespace": w.ns}, "spec": spec})
}

/// Deployments and the CSI node DaemonSet, with Running, Ready pods and their statuses.
async fn seed_workloads(client: &kube::Client, conc: usize) -> Result<()> {
    let nodes: Vec<Node> = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let node_ip = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap_or_default()
    };
    let is_master = |n: &Node| n.labels().contains_key("node-role.kubernetes.io/master");
    let mut masters: Vec<&Node> = nodes.iter().filter(|n| is_master(n) && !o::is_deleting(*n)).collect();
    masters.sort_by_key(|n| n.name_any());
    let all_nodes: Vec<&Node> = nodes.iter().filter(|n| !o::is_deleting(*n)).collect();

    for w in WORKLOADS {
        let manifest = workload_manifest(w);
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), w.ns);
        let selector = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let existing: Vec<Pod> = pods_api.list(&ListParams::default().labels(&selector)).await?.items;
        let existing_names: HashSet<String> = existing.iter().map(|p| p.name_any()).collect();
        let active: Vec<&Pod> = existing.iter().filter(|p| pod_active(p)).collect();

        // (name, node) of every pod to make.
        let (owner_uid, template, plan): (String, _, Vec<(String, &Node)>) = match w.replicas {
            Some(want) => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), w.ns);
                let (d, _) = ensure::<Deployment>(&api, None, manifest, None).await?;
                let spec = d.spec.clone().context("deployment spec")?;
                let want = spec.replicas.map(|r| r.max(0) as usize).unwrap_or(want as usize);
                let hash = template_hash(&spec.template);
                let mut missing = want.saturating_sub(active.len());
                let mut plan = Vec::new();
                for i in 0..want {
                    let name = format!("{}-{hash}-{}", w.name, name_suffix(&format!("{}/{i}", w.name)));
                    if missing > 0 && !existing_names.contains(&name) && !masters.is_empty() {
                        missing -= 1;
                        plan.push((name, masters[i % masters.len()]));
                    }
                }
                (d.uid().unwrap_or_default(), spec.template, plan)
            }
            None => {
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), w.ns);
                let (ds, _) = ensure::<DaemonSet>(&api, None, manifest, None).await?;
                let covered: HashSet<String> =
                    active.iter().filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())).collect();
                let plan = all_nodes
                    .iter()
                    .filter(|n| !covered.contains(&n.name_any()))
                    .map(|n| (format!("{}-{}", w.name, name_suffix(&n.name_any())), *n))
                    .filter(|(name, _)| !existing_names.contains(name))
                    .collect();
                (ds.uid().unwrap_or_default(), ds.spec.clone().context("daemonset spec")?.template, plan)
            }
        };
        let kind = if w.replicas.is_some() { "Deployment" } else { "DaemonSet" };
        futures::stream::iter(plan)
            .map(|(name, node)| {
                let (pods_api, template, owner_uid) = (&pods_api, &template, &owner_uid);
                async move {
                    let mut pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": serde_json::to_value(template.metadata.clone().unwrap_or_default())?,
                        "spec": serde_json::to_value(template.spec.clone().unwrap_or_default())?,
                    });
                    pod["metadata"]["name"] = json!(name);
                    pod["metadata"]["namespace"] = json!(w.ns);
                    pod["metadata"]["ownerReferences"] = json!([o::controller_ref("apps/v1", kind, w.name, owner_uid)]);
                    if kind == "Deployment" {
                        pod["metadata"]["labels"]["pod-template-hash"] = json!(template_hash(template));
                    }
                    pod["spec"]["nodeName"] = json!(node.name_any());
                    let (made, _) = ensure::<Pod>(pods_api, Some(None), pod, None).await?;
                    let status = running_status(&made, &node_ip(node));
                    pods_api
                        .patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status})))
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(conc)
            .try_collect::<Vec<()>>()
            .await?;

        // The controller's status, from the pods now there.
        let pods: Vec<Pod> = pods_api.list(&ListParams::default().labels(&selector)).await?.items;
        let ready = pods.iter().filter(|p| pod_active(p) && super::workloads::pod_ready(p)).count();
        let active = pods.iter().filter(|p| pod_active(p)).count();
        match w.replicas {
            Some(_) => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), w.ns);
                let d = api.get(w.name).await?;
                if d.status.as_ref().and_then(|s| s.observed_generation).is_none() {
                    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
                    let now = o::now();
                    let status = json!({
                        "observedGeneration": d.metadata.generation, "replicas": active, "updatedReplicas": active,
                        "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": want.saturating_sub(ready),
                        "conditions": [
                            {"type": "Available", "status": if ready >= want { "True" } else { "False" }, "reason": "MinimumReplicasAvailable",
                             "message": "Deployment has minimum availability.", "lastTransitionTime": now, "lastUpdateTime": now},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                             "message": format!("ReplicaSet \"{}\" has successfully progressed.", w.name), "lastTransitionTime": now, "lastUpdateTime": now},
                        ],
                    });
                    api.patch_status(w.name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status})))
                        .await?;
                }
            }
            None => {
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), w.ns);
                let ds = api.get(w.name).await?;
                if ds.status.as_ref().and_then(|s| s.observed_generation).is_none() {
                    let status = json!({
                        "observedGeneration": ds.metadata.generation, "desiredNumberScheduled": all_nodes.len(),
                        "currentNumberScheduled": active, "updatedNumberScheduled": active, "numberMisscheduled": 0,
                        "numberReady": ready, "numberAvailable": ready, "numberUnavailable": all_nodes.len().saturating_sub(ready),
                    });
                    api.patch_status(w.name, &o::merge_params(MANAGER), &Patch::Merge(json!({"status": status})))
                        .await?;
                }
            }
        }
    }
    Ok(())
}
