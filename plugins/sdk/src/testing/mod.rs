//! A native, in-memory [`Host`] for unit tests of phase logic (feature `testing`).
//!
//! [`FakeHost`] behaves like the operator's services behind the imports, closely enough
//! that a phase tested against it behaves the same in the cluster:
//! - Kubernetes: an object store with resourceVersion conflicts, uid/generation, status as
//!   a subresource, Secret `stringData`, finalizers, label selectors, merge and JSON
//!   patches (with `test`), delete preconditions, scope rules; apply is a deep merge (no
//!   field ownership); no schema validation (reject with a hook).
//! - vSphere: an inventory per vCenter (objects by path, `Type:value` morefs, folders,
//!   tag categories, tags, attachments; SINGLE cardinality enforced on attach); a server
//!   can be made unreachable.
//! - State in both scopes (plan mode writes apart, as the host does), explicit snapshots
//!   (never overwritten), and the rollback journal: the before-image of every object on
//!   the phase's first mutation, created folders, categories, tags and attachments,
//!   undone newest first by `restore-journal`.
//! - Plan mode: mutations are validated and recorded in [`FakeHost::plan`], not applied;
//!   vSphere creations return `planned:` ids.
//! - Capabilities: when a phase runs through [`FakeHost::run`] and friends, every call is
//!   checked against what the phase's `describe()` declares; a call outside it fails with
//!   `forbidden` and is listed in [`FakeHost::denials`].
//! - Logs, Events and progress are recorded; the clock is settable and advanced by waits.
//! - Faults: hooks run before matching calls (to change the world under the phase, e.g. a
//!   concurrent writer, or to fail the call), and [`FakeHost::call_crashing`] /
//!   [`FakeHost::crash_everywhere`] abandon a call at its n-th import, as an operator crash
//!   would.
//!
//! ```
//! use serde_json::json;
//! use vsm_sdk::prelude::*;
//! use vsm_sdk::testing::{Direction, FakeHost, migration};
//!
//! struct Count;
//! impl Phase for Count {
//!     fn describe() -> PhaseInfo {
//!         PhaseInfo::new("Count", "0.1.0", "counts ConfigMaps").kube("", "configmaps", &["list"], Some("a"))
//!     }
//!     fn execute(cx: &Cx) -> Step {
//!         let n = cx.kube().list(&types::CONFIG_MAP, Some("a"), None)?.len();
//!         Ok(done(format!("{n} config maps")))
//!     }
//! }
//!
//! let host = FakeHost::new();
//! host.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a"}}));
//! let run = host.run::<Count>(Direction::Execute, &migration(&json!({}), &[]));
//! assert_eq!(run.message(), "1 config maps");
//! ```

pub mod kube;
pub mod vsphere;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use serde_json::{Value, json};

use crate::bindings::vsm::phase::backup::BackupError;
use crate::bindings::vsm::phase::state::StateError;
use crate::types::TypeConst;
use crate::{
    AboutInfo, CallContext, Capabilities, CategoryInfo, CategorySpec, Cx, Ensured, EventType, Host, KubeError, Level,
    Migration, Object, ObjectKind, ObjectRef, ObjectType, Outcome, PatchType, Phase, Preconditions, PrivilegeReport,
    RestoreReport, Scope, SnapshotInfo, TagInfo, VmInfo, VsphereCapability, VsphereError,
};
use kube::{Key, Store};
use vsphere::{Inventory, folder_levels};

/// Which of a phase's functions a call runs.
pub use vsm_api::Direction;

/// One change plan mode recorded instead of making it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// "kube" or "vsphere".
    pub system: String,
    /// The verb, e.g. "update", "delete", "create-folder", "attach-tag".
    pub action: String,
    /// What it is about, e.g. "Secret kube-system/vsphere-creds".
    pub target: String,
}

/// What one undo step in the journal is about.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEntry {
    /// A Kubernetes object before the phase's first mutation (`None`: it did not exist).
    Object {
        key: Key,
        before: Option<Value>,
    },
    /// A VM folder the phase created, from level `created_from` down to `path`.
    Folder {
        server: String,
        path: String,
        created_from: String,
    },
    Category {
        server: String,
        name: String,
        id: String,
    },
    Tag {
        server: String,
        name: String,
        category_id: String,
        id: String,
    },
    Attachment {
        server: String,
        tag_id: String,
        target: ObjectRef,
    },
    /// An empty VM folder the phase deleted.
    RemovedFolder {
        server: String,
        path: String,
    },
    /// A tag category the phase deleted, with its tags and the paths each was attached to.
    RemovedCategory {
        server: String,
        category: vsphere::Category,
        tags: Vec<(vsphere::Tag, Vec<String>)>,
    },
    /// A tag the phase deleted from the category named `category`.
    RemovedTag {
        server: String,
        category: String,
        tag: vsphere::Tag,
        attached: Vec<String>,
    },
}

impl JournalEntry {
    /// The subject, worded as the host words it.
    pub fn subject(&self) -> String {
        match self {
            JournalEntry::Object { key, .. } => key.subject(),
            JournalEntry::Folder { server, path, .. } => format!("vCenter {server} folder {path}"),
            JournalEntry::Category { server, name, .. } => format!("vCenter {server} tag category {name}"),
            JournalEntry::Tag { server, name, category_id, .. } => {
                format!("vCenter {server} tag {name} in {category_id}")
            }
            JournalEntry::Attachment { server, tag_id, target } => {
                format!("vCenter {server} tag {tag_id} on {}", target.path)
            }
            JournalEntry::RemovedFolder { server, path } => format!("vCenter {server} removed folder {path}"),
            JournalEntry::RemovedCategory { server, category, .. } => {
                format!("vCenter {server} removed tag category {}", category.name)
            }
            JournalEntry::RemovedTag { server, category, tag, .. } => {
                format!("vCenter {server} removed tag {} of category {category}", tag.name)
            }
        }
    }
}

/// A journal entry and whether it was undone already (an undone entry is spent: the
/// phase's next mutation of that subject journals it afresh).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub phase: String,
    pub entry: JournalEntry,
    pub restored: bool,
}

/// How a sequence of calls ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub outcome: Outcome,
    pub calls: u32,
    /// Every outcome, in order (waits included).
    pub outcomes: Vec<Outcome>,
}

