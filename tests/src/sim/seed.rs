//! Seeding: an OpenShift-on-vSphere cluster that runs in the source vCenter(s), consistent
//! between the API server and the vcsim inventories.
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
//!
//! The order of work:
//! 1. The placement ([`super::layout`]): the failure domains machines go into (the first
//!    cluster of the first source vCenter; with [`SeedOptions::zonal`], every cluster of every
//!    source vCenter), the target vCenters' domains, the templates of every vCenter.
//! 2. The groups: 3 masters (master `i` in domain `i mod n`), the worker MachineSets and the
//!    infra set, each Machine in its set's domain; which members are missing.
//! 3. vSphere: templates in every vCenter, region/zone tags (zonal), the installer's tag
//!    category `openshift-<infraID>` and tag `<infraID>` in every source vCenter used
//!    (attached to every VM the seed makes), the folder
//!    `/<dc>/vm/<infraID>` in each source datacenter used, a VM per missing Machine cloned
//!    from its domain's template into its domain's pool, datastore and folder.
//! 4. The configuration (Infrastructure, credentials, cloud config, ClusterVersion,
//!    ClusterOperators), then a Ready Node and a Running Machine per member (the Node with
//!    the topology labels of its domain, [`topology_labels`]), then the MachineSets (they
//!    adopt their Machines), the MachineSet statuses, the CPMS, the MachineAutoscaler and
//!    MachineHealthCheck (zonal, when asked), the workloads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vsm_vsphere::{
    Cardinality, CategorySpec, Client, ClientOptions, Credentials, ManagedObject, ObjectKind, ServerSpec, SessionPool,
    TlsPolicy, VsphereError,
};

use super::cloud_config::{self, CloudConfigInput, ConfigVCenter};
use super::cluster_operators::CLUSTER_OPERATORS;
use super::layout::{self, TemplatePlan, VCenterLayout};
use super::nodes::{machine_node_manifest, node_status, topology_labels};
use super::objects::{self as o, name_suffix};
use super::operators::healthy_conditions;
use super::options::SeedOptions;
use super::provider::{self, FailureDomain, MASTER, WORKER};
use super::workloads::{pod_active, running_status, template_hash};
use crate::env::VCenterRole;
use crate::vcsim::{TemplateSpec, Vcsim, target};
use crate::{TestEnv, VcsimOptions};

const MANAGER: &str = "vsm-sim-seed";
pub const SOURCE_FAILURE_DOMAIN: &str = "source-fd";
pub const TARGET_FAILURE_DOMAIN: &str = "target-fd";
/// The templates' disk: no larger than any machine's `diskGiB` (the actuator cannot shrink it).
const TEMPLATE_DISK_GIB: u32 = 16;
/// The tag categories OpenShift reads a failure domain's region and zone from (the cloud
/// config's `labels`), as the installer's documentation has them made.
pub const REGION_CATEGORY: &str = "openshift-region";
pub const ZONE_CATEGORY: &str = "openshift-zone";
/// The labels the vSphere machine actuator gives a Machine from those tags.
pub const LABEL_MACHINE_REGION: &str = "machine.openshift.io/region";
pub const LABEL_MACHINE_ZONE: &str = "machine.openshift.io/zone";
/// The annotations the cluster autoscaler operator puts on a MachineAutoscaler's target.
pub const ANNOTATION_AUTOSCALER_MIN: &str = "machine.openshift.io/cluster-api-autoscaler-node-group-min-size";
pub const ANNOTATION_AUTOSCALER_MAX: &str = "machine.openshift.io/cluster-api-autoscaler-node-group-max-size";
/// The taint of a zonal seed's infra MachineSet (key; effect `NoSchedule`).
pub const INFRA_TAINT_KEY: &str = "node-role.kubernetes.io/infra";
/// The feature gate that lets vCenters be added to and removed from a running cluster.
pub const MULTI_VCENTER_GATE: &str = "VSphereMultiVCenterDay2";

/// One vCenter of the environment, as the seeded cluster names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededVCenter {
    /// The address OpenShift stores as `server` (no port).
    pub host: String,
    pub port: u16,
    /// `host:port`, for clients.
    pub server: String,
    pub datacenter: String,
    /// The template VM (`/<dc>/vm/<template>`), present in every vCenter.
    pub template: String,
    /// `/<dc>/vm/<infraID>`: exists in the source vCenters the cluster uses only (a migration
    /// creates the target's).
    pub folder: String,
}

