//! The environment's Kubernetes side is a real kube-apiserver: status subresources, CEL
//! rules from the OpenShift CRDs, optimistic concurrency, RBAC and verified TLS.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;
use support::api_error;
use vsm_testenv::TestEnv;

mod testenv_support;
use testenv_support as support;
use vsm_testenv::apiserver::{OPERATOR_NAMESPACE, OPERATOR_USER};

async fn env() -> &'static TestEnv {
    TestEnv::shared().await.expect("environment starts")
}

fn infrastructure_api(client: kube::Client) -> Api<DynamicObject> {
    Api::all_with(client, &support::infrastructure())
}

#[tokio::test]
async fn openshift_crds_come_from_the_fixtures_when_present() {
    let env = env().await;
    let want = vsm_testenv::crds::fixtures_dir().unwrap_or_else(vsm_testenv::crds::fallback_dir);
    assert_eq!(env.openshift_crds_dir(), Some(want.as_path()));
    for crd in [
        "infrastructures.config.openshift.io",
        "clusteroperators.config.openshift.io",
        "clusterversions.config.openshift.io",
        "machines.machine.openshift.io",
        "machinesets.machine.openshift.io",
        "controlplanemachinesets.machine.openshift.io",
    ] {
        assert!(env.installed_crds().iter().any(|c| c == crd), "{crd} not installed: {:?}", env.installed_crds());
    }
    let ns: Api<Namespace> = Api::all(env.client());
    for name in vsm_testenv::crds::NAMESPACES {
        ns.get(name).await.unwrap();
    }
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    support::infrastructure_status_subresource(env().await).await;
}

#[tokio::test]
async fn cel_rules_of_the_infrastructure_crd_reject_bad_vcenter_edits() {
    support::infrastructure_cel_rules(env().await).await;
}

#[tokio::test]
async fn infrastructure_accepts_the_environment_vcenters_as_openshift_stores_them() {
    support::infrastructure_accepts_the_environment_vcenters(env().await).await;
}

#[tokio::test]
async fn control_plane_machine_set_rules_and_subresources() {
    support::cpms_rules(env().await).await;
}

#[tokio::test]
async fn machineset_scale_subresource_and_provider_spec() {
    support::machineset_scale_and_provider_spec(env().await).await;
}

#[tokio::test]
async fn cluster_operator_status_conditions() {
    support::cluster_operator_status(env().await).await;
}

#[tokio::test]
async fn a_lease_update_with_a_stale_resource_version_conflicts() {
    let leases: Api<Lease> = Api::namespaced(env().await.client(), OPERATOR_NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "stale-rv-test"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let first = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = first.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("stale-rv-test", &PostParams::default(), &mine).await.unwrap();

    // `first` still carries the old resourceVersion: a deposed leader's write.
    let mut stale = first;
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = api_error(leases.replace("stale-rv-test", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!(err.code, 409, "{err:?}");
    assert_eq!(err.reason, "Conflict");
    let now = leases.get("stale-rv-test").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn rbac_denies_the_operator_token_until_granted() {
    let env = env().await;
    let as_operator: Api<ConfigMap> = Api::namespaced(env.operator_client(), "openshift-config");
    let err = api_error(as_operator.list(&Default::default()).await.unwrap_err());
    assert_eq!(err.code, 403, "{err:?}");
    assert!(err.message.contains(OPERATOR_USER), "{}", err.message);
    let infra = infrastructure_api(env.operator_client());
    assert_eq!(api_error(infra.list(&Default::default()).await.unwrap_err()).code, 403);

    // Granting a Role makes the same call succeed: the token is authenticated, only RBAC said no.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "operator-reads-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": OPERATOR_NAMESPACE}],
    }))
    .unwrap();
    Api::<Role>::namespaced(env.client(), "openshift-config").create(&PostParams::default(), &role).await.unwrap();
    Api::<RoleBinding>::namespaced(env.client(), "openshift-config")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // RBAC is eventually consistent (informer-fed authorizer): retry for a while.
    let mut allowed = false;
    for _ in 0..600 {
        if as_operator.list(&Default::default()).await.is_ok() {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(allowed, "the RoleBinding never took effect");
    // Still nothing outside what was granted.
    let other: Api<ConfigMap> = Api::namespaced(env.operator_client(), "kube-system");
    assert_eq!(api_error(other.list(&Default::default()).await.unwrap_err()).code, 403);
}

#[tokio::test]
async fn apiserver_tls_verifies_against_the_environment_ca_only() {
    let env = env().await;
    let readyz = format!("{}/readyz", env.apiserver_url());
    let trusted = vsm_testenv::probe::https_client(Some(env.ca_pem())).unwrap();
    let resp = trusted.get(&readyz).bearer_auth(env.admin_token()).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let untrusted = vsm_testenv::probe::https_client(None).unwrap();
    let err = untrusted.get(&readyz).send().await.unwrap_err();
    assert!(err.is_connect() || format!("{err:?}").contains("certificate"), "{err:?}");

    // A different CA is not enough either.
    let other = vsm_testenv::TestCa::new("some-other-ca").unwrap();
    let wrong = vsm_testenv::probe::https_client(Some(&other.cert_pem)).unwrap();
    assert!(wrong.get(&readyz).send().await.is_err());
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_same_apiserver_as_admin() {
    let env = env().await;
    let client = vsm_testenv::apiserver::client_from_kubeconfig(env.kubeconfig_path()).await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, vsm_testenv::tools::KUBERNETES_VERSION);
    // Admin may do anything, e.g. read the CRDs.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    assert!(crds.list(&Default::default()).await.unwrap().items.len() >= 6);
}
