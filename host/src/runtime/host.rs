//! The store data of one call and the host side of every import: each import is counted,
//! checked against the plugin's effective capabilities, then handed to [`PhaseServices`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result as WasmResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::vsm::phase::{backup, clock, kube, log, state, types, vsphere};
use super::bindings::{
    AboutInfo, BackupError, CategorySpec, Ensured, EventType, KubeError, Level, ObjectKind, ObjectRef, ObjectType,
    PatchType, Preconditions, RestoreReport, Scope, SnapshotInfo, StateError, TagInfo, VmInfo, VsphereError,
};
use super::capability::{Effective, VsphereClass};
use super::services::{CallScope, KubeOp, PhaseServices, ResolvedType, VsphereOp, VsphereReply};

/// Largest object or patch a guest may send in one Kubernetes call (etcd's own limit is
/// 1.5 MiB; this leaves room for base64 and JSON overhead).
pub const MAX_OBJECT_BYTES: usize = 3 << 20;
/// Largest log line or event message kept; longer ones are truncated.
pub const MAX_LOG_BYTES: usize = 4096;
/// Largest state value.
pub const MAX_STATE_VALUE_BYTES: usize = 64 << 10;

/// Everything a call's imports need that is not in the store itself.
pub struct CallEnv {
    pub services: Arc<dyn PhaseServices>,
    pub scope: CallScope,
    pub caps: Arc<Effective>,
    /// The vCenter servers of the migration; any other server is forbidden.
    pub servers: Vec<String>,
}

/// Memory cap with a record of the refusal, so an out-of-memory trap is reported as such.
pub struct MemoryLimiter {
    pub limit: usize,
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> WasmResult<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> WasmResult<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The data of one store (one call).
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// Epoch ticks the guest has run for, and how many it may.
    pub cpu_ticks: u64,
    pub cpu_budget_ticks: u64,
    /// None while running describe(): no import is available then.
    env: Option<Arc<CallEnv>>,
    pub imports_made: u64,
    pub denials: Vec<String>,
}

impl HostState {
    pub fn new(wasi: WasiCtx, limiter: MemoryLimiter, cpu_budget_ticks: u64, env: Option<Arc<CallEnv>>) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            cpu_ticks: 0,
            cpu_budget_ticks,
            env,
            imports_made: 0,
            denials: Vec::new(),
        }
    }

    fn env(&mut self) -> Result<Arc<CallEnv>, String> {
        self.imports_made += 1;
        self.env.clone().ok_or_else(|| "host imports are not available during describe()".to_string())
    }

    fn deny(&mut self, env: &CallEnv, what: String) -> String {
        let message = format!("plugin {} may not {what}", env.scope.plugin);
        tracing::warn!(plugin = %env.scope.plugin, phase = %env.scope.phase, migration = %env.scope.migration_name, denied = %what, "capability check denied a call");
        self.denials.push(message.clone());
        message
    }

    async fn kube(&mut self, ty: ObjectType, op: KubeOp) -> Result<String, KubeError> {
        let env = self.env().map_err(KubeError::Forbidden)?;
        if op.payload_len() > MAX_OBJECT_BYTES {
            return Err(KubeError::Invalid(format!(
                "payload of {} bytes exceeds the limit of {MAX_OBJECT_BYTES}",
                op.payload_len()
            )));
        }
        let resolved = env.services.resolve(&ty).await?;
        if let Some(problem) = scope_problem(&resolved, &op) {
            return Err(KubeError::Invalid(problem));
        }
        for verb in op.verbs() {
            if !env.caps.allows_kube(&resolved.group, &resolved.resource, verb, op.namespace()) {
                let group = if resolved.group.is_empty() { "core" } else { &resolved.group };
                let place =
                    op.namespace().map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " cluster-wide".into());
                return Err(KubeError::Forbidden(
                    self.deny(&env, format!("{verb} {group}/{}{place}", resolved.resource)),
                ));
            }
        }
        env.services.kube(&env.scope, &resolved, op).await
    }

    async fn vsphere(&mut self, server: String, op: VsphereOp) -> Result<VsphereReply, VsphereError> {
        let env = self.env().map_err(VsphereError::Forbidden)?;
        if !env.servers.contains(&server) {
            return Err(VsphereError::Forbidden(
                self.deny(&env, format!("use vCenter {server}, which is not part of the migration")),
            ));
        }
        let class = VsphereClass::from(op.capability());
        if !env.caps.allows_vsphere(class) {
            let name =
                serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            return Err(VsphereError::Forbidden(self.deny(&env, format!("{name} on vCenter {server}"))));
        }
        env.services.vsphere(&env.scope, &server, op).await
    }
}

