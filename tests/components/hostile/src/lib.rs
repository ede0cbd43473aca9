//! Test component that misbehaves on request, so the tests can prove the host contains it.
//! The spec's `"hostile"` field selects the misbehaviour:
//!
//! - `loop`: spin forever (the CPU deadline must stop it);
//! - `alloc`: allocate and touch 1 GiB (the memory cap must stop it);
//! - `trap`: execute `unreachable`;
//! - `panic`: a Rust panic (its message must reach the host's logs);
//! - `forbidden`: read a Secret it was never granted;
//! - `oversized`: return a 16 MiB message;
//! - anything else: behave.
//!
//! Features `loop`, `alloc`, `trap`, `forbidden`, `oversized` and `panic` force one
//! misbehaviour.

use serde_json::Value;
use vsm_sdk::prelude::*;

pub struct Hostile;

impl Phase for Hostile {
    fn describe() -> PhaseInfo {
        PhaseInfo::new("Hostile", "0.1.0", "Misbehaves on request (test component)")
            .kube("", "configmaps", &["get"], Some("default"))
            .deadline_minutes(1)
    }

    fn execute(cx: &Cx) -> Step {
        let spec: Value = serde_json::from_str(&cx.call().migration.spec_json)?;
        let forced = if cfg!(feature = "loop") {
            Some("loop")
        } else if cfg!(feature = "alloc") {
            Some("alloc")
        } else if cfg!(feature = "trap") {
            Some("trap")
        } else if cfg!(feature = "forbidden") {
            Some("forbidden")
        } else if cfg!(feature = "oversized") {
            Some("oversized")
        } else if cfg!(feature = "panic") {
            Some("panic")
        } else {
            None
        };
        match forced.or(spec.get("hostile").and_then(Value::as_str)).unwrap_or("") {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                for _ in 0..1024 {
                    hoard.push(vec![1u8; 1 << 20]);
                }
                Ok(done(format!("hoarded {} MiB", hoard.len())))
            }
            "trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                std::process::abort();
            }
            "panic" => panic!("hostile component panicked on purpose"),
            "forbidden" => {
                let secret = cx.kube().get(&types::SECRET, Some("kube-system"), "vsphere-creds")?;
                Ok(done(format!("read a secret: {}", secret.is_some())))
            }
            "oversized" => Ok(done("x".repeat(16 << 20))),
            _ => Ok(done("behaved")),
        }
    }
}

export_phase!(Hostile);