/// What [`seed`] made.
#[derive(Clone, Debug)]
pub struct SeededCluster {
    pub infra_id: String,
    /// The first source vCenter.
    pub source: SeededVCenter,
    /// The first target vCenter.
    pub target: SeededVCenter,
    /// Every source vCenter the cluster runs in (the Infrastructure's `vcenters`), first
    /// [`SeededCluster::source`].
    pub source_vcenters: Vec<SeededVCenter>,
    /// Every target vCenter of the environment, first [`SeededCluster::target`].
    pub target_vcenters: Vec<SeededVCenter>,
    /// The Infrastructure's failure domain for the source (None with `legacy_no_failure_domains`);
    /// the first of `failure_domains`.
    pub source_failure_domain: Option<FailureDomain>,
    /// The failure domains the machines are in (one unless zonal); the Infrastructure lists
    /// them unless `legacy_no_failure_domains`.
    pub failure_domains: Vec<FailureDomain>,
    /// A failure domain per compute cluster of every target vCenter, its template made (for
    /// a migration spec; the Infrastructure does not list them).
    pub target_failure_domains: Vec<FailureDomain>,
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
    /// The failure domain (name) of each seeded MachineSet.
    pub machineset_domains: BTreeMap<String, String>,
    /// The failure domain (name) each Machine was seeded in.
    pub machine_domains: BTreeMap<String, String>,
    /// The MachineAutoscaler, when asked for (zonal).
    pub machine_autoscaler: Option<String>,
    /// The MachineHealthCheck, when asked for (zonal).
    pub machine_health_check: Option<String>,
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

    /// A failure domain of the cluster or of the targets, by name.
    pub fn failure_domain(&self, name: &str) -> Option<&FailureDomain> {
        self.failure_domains.iter().chain(&self.target_failure_domains).find(|fd| fd.name == name)
    }
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    /// MachineSet name, for workers and infra machines.
    set: Option<String>,
    labels: BTreeMap<String, String>,
    spec: Value,
    /// Index of its failure domain.
    domain: usize,
}

struct Group {
    /// MachineSet name; None for the masters.
    set: Option<String>,
    want: usize,
    members: Vec<Member>,
}

/// A MachineSet to seed.
struct SetPlan {
    name: String,
    replicas: u32,
    /// The Machine template's `spec`.
    spec: Value,
    domain: usize,
    role: &'static str,
}

/// The vCenters of `role` with their inventories; the first of each role falls back to the
/// classic preset's names when started without an inventory.
fn layouts(env: &TestEnv, role: VCenterRole) -> Result<Vec<VCenterLayout>> {
    let vcs: Vec<&Vcsim> = env.vcenters().into_iter().filter(|(r, _)| *r == role).map(|(_, v)| v).collect();
    vcs.iter()
        .enumerate()
        .map(|(i, vc)| {
            let fallback = || match role {
                VCenterRole::Source => VcsimOptions::source().inventory,
                VCenterRole::Target => VcsimOptions::target().inventory,
            };
            let inventory = vc.inventory.clone().or_else(|| (i == 0).then(fallback).flatten()).with_context(|| {
                format!("vCenter {} has no inventory names to seed by (start it from a preset)", vc.name)
            })?;
            Ok(VCenterLayout { host: vc.host(), port: vc.port(), inventory })
        })
        .collect()
}