impl Run {
    pub fn done(&self) -> bool {
        matches!(self.outcome, Outcome::Done(_))
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }

    /// Whether the final outcome is a retryable failure.
    pub fn retryable(&self) -> bool {
        matches!(&self.outcome, Outcome::Failed(f) if f.retryable)
    }

    /// The message of the final outcome.
    pub fn message(&self) -> &str {
        outcome_message(&self.outcome)
    }

    /// How many calls returned `wait`.
    pub fn waits(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Wait(_))).count()
    }
}

/// The message of any outcome.
pub fn outcome_message(o: &Outcome) -> &str {
    match o {
        Outcome::Done(m) => m,
        Outcome::Wait(w) => &w.message,
        Outcome::Failed(f) => &f.message,
    }
}

/// The migration a test call is made for: `spec` as given, `source_servers` as given,
/// `target_servers` from the spec's failure domains (first mention first).
pub fn migration(spec: &Value, sources: &[&str]) -> Migration {
    let mut targets: Vec<String> = Vec::new();
    for fd in spec.get("failureDomains").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        if let Some(s) = fd.get("server").and_then(Value::as_str)
            && !targets.iter().any(|t| t == s)
        {
            targets.push(s.to_string());
        }
    }
    Migration {
        name: "test-migration".into(),
        namespace: "vsphere-migration".into(),
        uid: "11111111-2222-4333-8444-555555555555".into(),
        spec_json: spec.to_string(),
        source_servers: sources.iter().map(|s| s.to_string()).collect(),
        target_servers: targets,
    }
}

/// The panic payload of a simulated crash.
struct Crashed;

// `Send`, so that a `FakeHost` is too: a test may hand it to another thread (behind a
// `Mutex`, e.g. as the runtime's backends, which must be `Send + Sync`).
type KubeHook = Box<dyn FnMut(&FakeHost) -> Option<KubeError> + Send>;
type VsphereHook = Box<dyn FnMut(&FakeHost) -> Option<VsphereError> + Send>;
type WaitHook = Box<dyn FnMut(&FakeHost) + Send>;

struct Hooks {
    kube: Vec<(String, String, KubeHook)>,
    vsphere: Vec<(String, VsphereHook)>,
    wait: Vec<WaitHook>,
}

/// Who is calling: the phase (journal and state scope), plan mode, direction, what it may
/// do and which vCenters belong to the migration.
#[derive(Clone)]
struct Caller {
    phase: String,
    dry_run: bool,
    direction: Direction,
    capabilities: Option<Capabilities>,
    servers: Option<Vec<String>>,
}

struct World {
    kube: Store,
    vcenters: BTreeMap<String, Inventory>,
    state: BTreeMap<String, String>,
    journal: Vec<JournalRecord>,
    snapshots: BTreeMap<String, Value>,
    logs: Vec<(Level, String)>,
    events: Vec<(EventType, String, String)>,
    progress: Option<(u8, String)>,
    plan: Vec<PlannedChange>,
    denials: Vec<String>,
    now_ms: u64,
    caller: Caller,
}

/// An in-memory host. See the [module docs](self).
///
/// `Send` (checked below) but not `Sync`: share one across threads in a `Mutex`.
pub struct FakeHost {
    world: RefCell<World>,
    hooks: RefCell<Hooks>,
    imports: Cell<u32>,
    crash_at: Cell<Option<u32>>,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<FakeHost>()
};

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

/// `Kind` → plural resource, as discovery would say for the kinds phases use.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
}

fn key_of(ty: &ObjectType, ns: Option<&str>, name: &str) -> Key {
    Key::new(&ty.api_version, &ty.kind, ns, name)
}

fn strip_server_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "deletionTimestamp"] {
            meta.remove(f);
        }
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
}

impl FakeHost {
    pub fn new() -> Self {
        FakeHost {
            world: RefCell::new(World {
                kube: Store::default(),
                vcenters: BTreeMap::new(),
                state: BTreeMap::new(),
                journal: Vec::new(),
                snapshots: BTreeMap::new(),
                logs: Vec::new(),
                events: Vec::new(),
                progress: None,
                plan: Vec::new(),
                denials: Vec::new(),
                now_ms: 1_767_225_600_000,
                caller: Caller {
                    phase: "Test".into(),
                    dry_run: false,
                    direction: Direction::Execute,
                    capabilities: None,
                    servers: None,
                },
            }),
            hooks: RefCell::new(Hooks { kube: Vec::new(), vsphere: Vec::new(), wait: Vec::new() }),
            imports: Cell::new(0),
            crash_at: Cell::new(None),
        }
    }

    // ----- Kubernetes, directly (seeding and inspection) -----

    /// Create or overwrite an object as given (status included), with a new
    /// resourceVersion. Type and place come from `apiVersion`, `kind` and `metadata`.
    pub fn put(&self, object: Value) -> Object {
        let key = Key::new(
            object["apiVersion"].as_str().expect("apiVersion"),
            object["kind"].as_str().expect("kind"),
            object.pointer("/metadata/namespace").and_then(Value::as_str),
            object.pointer("/metadata/name").and_then(Value::as_str).expect("metadata.name"),
        );
        let stored = self.world.borrow_mut().kube.put(&key, object).expect("a valid object");
        Object(stored)
    }

    pub fn get(&self, ty: &TypeConst, ns: Option<&str>, name: &str) -> Option<Object> {
        self.world.borrow().kube.get(&Key::new(ty.api_version, ty.kind, ns, name)).ok().map(Object)
    }

    /// Every object of a type (all namespaces).
    pub fn list(&self, ty: &TypeConst) -> Vec<Object> {
        self.world
            .borrow()
            .kube
            .list(ty.api_version, ty.kind, None, None)
            .expect("no selector")
            .into_iter()
            .map(Object)
            .collect()
    }

    /// Change an object in place (status included), as another controller would; bumps
    /// its resourceVersion. Panics if it does not exist.
    pub fn edit(&self, ty: &TypeConst, ns: Option<&str>, name: &str, f: impl FnOnce(&mut Value)) -> Object {
        let key = Key::new(ty.api_version, ty.kind, ns, name);
        let mut w = self.world.borrow_mut();
        let mut object = w.kube.get(&key).unwrap_or_else(|_| panic!("{} does not exist", key.subject()));
        f(&mut object);
        Object(w.kube.put(&key, object).expect("a valid object"))
    }

