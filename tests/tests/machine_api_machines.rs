//! The real machine-api makes and removes machines in vcsim: on a seeded cluster (whose
//! templates, credentials copy, user data and cloud config are what the vSphere actuator
//! needs), a new Machine gets its VM cloned by the real actuator, the simulator's kubelet
//! registers a Ready Node with provider ID `vsphere://<BIOS UUID>`, nodelink links it, and
//! the Machine reaches phase Running; deleting the Machine drains its Node (the real drain
//! controller), destroys the VM and removes the Node. The cloud credential operator's copy
//! follows `kube-system/vsphere-creds`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_testenv::machine_api::Component;
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SeededCluster, SimHandle, SimOptions, Simulator};
use vsm_testenv::{TestEnv, TestEnvOptions};

/// Only guards against a hang; nothing here is a performance expectation.
const LIMIT: Duration = Duration::from_secs(300);

struct Cluster {
    env: &'static TestEnv,
    seeded: SeededCluster,
}

/// One environment with the real machine-api, seeded once, for every test here.
async fn cluster() -> Result<Cluster> {
    static ENV: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
    static SEEDED: tokio::sync::OnceCell<SeededCluster> = tokio::sync::OnceCell::const_new();
    let env = TestEnv::shared_in(&ENV, || TestEnvOptions { machine_api: true, ..Default::default() }).await?;
    let seeded = SEEDED
        .get_or_try_init(|| async {
            // No static-IP workers: their IP address claims need an IPAM provider.
            let opts = SeedOptions { workers: 1, static_ip_workers: false, ..Default::default() };
            vsm_testenv::sim::seed(env, &opts).await
        })
        .await?
        .clone();
    Ok(Cluster { env, seeded })
}

