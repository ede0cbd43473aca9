//! `kubectl vsm backups`: the migration's backup Secrets (journal before-images and
//! snapshots), each read and its sha256 recomputed against the one the operator stored.

use std::io::Write;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vsm_api::VSphereMigration;
use vsm_api::labels;

use crate::render::{Cell, Color, Style, table, truncate};
use crate::{Error, Output, Result, encode};

/// The key holding a backup's content (see host/src/backends/journal/store.rs).
const DATA_KEY: &str = "entry.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The content matches its stored checksum.
    Verified,
    /// The content does not match: the operator will refuse to restore it.
    Mismatch,
    /// The Secret has no content.
    Empty,
    /// The status lists it, but the Secret is gone.
    Missing,
}

/// One backup and what checking it found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupCheck {
    pub name: String,
    pub phase: String,
    pub kind: String,
    pub subject: String,
    pub size: u64,
    pub stored_sha256: String,
    pub computed_sha256: Option<String>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<String>,
}

/// Read and verify every backup of the migration: its Secrets (by the migration's uid
/// label) and any the status lists that are gone.
pub async fn check_backups(client: &kube::Client, m: &VSphereMigration) -> Result<Vec<BackupCheck>> {
    let ns = m.metadata.namespace.clone().unwrap_or_default();
    let uid = m.metadata.uid.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let list = secrets.list(&ListParams::default().labels(&format!("{}={uid}", labels::MIGRATION_UID))).await?;
    let mut out: Vec<BackupCheck> = list
        .items
        .into_iter()
        .map(|s| {
            let meta = &s.metadata;
            let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned().unwrap_or_default();
            let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
            let data = s.data.as_ref().and_then(|d| d.get(DATA_KEY)).map(|b| b.0.clone());
            let stored = annotation(labels::SHA256).unwrap_or_default();
            let computed = data.as_ref().map(|d| hex::encode(Sha256::digest(d)));
            let verdict = match &computed {
                None => Verdict::Empty,
                Some(c) if *c == stored => Verdict::Verified,
                Some(_) => Verdict::Mismatch,
            };
            BackupCheck {
                name: meta.name.clone().unwrap_or_default(),
                phase: label(labels::PHASE),
                kind: label(labels::KIND),
                subject: annotation(labels::SUBJECT).unwrap_or_default(),
                size: data.map(|d| d.len() as u64).unwrap_or(0),
                stored_sha256: stored,
                computed_sha256: computed,
                verdict,
                restored_at: annotation(labels::RESTORED),
            }
        })
        .collect();
    for b in m.status.as_ref().map(|s| s.backups.clone()).unwrap_or_default() {
        if !out.iter().any(|c| c.name == b.name) {
            out.push(BackupCheck {
                name: b.name,
                phase: b.phase,
                kind: b.kind,
                subject: b.subject,
                size: b.size,
                stored_sha256: b.sha256,
                computed_sha256: None,
                verdict: Verdict::Missing,
                restored_at: None,
            });
        }
    }
    let order = |c: &BackupCheck| {
        let idx = vsm_api::PHASES.iter().position(|p| *p == c.phase).unwrap_or(usize::MAX);
        (idx, c.kind.clone(), c.subject.clone())
    };
    out.sort_by_key(order);
    Ok(out)
}

pub async fn show(
    client: &kube::Client,
    m: &VSphereMigration,
    output: Output,
    style: Style,
    out: &mut dyn Write,
) -> Result<()> {
    let checks = check_backups(client, m).await?;
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict != Verdict::Verified)
        .map(|c| format!("{} ({:?})", c.name, c.verdict))
        .collect();
    if output != Output::Table {
        encode(out, output, &checks)?;
    } else if checks.is_empty() {
        writeln!(out, "no backups: no phase has changed anything yet")?;
    } else {
        let rows: Vec<Vec<Cell>> = checks
            .iter()
            .map(|c| {
                let (text, color) = match c.verdict {
                    Verdict::Verified => ("ok", Color::Green),
                    Verdict::Mismatch => ("CHECKSUM MISMATCH", Color::Red),
                    Verdict::Empty => ("EMPTY", Color::Red),
                    Verdict::Missing => ("MISSING", Color::Red),
                };
                vec![
                    Cell::new(c.phase.clone()),
                    Cell::new(c.kind.clone()),
                    Cell::new(truncate(&c.subject, 60)),
                    Cell::new(c.size.to_string()),
                    Cell::new(c.stored_sha256.chars().take(12).collect::<String>()),
                    Cell::colored(text, color),
                    Cell::new(if c.restored_at.is_some() { "yes" } else { "" }),
                    Cell::new(c.name.clone()),
                ]
            })
            .collect();
        table(out, style, &["PHASE", "KIND", "SUBJECT", "BYTES", "SHA256", "CHECK", "RESTORED", "SECRET"], &rows)?;
        writeln!(out, "\n{} backup(s), {} verified", checks.len(), checks.len() - bad.len())?;
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!("backups failing verification: {}", bad.join(", "))))
    }
}
