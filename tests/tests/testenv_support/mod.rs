//! Checks of the OpenShift schemas the migration relies on, run against the real CRDs
//! (testenv_kube) and against the project's fallback schemas (testenv_fallback).

#![allow(dead_code)] // each test binary uses its own subset

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use vsm_testenv::TestEnv;
use vsm_testenv::vcsim::{source, target};

pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn infrastructure() -> ApiResource {
    resource("config.openshift.io", "v1", "Infrastructure", "infrastructures")
}

fn all(env: &TestEnv, ar: &ApiResource) -> Api<DynamicObject> {
    Api::all_with(env.client(), ar)
}

fn namespaced(env: &TestEnv, ar: &ApiResource, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(env.client(), ns, ar)
}

fn object(name: &str, ar: &ApiResource, data: Value) -> DynamicObject {
    let mut o = DynamicObject::new(name, ar);
    o.data = data;
    o
}

pub fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn vcenter(server: &str, port: u16, dc: &str) -> Value {
    json!({"server": server, "port": port, "datacenters": [dc]})
}

/// Status is written only through /status, and a status write leaves generation alone.
pub async fn infrastructure_status_subresource(env: &TestEnv) {
    let api = all(env, &infrastructure());
    let obj = object(
        "status-test",
        &infrastructure(),
        json!({
            "spec": {"platformSpec": {"type": "VSphere"}},
            "status": {"infrastructureName": "ignored-on-create"},
        }),
    );
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.data["status"].get("infrastructureName").is_none(), "{:?}", created.data);
    let generation = created.metadata.generation;

    let patch = json!({"status": {"infrastructureName": "test-abc12", "platform": "VSphere"}});
    let patched = api.patch_status("status-test", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(patched.data["status"]["infrastructureName"], "test-abc12");
    assert_eq!(patched.metadata.generation, generation, "a status write must not bump generation");

    let patch = json!({"spec": {"cloudConfig": {"name": "cloud-provider-config", "key": "config"}},
                       "status": {"infrastructureName": "overwritten"}});
    let patched = api.patch("status-test", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(patched.data["status"]["infrastructureName"], "test-abc12");
    assert_eq!(patched.data["spec"]["cloudConfig"]["name"], "cloud-provider-config");
    assert!(patched.metadata.generation > generation);
}

/// The CEL rules on vcenters: unique servers, and one vCenter only when vSphere is added
/// after install (a transition rule, so it needs `oldSelf`).
pub async fn infrastructure_cel_rules(env: &TestEnv) {
    let api = all(env, &infrastructure());
    let (src, dst) = (env.source(), env.target());

    let dup = object(
        "cel-dup",
        &infrastructure(),
        json!({"spec": {"platformSpec": {"type": "VSphere", "vsphere": {
            "vcenters": [vcenter(&src.host(), src.port(), source::DATACENTER), vcenter(&src.host(), dst.port(), target::DATACENTER)]}}}}),
    );
    let err = api_error(api.create(&PostParams::default(), &dup).await.unwrap_err());
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains("vcenters must have unique server values"), "{}", err.message);

    let obj = object("cel-transition", &infrastructure(), json!({"spec": {"platformSpec": {"type": "VSphere"}}}));
    api.create(&PostParams::default(), &obj).await.unwrap();
    let both = json!({"spec": {"platformSpec": {"vsphere": {"vcenters": [
        vcenter(&src.host(), src.port(), source::DATACENTER), vcenter(&dst.host(), dst.port(), target::DATACENTER)]}}}});
    let err = api_error(api.patch("cel-transition", &PatchParams::default(), &Patch::Merge(&both)).await.unwrap_err());
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains("vcenters can have at most 1 item when configured post-install"), "{}", err.message);

    // The same edit in two steps is allowed: the source first, then the target.
    let one = json!({"spec": {"platformSpec": {"vsphere": {"vcenters": [vcenter(&src.host(), src.port(), source::DATACENTER)]}}}});
    api.patch("cel-transition", &PatchParams::default(), &Patch::Merge(&one)).await.unwrap();
    let stored = api.patch("cel-transition", &PatchParams::default(), &Patch::Merge(&both)).await.unwrap();
    assert_eq!(stored.data["spec"]["platformSpec"]["vsphere"]["vcenters"].as_array().unwrap().len(), 2);
}

