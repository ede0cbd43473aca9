//! The environment's two vCenters: SOAP login, a REST tag on each, each enforcing its own
//! credentials, and TLS that verifies against the environment CA only.

use vsm_testenv::probe::{self, SoapLogin};
use vsm_testenv::{TestEnv, Vcsim};

async fn env() -> &'static TestEnv {
    TestEnv::shared().await.expect("environment starts")
}

fn both(env: &TestEnv) -> [&Vcsim; 2] {
    [env.source(), env.target()]
}

#[tokio::test]
async fn soap_login_works_on_each_vcenter_with_its_own_credentials_only() {
    let env = env().await;
    for (vc, other) in [(env.source(), env.target()), (env.target(), env.source())] {
        let http = probe::https_client(Some(env.ca_pem())).unwrap();
        let ok = probe::soap_login(&http, &vc.url, &vc.username, &vc.password).await.unwrap();
        assert!(matches!(&ok, SoapLogin::Ok { user, .. } if *user == vc.username), "{}: {ok:?}", vc.name);
        let wrong = probe::soap_login(&http, &vc.url, &other.username, &other.password).await.unwrap();
        assert!(matches!(&wrong, SoapLogin::Fault(f) if f.contains("Login failure")), "{}: {wrong:?}", vc.name);
    }
}

#[tokio::test]
async fn a_rest_tag_category_is_created_on_each_vcenter() {
    let env = env().await;
    let mut ids = Vec::new();
    for vc in both(env) {
        let http = probe::https_client(Some(env.ca_pem())).unwrap();
        let session = probe::rest_login(&http, &vc.url, &vc.username, &vc.password).await.unwrap().unwrap();
        let name = format!("openshift-zone-{}", vc.name);
        let id = probe::rest_create_category(&http, &vc.url, &session, &name).await.unwrap();
        assert!(id.starts_with("urn:vmomi:InventoryServiceCategory:"), "{id}");
        let listed = probe::rest_list_categories(&http, &vc.url, &session).await.unwrap();
        assert!(listed.contains(&id), "{}: {id} not in {listed:?}", vc.name);
        ids.push((vc, id));
    }
    // The categories live in separate vCenters: neither sees the other's.
    let (src, src_id) = &ids[0];
    let (_, dst_id) = &ids[1];
    let http = probe::https_client(Some(env.ca_pem())).unwrap();
    let session = probe::rest_login(&http, &src.url, &src.username, &src.password).await.unwrap().unwrap();
    let listed = probe::rest_list_categories(&http, &src.url, &session).await.unwrap();
    assert!(listed.contains(src_id) && !listed.contains(dst_id), "{listed:?}");
    // Without a session the tagging API refuses.
    let resp =
        http.get(format!("{}/rest/com/vmware/cis/tagging/category", probe::base_url(&src.url))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn vcenter_tls_verifies_against_the_environment_ca_and_fails_without_it() {
    let env = env().await;
    for vc in both(env) {
        assert_eq!(vc.ca_pem.as_deref(), Some(env.ca_pem()));
        let trusted = probe::https_client(vc.ca_pem.as_deref()).unwrap();
        let resp = trusted.get(format!("{}/about", probe::base_url(&vc.url))).send().await.unwrap();
        assert!(resp.status().is_success(), "{}: {}", vc.name, resp.status());

        let untrusted = probe::https_client(None).unwrap();
        let err = untrusted.post(&vc.url).body("").send().await.unwrap_err();
        assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{}: {err:?}", vc.name);

        let other = vsm_testenv::TestCa::new("not-the-environment-ca").unwrap();
        let wrong = probe::https_client(Some(&other.cert_pem)).unwrap();
        assert!(wrong.post(&vc.url).body("").send().await.is_err(), "{}", vc.name);
    }
}

#[tokio::test]
async fn the_vcenters_are_separate_and_described_consistently() {
    let env = env().await;
    let (src, dst) = (env.source(), env.target());
    assert_ne!(src.host(), dst.host());
    assert_ne!(src.thumbprint_sha256, dst.thumbprint_sha256);
    assert_ne!((&src.username, &src.password), (&dst.username, &dst.password));
    for vc in both(env) {
        assert_eq!(vc.url, format!("https://{}:{}/sdk", vc.host(), vc.port()));
        // The control API answers, and counts logins made by tests.
        vc.stats().await.unwrap();
    }
}
