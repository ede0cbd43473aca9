//! UpdateSecrets: put the target vCenters' credentials (`<server>.username` and
//! `<server>.password` from the migration's target credentials Secret) into
//! `kube-system/vsphere-creds`, which the cluster's components use to reach vCenter.
//!
//! - Every target server is handled in one update of the Secret, re-read and recomputed on
//!   a conflict (the Go controller reused a stale object and failed with two servers).
//! - A key that exists with another value is updated (the Go controller skipped it, so a
//!   changed password never arrived).
//! - Which keys this phase added or changed (names only, never values) and the Secret's
//!   resourceVersion after its write are recorded in the phase's state.
//!
//! Rollback: when nobody touched the Secret since this phase wrote it, its journalled
//! before-image is restored exactly. Otherwise a full restore would also undo the other
//! change (say, the source password rotated in the meantime), so only the keys this phase
//! added, and that still hold what it wrote, are removed; a key it changed keeps its
//! current value (its earlier value lives only in the before-image) and is reported.

use serde::{Deserialize, Serialize};
use vsm_common::creds::{self, Creds, KeyChange};
use vsm_sdk::prelude::*;
use vsm_sdk::types::names::{VSPHERE_CREDS, VSPHERE_CREDS_NAMESPACE};

/// Phase-scope state key of the [`Record`].
pub const RECORD_KEY: &str = "changes";

/// Attempts per call when the Secret changes under us.
const ATTEMPTS: usize = 5;

pub struct UpdateSecrets;

impl Phase for UpdateSecrets {
    fn describe() -> PhaseInfo {
        PhaseInfo::new(
            "UpdateSecrets",
            env!("CARGO_PKG_VERSION"),
            "Add or update the target vCenters' credentials in kube-system/vsphere-creds",
        )
        .kube("", "secrets", &["update"], Some(VSPHERE_CREDS_NAMESPACE))
        // The target credentials Secret may be in any namespace the spec names.
        .kube("", "secrets", &["get"], None)
        .with_rollback()
        .deadline_minutes(5)
    }

    fn execute(cx: &Cx) -> Step {
        execute(cx)
    }

    fn rollback(cx: &Cx) -> Step {
        rollback(cx)
    }
}

/// What this phase did to vsphere-creds: key names only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Keys that did not exist before.
    pub added: Vec<String>,
    /// Keys that existed with another value.
    pub changed: Vec<String>,
    /// vsphere-creds' resourceVersion right after this phase's last write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub rolled_back: bool,
}

impl Record {
    fn touched(&self) -> bool {
        !self.added.is_empty() || !self.changed.is_empty()
    }

    /// Remember keys; a key keeps its first classification (added stays added).
    fn note(&mut self, key: &str, change: KeyChange) {
        if self.added.iter().chain(&self.changed).any(|k| k == key) {
            return;
        }
        match change {
            KeyChange::Added => self.added.push(key.to_string()),
            KeyChange::Changed => self.changed.push(key.to_string()),
            KeyChange::Unchanged => {}
        }
    }
}

fn creds_name() -> String {
    format!("{VSPHERE_CREDS_NAMESPACE}/{VSPHERE_CREDS}")
}

fn load(cx: &Cx) -> Result<Option<Record>, PhaseError> {
    cx.state().get_json(RECORD_KEY)
}

fn save(cx: &Cx, r: &Record) -> Result<(), PhaseError> {
    cx.state().put(RECORD_KEY, r)
}

/// `(namespace, name)` of the target credentials Secret (namespace defaults to the
/// migration's).
fn target_ref(cx: &Cx) -> Result<(String, String), PhaseError> {
    let r = &cx.spec()?.target_credentials_secret;
    Ok((r.namespace.clone().unwrap_or_else(|| cx.call().migration.namespace.clone()), r.name.clone()))
}

fn read_root(cx: &Cx) -> Result<Option<Object>, PhaseError> {
    cx.kube().get(&types::SECRET, Some(VSPHERE_CREDS_NAMESPACE), VSPHERE_CREDS)
}