    /// Remove an object at once (finalizers ignored).
    pub fn remove(&self, ty: &TypeConst, ns: Option<&str>, name: &str) -> bool {
        let key = Key::new(ty.api_version, ty.kind, ns, name);
        let mut w = self.world.borrow_mut();
        let existed = w.kube.objects.contains_key(&key);
        w.kube.commit(&key, None);
        existed
    }

    // ----- vSphere, directly -----

    /// Look at or change the inventory of `server` (created empty on first use).
    pub fn vcenter<R>(&self, server: &str, f: impl FnOnce(&mut Inventory) -> R) -> R {
        let mut w = self.world.borrow_mut();
        let inv = w.vcenters.entry(server.to_string()).or_insert_with(|| Inventory::new(&format!("fake-{server}")));
        f(inv)
    }

    // ----- State, journal, snapshots, records -----

    /// A phase-scope value of `phase` (not plan mode's).
    pub fn phase_state(&self, phase: &str, key: &str) -> Option<String> {
        self.world.borrow().state.get(&format!("p.{phase}.{key}")).cloned()
    }

    /// A migration-scope value (not plan mode's).
    pub fn shared_state(&self, key: &str) -> Option<String> {
        self.world.borrow().state.get(&format!("m.{key}")).cloned()
    }

    pub fn set_shared_state(&self, key: &str, value: &str) {
        self.world.borrow_mut().state.insert(format!("m.{key}"), value.to_string());
    }

    /// Every stored state value, by the host's full key (`p.<phase>.<key>`, `m.<key>`,
    /// `plan.` prefixed in plan mode).
    pub fn all_state(&self) -> BTreeMap<String, String> {
        self.world.borrow().state.clone()
    }

    pub fn journal(&self) -> Vec<JournalRecord> {
        self.world.borrow().journal.clone()
    }

    /// Explicit snapshots by subject.
    pub fn snapshots(&self) -> BTreeMap<String, Value> {
        self.world.borrow().snapshots.clone()
    }

    pub fn logs(&self) -> Vec<(Level, String)> {
        self.world.borrow().logs.clone()
    }

