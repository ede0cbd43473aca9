//! The operator's plugin configuration: per component, the capabilities granted, an
//! optional sha256 pin and resource limits. Read from YAML (a ConfigMap in-cluster).
//!
//! ```yaml
//! defaults:
//!   cpuBudgetMs: 5000
//!   memoryMiB: 64
//! plugins:
//!   create-tags:                 # component file name without .wasm
//!     sha256: 9f86d0...          # optional: refuse any other build
//!     grants:
//!       vsphere: [read-inventory, manage-tags]
//!     limits: {cpuBudgetMs: 2000}
//!   vendor-phase:
//!     grantDeclared: true        # grant exactly what describe() declares
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capability::CapabilitySet;
use super::error::RuntimeError;

/// Resource limits for one plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Guest CPU time allowed per call (time spent in host imports does not count).
    pub cpu_budget_ms: u64,
    /// Linear memory cap per instance.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Wall-clock limit per call, host imports included.
    pub call_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu_budget_ms: 5_000, memory_mib: 64, call_timeout_seconds: 300 }
    }
}

impl Limits {
    pub fn cpu_budget(&self) -> Duration {
        Duration::from_millis(self.cpu_budget_ms)
    }
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_seconds)
    }
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }
}

/// Partial limits in the YAML; unset fields fall back to the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitOverrides {
    pub cpu_budget_ms: Option<u64>,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
    pub call_timeout_seconds: Option<u64>,
}

impl LimitOverrides {
    fn over(&self, base: Limits) -> Limits {
        Limits {
            cpu_budget_ms: self.cpu_budget_ms.unwrap_or(base.cpu_budget_ms),
            memory_mib: self.memory_mib.unwrap_or(base.memory_mib),
            call_timeout_seconds: self.call_timeout_seconds.unwrap_or(base.call_timeout_seconds),
        }
    }
}

/// Configuration of one component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginEntry {
    /// Required sha256 of the component file (hex).
    pub sha256: Option<String>,
    /// Capabilities granted, intersected with what the component declares.
    #[serde(default)]
    pub grants: CapabilitySet,
    /// Grant exactly what the component declares (for trusted, reviewed components).
    #[serde(default)]
    pub grant_declared: bool,
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// The whole plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub defaults: LimitOverrides,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
}

impl PluginConfig {
    pub fn from_yaml(text: &str) -> Result<Self, RuntimeError> {
        serde_yaml::from_str(text).map_err(|e| RuntimeError::Config(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| RuntimeError::Config(format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text)
    }

    /// The entry for a component; a component without one is granted nothing.
    pub fn entry(&self, component: &str) -> PluginEntry {
        self.plugins.get(component).cloned().unwrap_or_default()
    }

    /// Effective limits for a component.
    pub fn limits(&self, component: &str) -> Limits {
        let base = self.defaults.over(Limits::default());
        self.plugins.get(component).map(|e| e.limits.over(base)).unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::capability::VsphereClass;

    #[test]
    fn yaml_with_defaults_and_overrides() {
        let cfg = PluginConfig::from_yaml(
            "defaults: {cpuBudgetMs: 1000}\nplugins:\n  create-tags:\n    sha256: abc\n    grants:\n      vsphere: [manage-tags]\n    limits: {memoryMiB: 32}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.limits("create-tags"),
            Limits { cpu_budget_ms: 1000, memory_mib: 32, call_timeout_seconds: 300 }
        );
        assert_eq!(cfg.limits("other"), Limits { cpu_budget_ms: 1000, memory_mib: 64, call_timeout_seconds: 300 });
        assert_eq!(cfg.entry("create-tags").grants.vsphere, vec![VsphereClass::ManageTags]);
        assert_eq!(cfg.entry("other"), PluginEntry::default(), "unknown components are granted nothing");
    }

    #[test]
    fn typos_are_errors_not_silence() {
        let err = PluginConfig::from_yaml("plugins:\n  x:\n    grant: {}\n").unwrap_err();
        assert!(err.to_string().contains("grant"), "{err}");
    }

    #[test]
    fn a_typo_in_a_grant_or_a_limit_is_an_error_not_a_wider_grant() {
        // `namespaces` for `namespace`: read leniently, the rule would hold in every namespace.
        let err = PluginConfig::from_yaml(
            "plugins:\n  x:\n    grants:\n      kube:\n      - {resource: secrets, verbs: [get], namespaces: [a]}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("namespaces"), "{err}");
        let err = PluginConfig::from_yaml("plugins:\n  x:\n    grants:\n      kubernetes: []\n").unwrap_err();
        assert!(err.to_string().contains("kubernetes"), "{err}");
        let err = PluginConfig::from_yaml("defaults: {memoryMb: 1}\n").unwrap_err();
        assert!(err.to_string().contains("memoryMb"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_errors_not_silence() {
        let err =
            PluginConfig::from_yaml("plugins:\n  x:\n    grants:\n      vsphere: [delete-everything]\n").unwrap_err();
        assert!(err.to_string().contains("delete-everything"), "{err}");
    }
}
