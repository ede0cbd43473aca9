//! Preflight against the real environment: the seeded cluster passes; many problems at
//! once are all reported in one message (the Go controller stopped at the first and never
//! looked at health), including the API server's refusal (a dry run of UpdateInfrastructure's
//! update) under the old "vcenters cannot be added or removed" rule on a modified copy of
//! the real Infrastructure CRD, which Preflight never edits; the TechPreviewNoUpgrade CRD
//! (vCenters added or removed, not both at once) accepts the migration; TLS refused
//! without the CA; health problems alone are retryable; read-only (a re-run and a crash
//! change nothing); nothing to roll back; a vSphere CSI volume and a disruption budget
//! that never allows an eviction are refused by name; privileges the target user lacks are
//! named by object; static-IP machines without the target network's pools are refused.

mod part2_support;
mod phase_support;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::harness::TARGET_FD;
use vsm_testenv::sim::objects as o;

use phase_support::*;

const CRD: &str = "infrastructures.config.openshift.io";
const VCENTERS: &str =
    "/schema/openAPIV3Schema/properties/spec/properties/platformSpec/properties/vsphere/properties/vcenters";

fn crds(c: &PhaseEnv) -> Api<CustomResourceDefinition> {
    Api::all(c.client())
}

/// Put the old OpenShift rule on `vcenters` in every version of the CRD.
async fn add_old_rule(c: &PhaseEnv) -> Result<()> {
    let mut crd = serde_json::to_value(crds(c).get(CRD).await?)?;
    for v in crd["spec"]["versions"].as_array_mut().context("versions")? {
        let node = v.pointer_mut(VCENTERS).context("vcenters schema")?;
        let rules = node.as_object_mut().context("an object")?.entry("x-kubernetes-validations").or_insert(json!([]));
        rules.as_array_mut().context("a list")?.push(json!({
            "message": "vcenters cannot be added or removed once set",
            "rule": "size(self) != size(oldSelf) ? size(oldSelf) == 0 && size(self) < 2 : true"
        }));
    }
    crds(c).replace(CRD, &PostParams::default(), &serde_json::from_value(crd)?).await?;
    Ok(())
}

