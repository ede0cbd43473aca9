//! The project's fallback schemas (tests/crds-fallback) enforce the same rules the
//! migration relies on in the real OpenShift CRDs (the same checks run in testenv_kube).

use tokio::sync::OnceCell;
use vsm_testenv::{OpenShiftCrds, TestEnv, TestEnvOptions};

mod testenv_support;
use testenv_support as support;

async fn env() -> &'static TestEnv {
    static ENV: OnceCell<TestEnv> = OnceCell::const_new();
    let env =
        TestEnv::shared_in(&ENV, || TestEnvOptions { openshift_crds: OpenShiftCrds::Fallback, ..Default::default() })
            .await
            .expect("environment starts");
    assert_eq!(env.openshift_crds_dir(), Some(vsm_testenv::crds::fallback_dir().as_path()));
    env
}

#[tokio::test]
async fn every_fallback_crd_is_established() {
    let env = env().await;
    let mut names = env.installed_crds().to_vec();
    names.sort();
    let project = vsm_testenv::crds::load_dir(&vsm_testenv::crds::project_dir()).unwrap().len();
    assert_eq!(names.len(), 6 + project, "{names:?}");
    for crd in [
        "clusteroperators.config.openshift.io",
        "clusterversions.config.openshift.io",
        "controlplanemachinesets.machine.openshift.io",
        "infrastructures.config.openshift.io",
        "machines.machine.openshift.io",
        "machinesets.machine.openshift.io",
    ] {
        assert!(names.iter().any(|n| n == crd), "{crd} missing from {names:?}");
    }
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    support::infrastructure_status_subresource(env().await).await;
}

#[tokio::test]
async fn cel_rules_reject_bad_vcenter_edits() {
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
