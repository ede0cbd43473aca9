//! SOAP answers from a vCenter: the XML parser and every reader of its tree (service
//! content, property-collector results, tasks, faults), and the redaction of traced bodies.
//!
//! Properties: nothing panics; every reader returns a value or an error; a password (or
//! session key) in a well-formed body never survives redaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsm_vsphere::redact::{REDACTED, redact_soap};
use vsm_vsphere::soap::fault::SoapFault;
use vsm_vsphere::soap::parse::{
    Node, body_payload, missing_for_lack_of_session, parse, retrieve_result, service_content, task_info,
};

const SECRET: &str = "Zq7-fuzz-P4ssw0rd-xK";

fn walk(n: &Node, depth: usize) {
    if depth > 64 {
        return;
    }
    let _ = n.moref();
    let _ = n.xsi_type();
    if n.name == "Fault" || n.name == "fault" {
        let f = SoapFault::from_node(n);
        let _ = f.is_transient();
        let _ = f.into_error("fuzz");
    }
    if n.name == "info" {
        let _ = task_info(n);
    }
    for c in &n.children {
        walk(c, depth + 1);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(root) = parse(&text) {
        walk(&root, 0);
        if let Ok(payload) = body_payload(&root) {
            let _ = service_content(payload);
            if let Ok((objects, _token)) = retrieve_result(payload) {
                for o in &objects {
                    let _ = o.prop_text("name");
                    let _ = o.prop_moref("parent");
                }
            }
            let _ = missing_for_lack_of_session(payload);
            let _ = task_info(payload);
        }
    }
    let _ = redact_soap(&text);

    // The input around a password element: if the document is well-formed and holds it,
    // redaction must hide it.
    if text.contains(SECRET) {
        return;
    }
    let cut = text.len() / 2;
    let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    let (before, after) = text.split_at(cut);
    for element in ["password", "key"] {
        let wrapper = if element == "key" { "LoginResponse" } else { "Login" };
        let body = format!("<Envelope><Body><{wrapper}>{before}<{element}>{SECRET}</{element}>{after}</{wrapper}></Body></Envelope>");
        let Ok(root) = parse(&body) else { continue };
        let holds = |n: &Node| n.find(element).is_some_and(|p| p.text == SECRET);
        if !holds(&root) {
            continue;
        }
        let redacted = redact_soap(&body);
        assert!(!redacted.contains(SECRET), "a {element} survived redaction: {body:?} -> {redacted:?}");
        assert!(redacted.contains(REDACTED));
    }
});