/// Until the API server enforces the CRD just written: a dry-run update of the
/// Infrastructure with `vsphere` is refused with a message containing `refusal`.
async fn until_enforced(c: &PhaseEnv, vsphere: Value, refusal: &str) -> Result<()> {
    let api = o::infra_api(&c.client());
    for _ in 0..300 {
        let mut infra = api.get(o::INFRA_NAME).await?;
        infra.data["spec"]["platformSpec"]["vsphere"] = vsphere.clone();
        let pp = PostParams { dry_run: true, ..Default::default() };
        match api.replace(o::INFRA_NAME, &pp, &infra).await {
            Err(kube::Error::Api(e)) if e.message.contains(refusal) => return Ok(()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("the API server never enforced {refusal:?}")
}

/// Put the saved CRD's spec back.
async fn restore_crd(c: &PhaseEnv, saved: &CustomResourceDefinition) -> Result<()> {
    let mut live = crds(c).get(CRD).await?;
    live.spec = saved.spec.clone();
    crds(c).replace(CRD, &PostParams::default(), &live).await?;
    Ok(())
}

async fn patch_status(api: &Api<kube::api::DynamicObject>, name: &str, status: Value) -> Result<()> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

fn conditions(pairs: &[(&str, &str)]) -> Value {
    let now = o::now();
    Value::Array(
        pairs
            .iter()
            .map(|(t, s)| json!({"type": t, "status": s, "reason": "Test", "message": format!("{t} is {s}"), "lastTransitionTime": now}))
            .collect(),
    )
}

#[tokio::test]
async fn preflight_passes_a_healthy_cluster_and_reports_every_problem_at_once() -> Result<()> {
    let mut c = start("phase-preflight", "preflight").await?;
    let (src, dst) = (c.env.source().host(), c.env.target().host());
    let infra_rv = rv(&c.infrastructure().await?);

    // Success on the seeded cluster.
    let run = c.execute_done().await?;
    ensure!(
        run.message().starts_with("all checks passed: 1 target failure domain(s) well-formed;"),
        "{}",
        run.message()
    );
    for part in [
        format!("sources {src}"),
        "the API server accepts the Infrastructure with the targets added, 2 vCenters (a dry run; feature set Default, \
         VSphereMultiVCenterDay2 off)"
            .to_string(),
        format!("5 source topology objects found in vCenter {src}"),
        format!("6 topology objects found in vCenter {dst}"),
        "CreateFolder will create it".to_string(),
    ] {
        ensure!(run.message().contains(&part), "{part:?} not in {}", run.message());
    }

    // Read-only: a re-run and a crash at any point change nothing.
    c.execute_done().await?;
    let points =
        c.h.crash_everywhere(&c.plugin, Direction::Execute, |_| async { Ok(()) }, |_| async { Ok(()) }).await?;
    ensure!(points >= 10, "{points} crash points");
    ensure!(rv(&c.infrastructure().await?) == infra_rv, "Preflight changed the Infrastructure");
    ensure!(c.state().await?.is_empty(), "Preflight left state behind");
    let run = c.rollback_done().await?;
    ensure!(run.message() == "nothing to undo", "{}", run.message());

    // Many problems at once, each named.
    let saved_crd = crds(&c).get(CRD).await?;
    add_old_rule(&c).await?;
    let infra_now = c.infrastructure().await?;
    let mut grown = infra_now.data["spec"]["platformSpec"]["vsphere"].clone();
    let mut extra = grown["vcenters"][0].clone();
    extra["server"] = json!("vc-probe.example.com");
    grown["vcenters"].as_array_mut().context("vcenters")?.push(extra);
    until_enforced(&c, grown, "vcenters cannot be added or removed once set").await?;
    let crd_rv = rv(&crds(&c).get(CRD).await?);
    let operators = o::operators_api(&c.client());
    patch_status(
        &operators,
        "storage",
        json!({"conditions": conditions(&[("Available", "True"), ("Degraded", "True")])}),
    )
    .await?;
    let nodes: Api<Node> = Api::all(c.client());
    let node = c.cluster.nodes[0].clone();
    let ready = nodes.get_status(&node).await?;
    nodes
        .patch_status(&node, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "test", "lastHeartbeatTime": o::now(), "lastTransitionTime": o::now()}]}})))
        .await?;
    let spec = &mut c.h.migration.spec.spec;
    spec.failure_domains[0].topology.compute_cluster = "/dst-dc/host/no-such-cluster".into();
    spec.failure_domains[0].topology.resource_pool = Some("/dst-dc/host/no-such-cluster/Resources".into());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client(), o::CREDS_NS);
    let creds_before = secrets.get(o::CREDS_NAME).await?;
    let pass_key = format!("{src}.password");
    secrets.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(json!({"data": {&pass_key: null}}))).await?;
    let run = c.execute().await?;
    let msg = run.message().to_string();
    ensure!(!matches!(&run.outcome, vsm_host::runtime::bindings::Outcome::Failed(f) if f.retryable), "{msg}");
    ensure!(msg.starts_with("Preflight found 7 problems: (1) the API server refuses the Infrastructure"), "{msg}");
    ensure!(
        msg.contains(&format!(
            "(2) Secret kube-system/vsphere-creds lacks (or has empty) keys {pass_key} for the source vCenter(s)"
        )),
        "{msg}"
    );
    for part in [
        format!("source vCenter {src}: no credentials for vCenter {src}"),
        "the API server refuses the Infrastructure with the target vCenter(s) added (a dry run of UpdateInfrastructure's update, \
         2 vCenters; feature set Default, VSphereMultiVCenterDay2 off; the migration never edits the CRD): ".to_string(),
        "vcenters cannot be added or removed once set; if it refuses adding a vCenter at all: this cluster runs feature \
         set Default, with the VSphereMultiVCenterDay2 feature gate off, and a feature set that enables it".to_string(),
        format!("failure domain target-fd: compute cluster /dst-dc/host/no-such-cluster not found in vCenter {dst}"),
        format!("failure domain target-fd: resource pool /dst-dc/host/no-such-cluster/Resources not found in vCenter {dst}"),
        "operator storage (available=True, degraded=True): Degraded is True".to_string(),
        format!("node {node} not Ready (False)"),
    ] {
        ensure!(msg.contains(&part), "{part:?} not in {msg}");
    }
    ensure!(rv(&crds(&c).get(CRD).await?) == crd_rv, "Preflight edited the CRD");

    // Put things back: CRD, spec, credentials, node; the operator alone is a retryable problem.
    restore_crd(&c, &saved_crd).await?;
    ensure!(rv(&c.infrastructure().await?) == infra_rv, "a dry run stores nothing");
    let data = creds_before.data.clone().unwrap_or_default();
    secrets.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(json!({"data": data}))).await?;
    c.h.migration.spec.spec = vsm_testenv::harness::target_spec(c.env);
    let conds = ready.status.and_then(|s| s.conditions).unwrap_or_default();
    nodes.patch_status(&node, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": conds}}))).await?;
    let outcome = c.execute_once().await?;
    ensure!(
        outcome_failed_with(
            &outcome,
            "Preflight found 1 problem: (1) operator storage (available=True, degraded=True): Degraded is True"
        )?,
        "health alone is retryable"
    );
    patch_status(
        &operators,
        "storage",
        json!({"conditions": conditions(&[("Available", "True"), ("Degraded", "False"), ("Progressing", "False")])}),
    )
    .await?;
    c.execute_done().await?;

    // The TechPreviewNoUpgrade CRD (VSphereMultiVCenterDay2: vCenters may be added or
    // removed, not both at once) accepts the migration: the old check read its rule
    // "Cannot add and remove vCenters at the same time" as "none can be added" and refused
    // exactly the clusters that support the move.
    let dir = vsm_testenv::crds::fixtures_dir().context("the OpenShift CRD fixtures")?.join("variants/techpreview");
    let techpreview = vsm_testenv::crds::load_dir(&dir)?
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some(CRD))
        .context("the TechPreviewNoUpgrade Infrastructure CRD")?;
    restore_crd(&c, &techpreview).await?;
    let mut swapped = infra_now.data["spec"]["platformSpec"]["vsphere"].clone();
    swapped["vcenters"][0]["server"] = json!("vc-probe.example.com");
    swapped["failureDomains"] = json!([]);
    until_enforced(&c, swapped, "Cannot add and remove vCenters at the same time").await?;
    let run = c.execute_done().await?;
    ensure!(
        run.message()
            .contains("the API server accepts the Infrastructure with the targets added, 2 vCenters (a dry run"),
        "{}",
        run.message()
    );
    restore_crd(&c, &saved_crd).await?;

    // The target user lacks privileges on a datastore (a narrower role set there, as a
    // vCenter administrator would): Preflight names them by object, as vCenter computes them
    // (vcsim itself grants everything; the launcher answers from the permissions set).
    let narrow = "/dst-dc/datastore/LocalDS_0";
    c.h.migration.spec.spec.failure_domains[0].topology.datastore = narrow.into();
    let run = c.execute_done().await?;
    ensure!(run.message().contains("its user holds the privileges OpenShift needs on 6 objects"), "{}", run.message());
    c.env.target().restrict_privileges(narrow, &["Datastore.AllocateSpace", "Datastore.FileManagement"]).await?;
    let run = c.execute().await?;
    let want = format!(
        "Preflight found 1 problem: (1) the user of target vCenter {dst} lacks privileges an OpenShift cluster needs \
         (the installer's list; grant them, with propagation where an object's children need them too): datastore \
         {narrow}: Datastore.AllocateSpace, Datastore.FileManagement"
    );
    ensure!(!failed_with(&run, &want)?, "a person must act");
    c.h.migration.spec.spec = vsm_testenv::harness::target_spec(c.env);

    // The seed's static-IP worker set without the target network's pools: refused, naming
    // what the source network gave it (its pool would hand out source-network addresses).
    c.h.migration.spec.spec.static_ips.clear();
    let run = c.execute().await?;
    let id = &c.cluster.infra_id;
    let want = format!(
        "MachineSet {id}-worker-0: network device 0 of the machines has static addresses (pools IPPool/{id}-worker-pool; \
         nameservers 192.168.10.53, 192.168.10.54; gateway 192.168.10.1), which belong to the source network, and \
         failure domain {TARGET_FD} has no spec.staticIPs entry"
    );
    ensure!(run.message().contains(&want), "{}", run.message());
    c.h.migration.spec.spec = vsm_testenv::harness::target_spec(c.env);

    // Bad input: no CA for the target, so its certificate is refused.
    for v in c.h.migration.spec.spec.vcenters.iter_mut().filter(|v| v.server == dst) {
        v.ca_secret = None;
    }
    let run = c.execute().await?;
    ensure!(
        run.message().starts_with(&format!(
            "Preflight found 1 problem: (1) target vCenter {dst}: its TLS certificate was refused"
        )),
        "{}",
        run.message()
    );
    ensure!(run.message().ends_with("set spec.vcenters[].caSecret or thumbprint"), "{}", run.message());
    c.h.migration.spec.spec = vsm_testenv::harness::target_spec(c.env);

    // Workloads a migration would break: a vSphere CSI volume (its disk stays in the source
    // vCenter's storage) and a budget that never allows an eviction (its status as the
    // disruption controller, which this environment does not run, would write it).
    let pvs: Api<PersistentVolume> = Api::all(c.client());
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pvc-registry"},
        "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"],
                 "csi": {"driver": "csi.vsphere.vmware.com", "volumeHandle": "8f3c-fcd", "fsType": "ext4"},
                 "claimRef": {"namespace": "openshift-image-registry", "name": "image-registry-storage"}}});
    pvs.create(&PostParams::default(), &serde_json::from_value(pv)?).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client(), "default");
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}});
    pdbs.create(&PostParams::default(), &serde_json::from_value(pdb)?).await?;
    let status = json!({"status": {"expectedPods": 2, "currentHealthy": 2, "desiredHealthy": 2,
                                   "disruptionsAllowed": 0, "observedGeneration": 1}});
    pdbs.patch_status("db", &PatchParams::default(), &Patch::Merge(status)).await?;
    let run = c.execute().await?;
    let want = "Preflight found 2 problems: (1) 1 vSphere PersistentVolume(s) live in the source vCenter's storage, \
        and moving volumes is not supported yet: their pods could not start on the target's nodes. Move their data off \
        vSphere volumes (or delete the volumes) first: pvc-registry (CSI volume 8f3c-fcd, claim \
        openshift-image-registry/image-registry-storage); (2) 1 PodDisruptionBudget(s) can never allow an eviction, so \
        draining the nodes being replaced would wait forever: default/db (minAvailable 2 over 2 pod(s)) (relax them, or \
        scale their workloads up, before migrating)";
    ensure!(!failed_with(&run, want)?, "a person must act");
    pdbs.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"minAvailable": 1}}))).await?;
    pvs.delete("pvc-registry", &Default::default()).await?;
    // The pv-protection finalizer the API server's admission added (its controller, which
    // would release it, does not run here).
    pvs.patch("pvc-registry", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await?;
    let run = c.execute_done().await?;
    ensure!(run.message().contains("1 PodDisruptionBudget(s) allow a drain"), "{}", run.message());
    pdbs.delete("db", &Default::default()).await?;
    Ok(())
}

