//! Write a vsphere-migration phase as a WebAssembly component.
//!
//! A phase implements [`Phase`] and exports it with [`export_phase!`]:
//!
//! ```ignore
//! use vsm_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Phase for Hello {
//!     fn describe() -> PhaseInfo {
//!         PhaseInfo::new("Hello", env!("CARGO_PKG_VERSION"), "Says hello")
//!             .kube("", "configmaps", &["get"], Some("default"))
//!     }
//!     fn execute(cx: &Cx) -> Step {
//!         let cm = cx.kube().get_required(&types::CONFIG_MAP, Some("default"), "hello")?;
//!         Ok(done(format!("found {}", cm.name())))
//!     }
//! }
//!
//! export_phase!(Hello);
//! ```
//!
//! Everything a phase does to the world goes through the [`Cx`] it is given: Kubernetes,
//! vSphere, the host's state store and backup journal, logs and the clock. The host checks
//! each call against the capabilities the operator granted; in plan mode it records
//! mutations instead of applying them. `Cx` is backed by the [`Host`] trait, so the same
//! phase logic also runs natively against a test double.

pub mod bindings {
    //! Raw bindings generated from `wit/phase.wit`.
    // The import signatures are the WIT's; the generated wrappers are not ours to reshape.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "phase",
        pub_export_macro: true,
        export_macro_name: "__export_phase_world",
        default_bindings_module: "vsm_sdk::bindings",
        additional_derives: [PartialEq],
        generate_all,
    });
}

mod cx;
mod error;
mod host;
mod object;
pub mod patch;
pub mod selector;
/// The `VSphereMigration` spec a phase is called for (from `vsm-api`).
pub mod spec {
    pub use vsm_api::PHASES;
    pub use vsm_api::duration;
    pub use vsm_api::spec::*;
}
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use bindings::vsm::phase::backup::{RestoreReport, SnapshotInfo};
pub use bindings::vsm::phase::kube::{KubeError, ObjectType, PatchType, Preconditions};
pub use bindings::vsm::phase::log::{EventType, Level};
pub use bindings::vsm::phase::state::Scope;
pub use bindings::vsm::phase::types::{
    CallContext, Capabilities, Failure, KubeCapability, Migration, Outcome, PhaseInfo, VsphereCapability, WaitInfo,
};
pub use bindings::vsm::phase::vsphere::{
    AboutInfo, Cardinality, CategoryInfo, CategorySpec, Ensured, EntityPrivileges, ObjectKind, ObjectRef,
    PrivilegeReport, TagInfo, VmInfo, VsphereError,
};
pub use cx::{Backup, Cx, Kube, Log, State, Vsphere};
pub use error::{PhaseError, ResultExt};
pub use host::{Host, WasmHost};
pub use object::{Condition, Object};

/// What every phase call returns: an [`Outcome`], or an error that becomes a failed one.
pub type Step = Result<Outcome, PhaseError>;

/// A migration phase.
pub trait Phase {
    /// Name, version, purpose and requested capabilities.
    fn describe() -> PhaseInfo;
    /// One bounded step of the phase.
    fn execute(cx: &Cx) -> Step;
    /// One bounded step of undoing the phase. For a phase that declares a rollback
    /// (`with_rollback`), the default restores its journal: every object it changed is put
    /// back as it was and every vSphere object it created is removed, newest first (the
    /// host journals each first change, so a phase that only changes objects needs nothing
    /// more). A phase without a rollback (RestartPods deletes pods their controllers
    /// replace: nothing to put back) or that made no change has nothing to undo.
    fn rollback(cx: &Cx) -> Step {
        if !Self::describe().has_rollback {
            return Ok(done("nothing to undo"));
        }
        Ok(done(match cx.backup().restore_all()? {
            0 => "nothing to undo".to_string(),
            n => format!("undid {n} journalled change(s): every object as it was before the phase"),
        }))
    }
}