    /// Whether any log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.world.borrow().logs.iter().any(|(_, m)| m.contains(text))
    }

    pub fn events(&self) -> Vec<(EventType, String, String)> {
        self.world.borrow().events.clone()
    }

    pub fn progress(&self) -> Option<(u8, String)> {
        self.world.borrow().progress.clone()
    }

    /// What plan mode recorded.
    pub fn plan(&self) -> Vec<PlannedChange> {
        self.world.borrow().plan.clone()
    }

    /// Calls refused because the phase did not declare the capability.
    pub fn denials(&self) -> Vec<String> {
        self.world.borrow().denials.clone()
    }

    // ----- Clock -----

    pub fn set_now(&self, ms: u64) {
        self.world.borrow_mut().now_ms = ms;
    }

    pub fn advance(&self, ms: u64) {
        self.world.borrow_mut().now_ms += ms;
    }

    // ----- Hooks and faults -----

    /// Run `f` before every Kubernetes call with this verb (`get`, `list`, `create`,
    /// `apply`, `patch`, `update`, `delete`, or `*`) on this kind (or `*`). It may change
    /// the world (another writer) and may fail the call by returning an error.
    pub fn on_kube(&self, verb: &str, kind: &str, f: impl FnMut(&FakeHost) -> Option<KubeError> + Send + 'static) {
        self.hooks.borrow_mut().kube.push((verb.into(), kind.into(), Box::new(f)));
    }

    /// Run `f` before every vSphere call named `op` (`about`, `find`, `list-vms`,
    /// `create-folder`, `delete-folder`, `ensure-category`, `ensure-tag`, `delete-tag`,
    /// `delete-category`, `attach-tag`, `detach-tag`, `list-attached-tags`, or `*`).
    pub fn on_vsphere(&self, op: &str, f: impl FnMut(&FakeHost) -> Option<VsphereError> + Send + 'static) {
        self.hooks.borrow_mut().vsphere.push((op.into(), Box::new(f)));
    }

    /// Run `f` whenever [`FakeHost::run`] sleeps through a `wait` (play the controllers
    /// the phase waits for).
    pub fn on_wait(&self, f: impl FnMut(&FakeHost) + Send + 'static) {
        self.hooks.borrow_mut().wait.push(Box::new(f));
    }

    pub fn clear_hooks(&self) {
        let mut h = self.hooks.borrow_mut();
        h.kube.clear();
        h.vsphere.clear();
        h.wait.clear();
    }

    /// Imports made so far (logs and the clock do not count).
    pub fn imports(&self) -> u32 {
        self.imports.get()
    }

    fn enter(&self) {
        let n = self.imports.get() + 1;
        self.imports.set(n);
        if self.crash_at.get() == Some(n) {
            self.crash_at.set(None);
            resume_unwind(Box::new(Crashed));
        }
    }

    fn fire_kube(&self, verb: &str, kind: &str) -> Option<KubeError> {
        let mut hooks = std::mem::take(&mut self.hooks.borrow_mut().kube);
        let mut result = None;
        for (v, k, f) in hooks.iter_mut() {
            if (v == "*" || v == verb) && (k == "*" || k == kind) && result.is_none() {
                result = f(self);
            }
        }
        let mut h = self.hooks.borrow_mut();
        hooks.append(&mut h.kube);
        h.kube = hooks;
        result
    }

    fn fire_vsphere(&self, op: &str) -> Option<VsphereError> {
        let mut hooks = std::mem::take(&mut self.hooks.borrow_mut().vsphere);
        let mut result = None;
        for (o, f) in hooks.iter_mut() {
            if (o == "*" || o == op) && result.is_none() {
                result = f(self);
            }
        }
        let mut h = self.hooks.borrow_mut();
        hooks.append(&mut h.vsphere);
        h.vsphere = hooks;
        result
    }

    fn fire_wait(&self) {
        let mut hooks = std::mem::take(&mut self.hooks.borrow_mut().wait);
        for f in hooks.iter_mut() {
            f(self);
        }
        let mut h = self.hooks.borrow_mut();
        hooks.append(&mut h.wait);
        h.wait = hooks;
    }

    // ----- Running phases -----

    fn context(&self, m: &Migration, attempt: u32, dry_run: bool, started_at_ms: u64) -> CallContext {
        CallContext { migration: m.clone(), attempt, dry_run, started_at_ms }
    }

    fn set_caller<P: Phase>(&self, direction: Direction, dry_run: bool, m: &Migration) {
        let info = P::describe();
        let mut servers = m.source_servers.clone();
        servers.extend(m.target_servers.iter().cloned());
        self.world.borrow_mut().caller = Caller {
            phase: info.name,
            dry_run,
            direction,
            capabilities: Some(info.capabilities),
            servers: Some(servers),
        };
    }

    fn step<P: Phase>(&self, direction: Direction, ctx: CallContext) -> Outcome {
        let cx = Cx::new(ctx, self);
        let result = match direction {
            Direction::Execute => P::execute(&cx),
            Direction::Rollback => P::rollback(&cx),
        };
        match result {
            Ok(o) => o,
            Err(e) => e.into_outcome(),
        }
    }

    /// Make `P` the caller of the next imports (its declared capabilities, its state scope
    /// and journal, `m`'s vCenters) without calling it, and return the context of such a
    /// call: for running `P`'s logic elsewhere against this host, e.g. its component through
    /// an adapter of the operator's services (the benchmarks compare the two).
    pub fn context_for<P: Phase>(&self, direction: Direction, m: &Migration, attempt: u32) -> CallContext {
        self.set_caller::<P>(direction, false, m);
        let now = self.world.borrow().now_ms;
        self.context(m, attempt, false, now)
    }

    /// One call of phase `P`.
    pub fn call<P: Phase>(&self, direction: Direction, m: &Migration, attempt: u32) -> Outcome {
        self.set_caller::<P>(direction, false, m);
        let now = self.world.borrow().now_ms;
        self.step::<P>(direction, self.context(m, attempt, false, now))
    }

    /// Call `P` until it is done or fails (retryable or not), advancing the clock through
    /// its waits and running the [`FakeHost::on_wait`] hooks. Panics after 500 calls.
    pub fn run<P: Phase>(&self, direction: Direction, m: &Migration) -> Run {
        self.run_with::<P>(direction, m, false)
    }

    /// [`FakeHost::run`] in plan mode.
    pub fn plan_run<P: Phase>(&self, m: &Migration) -> Run {
        self.run_with::<P>(Direction::Execute, m, true)
    }

    fn run_with<P: Phase>(&self, direction: Direction, m: &Migration, dry_run: bool) -> Run {
        self.set_caller::<P>(direction, dry_run, m);
        let started = self.world.borrow().now_ms;
        let mut outcomes = Vec::new();
        for attempt in 1..=500 {
            let outcome = self.step::<P>(direction, self.context(m, attempt, dry_run, started));
            outcomes.push(outcome.clone());
            match &outcome {
                Outcome::Wait(w) if !dry_run => {
                    self.advance(w.after_ms.max(1));
                    self.fire_wait();
                }
                _ => return Run { outcome, calls: attempt, outcomes },
            }
        }
        panic!("{} did not finish in 500 calls; last: {:?}", P::describe().name, outcomes.last());
    }

    /// One call that "crashes" at its `n`-th import (the import never returns, nothing
    /// after it happens). `None` if it crashed; the outcome if it finished first.
    pub fn call_crashing<P: Phase>(&self, direction: Direction, m: &Migration, n: u32) -> Option<Outcome> {
        self.set_caller::<P>(direction, false, m);
        self.imports.set(0);
        self.crash_at.set(Some(n));
        let now = self.world.borrow().now_ms;
        let ctx = self.context(m, 1, false, now);
        let result = catch_unwind(AssertUnwindSafe(|| self.step::<P>(direction, ctx)));
        self.crash_at.set(None);
        match result {
            Ok(outcome) => Some(outcome),
            Err(payload) if payload.is::<Crashed>() => None,
            Err(payload) => resume_unwind(payload),
        }
    }

    /// Crash `P` at every import in turn: `reset(host, n)` restores the starting state,
    /// the call crashes at import `n`, `P` is run again to completion (it must be done)
    /// and `check(host, n)` verifies the result. Returns the number of crash points.
    pub fn crash_everywhere<P: Phase>(
        &self,
        direction: Direction,
        m: &Migration,
        mut reset: impl FnMut(&FakeHost, u32),
        mut check: impl FnMut(&FakeHost, u32),
    ) -> u32 {
        for n in 1..=1000 {
            reset(self, n);
            if self.call_crashing::<P>(direction, m, n).is_some() {
                return n - 1;
            }
            let run = self.run::<P>(direction, m);
            assert!(run.done(), "after a crash at import {n}, the re-run did not finish: {:?}", run.outcome);
            check(self, n);
        }
        panic!("more than 1000 imports in one call");
    }

    // ----- Internals of the imports -----

    fn caller(&self) -> Caller {
        self.world.borrow().caller.clone()
    }

    fn journalling(&self) -> bool {
        let c = &self.world.borrow().caller;
        !c.dry_run && c.direction == Direction::Execute
    }

    /// Refuse a Kubernetes call the phase did not declare.
    fn allow_kube(&self, ty: &ObjectType, verb: &str, ns: Option<&str>) -> Result<(), KubeError> {
        let caller = self.caller();
        let Some(caps) = caller.capabilities else { return Ok(()) };
        let (group, resource) = (group_of(&ty.api_version), plural(&ty.kind));
        let allowed = caps.kube.iter().any(|c| {
            (c.group == "*" || c.group == group)
                && (c.resource == "*" || c.resource == resource)
                && c.verbs.iter().any(|v| v == "*" || v == verb)
                && match (&c.namespace, ns) {
                    (None, _) => true,
                    (Some(a), Some(n)) => a == n,
                    (Some(_), None) => false,
                }
        });
        if allowed {
            return Ok(());
        }
        let scope = ns.map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " cluster-wide".into());
        let g = if group.is_empty() { "core" } else { group };
        let message = format!("{verb} {g}/{resource}{scope} was not granted to {}", caller.phase);
        self.world.borrow_mut().denials.push(message.clone());
        Err(KubeError::Forbidden(message))
    }

    fn allow_vsphere(&self, server: &str, class: VsphereCapability) -> Result<(), VsphereError> {
        let caller = self.caller();
        let mut denial = None;
        if let Some(caps) = &caller.capabilities
            && !caps.vsphere.contains(&class)
        {
            let name = match class {
                VsphereCapability::ReadInventory => "read-inventory",
                VsphereCapability::ManageFolders => "manage-folders",
                VsphereCapability::ManageTags => "manage-tags",
            };
            denial = Some(format!("vsphere {name} was not granted to {}", caller.phase));
        }
        if let Some(servers) = &caller.servers
            && !servers.iter().any(|s| s == server)
        {
            denial = Some(format!("vCenter {server} is not part of the migration"));
        }
        if !self.world.borrow().vcenters.contains_key(server) {
            return Err(VsphereError::Forbidden(format!("vCenter {server} is not configured")));
        }
        match denial {
            Some(m) => {
                self.world.borrow_mut().denials.push(m.clone());
                Err(VsphereError::Forbidden(m))
            }
            None => Ok(()),
        }
    }

    fn record_plan(&self, system: &str, action: &str, target: String) {
        self.world.borrow_mut().plan.push(PlannedChange { system: system.into(), action: action.into(), target });
    }

    /// Journal `entry` unless this phase journalled the same subject already (and it was
    /// not restored since). Returns whether it was written.
    fn journal_entry(&self, entry: JournalEntry) -> bool {
        if !self.journalling() {
            return false;
        }
        let mut w = self.world.borrow_mut();
        let phase = w.caller.phase.clone();
        let subject = entry.subject();
        if w.journal.iter().any(|r| r.phase == phase && !r.restored && r.entry.subject() == subject) {
            return false;
        }
        w.journal.push(JournalRecord { phase, entry, restored: false });
        true
    }

    /// Whether this phase's journal holds the creation of `created`, not yet undone (as the
    /// host: deleting it again needs no entry of its own).
    fn created_here(&self, created: &JournalEntry) -> bool {
        let w = self.world.borrow();
        let subject = created.subject();
        w.journal.iter().any(|r| r.phase == w.caller.phase && !r.restored && r.entry.subject() == subject)
    }

    fn unjournal_last(&self) {
        self.world.borrow_mut().journal.pop();
    }

    /// Journal the before-image of an object ahead of the first mutation.
    fn journal_object(&self, key: &Key) -> bool {
        let before = self.world.borrow().kube.get(key).ok();
        self.journal_entry(JournalEntry::Object { key: key.clone(), before })
    }

    /// Apply (or in plan mode, only validate and record) one mutation.
    fn mutate(
        &self,
        verb: &str,
        key: Key,
        f: impl FnOnce(&mut Store) -> Result<Option<Value>, KubeError>,
    ) -> Result<Option<Value>, KubeError> {
        let dry_run = self.caller().dry_run;
        let written = !dry_run && self.journal_object(&key);
        // Work on a copy: plan mode throws it away, a real call keeps it.
        let mut scratch = self.world.borrow().kube.clone();
        let result = f(&mut scratch);
        match &result {
            Ok(_) if dry_run => self.record_plan("kube", verb, key.subject()),
            Ok(object) => {
                scratch.commit(&key, object.clone());
                self.world.borrow_mut().kube = scratch;
            }
            Err(KubeError::AlreadyExists(_)) if written => self.unjournal_last(),
            Err(_) => {}
        }
        result
    }

    fn undo(&self, entry: &JournalEntry) -> Result<(), String> {
        match entry {
            JournalEntry::Object { key, before } => {
                let mut w = self.world.borrow_mut();
                let live = w.kube.get(key).ok();
                match (before, live) {
                    (None, None) => Ok(()),
                    (None, Some(_)) => {
                        w.kube.commit(key, None);
                        Ok(())
                    }
                    (Some(before), live) => {
                        let mut desired = before.clone();
                        strip_server_fields(&mut desired);
                        let stored = match live {
                            None => w.kube.prepare_create(key, desired),
                            Some(live) => {
                                desired["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
                                w.kube.prepare_update(key, &live, desired, true)
                            }
                        }
                        .map_err(|e| format!("{e:?}"))?;
                        w.kube.commit(key, Some(stored));
                        Ok(())
                    }
                }
            }
            JournalEntry::Folder { server, path, created_from } => self.vcenter(server, |inv| {
                for level in folder_levels(path).into_iter().rev() {
                    inv.delete_folder(&level).map_err(|e| format!("{e:?}"))?;
                    if level == *created_from {
                        break;
                    }
                }
                Ok(())
            }),
            JournalEntry::Category { server, id, .. } => {
                self.vcenter(server, |inv| inv.delete_category(id).map(|_| ()).map_err(|e| format!("{e:?}")))
            }
            JournalEntry::Tag { server, id, .. } => {
                self.vcenter(server, |inv| inv.delete_tag(id).map(|_| ()).map_err(|e| format!("{e:?}")))
            }
            JournalEntry::Attachment { server, tag_id, target } => {
                self.vcenter(server, |inv| match inv.detach(tag_id, target) {
                    Ok(()) | Err(VsphereError::NotFound(_)) => Ok(()),
                    Err(e) => Err(format!("{e:?}")),
                })
            }
            JournalEntry::RemovedFolder { server, path } => {
                self.vcenter(server, |inv| inv.create_folder(path).map(|_| ()).map_err(|e| format!("{e:?}")))
            }
            JournalEntry::RemovedCategory { server, category, tags } => self.vcenter(server, |inv| {
                let spec = CategorySpec {
                    name: category.name.clone(),
                    description: category.description.clone(),
                    cardinality: category.cardinality,
                    associable_types: category.associable_types.clone(),
                };
                let (id, _) = inv.ensure_category(&spec).map_err(|e| format!("{e:?}"))?;
                tags.iter().try_for_each(|(tag, attached)| recreate_tag(inv, &id, tag, attached))
            }),
            JournalEntry::RemovedTag { server, category, tag, attached } => self.vcenter(server, |inv| {
                let id = inv.category_by_name(category).map(|c| c.id.clone()).ok_or_else(|| {
                    format!("tag category {category} no longer exists; tag {} cannot be recreated", tag.name)
                })?;
                recreate_tag(inv, &id, tag, attached)
            }),
        }
    }

    fn vs<R>(
        &self,
        op: &str,
        server: &str,
        class: VsphereCapability,
        f: impl FnOnce(&mut Inventory) -> Result<R, VsphereError>,
    ) -> Result<R, VsphereError> {
        self.enter();
        self.allow_vsphere(server, class)?;
        if let Some(e) = self.fire_vsphere(op) {
            return Err(e);
        }
        self.vcenter(server, f)
    }
}