/// Both vCenters of the environment fit the Infrastructure schema as OpenShift stores them
/// (server = address without port, port separately, failure domains with their inventory
/// paths), while `Vcsim::server()` (`host:port`) does not.
pub async fn infrastructure_accepts_the_environment_vcenters(env: &TestEnv) {
    let api = all(env, &infrastructure());
    let (src, dst) = (env.source(), env.target());
    let fd =
        |name: &str, vc: &vsm_testenv::Vcsim, dc: &str, cluster: &str, ds: &str, net: &str, folder: &str, rp: &str| {
            json!({"name": name, "region": "region-a", "zone": name, "server": vc.host(),
               "topology": {"datacenter": dc, "computeCluster": cluster, "datastore": format!("/{dc}/datastore/{ds}"),
                            "networks": [net], "folder": format!("{folder}/test-abc12"), "resourcePool": rp}})
        };
    let spec = json!({"spec": {"platformSpec": {"type": "VSphere", "vsphere": {
    "vcenters": [vcenter(&src.host(), src.port(), source::DATACENTER), vcenter(&dst.host(), dst.port(), target::DATACENTER)],
    "failureDomains": [
        fd("source-a", src, source::DATACENTER, source::CLUSTER_PATH, source::DATASTORE, source::NETWORK, source::VM_FOLDER_PATH, source::RESOURCE_POOL_PATH),
        fd("target-a", dst, target::DATACENTER, target::CLUSTER_PATH, target::DATASTORE, target::NETWORK, target::VM_FOLDER_PATH, target::RESOURCE_POOL_PATH),
    ]}}}});
    let created = api.create(&PostParams::default(), &object("env-vcenters", &infrastructure(), spec)).await.unwrap();
    let stored = &created.data["spec"]["platformSpec"]["vsphere"];
    assert_eq!(stored["vcenters"][1]["server"], target::HOST);
    assert_eq!(stored["failureDomains"][0]["topology"]["datastore"], source::DATASTORE_PATH);

    let with_port = json!({"spec": {"platformSpec": {"type": "VSphere", "vsphere": {
        "vcenters": [{"server": src.server(), "datacenters": [source::DATACENTER]}]}}}});
    let err = api_error(
        api.create(&PostParams::default(), &object("host-port", &infrastructure(), with_port)).await.unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains("vcenters[0].server"), "{}", err.message);
}

fn cpms_resource() -> ApiResource {
    resource("machine.openshift.io", "v1", "ControlPlaneMachineSet", "controlplanemachinesets")
}

fn cpms(labels: Value) -> Value {
    json!({"spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
        "template": {"machineType": "machines_v1beta1_machine_openshift_io",
            "machines_v1beta1_machine_openshift_io": {
                "failureDomains": {"platform": "VSphere", "vsphere": [{"name": "source-a"}]},
                "metadata": {"labels": labels},
                "spec": {"providerSpec": {"value": {"apiVersion": "machine.openshift.io/v1beta1",
                    "kind": "VSphereMachineProviderSpec", "workspace": {"server": "127.0.0.1"}}}}}}}})
}

