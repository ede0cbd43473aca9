//! Host-side bindings generated from `wit/phase.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "phase",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize],
});

pub use vsm::phase::backup::{BackupError, RestoreReport, SnapshotInfo};
pub use vsm::phase::kube::{KubeError, ObjectType, PatchType, Preconditions};
pub use vsm::phase::log::{EventType, Level};
pub use vsm::phase::state::{Scope, StateError};
pub use vsm::phase::types::{Capabilities, Failure, KubeCapability, Migration, VsphereCapability, WaitInfo};
pub use vsm::phase::vsphere::{
    AboutInfo, Cardinality, CategoryInfo, CategorySpec, Ensured, EntityPrivileges, ObjectKind, ObjectRef,
    PrivilegeReport, TagInfo, VmInfo, VsphereError,
};