/// The machine labels the actuator sets from the region and zone tags of `fd` (zonal only:
/// a classic seed's vCenter has no such tags).
fn machine_topology_labels(fd: &FailureDomain, zonal: bool) -> BTreeMap<String, String> {
    if !zonal {
        return BTreeMap::new();
    }
    [(LABEL_MACHINE_REGION, &fd.region), (LABEL_MACHINE_ZONE, &fd.zone)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The MachineSets of the seed (see [`super::layout`] and [`ZonalSeed`](super::ZonalSeed)).
fn plan_sets(opts: &SeedOptions, domains: &[FailureDomain]) -> Vec<SetPlan> {
    let id = opts.infra_id.as_str();
    let zonal = opts.zonal.is_some();
    let count = if zonal { domains.len() as u32 } else { opts.worker_machinesets };
    let mut sets: Vec<SetPlan> = (0..count)
        .map(|k| {
            let domain = if zonal { k as usize } else { 0 };
            let mut spec = provider::provider_spec(&domains[domain], id, WORKER);
            if k == 0 && opts.static_ip_workers {
                let dev = &mut spec["network"]["devices"][0];
                dev["gateway"] = json!("192.168.10.1");
                dev["nameservers"] = json!(["192.168.10.53", "192.168.10.54"]);
                dev["addressesFromPools"] = json!([{"group": "ipamcontroller.openshift.io", "resource": "IPPool", "name": format!("{id}-worker-pool")}]);
            }
            SetPlan {
                name: format!("{id}-worker-{k}"),
                replicas: layout::spread(opts.workers, count, k),
                spec: json!({"metadata": {}, "providerSpec": {"value": spec}}),
                domain,
                role: "worker",
            }
        })
        .collect();
    if let Some(n) = opts.infra_machines {
        let spec = provider::provider_spec(&domains[0], id, WORKER);
        let mut template =
            json!({"metadata": {"labels": {"node-role.kubernetes.io/infra": ""}}, "providerSpec": {"value": spec}});
        if zonal {
            template["taints"] = json!([{"key": INFRA_TAINT_KEY, "effect": "NoSchedule"}]);
        }
        sets.push(SetPlan { name: format!("{id}-infra-0"), replicas: n, spec: template, domain: 0, role: "infra" });
    }
    sets
}

/// Seed (or complete) the cluster. See the module docs for what is made.
pub async fn seed(env: &TestEnv, opts: &SeedOptions) -> Result<SeededCluster> {
    anyhow::ensure!(opts.worker_machinesets >= 1, "at least one worker MachineSet");
    anyhow::ensure!(
        opts.zonal.is_none() || !opts.legacy_no_failure_domains,
        "a zonal seed needs failure domains in the Infrastructure: not with legacy_no_failure_domains"
    );
    let client = env.client();
    let id = opts.infra_id.as_str();
    let zonal = opts.zonal.is_some();
    let conc = opts.concurrency.max(1);

    // 1. The placement.
    let sources = layouts(env, VCenterRole::Source)?;
    let targets = layouts(env, VCenterRole::Target)?;
    let domains: Vec<FailureDomain> = if zonal {
        layout::all_domains(&sources, id, &opts.template_name)
    } else {
        vec![layout::domain(&sources[0], 0, id, &opts.template_name)]
    };
    let used_sources: Vec<&VCenterLayout> =
        sources.iter().filter(|s| domains.iter().any(|d| d.server == s.host)).collect();
    let target_domains = layout::all_domains(&targets, id, &opts.template_name);
    let vcsim = |host: &str| env.vcenter(host).with_context(|| format!("no vCenter {host} in the environment"));
    // The Infrastructure's domains (what the cloud controller manager labels Nodes by).
    let infra_domains: &[FailureDomain] = if opts.legacy_no_failure_domains { &[] } else { &domains };

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

    // 2. The groups: masters and one group per MachineSet.
    let master_spec = provider::provider_spec(&domains[0], id, MASTER);
    let base_labels = |role: &str| -> BTreeMap<String, String> {
        [(o::LABEL_CLUSTER, id), (o::LABEL_ROLE, role), (o::LABEL_TYPE, role)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut groups = vec![Group {
        set: None,
        want: 3,
        members: (0..3)
            .map(|i| {
                let domain = layout::master_domain(i, domains.len());
                let fd = &domains[domain];
                let mut labels = base_labels("master");
                labels.extend(machine_topology_labels(fd, zonal));
                let spec = provider::provider_spec(fd, id, MASTER);
                Member {
                    name: format!("{id}-master-{i}"),
                    set: None,
                    labels,
                    spec: json!({"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": spec}}),
                    domain,
                }
            })
            .collect(),
    }];
    let sets = plan_sets(opts, &domains);

    // MachineSets last: a MachineSet the real machine-api sees before its Machines gets
    // Machines of its own (and removes the surplus after). An existing MachineSet's replica
    // count is what its group wants; the owner references of new Machines are set once
    // their MachineSet exists (as the MachineSet controller adopts orphans).
    let ms_api = o::machine_sets_api(&client);
    let mut set_uids = HashMap::new();
    let mut set_objects = Vec::new();
    for set in &sets {
        let name = &set.name;
        let mut labels = base_labels(set.role);
        labels.insert(o::LABEL_MACHINESET.into(), name.clone());
        let mut annotations = json!({"machine.openshift.io/memoryMb": "16384", "machine.openshift.io/vCPU": "4"});
        if let Some((min, max)) = autoscaled(opts, &sets, name) {
            annotations[ANNOTATION_AUTOSCALER_MIN] = json!(min.to_string());
            annotations[ANNOTATION_AUTOSCALER_MAX] = json!(max.to_string());
        }
        let obj = json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
            "metadata": {"name": name, "namespace": o::MACHINE_API_NS,
                         "labels": {o::LABEL_CLUSTER: id}, "annotations": annotations},
            "spec": {
                "replicas": set.replicas,
                "selector": {"matchLabels": {o::LABEL_CLUSTER: id, o::LABEL_MACHINESET: name}},
                "template": {"metadata": {"labels": labels}, "spec": set.spec},
            },
        });
        let existing = ms_api.get_opt(name).await?;
        let want = existing
            .as_ref()
            .and_then(|ms| o::i64_at(&ms.data, "/spec/replicas"))
            .unwrap_or(set.replicas as i64)
            .max(0) as usize;
        if let Some(uid) = existing.as_ref().and_then(|ms| ms.uid()) {
            set_uids.insert(name.clone(), uid);
        }
        set_objects.push(obj);
        let mut member_labels = labels.clone();
        member_labels.extend(machine_topology_labels(&domains[set.domain], zonal));
        groups.push(Group {
            set: Some(name.clone()),
            want,
            members: (0..want.max(set.replicas as usize))
                .map(|i| Member {
                    name: format!("{name}-{}", name_suffix(&format!("{name}/{i}"))),
                    set: Some(name.clone()),
                    labels: member_labels.clone(),
                    spec: set.spec.clone(),
                    domain: set.domain,
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

    // 3. vSphere: templates in every vCenter, tags, the folders, a VM per new Machine.
    let pool = SessionPool::new(ClientOptions::default());
    let result = async {
        let mut clients: HashMap<String, Arc<Client>> = HashMap::new();
        let mut plain_templates: HashMap<String, String> = HashMap::new();
        for vc in used_sources.iter().copied().chain(&targets) {
            let sim = vcsim(&vc.host)?;
            let c = login(&pool, env, sim).await?;
            for (i, t) in layout::templates(vc, &opts.template_name).iter().enumerate() {
                let path = ensure_template(&c, sim, t).await?;
                if i == 0 {
                    plain_templates.insert(vc.host.clone(), path);
                }
            }
            clients.insert(vc.host.clone(), c);
        }
        if zonal {
            for vc in &used_sources {
                ensure_zone_tags(&clients[&vc.host], vc, &domains).await.with_context(|| {
                    format!(
                        "the region and zone tags in vCenter {}",
                        vcsim(&vc.host).map(|v| v.name.as_str()).unwrap_or("?")
                    )
                })?;
            }
        }
        // The installer's own tag in every source vCenter, attached to the cluster's VMs.
        let mut cluster_tags: HashMap<String, String> = HashMap::new();
        for vc in &used_sources {
            cluster_tags.insert(vc.host.clone(), ensure_cluster_tag(&clients[&vc.host], id).await?);
        }
        let mut existing: HashMap<String, String> = HashMap::new();
        let folders: HashSet<(&str, &str)> = domains.iter().map(|d| (d.server.as_str(), d.folder.as_str())).collect();
        for (server, folder) in folders {
            let c = &clients[server];
            c.create_folder(folder).await?;
            existing.extend(c.list_vms(folder).await?.into_iter().map(|v| (v.name, v.uuid)));
        }
        let made: Vec<(String, String)> =
            futures::stream::iter(todo.iter().filter(|m| !existing.contains_key(&m.name)))
                .map(|m| {
                    let fd = &domains[m.domain];
                    let (clients, vcsim, cluster_tags) = (&clients, &vcsim, &cluster_tags);
                    async move {
                        let c = &clients[&fd.server];
                        let (pool, ds) = (fd.effective_resource_pool(), &fd.datastore);
                        let vm = match c.clone_vm(&fd.template, &fd.folder, &m.name, Some(&pool), Some(ds), true).await
                        {
                            Err(VsphereError::AlreadyExists { .. }) => {
                                c.vm(&format!("{}/{}", fd.folder, m.name)).await?
                            }
                            other => other.with_context(|| format!("cloning the VM of {} in {}", m.name, fd.name))?,
                        };
                        // The installer's VMs have a card on the machine network, and its tag.
                        vcsim(&fd.server)?.add_network_card(&vm.uuid, &fd.networks[0]).await?;
                        if let Some(tag) = cluster_tags.get(&fd.server) {
                            let obj = ManagedObject {
                                kind: ObjectKind::VirtualMachine,
                                moref: vm.moref.clone(),
                                path: vm.path.clone(),
                            };
                            c.attach_tag(tag, &obj).await?;
                        }
                        anyhow::Ok((m.name.clone(), vm.uuid))
                    }
                })
                .buffer_unordered(conc)
                .try_collect()
                .await?;
        existing.extend(made);
        anyhow::Ok((existing, plain_templates))
    }
    .await;
    pool.shutdown().await;
    let (uuids, plain_templates) = result?;

    // 4. The configuration, then Nodes and Machines (a Running Machine points at its Node).
    seed_config(&client, env, opts, &used_sources, infra_domains).await?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes: HashMap<String, Node> =
        nodes_api.list(&ListParams::default()).await?.items.into_iter().map(|n| (n.name_any(), n)).collect();
    let members: Vec<&Member> = todo.iter().chain(&kept).collect();
    futures::stream::iter(members.iter())
        .map(|m| {
            let (client, machines, nodes, uuids, set_uids) = (&client, &machines, &nodes, &uuids, &set_uids);
            let fd = &domains[m.domain];
            let topology = topology_labels(infra_domains, &fd.server, &fd.compute_cluster);
            async move {
                let existing = machines.get(&m.name);
                let provider_id = existing
                    .and_then(|e| o::nonempty_at(&e.data, "/spec/providerID").map(String::from))
                    .or_else(|| uuids.get(&m.name).map(|u| format!("vsphere://{u}")))
                    .with_context(|| format!("no VM for machine {}", m.name))?;
                seed_member(client, m, existing, nodes.get(&m.name), &provider_id, set_uids, &topology).await
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
    for set in &sets {
        let name = &set.name;
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

    let cpms_domains: &[FailureDomain] = if opts.legacy_no_failure_domains { &[] } else { &domains };
    seed_cpms(&client, opts, &master_spec, cpms_domains).await?;
    let worker_sets: Vec<String> = sets.iter().filter(|s| s.role == "worker").map(|s| s.name.clone()).collect();
    let (machine_autoscaler, machine_health_check) = match &opts.zonal {
        Some(z) => seed_zonal_extras(&client, id, z, &worker_sets).await?,
        None => (None, None),
    };
    seed_workloads(&client, conc).await?;

    // Report what is there now.
    let all: Vec<DynamicObject> = m_api.list(&ListParams::default()).await?.items;
    let names = |pred: &dyn Fn(&DynamicObject) -> bool| {
        let mut v: Vec<String> = all.iter().filter(|m| pred(m) && !o::is_deleting(*m)).map(|m| m.name_any()).collect();
        v.sort();
        v
    };
    let role = |m: &DynamicObject, r: &str| m.labels().get(o::LABEL_ROLE).map(String::as_str) == Some(r);
    let in_sets =
        |m: &DynamicObject, sets: &[String]| m.labels().get(o::LABEL_MACHINESET).is_some_and(|s| sets.contains(s));
    let infra_name = sets.iter().find(|s| s.role == "infra").map(|s| s.name.clone());
    let infra_names: Vec<String> = infra_name.iter().cloned().collect();
    let masters = names(&|m| role(m, "master"));
    let workers = names(&|m| in_sets(m, &worker_sets));
    let infra_machines = names(&|m| in_sets(m, &infra_names));
    let mut node_names: Vec<String> = masters.iter().chain(&workers).chain(&infra_machines).cloned().collect();
    node_names.sort();
    let machine_domains: BTreeMap<String, String> =
        groups.iter().flat_map(|g| &g.members).map(|m| (m.name.clone(), domains[m.domain].name.clone())).collect();
    let machine_domains = machine_domains.into_iter().filter(|(m, _)| node_names.contains(m)).collect();
    let seeded_vc = |l: &VCenterLayout| -> Result<SeededVCenter> {
        let v = vcsim(&l.host)?;
        Ok(SeededVCenter {
            host: l.host.clone(),
            port: l.port,
            server: v.server(),
            datacenter: l.inventory.datacenter.clone(),
            template: plain_templates.get(&l.host).cloned().unwrap_or_default(),
            folder: format!("{}/{id}", l.inventory.vm_folder_path()),
        })
    };
    let source_vcenters: Vec<SeededVCenter> = used_sources.iter().map(|l| seeded_vc(l)).collect::<Result<_>>()?;
    let target_vcenters: Vec<SeededVCenter> = targets.iter().map(seeded_vc).collect::<Result<_>>()?;
    Ok(SeededCluster {
        infra_id: id.to_string(),
        source: source_vcenters[0].clone(),
        target: target_vcenters[0].clone(),
        source_vcenters,
        target_vcenters,
        source_failure_domain: infra_domains.first().cloned(),
        failure_domains: domains.clone(),
        target_failure_domains: target_domains,
        masters,
        worker_machinesets: worker_sets,
        workers,
        infra_machineset: infra_name,
        infra_machines,
        machineset_domains: sets.iter().map(|s| (s.name.clone(), domains[s.domain].name.clone())).collect(),
        machine_domains,
        machine_autoscaler,
        machine_health_check,
        nodes: node_names,
        options: opts.clone(),
    })
}

/// The (min, max) of the MachineAutoscaler targeting MachineSet `name`, if any: a zonal
/// seed's autoscaler targets the first worker set.
fn autoscaled(opts: &SeedOptions, sets: &[SetPlan], name: &str) -> Option<(u32, u32)> {
    let first = sets.iter().find(|s| s.role == "worker")?;
    opts.zonal.as_ref()?.autoscaler.filter(|_| first.name == name)
}

/// The installer's category `openshift-<infraID>` and tag `<infraID>` (what the
/// installer makes in the vCenter it installs to, and the machine actuator attaches to
/// every VM it creates); the tag's id.
async fn ensure_cluster_tag(c: &Client, infra_id: &str) -> Result<String> {
    const DESCRIPTION: &str = "Added by openshift-install do not remove";
    let spec = CategorySpec {
        name: format!("openshift-{infra_id}"),
        description: DESCRIPTION.into(),
        cardinality: Cardinality::Single,
        associable_types: ["VirtualMachine", "ResourcePool", "Folder", "Datastore", "StoragePod"]
            .map(String::from)
            .to_vec(),
    };
    let (category, _) = c.ensure_category(&spec).await?;
    Ok(c.ensure_tag(&category, infra_id, DESCRIPTION).await?.0)
}

/// In `vc`: the categories [`REGION_CATEGORY`] and [`ZONE_CATEGORY`] (single cardinality,
/// as the migration's CreateTags makes them), the region tag attached to the datacenter and
/// each zone tag to its cluster, for the domains of `domains` in this vCenter.
async fn ensure_zone_tags(c: &Client, vc: &VCenterLayout, domains: &[FailureDomain]) -> Result<()> {
    let category = |name: &str, what: &str, on: &str| CategorySpec {
        name: name.into(),
        description: format!("OpenShift {what} for vSphere failure domains"),
        cardinality: Cardinality::Single,
        associable_types: vec![on.into()],
    };
    let (region_cat, _) = c.ensure_category(&category(REGION_CATEGORY, "region", "Datacenter")).await?;
    let (zone_cat, _) = c.ensure_category(&category(ZONE_CATEGORY, "zone", "ClusterComputeResource")).await?;
    let attach = |cat: String, tag: String, description: String, kind: ObjectKind, path: String| async move {
        let (tag_id, _) = c.ensure_tag(&cat, &tag, &description).await?;
        let obj = c.find(kind, &path).await?;
        if !c.list_attached_tags(&obj).await?.iter().any(|t| t.id == tag_id) {
            c.attach_tag(&tag_id, &obj).await?;
        }
        anyhow::Ok(())
    };
    for fd in domains.iter().filter(|d| d.server == vc.host) {
        let (region, zone) = (fd.region.clone(), fd.zone.clone());
        let dc = format!("/{}", fd.datacenter);
        attach(region_cat.clone(), region.clone(), format!("Region: {region}"), ObjectKind::Datacenter, dc).await?;
        let cluster = fd.compute_cluster.clone();
        attach(zone_cat.clone(), zone.clone(), format!("Zone: {zone}"), ObjectKind::ComputeCluster, cluster).await?;
    }
    Ok(())
}

/// The MachineAutoscaler and MachineHealthCheck of a zonal seed, when asked for; their names.
async fn seed_zonal_extras(
    client: &kube::Client,
    id: &str,
    z: &super::ZonalSeed,
    worker_sets: &[String],
) -> Result<(Option<String>, Option<String>)> {
    let mut autoscaler = None;
    if let Some((min, max)) = z.autoscaler {
        let target = worker_sets.first().context("a worker MachineSet for the autoscaler")?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &o::machine_autoscaler());
        let target_ref = json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet", "name": target});
        let obj = json!({
            "apiVersion": "autoscaling.openshift.io/v1beta1", "kind": "MachineAutoscaler",
            "metadata": {"name": target, "namespace": o::MACHINE_API_NS},
            "spec": {"minReplicas": min, "maxReplicas": max, "scaleTargetRef": target_ref},
        });
        let check = missing("/lastTargetRef");
        ensure::<DynamicObject>(&api, None, obj, Some((json!({"lastTargetRef": target_ref}), &check)))
            .await
            .context("the MachineAutoscaler (is its CRD installed? it is in ../shared/fixtures/openshift-crds)")?;
        autoscaler = Some(target.clone());
    }
    let mut health_check = None;
    if z.health_check {
        let name = format!("{id}-worker-health");
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &o::machine_health_check());
        let obj = json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineHealthCheck",
            "metadata": {"name": name, "namespace": o::MACHINE_API_NS},
            "spec": {
                "selector": {"matchLabels": {o::LABEL_CLUSTER: id, o::LABEL_ROLE: "worker", o::LABEL_TYPE: "worker"}},
                "unhealthyConditions": [
                    {"type": "Ready", "status": "False", "timeout": "300s"},
                    {"type": "Ready", "status": "Unknown", "timeout": "300s"},
                ],
                "maxUnhealthy": "40%",
                "nodeStartupTimeout": "10m",
            },
        });
        ensure::<DynamicObject>(&api, None, obj, None).await?;
        health_check = Some(name);
    }
    Ok((autoscaler, health_check))
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

/// Trust as the installer and the operators' manifests leave it: the source vCenters' own
/// CAs (given at install as `additionalTrustBundle`) in `openshift-config/user-ca-bundle`,
/// named by the Proxy `cluster` (which names none when there are none), and the empty
/// ConfigMaps labelled for the trusted CA injection ([`super::trust`] fills them).
async fn seed_trust(env: &TestEnv, client: &kube::Client) -> Result<()> {
    let own: Vec<String> =
        env.sources().iter().filter_map(|v| v.ca_pem.clone()).filter(|p| p != env.ca_pem()).collect();
    let mut trusted = "";
    if !own.is_empty() {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), o::CLOUD_CONFIG_NS);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "user-ca-bundle", "namespace": o::CLOUD_CONFIG_NS},
                        "data": {super::trust::TRUSTED_CA_KEY: own.concat()}});
        ensure::<ConfigMap>(&cms, None, cm, None).await?;
        trusted = "user-ca-bundle";
    }
    if env.installed_crds().iter().any(|c| c == "proxies.config.openshift.io") {
        let proxy = json!({"apiVersion": "config.openshift.io/v1", "kind": "Proxy", "metadata": {"name": "cluster"},
                           "spec": {"trustedCA": {"name": trusted}}});
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &o::proxy());
        ensure::<DynamicObject>(&api, None, proxy, None).await?;
    }
    for (ns, name) in super::trust::INJECTED {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns,
            "labels": {super::trust::INJECT_LABEL: "true"}}}))?;
        o::create_if_absent(&api, &cm).await?;
    }
    Ok(())
}

