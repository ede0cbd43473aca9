//! The migration spec as the operator and the phases read it: any JSON into
//! `MigrationSpec` (serde, with the schema's defaults), and the spec's durations
//! (`phaseDeadlines`, `health.stallTimeout`, `health.stabilityWindow`) through the one
//! parser that reads them (vsm-api's, through the entry points the host and the phases
//! use) against the CRD's pattern `^([0-9]+(ms|s|m|h))+$`.
//!
//! Properties: nothing panics; a spec that parses survives a round trip unchanged and its
//! lookups agree with its lists; the duration parser accepts nothing the schema refuses,
//! and both entry points accept and agree on what it admits (parts up to 10^6, at most 8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsm_sdk::spec::MigrationSpec;


/// The CRD pattern, by hand: returns the parts, or None when it does not match.
fn pattern(text: &str) -> Option<Vec<(u64, u64)>> {
    let mut parts = Vec::new();
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n = rest[..digits].parse::<u64>().unwrap_or(u64::MAX);
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        parts.push((n, unit));
        rest = &rest[len..];
    }
    Some(parts)
}

fn durations(text: &str) {
    let common = vsm_common::duration::parse_ms(text);
    let host = vsm_sdk::spec::duration::parse(text);
    let matched = pattern(text);
    if common.is_ok() || host.is_some() {
        assert!(matched.is_some(), "{text:?} is accepted, but the schema refuses it");
    }
    if let Some(parts) = matched
        && parts.len() <= 8
        && parts.iter().all(|(n, _)| *n <= 1_000_000)
    {
        let want: u64 = parts.iter().map(|(n, u)| n * u).sum();
        assert_eq!(common, Ok(want), "the phases read {text:?}");
        assert_eq!(host.map(|d| d.as_millis() as u64), Some(want), "the host reads {text:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && text.len() <= 64
    {
        durations(text);
    }
    let Ok(spec) = serde_json::from_slice::<MigrationSpec>(data) else { return };
    let value = serde_json::to_value(&spec).expect("a parsed spec serializes");
    let again: MigrationSpec = serde_json::from_value(value).expect("a serialized spec parses");
    assert_eq!(again, spec, "round trip");
    let targets = spec.target_servers();
    for server in &targets {
        assert!(spec.failure_domains.iter().any(|f| f.server == *server));
    }
    for fd in &spec.failure_domains {
        assert!(targets.contains(&fd.server.as_str()));
        assert!(spec.failure_domain(&fd.name).is_some());
        let _ = fd.topology.folder_or_default("infra-id");
    }
    for c in &spec.vcenters {
        assert!(spec.connection(&c.server).is_some());
    }
    for d in spec.phase_deadlines.values() {
        durations(d);
    }
    for d in [&spec.health.stall_timeout, &spec.health.stability_window].into_iter().flatten() {
        durations(d);
    }
});
