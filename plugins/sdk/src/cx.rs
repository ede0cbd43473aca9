//! The context a phase step runs in: the call's arguments and typed access to the host.

use std::cell::OnceCell;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::spec::MigrationSpec;
use crate::types::TypeConst;
use crate::{
    AboutInfo, CallContext, CategoryInfo, CategorySpec, Ensured, EventType, Host, KubeError, Level, Object, ObjectKind,
    ObjectRef, ObjectType, PatchType, PhaseError, Preconditions, PrivilegeReport, RestoreReport, Scope, SnapshotInfo,
    TagInfo, VmInfo, VsphereError,
};

/// Everything one `execute` or `rollback` call can see and do.
pub struct Cx<'h> {
    ctx: CallContext,
    host: &'h dyn Host,
    spec: OnceCell<Result<MigrationSpec, PhaseError>>,
}

impl<'h> Cx<'h> {
    pub fn new(ctx: CallContext, host: &'h dyn Host) -> Self {
        Cx { ctx, host, spec: OnceCell::new() }
    }

    /// The raw call arguments.
    pub fn call(&self) -> &CallContext {
        &self.ctx
    }

    /// The migration's spec, parsed once per call.
    pub fn spec(&self) -> Result<&MigrationSpec, PhaseError> {
        self.spec
            .get_or_init(|| {
                serde_json::from_str(&self.ctx.migration.spec_json)
                    .map_err(|e| PhaseError::invalid(format!("migration spec: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Plan mode: mutations are recorded by the host, not applied.
    pub fn dry_run(&self) -> bool {
        self.ctx.dry_run
    }

    /// 1 on the first call of this run of the phase.
    pub fn attempt(&self) -> u32 {
        self.ctx.attempt
    }

    /// The vCenters that were the source when the migration started.
    pub fn source_servers(&self) -> &[String] {
        &self.ctx.migration.source_servers
    }

    /// The vCenters named by the target failure domains.
    pub fn target_servers(&self) -> &[String] {
        &self.ctx.migration.target_servers
    }

    /// Milliseconds since this run of the phase started.
    pub fn elapsed_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.ctx.started_at_ms)
    }

    pub fn now_ms(&self) -> u64 {
        self.host.now_ms()
    }

    pub fn kube(&self) -> Kube<'_> {
        Kube { host: self.host }
    }

    pub fn vsphere(&self) -> Vsphere<'_> {
        Vsphere { host: self.host }
    }

    /// The phase's private state.
    pub fn state(&self) -> State<'_> {
        State { host: self.host, scope: Scope::Phase }
    }

    /// Facts shared by every phase of the migration.
    pub fn shared(&self) -> State<'_> {
        State { host: self.host, scope: Scope::Migration }
    }

    pub fn backup(&self) -> Backup<'_> {
        Backup { host: self.host }
    }

    pub fn log(&self) -> Log<'_> {
        Log { host: self.host }
    }

    /// Shorthand for an info log line.
    pub fn info(&self, message: impl AsRef<str>) {
        self.host.log_write(Level::Info, message.as_ref(), &[]);
    }

    /// Shorthand for a warning log line.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.host.log_write(Level::Warn, message.as_ref(), &[]);
    }
}

/// Kubernetes access with typed results.
pub struct Kube<'h> {
    host: &'h dyn Host,
}

fn is_not_found(e: &KubeError) -> bool {
    matches!(e, KubeError::NotFound(_))
}

fn describe(ty: &ObjectType, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{} {ns}/{name}", ty.kind),
        None => format!("{} {name}", ty.kind),
    }
}

