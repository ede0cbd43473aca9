//! `vsm-plugin inspect COMPONENT.wasm`: which contract version it was built against, what
//! it declares (describe()), whether this host loads it, and its sha256.

use std::path::Path;

use serde::Serialize;
use vsm_host::runtime::capability::{CapabilitySet, KubeRule};
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_host::runtime::{Runtime, sha256_hex};
use wit_parser::decoding::{DecodedWasm, decode};

use crate::Error;

/// The contract this build of the host implements (`wit/phase.wit`).
pub const HOST_CONTRACT: &str = include_str!("../../../wit/phase.wit");

/// `vsm:phase@X.Y.Z` of a WIT text.
pub fn contract_version(wit: &str) -> Option<String> {
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .and_then(|p| p.trim_end_matches(';').rsplit_once('@'))
        .map(|(_, v)| v.to_string())
}

/// What inspecting a component found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// Versions of `vsm:phase` interfaces it imports (one, normally).
    pub contract_versions: Vec<String>,
    /// Every interface it imports, e.g. `vsm:phase/kube@0.1.0`, `wasi:io/streams@0.2.6`.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The contract this host implements.
    pub host_contract: String,
    /// describe(), if the host could load the component; else why not.
    pub phase: Option<DescribedPhase>,
    pub load_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribedPhase {
    pub name: String,
    pub version: String,
    pub purpose: String,
    pub has_rollback: bool,
    pub default_deadline_ms: u64,
    pub capabilities: CapabilitySet,
}

pub async fn inspect(path: &Path) -> Result<Inspection, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let (imports, exports) = match decode(&bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => {
            let w = &resolve.worlds[world];
            // Interfaces and functions; the types a world `use`s are not imports of their own.
            let names = |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
                items
                    .iter()
                    .filter(|(_, item)| !matches!(item, wit_parser::WorldItem::Type { .. }))
                    .map(|(k, _)| resolve.name_world_key(k))
                    .collect::<Vec<_>>()
            };
            (names(&w.imports), names(&w.exports))
        }
        Ok(DecodedWasm::WitPackage(..)) => {
            return Err(Error::Usage(format!("{} is a WIT package, not a component", path.display())));
        }
        Err(e) => return Err(Error::Usage(format!("{} is not a WebAssembly component: {e:#}", path.display()))),
    };
    let mut contract_versions: Vec<String> = imports
        .iter()
        .filter_map(|i| i.strip_prefix("vsm:phase/"))
        .filter_map(|i| i.split_once('@').map(|(_, v)| v.to_string()))
        .collect();
    contract_versions.sort();
    contract_versions.dedup();

    let component = path.file_stem().and_then(|s| s.to_str()).unwrap_or("component").to_string();
    let runtime = Runtime::new(Default::default())?;
    let (phase, load_error) = match runtime.load(&component, &bytes, &PluginEntry::default(), Limits::default()).await {
        Ok(p) => (
            Some(DescribedPhase {
                name: p.info.name.clone(),
                version: p.info.version.clone(),
                purpose: p.info.purpose.clone(),
                has_rollback: p.info.has_rollback,
                default_deadline_ms: p.info.default_deadline_ms,
                capabilities: p.caps.declared.clone(),
            }),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Inspection {
        file: path.display().to_string(),
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        contract_versions,
        imports,
        exports,
        host_contract: contract_version(HOST_CONTRACT).unwrap_or_default(),
        phase,
        load_error,
    })
}

fn rule_text(r: &KubeRule) -> String {
    let group = if r.group.is_empty() { "core" } else { &r.group };
    let scope = r.namespace.as_deref().map(|n| format!(" in {n}")).unwrap_or_else(|| " (all namespaces)".into());
    format!("{} {group}/{}{scope}", r.verbs.join(","), r.resource)
}

/// The human-readable report.
pub fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("file:        {} ({} bytes)", i.file, i.size));
    line(format!("sha256:      {}", i.sha256));
    line(format!(
        "contract:    vsm:phase@{} (this host: vsm:phase@{})",
        if i.contract_versions.is_empty() { "?".to_string() } else { i.contract_versions.join(", ") },
        i.host_contract
    ));
    let wasi = i.imports.iter().filter(|x| x.starts_with("wasi:")).count();
    let own: Vec<&String> = i.imports.iter().filter(|x| !x.starts_with("wasi:")).collect();
    line(format!(
        "imports:     {} (+ {wasi} WASI interfaces, which the host links but grants nothing)",
        own.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
    ));
    line(format!("exports:     {}", i.exports.join(", ")));
    match (&i.phase, &i.load_error) {
        (Some(p), _) => {
            line("loads:       yes".into());
            line(format!("phase:       {} {} ({})", p.name, p.version, p.purpose));
            line(format!(
                "rollback:    {}; default deadline {} min",
                if p.has_rollback { "yes" } else { "no" },
                p.default_deadline_ms / 60_000
            ));
            line("capabilities:".into());
            if p.capabilities.kube.is_empty() && p.capabilities.vsphere.is_empty() {
                line("  (none)".into());
            }
            for r in &p.capabilities.kube {
                line(format!("  kube     {}", rule_text(r)));
            }
            for c in &p.capabilities.vsphere {
                line(format!(
                    "  vsphere  {}",
                    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                ));
            }
        }
        (None, Some(e)) => line(format!("loads:       NO: {e}")),
        (None, None) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_version_comes_from_the_package_line() {
        let host = contract_version(HOST_CONTRACT).unwrap();
        assert_eq!(host.split('.').filter(|p| p.parse::<u64>().is_ok()).count(), 3, "{host}");
        assert_eq!(contract_version("// x\npackage vsm:phase@2.3.4;\n").as_deref(), Some("2.3.4"));
        assert_eq!(contract_version("interface x {}"), None);
    }
}
