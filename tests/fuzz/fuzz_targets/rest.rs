//! REST answers from a vCenter (`/rest/com/vmware/cis/...`): the status and JSON body as
//! every REST call decodes them, and the tag and category models read from a `value`.
//!
//! Properties: nothing panics; an error status is never taken for success; a 2xx JSON
//! answer gives its `value`; a 2xx answer that is not JSON is an error, not a guess.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsm_vsphere::fuzzing::{category, rest_answer, tags};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first two bytes pick the HTTP status (100..=599).
    let status = 100 + (u16::from_le_bytes([data[0], data[1]]) % 500);
    let body = String::from_utf8_lossy(&data[2..]);
    let answer = rest_answer(status, &body);
    let json: Option<serde_json::Value> =
        if body.trim().is_empty() { None } else { serde_json::from_str(&body).ok() };
    if (200..300).contains(&status) {
        match (&json, &answer) {
            (Some(j), Ok(v)) => assert_eq!(v.as_ref(), j.get("value"), "the value of a 2xx answer"),
            (Some(_), Err(e)) => panic!("a 2xx JSON answer refused: {e}"),
            (None, Ok(v)) => assert!(body.trim().is_empty() && v.is_none(), "a non-JSON 2xx answer accepted"),
            (None, Err(_)) => assert!(!body.trim().is_empty(), "an empty 2xx answer refused"),
        }
        if let Ok(value) = answer {
            let _ = category(value.clone());
            let _ = tags(value);
        }
    } else {
        assert!(answer.is_err(), "status {status} taken for success");
    }
    // The models straight from arbitrary JSON.
    if let Some(j) = json {
        let _ = category(Some(j.clone()));
        let _ = tags(Some(j));
    }
});