impl Kube<'_> {
    /// The object, or `None` if it does not exist.
    pub fn get(&self, ty: &TypeConst, ns: Option<&str>, name: &str) -> Result<Option<Object>, PhaseError> {
        match self.host.kube_get(&ty.get(), ns, name) {
            Ok(json) => Object::parse(&json).map(Some),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(PhaseError::from(e).context(format!("reading {}", describe(&ty.get(), ns, name)))),
        }
    }

    /// The object; its absence is an error naming it.
    pub fn get_required(&self, ty: &TypeConst, ns: Option<&str>, name: &str) -> Result<Object, PhaseError> {
        self.get(ty, ns, name)?
            .ok_or_else(|| PhaseError::invalid(format!("{} does not exist", describe(&ty.get(), ns, name))))
    }

    /// All objects of a type, optionally in one namespace and matching a label selector.
    pub fn list(&self, ty: &TypeConst, ns: Option<&str>, selector: Option<&str>) -> Result<Vec<Object>, PhaseError> {
        let json = self
            .host
            .kube_list(&ty.get(), ns, selector)
            .map_err(|e| PhaseError::from(e).context(format!("listing {}", ty.kind)))?;
        let items: Vec<Value> = serde_json::from_str(&json)?;
        Ok(items.into_iter().map(Object).collect())
    }

    pub fn create(&self, ty: &TypeConst, ns: Option<&str>, object: &Value) -> Result<Object, PhaseError> {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let json = self
            .host
            .kube_create(&ty.get(), ns, &object.to_string())
            .map_err(|e| PhaseError::from(e).context(format!("creating {}", describe(&ty.get(), ns, name))))?;
        Object::parse(&json)
    }

    /// Create, or return `None` if an object of that name exists already.
    pub fn create_if_absent(
        &self,
        ty: &TypeConst,
        ns: Option<&str>,
        object: &Value,
    ) -> Result<Option<Object>, PhaseError> {
        match self.host.kube_create(&ty.get(), ns, &object.to_string()) {
            Ok(json) => Object::parse(&json).map(Some),
            Err(KubeError::AlreadyExists(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Server-side apply with the phase's field manager.
    pub fn apply(
        &self,
        ty: &TypeConst,
        ns: Option<&str>,
        name: &str,
        object: &Value,
        force: bool,
    ) -> Result<Object, PhaseError> {
        let json = self
            .host
            .kube_apply(&ty.get(), ns, name, &object.to_string(), force)
            .map_err(|e| PhaseError::from(e).context(format!("applying {}", describe(&ty.get(), ns, name))))?;
        Object::parse(&json)
    }

    /// JSON merge patch.
    pub fn merge_patch(
        &self,
        ty: &TypeConst,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Object, PhaseError> {
        self.patch(ty, ns, name, PatchType::Merge, patch)
    }

    /// RFC 6902 JSON patch (use `test` operations as preconditions).
    pub fn json_patch(&self, ty: &TypeConst, ns: Option<&str>, name: &str, ops: &Value) -> Result<Object, PhaseError> {
        self.patch(ty, ns, name, PatchType::Json, ops)
    }

    fn patch(
        &self,
        ty: &TypeConst,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: &Value,
    ) -> Result<Object, PhaseError> {
        let json = self
            .host
            .kube_patch(&ty.get(), ns, name, kind, &patch.to_string())
            .map_err(|e| PhaseError::from(e).context(format!("patching {}", describe(&ty.get(), ns, name))))?;
        Object::parse(&json)
    }

    /// Replace (PUT) an object read earlier; fails with a conflict if it changed since.
    pub fn replace(&self, ty: &TypeConst, object: &Object) -> Result<Object, PhaseError> {
        let json =
            self.host.kube_replace(&ty.get(), object.namespace(), object.name(), &object.to_json()).map_err(|e| {
                PhaseError::from(e)
                    .context(format!("updating {}", describe(&ty.get(), object.namespace(), object.name())))
            })?;
        Object::parse(&json)
    }

    /// Whether the API server would accept `object` as the new content of the object it was
    /// read from (a replace sent with dryRun=All: schema, CEL rules, admission); nothing is
    /// stored; a refusal is an `invalid` Kubernetes error carrying the server's reason.
    /// Needs the `validate` capability on the kind.
    pub fn validate_replace(&self, ty: &TypeConst, object: &Object) -> Result<Object, PhaseError> {
        let json = self
            .host
            .kube_validate_replace(&ty.get(), object.namespace(), object.name(), &object.to_json())
            .map_err(|e| {
                PhaseError::from(e)
                    .context(format!("validating {}", describe(&ty.get(), object.namespace(), object.name())))
            })?;
        Object::parse(&json)
    }

    /// Delete; returns false if the object was already gone.
    pub fn delete(
        &self,
        ty: &TypeConst,
        ns: Option<&str>,
        name: &str,
        pre: Option<&Preconditions>,
    ) -> Result<bool, PhaseError> {
        match self.host.kube_delete(&ty.get(), ns, name, pre) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(PhaseError::from(e).context(format!("deleting {}", describe(&ty.get(), ns, name)))),
        }
    }
}

/// vSphere through the host's sessions.
pub struct Vsphere<'h> {
    host: &'h dyn Host,
}

impl Vsphere<'_> {
    pub fn about(&self, server: &str) -> Result<AboutInfo, VsphereError> {
        self.host.vs_about(server)
    }
    pub fn find(&self, server: &str, kind: ObjectKind, path: &str) -> Result<ObjectRef, VsphereError> {
        self.host.vs_find(server, kind, path)
    }
    /// `find`, with "not found" as `None`.
    pub fn lookup(&self, server: &str, kind: ObjectKind, path: &str) -> Result<Option<ObjectRef>, VsphereError> {
        match self.host.vs_find(server, kind, path) {
            Ok(r) => Ok(Some(r)),
            Err(VsphereError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub fn list_vms(&self, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.host.vs_list_vms(server, folder)
    }
    pub fn create_folder(&self, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        self.host.vs_create_folder(server, path)
    }
    pub fn delete_folder(&self, server: &str, path: &str) -> Result<bool, VsphereError> {
        self.host.vs_delete_folder(server, path)
    }
    pub fn ensure_category(&self, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        self.host.vs_ensure_category(server, spec)
    }
    pub fn ensure_tag(
        &self,
        server: &str,
        category: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        self.host.vs_ensure_tag(server, category, name, description)
    }
    pub fn delete_tag(&self, server: &str, tag: &str) -> Result<bool, VsphereError> {
        self.host.vs_delete_tag(server, tag)
    }
    pub fn delete_category(&self, server: &str, category: &str) -> Result<bool, VsphereError> {
        self.host.vs_delete_category(server, category)
    }
    pub fn attach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        self.host.vs_attach_tag(server, tag, target)
    }
    pub fn detach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        self.host.vs_detach_tag(server, tag, target)
    }
    pub fn attached_tags(&self, server: &str, target: &ObjectRef) -> Result<Vec<TagInfo>, VsphereError> {
        self.host.vs_list_attached_tags(server, target)
    }
    /// The tag category with this name, if there is one (creates nothing).
    pub fn find_category(&self, server: &str, name: &str) -> Result<Option<CategoryInfo>, VsphereError> {
        self.host.vs_find_category(server, name)
    }
    /// The tags of a category, by name.
    pub fn tags(&self, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        self.host.vs_list_tags(server, category_id)
    }
    /// What the migration's user for `server` holds on each of `targets` (in that order),
    /// and the privilege ids the server defines; any number of objects (asked 64 at a time).
    pub fn user_privileges(&self, server: &str, targets: &[ObjectRef]) -> Result<PrivilegeReport, VsphereError> {
        let first = targets.len().min(USER_PRIVILEGES_PER_CALL);
        let mut report = self.host.vs_user_privileges(server, &targets[..first])?;
        for chunk in targets[first..].chunks(USER_PRIVILEGES_PER_CALL) {
            report.entities.extend(self.host.vs_user_privileges(server, chunk)?.entities);
        }
        Ok(report)
    }
}

/// How many objects one `user-privileges` call may ask about (the contract's limit).
const USER_PRIVILEGES_PER_CALL: usize = 64;

/// One scope of the host's key/value store.
pub struct State<'h> {
    host: &'h dyn Host,
    scope: Scope,
}

impl State<'_> {
    pub fn get(&self, key: &str) -> Option<String> {
        self.host.state_get(self.scope, key)
    }

    /// A JSON value stored with [`State::put`].
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PhaseError> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| PhaseError::invalid(format!("state {key}: {e}"))),
        }
    }

    pub fn set(&self, key: &str, value: &str) -> Result<(), PhaseError> {
        Ok(self.host.state_set(self.scope, key, value)?)
    }

    /// Store a value as JSON. Durable once this returns.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), PhaseError> {
        let json = serde_json::to_string(value).map_err(|e| PhaseError::invalid(e.to_string()))?;
        self.set(key, &json)
    }

    /// Whether a flag recorded with [`State::mark`] is set.
    pub fn is_marked(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Record that a one-time step happened.
    pub fn mark(&self, key: &str) -> Result<(), PhaseError> {
        self.set(key, "true")
    }

    pub fn delete(&self, key: &str) -> Result<(), PhaseError> {
        Ok(self.host.state_delete(self.scope, key)?)
    }
}