/// The last lines of a machine-api process's log that mention `focus`.
fn machine_api_log(env: &TestEnv, c: Component, focus: &str) -> String {
    let Some(mapi) = env.machine_api() else { return String::new() };
    let log = std::fs::read_to_string(mapi.log_path(c)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(focus)).collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Polls `check` until it returns `Some`; fails with its last word, the simulator's errors
/// and the machine controller's log.
async fn until<T>(
    env: &TestEnv,
    sim: &SimHandle,
    focus: &str,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<Result<T, String>>,
) -> Result<T> {
    let start = std::time::Instant::now();
    loop {
        let last = match check().await? {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        if start.elapsed() > LIMIT {
            anyhow::bail!(
                "{what}: not after {LIMIT:?}; last: {last}\nsimulator errors: {:?}\nmachine-controller log on {focus}:\n{}\nnodelink log on {focus}:\n{}",
                sim.errors(),
                machine_api_log(env, Component::MachineController, focus),
                machine_api_log(env, Component::NodeLinkController, focus)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Machine like the seeded worker MachineSet's, named `name`, owned by none.
async fn worker_machine(c: &Cluster, name: &str) -> Result<DynamicObject> {
    let set = o::machine_sets_api(&c.env.client()).get(&c.seeded.worker_machinesets[0]).await?;
    let template = &set.data["spec"]["template"];
    // Not the set's own label: its MachineSet controller would adopt the Machine (and
    // delete one over its replica count).
    let mut labels = template["metadata"]["labels"].clone();
    labels.as_object_mut().context("template labels")?.remove(o::LABEL_MACHINESET);
    Ok(serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
        "metadata": {"name": name, "namespace": o::MACHINE_API_NS, "labels": labels},
        "spec": template["spec"],
    }))?)
}

fn provider_id(m: &DynamicObject) -> Option<&str> {
    o::nonempty_at(&m.data, "/spec/providerID")
}

#[tokio::test]
async fn the_real_actuator_clones_a_machine_a_kubelet_registers_it_and_deleting_it_removes_vm_and_node() -> Result<()> {
    let c = cluster().await?;
    let env = c.env;
    let sim = Simulator::start(env, SimOptions::instant());
    let client = env.client();
    let machines = o::machines_api(&client);
    let nodes: Api<Node> = Api::all(client.clone());
    let name = format!("{}-worker-real-0", c.seeded.infra_id);

    machines.create(&PostParams::default(), &worker_machine(&c, &name).await?).await?;

    // The actuator clones it in the source vCenter, where the provider spec places it.
    let m = until(env, &sim, &name, "the Machine Running with a Node", async || {
        let m = machines.get(&name).await?;
        let phase = o::str_at(&m.data, "/status/phase").unwrap_or_default().to_string();
        Ok(if phase == "Running" && o::nonempty_at(&m.data, "/status/nodeRef/name").is_some() {
            Ok(m)
        } else {
            Err(format!("phase {phase:?}, status {}", m.data["status"]))
        })
    })
    .await?;
    let vms = env.source().guest_vms().await?;
    let vm = vms.iter().find(|v| v.name == name).with_context(|| format!("no VM {name} in the source: {vms:?}"))?;
    ensure!(vm.power_state == "poweredOn", "{vm:?}");
    ensure!(vm.hostname.as_deref() == Some(name.as_str()), "the actuator names the guest: {vm:?}");
    ensure!(vm.user_data.contains("/config/worker"), "the worker ignition config: {vm:?}");
    let want_id = format!("vsphere://{}", vm.uuid);
    ensure!(provider_id(&m) == Some(want_id.as_str()), "{:?}", m.data["spec"]);
    ensure!(
        m.data["status"]["providerStatus"]["instanceState"] == "poweredOn",
        "{}",
        m.data["status"]["providerStatus"]
    );
    // The guest's address, reported through VMware Tools, is the Machine's.
    let addresses = m.data["status"]["addresses"].as_array().cloned().unwrap_or_default();
    ensure!(addresses.iter().any(|a| a["type"] == "InternalIP"), "{addresses:?}");

    // The Node: the kubelet's, linked by nodelink (which adds its annotation).
    let node_name = m.data["status"]["nodeRef"]["name"].as_str().unwrap().to_string();
    ensure!(node_name == name, "the Node is named by the guest's hostname: {node_name}");
    let node = nodes.get(&node_name).await?;
    ensure!(node.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(want_id.as_str()));
    ensure!(node.labels().contains_key("node-role.kubernetes.io/worker"), "{:?}", node.labels());
    ensure!(
        node.annotations().get(o::ANNOTATION_NODE_MACHINE) == Some(&format!("{}/{name}", o::MACHINE_API_NS)),
        "{:?}",
        node.annotations()
    );

    // Deletion: drained by the real drain controller, VM destroyed, Node removed.
    machines.delete(&name, &DeleteParams::default()).await?;
    until(env, &sim, &name, "the Machine gone", async || {
        Ok(match machines.get_opt(&name).await? {
            None => Ok(()),
            Some(m) => Err(format!("still there: {}", m.data["status"])),
        })
    })
    .await?;
    ensure!(!env.source().guest_vms().await?.iter().any(|v| v.name == name), "the VM is destroyed");
    until(env, &sim, &name, "the Node gone", async || {
        Ok(match nodes.get_opt(&node_name).await? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        })
    })
    .await?;
    let log = std::fs::read_to_string(env.machine_api().unwrap().log_path(Component::MachineController))?;
    ensure!(log.contains(&format!("drain successful for machine \"{name}\"")), "the real drain ran");
    sim.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_template_missing_in_the_vcenter_fails_the_machine_with_the_actuators_message() -> Result<()> {
    let c = cluster().await?;
    let env = c.env;
    let sim = Simulator::start(env, SimOptions::instant());
    let machines = o::machines_api(&env.client());
    let name = format!("{}-worker-no-template", c.seeded.infra_id);
    let mut m = worker_machine(&c, &name).await?;
    m.data["spec"]["providerSpec"]["value"]["template"] = json!("/src-dc/vm/no-such-template");
    machines.create(&PostParams::default(), &m).await?;

    let failed = until(env, &sim, &name, "the Machine Failed", async || {
        let m = machines.get(&name).await?;
        Ok(match o::str_at(&m.data, "/status/phase") {
            Some("Failed") => Ok(m),
            other => Err(format!("phase {other:?}")),
        })
    })
    .await?;
    ensure!(failed.data["status"]["errorReason"] == "InvalidConfiguration", "{}", failed.data["status"]);
    ensure!(
        failed.data["status"]["errorMessage"] == "template not found, specify valid value",
        "{}",
        failed.data["status"]
    );
    machines.delete(&name, &DeleteParams::default()).await?;
    until(env, &sim, &name, "the failed Machine gone", async || {
        Ok(if machines.get_opt(&name).await?.is_none() { Ok(()) } else { Err("still there".into()) })
    })
    .await?;
    sim.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_cloud_credential_operators_copy_follows_the_root_secret() -> Result<()> {
    let c = cluster().await?;
    let env = c.env;
    let sim = Simulator::start(env, SimOptions::instant());
    let client = env.client();
    let root: Api<Secret> = Api::namespaced(client.clone(), o::CREDS_NS);
    let copies: Api<Secret> = Api::namespaced(client.clone(), o::MACHINE_API_NS);
    let copy_name = vsm_testenv::sim::credentials::MACHINE_API_CREDS_NAME;
    let before = root.get(o::CREDS_NAME).await?;
    ensure!(copies.get(copy_name).await?.data == before.data, "seeded as a copy");

    let key = "vcenter.invalid.password";
    let patch = json!({"stringData": {key: "rotated"}});
    root.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    until(env, &sim, copy_name, "the copy updated", async || {
        let copy = copies.get(copy_name).await?;
        let has = copy.data.as_ref().and_then(|d| d.get(key)).is_some_and(|v| v.0 == b"rotated");
        Ok(if has { Ok(()) } else { Err(format!("{:?}", copy.data.map(|d| d.into_keys().collect::<Vec<_>>()))) })
    })
    .await?;
    // A key the root loses goes from the copy too.
    let remove = json!({"data": {key: Value::Null}});
    root.patch(o::CREDS_NAME, &PatchParams::default(), &Patch::Merge(&remove)).await?;
    until(env, &sim, copy_name, "the key gone from the copy", async || {
        let copy = copies.get(copy_name).await?;
        Ok(if copy.data == before.data { Ok(()) } else { Err("differs".into()) })
    })
    .await?;
    sim.stop().await;
    Ok(())
}
