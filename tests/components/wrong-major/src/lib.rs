//! Test component built against `vsm:phase@1.0.0`, a major version this host does not speak.

wit_bindgen::generate!({ path: "wit", world: "phase" });

struct Future;

impl Guest for Future {
    fn describe() -> PhaseInfo {
        PhaseInfo { name: "Future".into(), version: "1.0.0".into() }
    }
    fn execute(_spec: String, _attempt: u32) -> Outcome {
        Outcome::Done(format!("now {}", vsm::phase::clock::now_ms()))
    }
    fn rollback(_spec: String) -> Outcome {
        Outcome::Skipped("nothing".into())
    }
}

export!(Future);
