//! Every call a phase makes recorded (an observer on the operator's backends), for the capability audit
//! of `vsm-plugin test` (what it called, and whether a re-run created anything).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;
use vsm_host::runtime::bindings::Scope;
use vsm_host::runtime::{CallScope, Direction, Import, ImportObserver, ImportResult, ResolvedType};

/// One import call, as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub direction: String,
    /// `kube`, `vsphere`, `state`, `backup` or `event`.
    pub system: String,
    /// The RBAC verb (kube), the operation (vsphere), or get/set/delete/snapshot/restore.
    pub verb: String,
    /// `group/resource` (core group as `core`), a vCenter, or a state key.
    pub what: String,
    pub namespace: Option<String>,
    pub mutation: bool,
    /// A vSphere ensure that created something (a re-run must not).
    pub created: bool,
    pub error: Option<String>,
}

/// The calls recorded so far (shared by every call's services).
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, call: Call) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }
}

/// Records every import of a call in a [`CallLog`].
pub struct Audited {
    pub log: CallLog,
}

fn key(w: Scope, k: &str) -> String {
    match w {
        Scope::Phase => format!("phase:{k}"),
        Scope::Migration => format!("migration:{k}"),
    }
}

fn direction(scope: &CallScope) -> String {
    match scope.direction {
        Direction::Execute => "execute".into(),
        Direction::Rollback => "rollback".into(),
    }
}

fn group_resource(ty: &ResolvedType) -> String {
    let group = if ty.group.is_empty() { "core" } else { ty.group.as_str() };
    format!("{group}/{}", ty.resource)
}

/// How the audit lists an import: system, verb, what, namespace, whether it mutates.
fn describe(import: &Import<'_>, result: &ImportResult) -> (&'static str, String, String, Option<String>, bool) {
    match *import {
        Import::Kube { op, ty, namespace, .. } => {
            ("kube", op.verb().into(), group_resource(ty), namespace.map(Into::into), op.is_mutation())
        }
        Import::Vsphere { op, server } => ("vsphere", op.name().into(), server.into(), None, op.is_mutation()),
        Import::State { verb, scope, key: k } => ("state", verb.into(), key(scope, k), None, false),
        Import::Snapshot { ty, namespace, name } => {
            ("backup", "snapshot".into(), format!("{} {name}", group_resource(ty)), namespace.map(Into::into), false)
        }
        Import::RestoreJournal => {
            ("backup", "restore-journal".into(), format!("{} entries", result.items), None, result.items > 0)
        }
        Import::Event { reason, message } => ("event", reason.into(), message.into(), None, false),
    }
}

#[async_trait]
impl ImportObserver for Audited {
    fn after(&self, scope: &CallScope, import: &Import<'_>, result: &ImportResult) {
        let (system, verb, what, namespace, mutation) = describe(import, result);
        // Reads of state are listed without their outcome, as before.
        let error = match import {
            Import::State { verb: "get", .. } | Import::Event { .. } => None,
            _ => result.error.clone(),
        };
        self.log.push(Call {
            direction: direction(scope),
            system: system.into(),
            verb,
            what,
            namespace,
            mutation,
            created: result.created,
            error,
        });
    }
}