/// The ControlPlaneMachineSet rules the migration runs into: Inactive by default, Active is
/// one-way, replicas immutable, master labels required; status and scale subresources.
pub async fn cpms_rules(env: &TestEnv) {
    let api = namespaced(env, &cpms_resource(), "openshift-machine-api");
    let master = json!({"machine.openshift.io/cluster-api-machine-role": "master",
                        "machine.openshift.io/cluster-api-machine-type": "master",
                        "machine.openshift.io/cluster-api-cluster": "test-abc12"});
    let err = api_error(
        api.create(&PostParams::default(), &object("bad-labels", &cpms_resource(), cpms(json!({"a": "b"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains("cluster-api-machine-role' is required"), "{}", err.message);

    let created = api.create(&PostParams::default(), &object("cluster", &cpms_resource(), cpms(master))).await.unwrap();
    assert_eq!(created.data["spec"]["state"], "Inactive", "defaulted");
    assert_eq!(created.data["spec"]["strategy"]["type"], "RollingUpdate", "defaulted");
    assert_eq!(
        created.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["spec"]["providerSpec"]["value"]["workspace"]
            ["server"],
        "127.0.0.1",
        "providerSpec keeps unknown fields"
    );

    let pp = PatchParams::default();
    let err = api_error(api.patch("cluster", &pp, &Patch::Merge(&json!({"spec": {"replicas": 5}}))).await.unwrap_err());
    assert!(err.message.contains("replicas is immutable"), "{}", err.message);
    api.patch("cluster", &pp, &Patch::Merge(&json!({"spec": {"state": "Active"}}))).await.unwrap();
    let err =
        api_error(api.patch("cluster", &pp, &Patch::Merge(&json!({"spec": {"state": "Inactive"}}))).await.unwrap_err());
    assert!(err.message.contains("state cannot be changed once Active"), "{}", err.message);

    let status = json!({"status": {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "observedGeneration": 1}});
    let patched = api.patch_status("cluster", &pp, &Patch::Merge(&status)).await.unwrap();
    assert_eq!(patched.data["status"]["readyReplicas"], 3);
    let scale = api.get_scale("cluster").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().replicas, 3);
}

fn machineset_resource() -> ApiResource {
    resource("machine.openshift.io", "v1beta1", "MachineSet", "machinesets")
}

/// MachineSet scale subresource and status; unknown providerSpec fields survive.
pub async fn machineset_scale_and_provider_spec(env: &TestEnv) {
    let api = namespaced(env, &machineset_resource(), "openshift-machine-api");
    let ms = object(
        "test-abc12-worker-0",
        &machineset_resource(),
        json!({"spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"machine.openshift.io/cluster-api-machineset": "test-abc12-worker-0"}},
            "template": {
                "metadata": {"labels": {"machine.openshift.io/cluster-api-machineset": "test-abc12-worker-0"}},
                "spec": {"providerSpec": {"value": {"kind": "VSphereMachineProviderSpec",
                    "workspace": {"server": env.source().host(), "datacenter": source::DATACENTER,
                                  "datastore": source::DATASTORE_PATH, "folder": source::VM_FOLDER_PATH,
                                  "resourcePool": source::RESOURCE_POOL_PATH},
                    "network": {"devices": [{"networkName": source::NETWORK}]}, "numCPUs": 4}}}}},
            "bogusField": "pruned"}),
    );
    let created = api.create(&PostParams::default(), &ms).await.unwrap();
    assert!(created.data["spec"].get("bogusField").is_none(), "unknown spec fields are pruned");
    let value = &created.data["spec"]["template"]["spec"]["providerSpec"]["value"];
    assert_eq!(value["workspace"]["datastore"], source::DATASTORE_PATH);
    assert_eq!(value["numCPUs"], 4);

    let scale_patch = json!({"spec": {"replicas": 0}});
    api.patch_scale("test-abc12-worker-0", &PatchParams::default(), &Patch::Merge(&scale_patch)).await.unwrap();
    assert_eq!(api.get("test-abc12-worker-0").await.unwrap().data["spec"]["replicas"], 0);
    let status = json!({"status": {"replicas": 0, "labelSelector": "machine.openshift.io/cluster-api-machineset=test-abc12-worker-0"}});
    api.patch_status("test-abc12-worker-0", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let scale = api.get_scale("test-abc12-worker-0").await.unwrap();
    assert_eq!(scale.status.unwrap().replicas, 0);
}

/// ClusterOperator conditions are written through /status and merge by type.
pub async fn cluster_operator_status(env: &TestEnv) {
    let ar = resource("config.openshift.io", "v1", "ClusterOperator", "clusteroperators");
    let api = all(env, &ar);
    api.create(&PostParams::default(), &object("machine-api", &ar, json!({"spec": {}}))).await.unwrap();
    let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let status = json!({"status": {"conditions": [cond("Available", "True"), cond("Degraded", "False")],
                                   "versions": [{"name": "operator", "version": "4.20.0"}]}});
    let pp = PatchParams::apply("vsm-testenv-test").force();
    let mut apply = status.clone();
    apply["apiVersion"] = json!("config.openshift.io/v1");
    apply["kind"] = json!("ClusterOperator");
    let patched = api.patch_status("machine-api", &pp, &Patch::Apply(&apply)).await.unwrap();
    assert_eq!(patched.data["status"]["conditions"].as_array().unwrap().len(), 2);
    // A condition without lastTransitionTime is refused (required by the schema).
    let bad = json!({"status": {"conditions": [{"type": "Progressing", "status": "True"}]}});
    let err =
        api_error(api.patch_status("machine-api", &PatchParams::default(), &Patch::Merge(&bad)).await.unwrap_err());
    assert_eq!(err.code, 422, "{err:?}");
}
