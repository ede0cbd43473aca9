//! The real machine-api in the test environment: machine-api-operator's admission webhooks
//! refuse and default Machines and MachineSets through the API server, and its controllers
//! run and reconcile with the RBAC machine-api-operator grants them. No VM is cloned here.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_testenv::machine_api::{Component, NAMESPACE};
use vsm_testenv::process::wait_for;
use vsm_testenv::sim::objects;
use vsm_testenv::{TestEnv, TestEnvOptions};

/// Only guards against a hang; nothing here is a performance expectation.
const LIMIT: Duration = Duration::from_secs(180);

/// The controllers watch `openshift-machine-api` only; objects made to exercise the
/// webhooks alone live here, where no controller picks them up.
const WEBHOOK_NS: &str = "mapi-webhook-tests";

async fn env() -> &'static TestEnv {
    static ENV: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
    let env = TestEnv::shared_in(&ENV, || TestEnvOptions { machine_api: true, ..Default::default() })
        .await
        .expect("environment with the machine-api starts");
    let ns: Api<Namespace> = Api::all(env.client());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": WEBHOOK_NS}})).unwrap();
    match ns.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {WEBHOOK_NS}: {e}"),
    }
    env
}

/// A vSphere provider spec the validator accepts, without the secrets the defaulter fills in.
fn provider_spec(env: &TestEnv) -> Value {
    json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "VSphereMachineProviderSpec",
        "template": "rhcos-template",
        "workspace": {"server": env.source().host(), "datacenter": "DC0", "folder": "/DC0/vm/vsm-test",
                      "datastore": "/DC0/datastore/LocalDS_0", "resourcePool": "/DC0/host/DC0_C0/Resources"},
        "network": {"devices": [{"networkName": "VM Network"}]},
        "numCPUs": 4, "numCoresPerSocket": 4, "memoryMiB": 16384, "diskGiB": 120,
    })
}

fn machine(name: &str, ns: &str, provider_spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"providerSpec": {"value": provider_spec}},
    }))
    .unwrap()
}

fn machines(env: &TestEnv, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(env.client(), ns, &objects::machine())
}

/// Polls object `name` until `done` holds; panics with the object last seen and the tail of
/// `component`'s log when it does not.
async fn wait_until(
    env: &TestEnv,
    api: &Api<DynamicObject>,
    name: &str,
    component: Component,
    done: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let last = std::sync::Mutex::new(None);
    let waited = wait_for(&format!("{name} to be reconciled"), LIMIT, || {
        let (get, last, done) = (api.get(name), &last, &done);
        async move {
            let obj = get.await?;
            let ok = done(&obj);
            *last.lock().unwrap() = Some(obj);
            Ok(ok)
        }
    })
    .await;
    let last = last.into_inner().unwrap();
    if let Err(e) = waited {
        let tail = env.machine_api().unwrap().log_tail(component);
        panic!("{e:#}\nlast seen: {last:?}\n{} log:\n{tail}", component.name());
    }
    last.expect("seen once done")
}

fn condition<'a>(obj: &'a DynamicObject, kind: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

#[tokio::test]
async fn the_machineset_validator_refuses_a_provider_spec_without_workspace() {
    let env = env().await;
    let mut spec = provider_spec(env);
    spec.as_object_mut().unwrap().remove("workspace");
    let labels = json!({"machine.openshift.io/cluster-api-machineset": "no-workspace"});
    let set: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
        "metadata": {"name": "no-workspace", "namespace": WEBHOOK_NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"providerSpec": {"value": spec}}}},
    }))
    .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(env.client(), WEBHOOK_NS, &objects::machine_set());
    let err = match api.create(&PostParams::default(), &set).await {
        Err(kube::Error::Api(e)) => e,
        other => panic!("an invalid MachineSet was not refused: {other:?}"),
    };
    assert!(
        err.message.contains(r#"admission webhook "validation.machineset.machine.openshift.io" denied the request"#),
        "{err:?}"
    );
    assert!(err.message.contains("providerSpec.workspace: Required value: workspace must be provided"), "{err:?}");
    assert!(api.get_opt("no-workspace").await.unwrap().is_none());
}