/// The target credentials, one entry per target server, or every missing key at once.
fn wanted(cx: &Cx) -> Result<Vec<(String, Creds)>, PhaseError> {
    let (ns, name) = target_ref(cx)?;
    let secret = cx.kube().get(&types::SECRET, Some(&ns), &name)?.ok_or_else(|| {
        PhaseError::invalid(format!("spec.targetVCenterCredentialsSecret: Secret {ns}/{name} does not exist"))
    })?;
    let spec = cx.spec()?;
    let servers = spec.target_servers();
    let missing = creds::missing_keys(&secret, &servers);
    if !missing.is_empty() {
        return Err(PhaseError::invalid(format!(
            "spec.targetVCenterCredentialsSecret: Secret {ns}/{name} lacks (or has empty) keys {}",
            missing.join(", ")
        )));
    }
    Ok(servers.iter().filter_map(|s| Some((s.to_string(), creds::creds(&secret, s)?))).collect())
}

/// Replace with the object as read (resourceVersion kept, so a change since is a conflict).
fn write(cx: &Cx, live: &Object, data: serde_json::Map<String, Value>) -> Result<Object, PhaseError> {
    let mut next = live.clone();
    next.set("/data", Value::Object(data));
    next.remove("/metadata/managedFields");
    cx.kube().replace(&types::SECRET, &next)
}

fn is_conflict(e: &PhaseError) -> bool {
    matches!(e, PhaseError::Kube { error: vsm_sdk::KubeError::Conflict(_), .. })
}

fn execute(cx: &Cx) -> Step {
    let wanted = wanted(cx)?;
    let mut record = load(cx)?.unwrap_or_default();
    for _ in 0..ATTEMPTS {
        let live = read_root(cx)?.ok_or_else(|| {
            PhaseError::invalid(format!(
                "{} does not exist: the cluster keeps its vCenter credentials there; restore it before migrating",
                creds_name()
            ))
        })?;
        let mut data = creds::data(&live);
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for (server, c) in &wanted {
            for (key, change) in creds::set(&mut data, server, c) {
                match change {
                    KeyChange::Added => added.push(key),
                    KeyChange::Changed => changed.push(key),
                    KeyChange::Unchanged => {}
                }
            }
        }
        let servers: Vec<&str> = wanted.iter().map(|(s, _)| s.as_str()).collect();
        if added.is_empty() && changed.is_empty() {
            // Also after a crash between the write and its record: this is the state the
            // phase leaves, so a rollback may restore the before-image over it.
            if record.touched() && record.resource_version.as_deref() != Some(live.resource_version()) {
                record.resource_version = Some(live.resource_version().to_string());
                record.rolled_back = false;
                save(cx, &record)?;
            }
            return Ok(done(format!(
                "{} already holds the current credentials of {}",
                creds_name(),
                servers.join(", ")
            )));
        }
        // Names of what is about to change, recorded ahead of the change.
        for k in &added {
            record.note(k, KeyChange::Added);
        }
        for k in &changed {
            record.note(k, KeyChange::Changed);
        }
        record.rolled_back = false;
        save(cx, &record)?;
        match write(cx, &live, data) {
            Ok(written) => {
                record.resource_version = Some(written.resource_version().to_string());
                save(cx, &record)?;
                let mut parts = Vec::new();
                if !added.is_empty() {
                    parts.push(format!("added {}", added.join(", ")));
                }
                if !changed.is_empty() {
                    parts.push(format!("updated {}", changed.join(", ")));
                }
                let verb = if cx.dry_run() { "would update" } else { "updated" };
                cx.log().event(
                    EventType::Normal,
                    "CredentialsUpdated",
                    &format!("{verb} {} for vCenter(s) {}", creds_name(), servers.join(", ")),
                );
                return Ok(done(format!("{verb} {}: {}", creds_name(), parts.join("; "))));
            }
            Err(e) if is_conflict(&e) => {
                cx.info(format!("{} changed while it was being updated; reading it again", creds_name()));
            }
            Err(e) => return Err(e),
        }
    }
    Err(PhaseError::retryable(format!("{} kept changing during {ATTEMPTS} attempts to update it", creds_name())))
}