async fn ensure_namespaces(client: &kube::Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in super::WORKLOAD_NAMESPACES.iter().chain(&[o::CLOUD_CONFIG_NS, super::trust::MANAGED_NS]) {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        o::create_if_absent(&api, &obj).await?;
    }
    Ok(())
}

/// A session on `vc`, trusting its own CA.
async fn login(pool: &SessionPool, env: &TestEnv, vc: &Vcsim) -> Result<Arc<Client>> {
    let ca = vc.ca_pem.clone().unwrap_or_else(|| env.ca_pem().to_string());
    let tls = TlsPolicy { ca_bundle_pem: Some(ca), ..Default::default() };
    let spec = ServerSpec {
        server: vc.server(),
        credentials: Credentials::new(vc.username.clone(), vc.password.clone()),
        tls,
    };
    pool.client(&spec).await.with_context(|| format!("logging in to vCenter {}", vc.name))
}

/// A template VM at `<folder>/<name>` the real machine actuator can clone (made by the
/// launcher: [`Vcsim::ensure_template`]); a VM already there is kept, made a template.
async fn ensure_template(c: &Client, vc: &Vcsim, plan: &TemplatePlan) -> Result<String> {
    let spec = TemplateSpec {
        folder: &plan.folder,
        name: &plan.name,
        pool: &plan.pool,
        datastore: &plan.datastore,
        disk_gib: TEMPLATE_DISK_GIB,
    };
    vc.ensure_template(&spec).await.with_context(|| format!("the template {} in vCenter {}", plan.path(), vc.name))?;
    let path = plan.path();
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

/// Infrastructure, credentials, cloud config, ClusterVersion and ClusterOperators, for the
/// source vCenters `vcs` and the failure domains `domains` (none: a legacy Infrastructure).
async fn seed_config(
    client: &kube::Client,
    env: &TestEnv,
    opts: &SeedOptions,
    vcs: &[&VCenterLayout],
    domains: &[FailureDomain],
) -> Result<()> {
    let id = opts.infra_id.as_str();
    let vcenters: Vec<Value> = vcs
        .iter()
        .map(|v| json!({"server": v.host, "port": v.port, "datacenters": [v.inventory.datacenter]}))
        .collect();
    let mut vsphere = json!({
        "vcenters": vcenters,
        "apiServerInternalIPs": ["10.0.0.5"],
        "ingressIPs": ["10.0.0.6"],
        "machineNetworks": ["10.0.0.0/16"],
        "nodeNetworking": {"external": {"networkSubnetCidr": ["10.0.0.0/16"]}, "internal": {"networkSubnetCidr": ["10.0.0.0/16"]}},
    });
    if !domains.is_empty() {
        vsphere["failureDomains"] = json!(domains.iter().map(FailureDomain::to_json).collect::<Vec<_>>());
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
    // The CRD allows at most one vCenter when `vsphere` is first set on an existing object
    // (a post-install configuration), so a cluster of several gets the first one first.
    if let Some(bare) = infra_api.get_opt(o::INFRA_NAME).await?
        && bare.data.pointer("/spec/platformSpec/vsphere").is_none()
    {
        let pp = o::merge_params(MANAGER);
        if vcs.len() > 1 {
            let mut first = infra["spec"].clone();
            let vsphere = &mut first["platformSpec"]["vsphere"];
            vsphere["vcenters"] = json!([vsphere["vcenters"][0]]);
            if let Some(fds) = vsphere.get_mut("failureDomains").and_then(Value::as_array_mut) {
                fds.retain(|fd| fd["server"] == vcs[0].host.as_str());
            }
            infra_api.patch(o::INFRA_NAME, &pp, &Patch::Merge(json!({"spec": first}))).await?;
        }
        infra_api.patch(o::INFRA_NAME, &pp, &Patch::Merge(json!({"spec": infra["spec"]}))).await?;
        infra_api.patch_status(o::INFRA_NAME, &pp, &Patch::Merge(json!({"status": infra_status}))).await?;
    }
    let check = missing("/infrastructureName");
    ensure::<DynamicObject>(&infra_api, None, infra, Some((infra_status, &check))).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    let mut data = serde_json::Map::new();
    for v in vcs {
        let sim = env.vcenter(&v.host).with_context(|| format!("no vCenter {}", v.host))?;
        data.insert(format!("{}.username", v.host), json!(sim.username));
        data.insert(format!("{}.password", v.host), json!(sim.password));
    }
    let creds = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": o::CREDS_NAME, "namespace": o::CREDS_NS,
                     "annotations": {"cloudcredential.openshift.io/mode": "passthrough"}},
        "type": "Opaque",
        "stringData": data,
    });
    ensure::<Secret>(&secrets, None, creds, None).await?;
    // The cloud credential operator's copy for machine-api, and the installer's user data.
    super::credentials::sync_copy(client).await?;
    let user_data: Api<Secret> = Api::namespaced(client.clone(), o::MACHINE_API_NS);
    for role in ["master", "worker"] {
        ensure::<Secret>(&user_data, None, user_data_secret(id, role), None).await?;
    }

    let first = vcs.first().context("no source vCenter")?;
    let more: Vec<ConfigVCenter> = vcs[1..]
        .iter()
        .map(|v| ConfigVCenter {
            server: v.host.clone(),
            datacenters: vec![v.inventory.datacenter.clone()],
            port: v.port,
        })
        .collect();
    let text = cloud_config::render(
        opts.cloud_config,
        &CloudConfigInput {
            server: &first.host,
            port: first.port,
            datacenter: &first.inventory.datacenter,
            more_vcenters: &more,
            datastore: &first.inventory.datastore_path(0),
            folder: &format!("{}/{id}", first.inventory.vm_folder_path()),
            resource_pool: &first.inventory.resource_pool_path(0),
        },
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), o::CLOUD_CONFIG_NS);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": o::CLOUD_CONFIG_NAME, "namespace": o::CLOUD_CONFIG_NS},
                    "data": {o::CLOUD_CONFIG_KEY: text}});
    ensure::<ConfigMap>(&cms, None, cm, None).await?;
    seed_trust(env, client).await?;

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

    // The FeatureGate: the feature set, and whether the gate that lets vCenters be added to
    // a running cluster is on (the TechPreviewNoUpgrade set turns it on). Only where its
    // CRD is installed (the fixtures have it, the fallback schemas do not).
    if env.installed_crds().iter().any(|c| c == "featuregates.config.openshift.io") {
        let mut spec = json!({});
        if !opts.feature_set.is_empty() {
            spec["featureSet"] = json!(opts.feature_set);
        }
        let fg = json!({"apiVersion": "config.openshift.io/v1", "kind": "FeatureGate", "metadata": {"name": "cluster"},
                        "spec": spec});
        let gate = json!([{"name": MULTI_VCENTER_GATE}]);
        let (enabled, disabled) =
            if opts.feature_set == "TechPreviewNoUpgrade" { (gate, json!([])) } else { (json!([]), gate) };
        let status = json!({"featureGates": [{"version": version, "enabled": enabled, "disabled": disabled}]});
        let fg_api: Api<DynamicObject> = Api::all_with(client.clone(), &o::feature_gate());
        let check = missing("/featureGates");
        ensure::<DynamicObject>(&fg_api, None, fg, Some((status, &check))).await?;
    }

    // The cloud credential operator in its vSphere default (passthrough: the simulator
    // plays its copy), where its CRD is installed (with the real machine-api).
    if env.installed_crds().iter().any(|c| c == "cloudcredentials.operator.openshift.io") {
        let cc = json!({"apiVersion": "operator.openshift.io/v1", "kind": "CloudCredential", "metadata": {"name": "cluster"},
                        "spec": {"credentialsMode": "", "managementState": "Managed"}});
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &o::cloud_credential());
        ensure::<DynamicObject>(&api, None, cc, None).await?;
    }

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
    topology: &BTreeMap<String, String>,
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
    let mut manifest = machine_node_manifest(&as_obj, provider_id);
    for (k, v) in topology {
        manifest["metadata"]["labels"][k] = json!(v);
    }
    let (node, _) = ensure::<Node>(&nodes, Some(node), manifest, Some((node_status(&m.name, &ip), &ready))).await?;

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

/// The CPMS: the template is master 0's provider spec; its failure domains are `domains`
/// (none for a legacy cluster).
async fn seed_cpms(
    client: &kube::Client,
    opts: &SeedOptions,
    master_spec: &Value,
    domains: &[FailureDomain],
) -> Result<()> {
    let id = &opts.infra_id;
    let mut template = json!({
        "metadata": {"labels": {o::LABEL_CLUSTER: id, o::LABEL_ROLE: "master", o::LABEL_TYPE: "master"}},
        "spec": {"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": master_spec}},
    });
    if !domains.is_empty() {
        let names: Vec<Value> = domains.iter().map(|fd| json!({"name": fd.name})).collect();
        template["failureDomains"] = json!({"platform": "VSphere", "vsphere": names});
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
        name: "vmware-vsphere-csi-driver-operator",
        labels: &[("name", "vmware-vsphere-csi-driver-operator")],
        replicas: Some(1),
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