#[tokio::test]
async fn the_machine_defaulter_fills_in_secrets_and_the_cluster_label() {
    let env = env().await;
    let api = machines(env, WEBHOOK_NS);
    let created =
        api.create(&PostParams::default(), &machine("defaulted", WEBHOOK_NS, provider_spec(env))).await.unwrap();

    let value = &created.data["spec"]["providerSpec"]["value"];
    assert_eq!(value["credentialsSecret"]["name"], "vsphere-cloud-credentials", "{value}");
    assert_eq!(value["userDataSecret"]["name"], "worker-user-data", "{value}");
    // What the caller set is kept.
    assert_eq!(value["template"], "rhcos-template");
    let infra = objects::infra_api(&env.client()).get(objects::INFRA_NAME).await.unwrap();
    let infra_name = infra.data["status"]["infrastructureName"].as_str().unwrap();
    assert_eq!(created.metadata.labels.unwrap()[objects::LABEL_CLUSTER], infra_name);
    // Served by the environment's webhook process.
    let log = std::fs::read_to_string(env.machine_api().unwrap().log_path(Component::Webhooks)).unwrap();
    assert!(log.contains("Mutate webhook called for Machine: defaulted"), "{log}");

    api.delete("defaulted", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn the_machine_validator_refuses_a_machine_without_template() {
    let env = env().await;
    let mut spec = provider_spec(env);
    spec.as_object_mut().unwrap().remove("template");
    let err =
        match machines(env, WEBHOOK_NS).create(&PostParams::default(), &machine("no-template", WEBHOOK_NS, spec)).await
        {
            Err(kube::Error::Api(e)) => e,
            other => panic!("an invalid Machine was not refused: {other:?}"),
        };
    assert!(
        err.message.contains(r#"admission webhook "validation.machine.machine.openshift.io" denied the request"#),
        "{err:?}"
    );
    assert!(err.message.contains("providerSpec.template: Required value: template must be provided"), "{err:?}");
}

#[tokio::test]
async fn every_process_runs_and_the_vsphere_controller_started() {
    let env = env().await;
    let mapi = env.machine_api().expect("machine_api was requested");
    mapi.check_running().unwrap();
    let logs = env.machine_api_logs();
    assert_eq!(logs.len(), Component::ALL.len());
    for (component, path) in logs {
        assert!(path.is_file(), "{component:?}: {}", path.display());
    }
    let log = std::fs::read_to_string(mapi.log_path(Component::MachineController)).unwrap();
    assert!(log.contains(r#""Starting workers" controller="machine-controller""#), "{log}");
}

#[tokio::test]
async fn the_crds_the_machine_api_needs_are_installed() {
    let env = env().await;
    for crd in [
        "machinehealthchecks.machine.openshift.io",
        "dnses.config.openshift.io",
        "ipaddressclaims.ipam.cluster.x-k8s.io",
        "ipaddresses.ipam.cluster.x-k8s.io",
    ] {
        assert!(env.installed_crds().iter().any(|c| c == crd), "{crd}: {:?}", env.installed_crds());
    }
}

#[tokio::test]
async fn the_vsphere_machine_controller_takes_a_machine_and_reports_missing_credentials() {
    let env = env().await;
    let api = machines(env, NAMESPACE);
    api.create(&PostParams::default(), &machine("no-credentials", NAMESPACE, provider_spec(env))).await.unwrap();

    let m = wait_until(env, &api, "no-credentials", Component::MachineController, |m| {
        let finalized = m.metadata.finalizers.iter().flatten().any(|f| f == objects::MACHINE_FINALIZER);
        finalized && condition(m, "InstanceExists").is_some_and(|c| c["status"] == "Unknown")
    })
    .await;
    let exists = condition(&m, "InstanceExists").unwrap();
    let message = exists["message"].as_str().unwrap();
    assert!(
        message.contains("credentials secret openshift-machine-api/vsphere-cloud-credentials not found"),
        "{exists}"
    );

    // The finalizer would wait for a drain and the actuator; let the Machine go.
    api.delete("no-credentials", &DeleteParams::default()).await.unwrap();
    let unfinalize = json!({"metadata": {"finalizers": null}});
    api.patch("no-credentials", &PatchParams::default(), &Patch::Merge(unfinalize)).await.unwrap();
}

#[tokio::test]
async fn the_healthcheck_controller_reports_on_a_machine_health_check() {
    let env = env().await;
    let mhc = objects::resource("machine.openshift.io", "v1beta1", "MachineHealthCheck", "machinehealthchecks");
    let api: Api<DynamicObject> = Api::namespaced_with(env.client(), NAMESPACE, &mhc);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineHealthCheck",
        "metadata": {"name": "nothing-matches", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"vsm-test": "no-such-machine"}},
                 "unhealthyConditions": [{"type": "Ready", "status": "False", "timeout": "300s"}],
                 "maxUnhealthy": "40%"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    wait_until(env, &api, "nothing-matches", Component::MachineHealthCheckController, |mhc| {
        mhc.data["status"]["expectedMachines"] == 0 && mhc.data["status"]["currentHealthy"] == 0
    })
    .await;
    api.delete("nothing-matches", &DeleteParams::default()).await.unwrap();
}

/// Its own environment: the seed writes a whole cluster, which the other tests here do not
/// expect.
#[tokio::test]
async fn the_simulator_seed_completes_the_bare_infrastructure_and_passes_the_webhooks() {
    let env = TestEnv::start(TestEnvOptions { machine_api: true, ..Default::default() }).await.unwrap();
    let infra_api = objects::infra_api(&env.client());
    let bare = infra_api.get(objects::INFRA_NAME).await.unwrap();
    assert_eq!(bare.data["status"]["platformStatus"]["type"], "VSphere");
    assert!(bare.data.pointer("/spec/platformSpec/vsphere").is_none(), "{:?}", bare.data);

    let opts = vsm_testenv::sim::SeedOptions::default();
    let seeded = vsm_testenv::sim::seed(&env, &opts).await.unwrap();

    let infra = infra_api.get(objects::INFRA_NAME).await.unwrap();
    let vcenters = infra.data.pointer("/spec/platformSpec/vsphere/vcenters").and_then(Value::as_array).unwrap();
    assert_eq!(vcenters[0]["server"], env.source().host());
    assert!(infra.data.pointer("/spec/platformSpec/vsphere/failureDomains/0").is_some(), "{:?}", infra.data);
    assert_eq!(infra.data["spec"]["cloudConfig"]["name"], objects::CLOUD_CONFIG_NAME);
    assert_eq!(infra.data["status"]["infrastructureName"], seeded.infra_id);
    assert!(infra.data["status"]["apiServerURL"].as_str().is_some_and(|u| u.contains(&seeded.infra_id)));
    // The seeded Machines went through the real webhooks (and were admitted).
    let log = std::fs::read_to_string(env.machine_api().unwrap().log_path(Component::Webhooks)).unwrap();
    assert!(log.contains(&format!("Mutate webhook called for Machine: {}", seeded.masters[0])), "{log}");
    env.machine_api().unwrap().check_running().unwrap();
}