/// The host's backup journal.
pub struct Backup<'h> {
    host: &'h dyn Host,
}

impl Backup<'_> {
    /// Take a named snapshot; an existing one is kept, never overwritten.
    pub fn snapshot(&self, ty: &TypeConst, ns: Option<&str>, name: &str) -> Result<SnapshotInfo, PhaseError> {
        self.host
            .backup_snapshot(&ty.get(), ns, name)
            .map_err(|e| PhaseError::from(e).context(format!("backing up {}", describe(&ty.get(), ns, name))))
    }

    /// Undo everything this phase journalled. Returns the reports; see
    /// [`Backup::restore_all`] for the common case.
    pub fn restore_journal(&self) -> Vec<RestoreReport> {
        self.host.backup_restore_journal()
    }

    /// Undo everything this phase journalled; an error lists every step that failed.
    pub fn restore_all(&self) -> Result<usize, PhaseError> {
        let reports = self.restore_journal();
        let failures: Vec<String> =
            reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.subject))).collect();
        if failures.is_empty() {
            Ok(reports.len())
        } else {
            Err(PhaseError::retryable(format!("restore failed for {}", failures.join("; "))))
        }
    }
}

/// Logs, Events and progress.
pub struct Log<'h> {
    host: &'h dyn Host,
}

impl Log<'_> {
    pub fn write(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.host.log_write(level, message, &fields);
    }

    /// A Kubernetes Event on the migration.
    pub fn event(&self, ty: EventType, reason: &str, message: &str) {
        self.host.log_event(ty, reason, message);
    }

    pub fn progress(&self, percent: u8, message: &str) {
        self.host.log_progress(percent.min(100), message);
    }
}