/// The cloud credential operator in Manual mode copies nothing into the components'
/// credentials Secrets: Preflight refuses, naming each Secret and the keys it lacks, until
/// the administrator has added the targets' credentials to all four.
#[tokio::test]
async fn manual_credentials_mode_is_refused_until_every_component_secret_holds_the_targets() -> Result<()> {
    let c = part2_support::start_seeded_real("phase-preflight-cco", "preflight", &Default::default()).await?;
    let _sim = part2_support::sim(&c);
    let dst = c.env.target().host();
    let run = c.execute_done().await?;
    ensure!(run.message().contains("copies vsphere-creds to the components (passthrough)"), "{}", run.message());

    let modes = c.env.dynamic("operator.openshift.io", "v1", "CloudCredential", "cloudcredentials", None);
    let set_mode = |mode: &'static str| {
        let modes = modes.clone();
        async move {
            let patch = json!({"spec": {"credentialsMode": mode}});
            modes.patch("cluster", &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
        }
    };
    set_mode("Manual").await?;
    let run = c.execute().await?;
    // The Secrets the release's vSphere CredentialsRequests name.
    let secrets = [
        ("openshift-machine-api", "vsphere-cloud-credentials"),
        ("openshift-cluster-csi-drivers", "vmware-vsphere-cloud-credentials"),
        ("openshift-cluster-storage-operator", "vsphere-cloud-credentials"),
        ("openshift-cloud-controller-manager", "vsphere-cloud-credentials"),
    ];
    let Outcome::Failed(f) = &run.outcome else { anyhow::bail!("expected a refusal: {:?}", run.outcome) };
    ensure!(!f.retryable && f.message.contains("runs in Manual mode"), "{}", f.message);
    for (ns, name) in secrets {
        ensure!(f.message.contains(&format!("{ns}/{name} (")), "{ns}/{name} not named: {}", f.message);
    }
    ensure!(
        f.message.contains(&format!(
            "openshift-machine-api/vsphere-cloud-credentials (lacks {dst}.username, {dst}.password)"
        )),
        "{}",
        f.message
    );

    // The administrator adds the targets' credentials to every component Secret.
    let keys = json!({format!("{dst}.username"): "u", format!("{dst}.password"): "p"});
    for (ns, name) in secrets {
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client(), ns);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": keys});
        api.patch(name, &PatchParams::apply("admin").force(), &Patch::Apply(&secret)).await?;
    }
    let run = c.execute_done().await?;
    ensure!(run.message().contains("Manual credentials mode: every component Secret holds"), "{}", run.message());
    set_mode("").await?;
    Ok(())
}