/// Decide, key by key, what a rollback may take out of `live` without undoing a change
/// made by someone else: `(keys to remove, keys kept with the reason)`.
pub fn selective_undo(
    record: &Record,
    live: &serde_json::Map<String, Value>,
    written: &serde_json::Map<String, Value>,
) -> (Vec<String>, Vec<String>) {
    let (mut remove, mut kept) = (Vec::new(), Vec::new());
    for key in &record.added {
        match (live.get(key), written.get(key)) {
            (None, _) => {}
            (Some(now), Some(ours)) if now == ours => remove.push(key.clone()),
            (Some(_), Some(_)) => kept.push(format!("{key} (changed since this phase added it)")),
            (Some(_), None) => kept.push(format!(
                "{key} (the target credentials Secret no longer says what this phase wrote, so it cannot tell)"
            )),
        }
    }
    for key in &record.changed {
        if live.get(key).is_some() && live.get(key) == written.get(key) {
            kept.push(format!(
                "{key} (keeps the migration's value: its earlier value is only in the Secret's before-image, \
                 and restoring that would undo the other changes made to the Secret since)"
            ));
        }
    }
    (remove, kept)
}

fn rollback(cx: &Cx) -> Step {
    let Some(mut record) = load(cx)? else {
        return Ok(done(format!("nothing to undo: this phase never changed {}", creds_name())));
    };
    if record.rolled_back || !record.touched() {
        return Ok(done(format!("nothing to undo in {}", creds_name())));
    }
    let Some(live) = read_root(cx)? else {
        record.rolled_back = true;
        save(cx, &record)?;
        return Ok(done(format!("{} no longer exists; nothing to undo", creds_name())));
    };
    if record.resource_version.as_deref() == Some(live.resource_version()) {
        // Untouched since this phase wrote it: the before-image is exactly the way back.
        let restored = cx.backup().restore_all()?;
        if restored > 0 {
            record.rolled_back = true;
            save(cx, &record)?;
            return Ok(done(format!(
                "restored {} as it was before the migration (removed {}{})",
                creds_name(),
                record.added.join(", "),
                if record.changed.is_empty() {
                    String::new()
                } else {
                    format!("; restored {}", record.changed.join(", "))
                }
            )));
        }
    }
    // The Secret changed since: undo key by key.
    let (ns, name) = target_ref(cx)?;
    let written = cx.kube().get(&types::SECRET, Some(&ns), &name)?.map(|s| creds::data(&s)).unwrap_or_default();
    for _ in 0..ATTEMPTS {
        let Some(live) = read_root(cx)? else {
            record.rolled_back = true;
            save(cx, &record)?;
            return Ok(done(format!("{} no longer exists; nothing to undo", creds_name())));
        };
        let mut data = creds::data(&live);
        let (remove, kept) = selective_undo(&record, &data, &written);
        for k in &kept {
            cx.warn(format!("rollback left {k} in {}", creds_name()));
        }
        if !remove.is_empty() {
            for k in &remove {
                data.remove(k);
            }
            if let Err(e) = write(cx, &live, data) {
                if is_conflict(&e) {
                    continue;
                }
                return Err(e);
            }
        }
        record.rolled_back = true;
        save(cx, &record)?;
        let mut msg = format!("{} changed since this phase ran, so it was undone key by key", creds_name());
        msg.push_str(&if remove.is_empty() {
            ": nothing left to remove".to_string()
        } else {
            format!(": removed {}", remove.join(", "))
        });
        if !kept.is_empty() {
            msg.push_str(&format!("; left {}", kept.join(", ")));
        }
        if !kept.is_empty() {
            cx.log().event(EventType::Warning, "CredentialsKept", &msg);
        }
        return Ok(done(msg));
    }
    Err(PhaseError::retryable(format!("{} kept changing during {ATTEMPTS} attempts to roll it back", creds_name())))
}

export_phase!(UpdateSecrets);

#[cfg(test)]
mod tests;