/// A deleted tag again, attached to every object it was attached to that still exists.
fn recreate_tag(inv: &mut Inventory, category_id: &str, tag: &vsphere::Tag, attached: &[String]) -> Result<(), String> {
    let (id, _) = inv.ensure_tag(category_id, &tag.name, &tag.description).map_err(|e| format!("{e:?}"))?;
    for path in attached {
        if let Some(target) =
            inv.objects.get(path).map(|i| ObjectRef { kind: i.kind, moref: i.moref.clone(), path: path.clone() })
        {
            inv.attach(&id, &target).map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(())
}

fn state_key(caller: &Caller, scope: Scope, key: &str) -> String {
    let plan = if caller.dry_run { "plan." } else { "" };
    match scope {
        Scope::Phase => format!("{plan}p.{}.{key}", caller.phase),
        Scope::Migration => format!("{plan}m.{key}"),
    }
}

impl Host for FakeHost {
    fn kube_get(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "get", ns)?;
        if let Some(e) = self.fire_kube("get", &ty.kind) {
            return Err(e);
        }
        self.world.borrow().kube.get(&key_of(ty, ns, name)).map(|v| v.to_string())
    }

    fn kube_list(&self, ty: &ObjectType, ns: Option<&str>, selector: Option<&str>) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, false)?;
        self.allow_kube(ty, "list", ns)?;
        if let Some(e) = self.fire_kube("list", &ty.kind) {
            return Err(e);
        }
        let items = self.world.borrow().kube.list(&ty.api_version, &ty.kind, ns, selector)?;
        Ok(Value::Array(items).to_string())
    }

    fn kube_create(&self, ty: &ObjectType, ns: Option<&str>, object: &str) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "create", ns)?;
        if let Some(e) = self.fire_kube("create", &ty.kind) {
            return Err(e);
        }
        let object: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(KubeError::Invalid("the object has no metadata.name (generateName is not supported)".into()));
        }
        let key = key_of(ty, ns, &name);
        let made = self.mutate("create", key.clone(), |s| {
            let mut object = object;
            if let Some(o) = object.as_object_mut() {
                o.remove("status");
            }
            s.prepare_create(&key, object).map(Some)
        })?;
        Ok(made.unwrap_or_default().to_string())
    }

    fn kube_apply(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
        _force: bool,
    ) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "patch", ns)?;
        if let Some(e) = self.fire_kube("apply", &ty.kind) {
            return Err(e);
        }
        let applied: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let key = key_of(ty, ns, name);
        let made = self.mutate("apply", key.clone(), |s| match s.get(&key) {
            Err(_) => s.prepare_create(&key, applied).map(Some),
            Ok(live) => {
                let mut merged = live.clone();
                crate::patch::apply_merge(&mut merged, &applied);
                s.prepare_update(&key, &live, merged, true).map(Some)
            }
        })?;
        Ok(made.unwrap_or_default().to_string())
    }

    fn kube_patch(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: &str,
    ) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "patch", ns)?;
        if let Some(e) = self.fire_kube("patch", &ty.kind) {
            return Err(e);
        }
        let patch: Value = serde_json::from_str(patch).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let key = key_of(ty, ns, name);
        let made = self.mutate("patch", key.clone(), |s| {
            let live = s.get(&key)?;
            let mut patched = live.clone();
            match kind {
                PatchType::Merge => crate::patch::merge_patch(&mut patched, &patch),
                PatchType::Json => crate::patch::json_patch(&mut patched, &patch)?,
            }
            s.prepare_update(&key, &live, patched, true).map(Some)
        })?;
        Ok(made.unwrap_or_default().to_string())
    }

    /// The checks of a replace on a copy of the store; a `validate` hook plays the API
    /// server's schema and CEL rules (`on_kube("validate", kind, ..)`).
    fn kube_validate_replace(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        object: &str,
    ) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "validate", ns)?;
        if let Some(e) = self.fire_kube("validate", &ty.kind) {
            return Err(e);
        }
        let object: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let key = key_of(ty, ns, name);
        let mut copy = self.world.borrow().kube.clone();
        let live = copy.get(&key)?;
        copy.prepare_update(&key, &live, object, true).map(|o| o.to_string())
    }

    fn kube_replace(&self, ty: &ObjectType, ns: Option<&str>, name: &str, object: &str) -> Result<String, KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "update", ns)?;
        if let Some(e) = self.fire_kube("update", &ty.kind) {
            return Err(e);
        }
        let object: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let key = key_of(ty, ns, name);
        let made = self.mutate("update", key.clone(), |s| {
            let live = s.get(&key)?;
            s.prepare_update(&key, &live, object, true).map(Some)
        })?;
        Ok(made.unwrap_or_default().to_string())
    }

    fn kube_delete(
        &self,
        ty: &ObjectType,
        ns: Option<&str>,
        name: &str,
        pre: Option<&Preconditions>,
    ) -> Result<(), KubeError> {
        self.enter();
        kube::check_scope(&ty.kind, ns, true)?;
        self.allow_kube(ty, "delete", ns)?;
        if let Some(e) = self.fire_kube("delete", &ty.kind) {
            return Err(e);
        }
        let key = key_of(ty, ns, name);
        let (uid, rv) = (pre.and_then(|p| p.uid.clone()), pre.and_then(|p| p.resource_version.clone()));
        self.mutate("delete", key.clone(), |s| s.prepare_delete(&key, uid.as_deref(), rv.as_deref()))?;
        Ok(())
    }

    fn vs_about(&self, server: &str) -> Result<AboutInfo, VsphereError> {
        self.vs("about", server, VsphereCapability::ReadInventory, |inv| inv.about())
    }

    fn vs_find(&self, server: &str, kind: ObjectKind, path: &str) -> Result<ObjectRef, VsphereError> {
        self.vs("find", server, VsphereCapability::ReadInventory, |inv| inv.find(kind, path))
    }

    fn vs_list_vms(&self, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.vs("list-vms", server, VsphereCapability::ReadInventory, |inv| inv.list_vms(folder))
    }

    fn vs_create_folder(&self, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        let first =
            self.vs("create-folder", server, VsphereCapability::ManageFolders, |inv| inv.first_missing_folder(path))?;
        let Some(first) = first else {
            let id = self.vcenter(server, |inv| inv.find(ObjectKind::Folder, path.trim_end_matches('/')))?.moref;
            return Ok(Ensured { id, created: false });
        };
        if self.caller().dry_run {
            self.record_plan("vsphere", "create-folder", format!("vCenter {server} folder {path}"));
            return Ok(Ensured { id: format!("planned:folder:{path}"), created: true });
        }
        self.journal_entry(JournalEntry::Folder { server: server.into(), path: path.into(), created_from: first });
        let (id, created) = self.vcenter(server, |inv| inv.create_folder(path))?;
        Ok(Ensured { id, created })
    }

    fn vs_delete_folder(&self, server: &str, path: &str) -> Result<bool, VsphereError> {
        let dry = self.caller().dry_run;
        let exists = self.vs("delete-folder", server, VsphereCapability::ManageFolders, |inv| {
            Ok(inv.find(ObjectKind::Folder, path).is_ok())
        })?;
        if dry || !exists {
            if exists {
                self.record_plan("vsphere", "delete-folder", format!("vCenter {server} folder {path}"));
            }
            return Ok(exists);
        }
        let made = JournalEntry::Folder { server: server.into(), path: path.into(), created_from: String::new() };
        let written = !self.created_here(&made)
            && self.journal_entry(JournalEntry::RemovedFolder { server: server.into(), path: path.into() });
        let result = self.vcenter(server, |inv| inv.delete_folder(path));
        if written && matches!(result, Ok(false) | Err(VsphereError::Invalid(_))) {
            self.unjournal_last();
        }
        result
    }

    fn vs_ensure_category(&self, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        let existing = self.vs("ensure-category", server, VsphereCapability::ManageTags, |inv| {
            inv.about()?;
            Ok(inv.category_by_name(&spec.name).map(|c| c.id.clone()))
        })?;
        if let Some(id) = existing {
            return Ok(Ensured { id, created: false });
        }
        if self.caller().dry_run {
            self.record_plan("vsphere", "create-tag-category", format!("vCenter {server} tag category {}", spec.name));
            return Ok(Ensured { id: format!("planned:category:{}", spec.name), created: true });
        }
        let (id, created) = self.vcenter(server, |inv| inv.ensure_category(spec))?;
        self.journal_entry(JournalEntry::Category { server: server.into(), name: spec.name.clone(), id: id.clone() });
        Ok(Ensured { id, created })
    }

    fn vs_ensure_tag(
        &self,
        server: &str,
        category: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        let existing = self.vs("ensure-tag", server, VsphereCapability::ManageTags, |inv| {
            inv.about()?;
            Ok(inv.tags.iter().find(|t| t.category_id == category && t.name == name).map(|t| t.id.clone()))
        })?;
        if let Some(id) = existing {
            return Ok(Ensured { id, created: false });
        }
        if self.caller().dry_run {
            self.record_plan("vsphere", "create-tag", format!("vCenter {server} tag {name}"));
            return Ok(Ensured { id: format!("planned:tag:{name}"), created: true });
        }
        let (id, created) = self.vcenter(server, |inv| inv.ensure_tag(category, name, description))?;
        self.journal_entry(JournalEntry::Tag {
            server: server.into(),
            name: name.into(),
            category_id: category.into(),
            id: id.clone(),
        });
        Ok(Ensured { id, created })
    }

    fn vs_delete_tag(&self, server: &str, tag: &str) -> Result<bool, VsphereError> {
        if self.caller().dry_run {
            self.vs("delete-tag", server, VsphereCapability::ManageTags, |inv| inv.about())?;
            self.record_plan("vsphere", "delete-tag", format!("vCenter {server} tag {tag}"));
            return Ok(true);
        }
        let found = self.vs("delete-tag", server, VsphereCapability::ManageTags, |inv| {
            let Some(t) = inv.tags.iter().find(|t| t.id == tag).cloned() else { return Ok(None) };
            let category =
                inv.categories.iter().find(|c| c.id == t.category_id).map(|c| c.name.clone()).unwrap_or_default();
            Ok(Some((t.clone(), category, inv.attached_to(tag))))
        })?;
        let Some((t, category, attached)) = found else { return Ok(false) };
        let made = JournalEntry::Tag {
            server: server.into(),
            name: t.name.clone(),
            category_id: t.category_id.clone(),
            id: t.id.clone(),
        };
        if !self.created_here(&made) {
            self.journal_entry(JournalEntry::RemovedTag { server: server.into(), category, tag: t, attached });
        }
        self.vcenter(server, |inv| inv.delete_tag(tag))
    }

    fn vs_delete_category(&self, server: &str, category: &str) -> Result<bool, VsphereError> {
        if self.caller().dry_run {
            self.vs("delete-category", server, VsphereCapability::ManageTags, |inv| inv.about())?;
            self.record_plan("vsphere", "delete-tag-category", format!("vCenter {server} tag category {category}"));
            return Ok(true);
        }
        let found = self.vs("delete-category", server, VsphereCapability::ManageTags, |inv| {
            let Some(c) = inv.categories.iter().find(|c| c.id == category).cloned() else { return Ok(None) };
            let tags: Vec<_> = inv
                .tags
                .iter()
                .filter(|t| t.category_id == category)
                .map(|t| (t.clone(), inv.attached_to(&t.id)))
                .collect();
            Ok(Some((c, tags)))
        })?;
        let Some((c, tags)) = found else { return Ok(false) };
        let made = JournalEntry::Category { server: server.into(), name: c.name.clone(), id: c.id.clone() };
        if !self.created_here(&made) {
            self.journal_entry(JournalEntry::RemovedCategory { server: server.into(), category: c, tags });
        }
        self.vcenter(server, |inv| inv.delete_category(category))
    }

    fn vs_attach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        if self.caller().dry_run {
            self.vs("attach-tag", server, VsphereCapability::ManageTags, |inv| inv.about())?;
            self.record_plan("vsphere", "attach-tag", format!("vCenter {server} {} tag {tag}", target.path));
            return Ok(());
        }
        let attached =
            self.vs("attach-tag", server, VsphereCapability::ManageTags, |inv| inv.is_attached(tag, target))?;
        if attached {
            return Ok(());
        }
        let written = self.journal_entry(JournalEntry::Attachment {
            server: server.into(),
            tag_id: tag.into(),
            target: target.clone(),
        });
        let result = self.vcenter(server, |inv| inv.attach(tag, target));
        if result.is_err() && written {
            self.unjournal_last();
        }
        result
    }

    fn vs_detach_tag(&self, server: &str, tag: &str, target: &ObjectRef) -> Result<(), VsphereError> {
        if self.caller().dry_run {
            self.vs("detach-tag", server, VsphereCapability::ManageTags, |inv| inv.about())?;
            self.record_plan("vsphere", "detach-tag", format!("vCenter {server} {} tag {tag}", target.path));
            return Ok(());
        }
        self.vs("detach-tag", server, VsphereCapability::ManageTags, |inv| match inv.detach(tag, target) {
            Ok(()) | Err(VsphereError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        })
    }

    fn vs_list_attached_tags(&self, server: &str, target: &ObjectRef) -> Result<Vec<TagInfo>, VsphereError> {
        self.vs("list-attached-tags", server, VsphereCapability::ReadInventory, |inv| inv.attached(target))
    }

    fn vs_find_category(&self, server: &str, name: &str) -> Result<Option<CategoryInfo>, VsphereError> {
        self.vs("find-category", server, VsphereCapability::ReadInventory, |inv| inv.find_category(name))
    }

    fn vs_list_tags(&self, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        self.vs("list-tags", server, VsphereCapability::ReadInventory, |inv| inv.list_tags(category_id))
    }

    fn vs_user_privileges(&self, server: &str, targets: &[ObjectRef]) -> Result<PrivilegeReport, VsphereError> {
        if targets.len() > 64 {
            return Err(VsphereError::Invalid(format!(
                "user-privileges takes at most 64 objects, not {}",
                targets.len()
            )));
        }
        self.vs("user-privileges", server, VsphereCapability::ReadInventory, |inv| inv.user_privileges(targets))
    }

    fn state_get(&self, scope: Scope, key: &str) -> Option<String> {
        self.enter();
        let w = self.world.borrow();
        w.state.get(&state_key(&w.caller, scope, key)).cloned()
    }

    fn state_set(&self, scope: Scope, key: &str, value: &str) -> Result<(), StateError> {
        self.enter();
        if key.len() > 253 {
            return Err(StateError::TooLarge(format!("key of {} bytes", key.len())));
        }
        let mut w = self.world.borrow_mut();
        let full = state_key(&w.caller, scope, key);
        w.state.insert(full, value.to_string());
        Ok(())
    }

    fn state_delete(&self, scope: Scope, key: &str) -> Result<(), StateError> {
        self.enter();
        let mut w = self.world.borrow_mut();
        let full = state_key(&w.caller, scope, key);
        w.state.remove(&full);
        Ok(())
    }

    fn backup_snapshot(&self, ty: &ObjectType, ns: Option<&str>, name: &str) -> Result<SnapshotInfo, BackupError> {
        self.enter();
        self.allow_kube(ty, "get", ns).map_err(|e| BackupError::Forbidden(format!("{e:?}")))?;
        let key = key_of(ty, ns, name);
        let object = self.world.borrow().kube.get(&key).map_err(|e| match e {
            KubeError::NotFound(m) => BackupError::NotFound(m),
            other => BackupError::Failed(format!("{other:?}")),
        })?;
        let subject = key.subject();
        let size = object.to_string().len() as u64;
        if self.caller().dry_run {
            self.record_plan("kube", "snapshot", subject);
            return Ok(SnapshotInfo { name: "planned".into(), sha256: String::new(), size: 0, created: true });
        }
        let mut w = self.world.borrow_mut();
        let created = !w.snapshots.contains_key(&subject);
        let name = format!("snapshot-{}", w.snapshots.keys().position(|k| *k == subject).unwrap_or(w.snapshots.len()));
        if created {
            w.snapshots.insert(subject, object);
        }
        Ok(SnapshotInfo { name, sha256: format!("{size:064x}"), size, created })
    }

    fn backup_restore_journal(&self) -> Vec<RestoreReport> {
        self.enter();
        let phase = self.caller().phase;
        let todo: Vec<(usize, JournalEntry)> = self
            .world
            .borrow()
            .journal
            .iter()
            .enumerate()
            .filter(|(_, r)| r.phase == phase && !r.restored)
            .map(|(i, r)| (i, r.entry.clone()))
            .rev()
            .collect();
        let mut reports = Vec::new();
        for (i, entry) in todo {
            let result = self.undo(&entry);
            if result.is_ok() {
                self.world.borrow_mut().journal[i].restored = true;
            }
            reports.push(RestoreReport { subject: entry.subject(), error: result.err() });
        }
        reports
    }

    fn log_write(&self, level: Level, message: &str, _fields: &[(String, String)]) {
        self.world.borrow_mut().logs.push((level, message.to_string()));
    }

    fn log_event(&self, ty: EventType, reason: &str, message: &str) {
        if self.caller().dry_run {
            return;
        }
        self.world.borrow_mut().events.push((ty, reason.to_string(), message.to_string()));
    }

    fn log_progress(&self, percent: u8, message: &str) {
        self.world.borrow_mut().progress = Some((percent, message.to_string()));
    }

    fn now_ms(&self) -> u64 {
        self.world.borrow().now_ms
    }
}

/// A Kubernetes manifest with type, name and optional namespace filled in.
pub fn manifest(ty: &TypeConst, ns: Option<&str>, name: &str, body: Value) -> Value {
    let mut m = body;
    if !m.is_object() {
        m = json!({});
    }
    m["apiVersion"] = json!(ty.api_version);
    m["kind"] = json!(ty.kind);
    if !m.get("metadata").is_some_and(Value::is_object) {
        m["metadata"] = json!({});
    }
    m["metadata"]["name"] = json!(name);
    if let Some(ns) = ns {
        m["metadata"]["namespace"] = json!(ns);
    }
    m
}

#[cfg(test)]
mod tests;