/// The phase (or its rollback) is complete.
pub fn done(message: impl Into<String>) -> Outcome {
    Outcome::Done(message.into())
}

/// Ask the host to call again after `after_ms` milliseconds (or sooner on a watch event).
pub fn wait(after_ms: u64, progress: u8, message: impl Into<String>) -> Outcome {
    Outcome::Wait(WaitInfo { after_ms, progress: progress.min(100), message: message.into() })
}

/// Progress as a percentage of `part` in `whole`, clamped to 0..=100.
pub fn percent(part: usize, whole: usize) -> u8 {
    (part.min(whole) * 100).checked_div(whole).map_or(100, |percent| percent as u8)
}

impl PhaseInfo {
    /// A phase description with no capabilities, no rollback and a 30-minute deadline.
    pub fn new(name: &str, version: &str, purpose: &str) -> Self {
        PhaseInfo {
            name: name.to_string(),
            version: version.to_string(),
            purpose: purpose.to_string(),
            capabilities: Capabilities { kube: Vec::new(), vsphere: Vec::new() },
            has_rollback: false,
            default_deadline_ms: 30 * 60 * 1000,
        }
    }

    /// Request Kubernetes verbs on a resource (`group` "" is the core group).
    pub fn kube(mut self, group: &str, resource: &str, verbs: &[&str], namespace: Option<&str>) -> Self {
        self.capabilities.kube.push(KubeCapability {
            group: group.to_string(),
            resource: resource.to_string(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            namespace: namespace.map(str::to_string),
        });
        self
    }

    /// Request a class of vSphere operations.
    pub fn vsphere(mut self, capability: VsphereCapability) -> Self {
        if !self.capabilities.vsphere.contains(&capability) {
            self.capabilities.vsphere.push(capability);
        }
        self
    }

    /// Declare that `rollback` undoes the phase.
    pub fn with_rollback(mut self) -> Self {
        self.has_rollback = true;
        self
    }

    /// Default deadline for the whole phase.
    pub fn deadline_minutes(mut self, minutes: u64) -> Self {
        self.default_deadline_ms = minutes * 60 * 1000;
        self
    }
}

#[doc(hidden)]
pub fn __run(step: fn(&Cx) -> Step, ctx: CallContext) -> Outcome {
    let host = WasmHost;
    let cx = Cx::new(ctx, &host);
    match step(&cx) {
        Ok(outcome) => outcome,
        Err(err) => err.into_outcome(),
    }
}

/// Export a [`Phase`] implementation as the component's `describe`, `execute` and
/// `rollback`.
///
/// The exports exist only when building for WebAssembly: natively they would be unmangled
/// symbols named `execute`, `describe`..., so two phase crates could not be linked into one
/// binary (the benchmarks run every phase natively beside its component).
#[macro_export]
macro_rules! export_phase {
    ($phase:ty) => {
        #[cfg(target_arch = "wasm32")]
        struct __VsmExportedPhase;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::Guest for __VsmExportedPhase {
            fn describe() -> $crate::PhaseInfo {
                <$phase as $crate::Phase>::describe()
            }
            fn execute(ctx: $crate::CallContext) -> $crate::Outcome {
                $crate::__run(<$phase as $crate::Phase>::execute, ctx)
            }
            fn rollback(ctx: $crate::CallContext) -> $crate::Outcome {
                $crate::__run(<$phase as $crate::Phase>::rollback, ctx)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_phase_world!(__VsmExportedPhase with_types_in $crate::bindings);
    };
}

/// The names a phase usually needs.
pub mod prelude {
    pub use crate::spec::{FailureDomain, MigrationSpec};
    pub use crate::types;
    pub use crate::{
        Cx, EventType, Level, Object, ObjectKind, ObjectRef, ObjectType, Outcome, Phase, PhaseError, PhaseInfo,
        ResultExt, Scope, Step, VsphereCapability, done, export_phase, percent, wait,
    };
    pub use serde_json::{Value, json};
}
