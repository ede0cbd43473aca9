//! The phase benchmark's stub host (this crate's library): each of the 16 phase components,
//! called through the runtime against a `FakeHost` fixture, ends exactly as the same
//! phase's logic called natively on an identical fixture, and leaves the host in the same
//! state. Not a timing test: `cargo xtask bench` measures.

use vsm_host::runtime::{Runtime, RuntimeConfig};
use vsm_phase_bench::{cases, load, lock, wasm};
use vsm_sdk::Outcome;
use vsm_sdk::testing::FakeHost;
use vsm_sdk::types;

/// What a call left behind: every object the phases touch, state, journal, events.
fn world(h: &FakeHost) -> String {
    let mut out = Vec::new();
    for ty in [
        types::SECRET,
        types::CONFIG_MAP,
        types::POD,
        types::DEPLOYMENT,
        types::INFRASTRUCTURE,
        types::MACHINE,
        types::MACHINE_SET,
        types::CONTROL_PLANE_MACHINE_SET,
    ] {
        out.push(format!("{:?}", h.list(&ty).iter().map(|o| o.0.clone()).collect::<Vec<_>>()));
    }
    out.push(format!("{:?}", h.all_state()));
    out.push(format!("{:?}", h.journal()));
    out.push(format!("{:?}", h.snapshots()));
    out.push(format!("{:?}", h.events()));
    out.push(format!("{:?}", h.denials()));
    out.join("\n")
}

#[tokio::test(flavor = "current_thread")]
async fn every_phase_component_ends_like_its_native_logic_on_the_same_fixture() {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    for case in cases() {
        let plugin = load(&runtime, case.component).await;
        let (native, native_host) = case.native(case.prepare());
        let (component, imports, component_host) = wasm(&plugin, case.prepare()).await;
        assert_eq!(component, native, "{}", case.component);
        assert!(!matches!(native, Outcome::Failed(_)), "{}: the fixture makes it fail: {native:?}", case.component);
        assert!(imports > 0, "{}: no import made", case.component);
        let (component_host, native_host) = (lock(&component_host), lock(&native_host));
        assert_eq!(world(&component_host), world(&native_host), "{}: the hosts differ afterwards", case.component);
        assert_eq!(component_host.imports(), native_host.imports(), "{}: import counts differ", case.component);
    }
}
