//! The paths other crates (the host, the tests, the fuzz targets) import from stay
//! where they were published, whatever the module layout inside.

#![allow(unused_imports)]

use vsm_vsphere::session::{Client, ClientOptions, Credentials, PoolStats, Secret, ServerSpec, SessionPool};
use vsm_vsphere::soap::envelope::XmlWriter as _;
use vsm_vsphere::soap::fault::{SoapFault, from_detail};
use vsm_vsphere::soap::parse::{
    MoRef, Node, ObjectContent, ServiceContent, TaskState, body_payload, missing_for_lack_of_session, parse,
    retrieve_result, service_content, task_info,
};
use vsm_vsphere::tls::{
    TlsPolicy, fetch_thumbprint, fetch_thumbprint_with_timeout, install_default_crypto_provider, normalize_thumbprint,
    thumbprint_sha256,
};
use vsm_vsphere::{About, PowerState, VmSummary, VsphereError, fuzzing, redact, soap};

#[test]
fn published_paths_work_together() {
    let root = parse(
        r#"<Envelope><Body><Fault><faultstring>gone</faultstring><detail><ManagedObjectNotFoundFault xmlns:xsi="x" xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-1</obj></ManagedObjectNotFoundFault></detail></Fault></Body></Envelope>"#,
    )
    .unwrap();
    let fault = SoapFault::from_node(body_payload(&root).unwrap());
    assert!(matches!(fault.into_error("Destroy_Task"), VsphereError::NotFound { .. }));
    let _: soap::MoRef = MoRef::new("Folder", "group-d1");
    let _: Option<Node> = None;
    assert_eq!(About::default().instance_uuid, "");
    assert_eq!(thumbprint_sha256(b"abc").len(), 95);
    assert!(matches!(fuzzing::rest_answer(401, ""), Err(VsphereError::NotAuthenticated { .. })));
    assert!(redact::redact_soap("<password>x</password>").contains(redact::REDACTED));
}
