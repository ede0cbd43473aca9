//! The vcsim launcher on its own: presets, certificates, credentials and the control API.

use std::sync::Arc;

use sha2::Digest;
use vsm_testenv::probe::{self, SoapLogin};
use vsm_testenv::vcsim::{source, target};
use vsm_testenv::{TestCa, Vcsim, VcsimOptions};

fn with_ca(mut opts: VcsimOptions, ca: &Arc<TestCa>) -> VcsimOptions {
    opts.ca = Some(ca.clone());
    opts
}

async fn login(vc: &Vcsim, user: &str, pass: &str) -> SoapLogin {
    let http = probe::https_client(vc.ca_pem.as_deref()).unwrap();
    probe::soap_login(&http, &vc.url, user, pass).await.unwrap()
}

#[tokio::test]
async fn presets_have_distinct_inventories_and_ca_signed_certificates() {
    let ca = Arc::new(TestCa::new("vcsim-test-ca").unwrap());
    let (src, dst) = tokio::try_join!(
        Vcsim::start(with_ca(VcsimOptions::source(), &ca)),
        Vcsim::start(with_ca(VcsimOptions::target(), &ca))
    )
    .unwrap();

    // Distinct addresses, so each can be an OpenShift `server` of its own, and ports that fit
    // the Infrastructure CRD's `vcenters[].port` (1..=32767).
    assert_eq!((src.host().as_str(), dst.host().as_str()), (source::HOST, target::HOST));
    for vc in [&src, &dst] {
        assert_eq!(vc.url, format!("https://{}/sdk", vc.server()));
        assert_eq!(vc.server(), format!("{}:{}", vc.host(), vc.port()));
        assert!((20000..=32767).contains(&vc.port()), "{}", vc.server());
        assert_eq!(vc.ca_pem.as_deref(), Some(ca.cert_pem.as_str()));
    }

    // The announced thumbprint is the SHA-256 of the certificate actually served.
    for vc in [&src, &dst] {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap()])
            .tls_info(true)
            .build()
            .unwrap();
        let resp = http.get(format!("https://{}/about", vc.server())).send().await.unwrap();
        let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
        let der = info.peer_certificate().expect("peer certificate");
        let want: Vec<String> = sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(vc.thumbprint_sha256, want.join(":"), "{}", vc.name);
    }
    assert_ne!(src.thumbprint_sha256, dst.thumbprint_sha256);

    // Each vCenter has its own inventory names and only its own.
    let cases = [
        (
            &src,
            source::USERNAME,
            source::PASSWORD,
            [
                source::CLUSTER_PATH,
                source::DATASTORE_PATH,
                source::NETWORK_PATH,
                source::RESOURCE_POOL_PATH,
                source::VM_FOLDER_PATH,
            ],
            target::CLUSTER_PATH,
        ),
        (
            &dst,
            target::USERNAME,
            target::PASSWORD,
            [
                target::CLUSTER_PATH,
                target::DATASTORE_PATH,
                target::NETWORK_PATH,
                target::RESOURCE_POOL_PATH,
                target::VM_FOLDER_PATH,
            ],
            source::CLUSTER_PATH,
        ),
    ];
    for (vc, user, pass, present, absent) in cases {
        let http = probe::https_client(vc.ca_pem.as_deref()).unwrap();
        let SoapLogin::Ok { cookie, .. } = probe::soap_login(&http, &vc.url, user, pass).await.unwrap() else {
            panic!("{} login refused", vc.name)
        };
        for path in present {
            let found = probe::find_by_inventory_path(&http, &vc.url, &cookie, path).await.unwrap();
            assert!(found.is_some(), "{}: nothing at {path}", vc.name);
        }
        let cluster = probe::find_by_inventory_path(&http, &vc.url, &cookie, present[0]).await.unwrap().unwrap();
        assert!(cluster.starts_with("ClusterComputeResource:"), "{cluster}");
        assert_eq!(probe::find_by_inventory_path(&http, &vc.url, &cookie, absent).await.unwrap(), None);
        assert_eq!(probe::find_by_inventory_path(&http, &vc.url, &cookie, "/DC0").await.unwrap(), None);
    }
}

#[tokio::test]
async fn credentials_are_enforced_counted_and_rotatable() {
    let vc = Vcsim::start(VcsimOptions::source()).await.unwrap();
    // Without a CA the launcher serves its built-in certificate, which nobody trusts.
    assert_eq!(vc.ca_pem, None);
    let insecure = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
    assert!(probe::https_client(None).unwrap().get(&vc.url).send().await.is_err());

    let st = vc.stats().await.unwrap();
    assert_eq!((st.login_attempts, st.login_failures, st.sessions.len()), (0, 0, 0));

    let bad = probe::soap_login(&insecure, &vc.url, &vc.username, "wrong").await.unwrap();
    assert!(matches!(&bad, SoapLogin::Fault(f) if f.contains("Login failure")), "{bad:?}");
    let good = probe::soap_login(&insecure, &vc.url, &vc.username, &vc.password).await.unwrap();
    let SoapLogin::Ok { user, .. } = good else { panic!("{good:?}") };
    assert_eq!(user, vc.username);
    let st = vc.stats().await.unwrap();
    assert_eq!((st.login_attempts, st.login_failures, st.sessions.len()), (2, 1, 1));

    // REST logins go through the same check.
    assert_eq!(probe::rest_login(&insecure, &vc.url, &vc.username, "wrong").await.unwrap(), Err(401));

    vc.set_credentials("rotated", "new-pass").await.unwrap();
    let old = probe::soap_login(&insecure, &vc.url, &vc.username, &vc.password).await.unwrap();
    assert!(matches!(old, SoapLogin::Fault(_)), "{old:?}");
    let new = probe::soap_login(&insecure, &vc.url, "rotated", "new-pass").await.unwrap();
    assert!(matches!(new, SoapLogin::Ok { .. }), "{new:?}");
    assert!(probe::rest_login(&insecure, &vc.url, "rotated", "new-pass").await.unwrap().is_ok());

    assert_eq!(vc.stats().await.unwrap().sessions.len(), 2);
    assert_eq!(vc.terminate_sessions().await.unwrap(), 2);
    assert_eq!(vc.stats().await.unwrap().sessions.len(), 0);
}

#[tokio::test]
async fn login_with_the_other_vcenters_credentials_fails() {
    let ca = Arc::new(TestCa::new("vcsim-test-ca").unwrap());
    let src = Vcsim::start(with_ca(VcsimOptions::source(), &ca)).await.unwrap();
    let r = login(&src, target::USERNAME, target::PASSWORD).await;
    assert!(matches!(r, SoapLogin::Fault(_)), "{r:?}");
    let r = login(&src, source::USERNAME, source::PASSWORD).await;
    assert!(matches!(r, SoapLogin::Ok { .. }), "{r:?}");
}