/// A namespaced kind needs a namespace for single-object calls; a cluster-scoped kind
/// never takes one.
fn scope_problem(ty: &ResolvedType, op: &KubeOp) -> Option<String> {
    let single = !matches!(op, KubeOp::List { .. });
    match (ty.namespaced, op.namespace()) {
        (true, None) if single => Some(format!("{} is namespaced: a namespace is required", ty.kind)),
        (false, Some(ns)) => Some(format!("{} is cluster-scoped: namespace {ns} makes no sense", ty.kind)),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn unexpected(reply: VsphereReply) -> VsphereError {
    VsphereError::Invalid(format!("host returned an unexpected reply: {reply:?}"))
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}

impl kube::Host for HostState {
    async fn get(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::Get { namespace, name }).await)
    }
    async fn list(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::List { namespace, label_selector }).await)
    }
    async fn create(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        object: String,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::Create { namespace, object }).await)
    }
    async fn apply(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        object: String,
        force: bool,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::Apply { namespace, name, object, force }).await)
    }
    async fn patch(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        patch_type: PatchType,
        patch: String,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::Patch { namespace, name, patch_type, patch }).await)
    }
    async fn replace(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        object: String,
    ) -> WasmResult<Result<String, KubeError>> {
        Ok(self.kube(ty, KubeOp::Replace { namespace, name, object }).await)
    }
    async fn delete(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
        preconditions: Option<Preconditions>,
    ) -> WasmResult<Result<(), KubeError>> {
        Ok(self.kube(ty, KubeOp::Delete { namespace, name, preconditions }).await.map(|_| ()))
    }
}

impl vsphere::Host for HostState {
    async fn about(&mut self, server: String) -> WasmResult<Result<AboutInfo, VsphereError>> {
        Ok(match self.vsphere(server, VsphereOp::About).await {
            Ok(VsphereReply::About(a)) => Ok(a),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }
    async fn find_object(
        &mut self,
        server: String,
        kind: ObjectKind,
        path: String,
    ) -> WasmResult<Result<ObjectRef, VsphereError>> {
        Ok(match self.vsphere(server, VsphereOp::FindObject { kind, path }).await {
            Ok(VsphereReply::Object(o)) => Ok(o),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }
    async fn list_vms(&mut self, server: String, folder: String) -> WasmResult<Result<Vec<VmInfo>, VsphereError>> {
        Ok(match self.vsphere(server, VsphereOp::ListVms { folder }).await {
            Ok(VsphereReply::Vms(v)) => Ok(v),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }
    async fn create_folder(&mut self, server: String, path: String) -> WasmResult<Result<Ensured, VsphereError>> {
        Ok(ensured(self.vsphere(server, VsphereOp::CreateFolder { path }).await))
    }
    async fn delete_folder(&mut self, server: String, path: String) -> WasmResult<Result<bool, VsphereError>> {
        Ok(flag(self.vsphere(server, VsphereOp::DeleteFolder { path }).await))
    }
    async fn ensure_category(
        &mut self,
        server: String,
        spec: CategorySpec,
    ) -> WasmResult<Result<Ensured, VsphereError>> {
        Ok(ensured(self.vsphere(server, VsphereOp::EnsureCategory { spec }).await))
    }
    async fn ensure_tag(
        &mut self,
        server: String,
        category_id: String,
        name: String,
        description: String,
    ) -> WasmResult<Result<Ensured, VsphereError>> {
        Ok(ensured(self.vsphere(server, VsphereOp::EnsureTag { category_id, name, description }).await))
    }
    async fn delete_tag(&mut self, server: String, tag_id: String) -> WasmResult<Result<bool, VsphereError>> {
        Ok(flag(self.vsphere(server, VsphereOp::DeleteTag { tag_id }).await))
    }
    async fn delete_category(&mut self, server: String, category_id: String) -> WasmResult<Result<bool, VsphereError>> {
        Ok(flag(self.vsphere(server, VsphereOp::DeleteCategory { category_id }).await))
    }
    async fn attach_tag(
        &mut self,
        server: String,
        tag_id: String,
        target: ObjectRef,
    ) -> WasmResult<Result<(), VsphereError>> {
        Ok(self.vsphere(server, VsphereOp::AttachTag { tag_id, target }).await.map(|_| ()))
    }
    async fn detach_tag(
        &mut self,
        server: String,
        tag_id: String,
        target: ObjectRef,
    ) -> WasmResult<Result<(), VsphereError>> {
        Ok(self.vsphere(server, VsphereOp::DetachTag { tag_id, target }).await.map(|_| ()))
    }
    async fn list_attached_tags(
        &mut self,
        server: String,
        target: ObjectRef,
    ) -> WasmResult<Result<Vec<TagInfo>, VsphereError>> {
        Ok(match self.vsphere(server, VsphereOp::ListAttachedTags { target }).await {
            Ok(VsphereReply::Tags(t)) => Ok(t),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }
}

fn ensured(r: Result<VsphereReply, VsphereError>) -> Result<Ensured, VsphereError> {
    match r {
        Ok(VsphereReply::Ensured(e)) => Ok(e),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(e),
    }
}

fn flag(r: Result<VsphereReply, VsphereError>) -> Result<bool, VsphereError> {
    match r {
        Ok(VsphereReply::Flag(b)) => Ok(b),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(e),
    }
}

fn check_state_sizes(key: &str, value: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > 253 {
        return Err(StateError::TooLarge(format!("key must be 1-253 bytes, is {}", key.len())));
    }
    if value.len() > MAX_STATE_VALUE_BYTES {
        return Err(StateError::TooLarge(format!("value of {} bytes exceeds {MAX_STATE_VALUE_BYTES}", value.len())));
    }
    Ok(())
}

impl state::Host for HostState {
    async fn get(&mut self, which: Scope, key: String) -> WasmResult<Option<String>> {
        Ok(match self.env() {
            Ok(env) => env.services.state_get(&env.scope, which, &key).await,
            Err(_) => None,
        })
    }
    async fn set(&mut self, which: Scope, key: String, value: String) -> WasmResult<Result<(), StateError>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(Err(StateError::Unavailable(e))),
        };
        if let Err(e) = check_state_sizes(&key, &value) {
            return Ok(Err(e));
        }
        Ok(env.services.state_set(&env.scope, which, &key, &value).await)
    }
    async fn delete(&mut self, which: Scope, key: String) -> WasmResult<Result<(), StateError>> {
        Ok(match self.env() {
            Ok(env) => env.services.state_delete(&env.scope, which, &key).await,
            Err(e) => Err(StateError::Unavailable(e)),
        })
    }
}

impl backup::Host for HostState {
    async fn snapshot(
        &mut self,
        ty: ObjectType,
        namespace: Option<String>,
        name: String,
    ) -> WasmResult<Result<SnapshotInfo, BackupError>> {
        let env = match self.env() {
            Ok(env) => env,
            Err(e) => return Ok(Err(BackupError::Forbidden(e))),
        };
        let resolved = match env.services.resolve(&ty).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(BackupError::NotFound(format!("{} {}: {e:?}", ty.api_version, ty.kind)))),
        };
        // A snapshot reads the object, so it needs `get` on it.
        if !env.caps.allows_kube(&resolved.group, &resolved.resource, "get", namespace.as_deref()) {
            let what = format!("back up {} {}", resolved.resource, name);
            return Ok(Err(BackupError::Forbidden(self.deny(&env, what))));
        }
        Ok(env.services.backup_snapshot(&env.scope, &resolved, namespace.as_deref(), &name).await)
    }
    async fn restore_journal(&mut self) -> WasmResult<Vec<RestoreReport>> {
        Ok(match self.env() {
            Ok(env) => env.services.backup_restore_journal(&env.scope).await,
            Err(e) => vec![RestoreReport { subject: "journal".into(), error: Some(e) }],
        })
    }
}

impl log::Host for HostState {
    async fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            let fields: Vec<(String, String)> = fields
                .into_iter()
                .take(32)
                .map(|(k, v)| (truncate(&k, 64).to_string(), truncate(&v, 512).to_string()))
                .collect();
            env.services.log(&env.scope, level, truncate(&message, MAX_LOG_BYTES), &fields);
        }
        Ok(())
    }
    async fn event(&mut self, ty: EventType, reason: String, message: String) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            env.services.event(&env.scope, ty, truncate(&reason, 128), truncate(&message, 1024)).await;
        }
        Ok(())
    }
    async fn progress(&mut self, percent: u8, message: String) -> WasmResult<()> {
        if let Ok(env) = self.env() {
            env.services.progress(&env.scope, percent.min(100), truncate(&message, 1024));
        }
        Ok(())
    }
}

impl clock::Host for HostState {
    async fn now_ms(&mut self) -> WasmResult<u64> {
        self.imports_made += 1;
        Ok(match &self.env {
            Some(env) => env.services.now_ms(),
            None => super::services::NoServices.now_ms(),
        })
    }
}
